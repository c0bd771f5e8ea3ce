"""The local stand-ins for the outbox's channels: SES's verified sender and the EventBridge bus on
moto, the audit table's stream pumped into the delivery function, and the mail SES "sent"."""

from __future__ import annotations

import email
import json
import urllib.request
from email.message import Message
from email.utils import parseaddr
from typing import Any

import boto3

from devstack.stream import StreamPump

LOCAL_MAIL_FROM = "keyward <notifications@keyward.localhost>"
LOCAL_EVENT_BUS = "keyward-local"

# A local endpoint must never be reached through an HTTP proxy set in the environment.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def prepare_channels(*, endpoint: str) -> None:
    """Let SES on moto send as KEYWARD_MAIL_FROM, create the EventBridge bus and the KMS key that
    seals webhook secrets, as a deployment does."""
    from chalicelib.base.config import settings

    create_webhook_secret_key(endpoint=endpoint)

    if settings().mail_from:
        ses = boto3.client("ses", endpoint_url=endpoint, region_name=settings().region)
        ses.verify_email_identity(EmailAddress=parseaddr(settings().mail_from)[1])
    if settings().event_bus:
        events = boto3.client("events", endpoint_url=endpoint, region_name=settings().region)
        if not any(bus["Name"] == settings().event_bus for bus in events.list_event_buses()["EventBuses"]):
            events.create_event_bus(Name=settings().event_bus)


def create_webhook_secret_key(*, endpoint: str) -> None:
    """The KMS key KEYWARD_WEBHOOK_SECRET_KEY names, on moto, unless it is there: an alias is
    created with its key (the template's key is named by its ARN instead)."""
    from chalicelib.base.config import settings

    name = settings().webhook_secret_key
    kms = boto3.client("kms", endpoint_url=endpoint, region_name=settings().region)
    try:
        kms.describe_key(KeyId=name)
        return
    except kms.exceptions.NotFoundException:
        pass
    if not name.startswith("alias/"):
        raise RuntimeError(f"KEYWARD_WEBHOOK_SECRET_KEY names no key on the local stack: {name!r}")
    key = kms.create_key(Description="keyward (local): seals webhook signing secrets")["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName=name, TargetKeyId=key)


def audit_stream_pump(*, endpoint: str, **options: Any) -> StreamPump:
    """The audit table's stream into ``app.deliver_audit_events``, as Lambda's event source mapping does."""
    from app import deliver_audit_events
    from chalicelib.base.config import settings

    return StreamPump(
        handler=deliver_audit_events, table_name=settings().tables.audit, endpoint=endpoint, batch_size=25, **options
    )


def sent_mail(*, endpoint: str) -> list[Message]:
    """Every mail SES on moto has accepted, oldest first, parsed (moto keeps them in memory)."""
    with _DIRECT.open(f"{endpoint}/moto-api/data.json", timeout=10) as answer:
        models = json.load(answer)
    raw = models.get("ses", {}).get("RawMessage", [])
    return [email.message_from_string(message["raw_data"]) for message in raw]


def text_of(message: Message) -> str:
    """A mail's plain-text part."""
    for part in message.walk():
        payload = part.get_payload(decode=True)
        if part.get_content_type() == "text/plain" and isinstance(payload, bytes):
            return payload.decode(part.get_content_charset() or "utf-8")
    return ""


def print_outbox(*, endpoint: str) -> int:
    """``python -m devstack mail``: the local outbox, one mail after the other."""
    messages = sent_mail(endpoint=endpoint)
    if not messages:
        print("No mail sent yet.")
        return 0
    for message in messages:
        print(f"From: {message['From']}\nTo: {message['To']}\nDate: {message['Date']}\nSubject: {message['Subject']}\n")
        print(text_of(message).rstrip())
        print("\n" + "-" * 72)
    print(f"{len(messages)} mail(s)")
    return 0
