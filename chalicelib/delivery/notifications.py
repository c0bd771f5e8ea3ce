"""Notification mails: which audit events are mailed to whom, what each mail says, and sending it (SES).

A member hears of changes to their own account (a key added or deleted, MFA turned off, an
enrolment pass issued for them, their sessions ended by an admin, repeated failed MFA checks);
the organization's admins hear of changes to the organization (enforcement, the authenticator
policy, backup credentials created or used, a member offboarded, a webhook changed, disabled or
deleted, by an admin or by keyward). Every mail
says what happened, when, from which address and browser, and what to do if it was not expected;
it is built only from the event's own fields, never from a secret, token or code.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage, Message
from email.utils import formatdate
from typing import Any

from chalicelib.base import audit, aws, clock
from chalicelib.base.audit import ActorKind
from chalicelib.base.config import settings
from chalicelib.base.models import AuditEvent, Member, Organization

MEMBER = "member"
ADMINS = "admins"

# action → (who is told, the mail's subject)
MAILED_ACTIONS: dict[str, tuple[str, str]] = {
    "key.registered": (MEMBER, "A security key was added to your account"),
    "key.deleted": (MEMBER, "A security key was removed from your account"),
    "mfa.disabled": (MEMBER, "Multi-factor authentication was turned off for your account"),
    "enrollment_pass.issued": (MEMBER, "An enrolment pass was issued for you"),
    "member.sessions_ended": (MEMBER, "Your sessions were ended by an admin"),
    "mfa.failed": (MEMBER, "Repeated failed security key checks on your account"),
    "enforcement.enabled": (ADMINS, "MFA enforcement was turned on"),
    "enforcement.disabled": (ADMINS, "MFA enforcement was turned off"),
    "policy.changed": (ADMINS, "The authenticator policy was changed"),
    "backup_credentials.created": (ADMINS, "Backup credentials were created"),
    "backup_login.succeeded": (ADMINS, "Someone signed in with backup credentials"),
    "member.offboarded": (ADMINS, "A member was offboarded"),
    "webhook.changed": (ADMINS, "A webhook was changed"),
    "webhook.disabled": (ADMINS, "A webhook was disabled"),
    "webhook.deleted": (ADMINS, "A webhook was deleted"),
}
KEYWARD_DISABLED_A_WEBHOOK = "A webhook was disabled after failing repeatedly"
# One failed check is a typo or a wrong key; this many in the window is worth a mail (and every
# further multiple of it, so an ongoing attack keeps being heard without a mail per attempt).
REPEATED_FAILURES = 3
FAILURE_WINDOW = timedelta(minutes=15)


@dataclass(frozen=True)
class Mail:
    subject: str
    text: str
    html: str


class MailRejected(Exception):
    """SES refused this mail for good (an invalid address, say): sending it again cannot help."""


def audience(entry: AuditEvent) -> str | None:
    """Who is mailed about this event: the member it is about, the admins, or nobody."""
    mailed = MAILED_ACTIONS.get(entry.action)
    if mailed is None:
        return None
    if entry.action == "mfa.failed" and not _repeated_failure(entry):
        return None
    # Every admin hears of a webhook turned away from its receiver (a SIEM), not only the one who did it.
    return mailed[0]


def recipients(entry: AuditEvent) -> list[str]:
    """The user IDs of whoever is mailed about this event."""
    who = audience(entry)
    if who == MEMBER:
        about = entry.user_id or entry.target
        return [about] if about else []
    if who == ADMINS:
        return [
            member.user_id
            for member in Member.query(
                entry.org_id,
                filter_condition=Member.admin == True,
                consistent_read=True,
                attributes_to_get=["user_id", "admin"],
            )
        ]
    return []


def _repeated_failure(entry: AuditEvent) -> bool:
    """Whether this failed MFA check completes a run of REPEATED_FAILURES within the window.

    The window's events are on every shard of its days: the organization says how many.
    """
    if not entry.user_id:
        return False
    try:
        org = Organization.get(entry.org_id)
    except Organization.DoesNotExist:
        return False
    failures = sum(
        1
        for _ in audit.events(
            org=org,
            low=(entry.at - FAILURE_WINDOW).strftime(audit.KEY_TIME_FORMAT),
            high=entry.event_key,
            condition=(AuditEvent.action == "mfa.failed") & (AuditEvent.user_id == entry.user_id),
        )
    )
    return failures > 0 and failures % REPEATED_FAILURES == 0


# --- what a mail says --------------------------------------------------------------------------


def compose(*, entry: AuditEvent, recipient: Member, event_id: str) -> Mail:
    """The mail about ``entry`` for ``recipient``, in plain text and HTML."""
    who, subject = MAILED_ACTIONS[entry.action]
    if entry.action == "webhook.disabled" and entry.actor_kind == ActorKind.SYSTEM.value:
        subject = KEYWARD_DISABLED_A_WEBHOOK
    details = entry.details.as_dict() if entry.details is not None else {}
    facts: list[tuple[str, str]] = [
        ("What", _what(entry, details)),
        ("When", f"{clock.iso(entry.at)} (UTC)"),
        ("By", entry.actor),
        ("From address", entry.source_ip or "unknown"),
        ("Browser", entry.user_agent or "unknown"),
    ]
    if entry.action.startswith("key.") and details.get("name"):
        facts.append(("Security key", f"{details['name']} ({entry.target})"))
    elif entry.action.startswith("key."):
        facts.append(("Security key", str(entry.target)))
    elif details.get("keys"):
        facts.append(("Security keys", ", ".join(f"{key.get('name')} ({key.get('id')})" for key in details["keys"])))
    facts.append(("Organization", entry.org_id))
    facts.append(("Event", event_id))
    console = settings().allowed_origins[0] if settings().allowed_origins else None
    advice = _advice(who, console)
    greeting = f"Hello {recipient.name or recipient.user_id},"

    text = "\n".join(
        [greeting, "", _what(entry, details), ""]
        + [f"{label}: {value}" for label, value in facts]
        + ["", advice, "", "-- keyward"]
    )
    rows = "".join(
        f'<tr><th align="left">{html.escape(label)}</th><td>{html.escape(value)}</td></tr>' for label, value in facts
    )
    body = (
        f"<p>{html.escape(greeting)}</p><p><strong>{html.escape(_what(entry, details))}</strong></p>"
        f"<table>{rows}</table><p>{html.escape(advice)}</p><p>&mdash; keyward</p>"
    )
    return Mail(subject=f"keyward: {subject}", text=text, html=f"<!doctype html><html><body>{body}</body></html>")


def _what(entry: AuditEvent, details: dict[str, Any]) -> str:
    name = details.get("name")
    target = entry.target or ""
    sentences = {
        "key.registered": (
            f"A security key{f' named “{name}”' if name else ''} was added to your account by {entry.actor}."
        ),
        "key.deleted": f"The security key {f'“{name}”' if name else target} was removed from your account by "
        f"{entry.actor}{', an admin' if details.get('by') == 'admin' else ''}.",
        "mfa.disabled": f"Multi-factor authentication was turned off for your account by {entry.actor}; "
        f"{details.get('keys_deleted', 'all')} security key(s) were removed.",
        "enrollment_pass.issued": (
            f"{entry.actor} issued an enrolment pass for you: it lets you register a security key."
        ),
        "member.sessions_ended": (
            f"{entry.actor} ended your sessions ({details.get('sessions_ended', 'all')}); sign in again."
        ),
        "mfa.failed": f"The security key check failed {REPEATED_FAILURES} or more times on your account "
        f"within {int(FAILURE_WINDOW.total_seconds() // 60)} minutes.",
        "enforcement.enabled": f"{entry.actor} turned on MFA enforcement for {entry.org_id}.",
        "enforcement.disabled": f"{entry.actor} turned off MFA enforcement for {entry.org_id}.",
        "policy.changed": f"{entry.actor} changed the authenticator policy of {entry.org_id}.",
        "backup_credentials.created": f"{entry.actor} created the backup credentials {target}.",
        "backup_login.succeeded": f"Someone signed in to {entry.org_id} with the backup credentials {target}.",
        "member.offboarded": f"{entry.actor} offboarded the member {target}.",
        "webhook.changed": f"{entry.actor} changed the webhook {target}: its events now go to {details.get('url', '')}"
        + (f" instead of {details['previous_url']}" if details.get("previous_url") else "")
        + f" ({', '.join(details.get('events', []))}).",
        "webhook.disabled": (
            f"The webhook {target} ({details.get('url', '')}) was disabled after "
            f"{details.get('failures', 'repeated')} failed deliveries in a row; enable it again once it works."
            if entry.actor_kind == ActorKind.SYSTEM.value
            else f"{entry.actor} disabled the webhook {target} ({details.get('url', '')}): no events go to it."
        ),
        "webhook.deleted": (
            f"{entry.actor} deleted the webhook {target} ({details.get('url', '')}): no events go to it."
        ),
    }
    return sentences.get(entry.action, f"{entry.action} by {entry.actor}.")


def _advice(who: str, console: str | None) -> str:
    where = f" at {console}" if console else ""
    if who == MEMBER:
        return (
            f"If this was not you, tell your organization's admins at once: someone may be using your account. "
            f"Sign in{where} to review your security keys and sessions."
        )
    return (
        f"If this was not expected, review the audit log{where} and your organization's backup credentials and admins."
    )


# --- sending -----------------------------------------------------------------------------------


def mime(*, mail: Mail, sender: str, to: str, event_id: str) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = mail.subject
    message["Date"] = formatdate(usegmt=True)
    # Lets a reader (and the local outbox) tie a mail to its audit event.
    message["X-Keyward-Event"] = event_id
    message.set_content(mail.text)
    message.add_alternative(mail.html, subtype="html")
    return message.as_bytes()


# SES errors that will not go away by sending again.
_REJECTED = frozenset(
    {
        "MessageRejected",
        "InvalidParameterValue",
        "MailFromDomainNotVerifiedException",
        "AccountSendingPausedException",
        "ConfigurationSetDoesNotExist",
    }
)


def send(*, mail: Mail, to: str, event_id: str) -> None:
    """Send one mail through SES from ``KEYWARD_MAIL_FROM``.

    Raises:
        MailRejected: SES refused it for good.
        botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError: it may work later (throttling).
    """
    from botocore.exceptions import ClientError

    sender = settings().mail_from
    try:
        _ses().send_raw_email(
            Source=sender,
            Destinations=[to],
            RawMessage={"Data": mime(mail=mail, sender=sender, to=to, event_id=event_id)},
        )
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code in _REJECTED:
            raise MailRejected(f"SES refused the mail: {code}") from None
        raise


def _ses() -> Any:
    return aws.client("ses", attempts=1, read_timeout=10)  # the outbox retries, and records each attempt


# --- the local stage's outbox ------------------------------------------------------------------


def local_outbox() -> list[dict[str, str]]:
    """The mail SES on moto has accepted, newest first: the local stage's outbox (moto keeps sent
    mail in memory and lists it at /moto-api/data.json). Empty where SES is AWS's own."""
    import email
    import json
    import urllib.request

    endpoint = settings().aws_endpoint
    if endpoint is None:
        return []
    # moto runs beside the local stack: never through a proxy from the environment.
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with direct.open(f"{endpoint}/moto-api/data.json", timeout=5) as answer:
        raw = json.load(answer).get("ses", {}).get("RawMessage", [])
    found = []
    for stored in reversed(raw):
        message = email.message_from_string(stored["raw_data"])
        found.append(
            {
                "from": str(message["From"] or ""),
                "to": str(message["To"] or ""),
                "subject": str(message["Subject"] or ""),
                "date": str(message["Date"] or ""),
                "text": _plain_text(message),
            }
        )
    return found


def _plain_text(message: Message) -> str:
    for part in message.walk():
        payload = part.get_payload(decode=True)
        if part.get_content_type() == "text/plain" and isinstance(payload, bytes):
            return payload.decode(part.get_content_charset() or "utf-8")
    return ""
