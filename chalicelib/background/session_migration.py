"""Moving a deployment's sessions from the sessions table of before (keyed by organization and
session ID, with a local index by member: one organization's sessions in one item collection) to
the table keyed by session ID (chalicelib/base/models.py, Session). ``python -m keyward migrate
sessions`` runs it; docs/operations.md has the procedure.

Each session is *moved*: one transaction puts it in the new table, on the condition that no
session of its ID is there, and deletes it from the old one, on the condition that it is still
exactly as read. So:

- none is lost: a session leaves the old table only in the transaction that stores it anew;
- none comes back: once moved, the old copy is gone, so a session ended in the new table (a
  logout, an enforcement's clean-up) cannot be copied over again by a later or repeated run;
- none is overwritten: a session already in the new table stays as it is (its old copy, if one
  is left, is deleted alone);
- a session the old code changed meanwhile (an MFA verify rotating its token) is read again and
  moved as it is now.

The run is resumable from any point: what is left to move is what the old table still holds, and
the cursor it prints lets a resumed run skip what it scanned already.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pynamodb.attributes import (
    BooleanAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
    UTCDateTimeAttribute,
)
from pynamodb.expressions.condition import Condition
from pynamodb.indexes import AllProjection, LocalSecondaryIndex
from pynamodb.models import Model

from chalicelib.base.errors import ConfigurationError
from chalicelib.base.models import Session, _KeywardMeta
from chalicelib.base.storage import ConditionsFailed, Contended, Item, transaction

log = logging.getLogger("keyward.migration")

# Sessions scanned from the old table a page.
PAGE_SIZE = 500
# Reads again of a session the old code kept changing before it is moved as it is.
_MOVE_ATTEMPTS = 5


class OldSessionsByMember(LocalSecondaryIndex["OldSession"]):
    """The old table's local index: a member's sessions, in the organization's item collection."""

    class Meta:
        index_name = "by-member"
        projection = AllProjection()

    org_id = UnicodeAttribute(hash_key=True)
    user_id = UnicodeAttribute(range_key=True)


class OldSession(Model):
    """A session as the sessions table of before keyed it: ``org_id`` → ``session_id``. Its
    other attributes are the ones Session has, but for the new table's index keys."""

    class Meta(_KeywardMeta):
        table_name = ""  # named by old_sessions_table()

    org_id = UnicodeAttribute(hash_key=True)
    session_id = UnicodeAttribute(range_key=True)
    by_member = OldSessionsByMember()
    user_id = UnicodeAttribute()
    # Read as stored, without defaults: an attribute the item lacks stays absent, so that the
    # condition that the item is unchanged names exactly what it holds.
    token_hash = UnicodeAttribute(null=True)
    state = UnicodeAttribute(null=True)
    admin = BooleanAttribute(null=True)
    created_at = UTCDateTimeAttribute(null=True)
    expires_at = UTCDateTimeAttribute(null=True)
    enforcement_generation = NumberAttribute(null=True)
    member_generation = NumberAttribute(null=True)
    sign_out_generation = NumberAttribute(null=True)
    org_enforced_at_start = BooleanAttribute(null=True)
    verified_key_id = UnicodeAttribute(null=True)
    key_checked_at = UTCDateTimeAttribute(null=True)
    verified_key_counts_under = NumberAttribute(null=True)
    source_ip = UnicodeAttribute(null=True)
    user_agent = UnicodeAttribute(null=True)
    last_seen_at = UTCDateTimeAttribute(null=True)
    ttl = TTLAttribute(null=True)


def old_sessions_table(table_name: str) -> type[OldSession]:
    """The model of the old sessions table of this name.

    Raises:
        ConfigurationError: the name is the new sessions table's, or not a DynamoDB table name.
    """
    if table_name == Session.Meta.table_name:
        raise ConfigurationError(
            f"{table_name!r} is the sessions table keyward uses now (KEYWARD_SESSIONS_TABLE); "
            "name the table of before, from the stack's SessionsTableName output before the upgrade"
        )
    if not 3 <= len(table_name) <= 255 or not all(c.isascii() and (c.isalnum() or c in "_.-") for c in table_name):
        raise ConfigurationError(f"not a DynamoDB table name: {table_name!r}")
    meta = type("Meta", (_KeywardMeta,), {"table_name": table_name})
    return type("OldSessionsOf", (OldSession,), {"Meta": meta, "__module__": __name__})


class BadCursor(ValueError):
    """A cursor this command did not print."""


def encode_cursor(key: dict[str, Any]) -> str:
    """The cursor a resumed run starts after: the old table's key of the last session scanned."""
    plain = {"o": key["org_id"]["S"], "s": key["session_id"]["S"]}
    return base64.urlsafe_b64encode(json.dumps(plain, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict[str, Any]:
    """The scan's start key a cursor names.

    Raises:
        BadCursor: it is not one this command printed.
    """
    try:
        plain = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        org_id, session_id = plain["o"], plain["s"]
    except (ValueError, TypeError, KeyError):
        raise BadCursor(f"not a cursor of `migrate sessions`: {cursor!r}") from None
    if not isinstance(org_id, str) or not isinstance(session_id, str) or not org_id or not session_id:
        raise BadCursor(f"not a cursor of `migrate sessions`: {cursor!r}")
    return {"org_id": {"S": org_id}, "session_id": {"S": session_id}}


@dataclass
class Progress:
    """How far a run got: sessions moved, ones the new table held already (their old copy
    deleted), and the cursor after the last page scanned (None: the scan is complete)."""

    moved: int = 0
    present: int = 0
    pages: int = 0
    cursor: str | None = None
    complete: bool = False
    skipped: list[str] = field(default_factory=list)


def migrate(
    *,
    old_table: str,
    cursor: str | None = None,
    page_size: int = PAGE_SIZE,
    max_pages: int | None = None,
    on_page: Callable[[Progress], None] | None = None,
) -> Progress:
    """Move every session of the old table to the new one, page by page from ``cursor``.

    Args:
        old_table: the old sessions table's name.
        cursor: where an earlier run's scan stopped (as it printed it); None: from the start.
        page_size: sessions scanned a page.
        max_pages: stop after this many pages (the cursor then says where to go on).
        on_page: told the progress after every page, for the operator to see the cursor.

    Raises:
        ConfigurationError: ``old_table`` is no old sessions table name.
        BadCursor: ``cursor`` is not one this command printed.
    """
    model = old_sessions_table(old_table)
    start = decode_cursor(cursor) if cursor is not None else None
    _check_layout(model)
    progress = Progress(cursor=cursor)
    for items, last in _pages(model, start=start, page_size=page_size):
        for old in items:
            if _move(model, old):
                progress.moved += 1
            else:
                progress.present += 1
        progress.pages += 1
        progress.cursor = encode_cursor(last) if last else None
        progress.complete = last is None
        if on_page is not None:
            on_page(progress)
        if progress.complete or (max_pages is not None and progress.pages >= max_pages):
            break
    else:
        progress.complete, progress.cursor = True, None
    return progress


def _check_layout(model: type[OldSession]) -> None:
    """Refuse a table that is not keyed as the old sessions table was (a slip of the name).

    Raises:
        ConfigurationError: it has another key schema.
    """
    keys = {(key["AttributeName"], key["KeyType"]) for key in model.describe_table()["KeySchema"]}
    if keys != {("org_id", "HASH"), ("session_id", "RANGE")}:
        raise ConfigurationError(
            f"{model.Meta.table_name!r} is not keyed as the old sessions table was (org_id, session_id)"
        )


def _pages(
    model: type[OldSession], *, start: dict[str, Any] | None, page_size: int
) -> Iterator[tuple[list[OldSession], dict[str, Any] | None]]:
    """The old table's sessions a page at a time, with the key the next page starts after."""
    results = model.scan(page_size=page_size, last_evaluated_key=start, consistent_read=True)
    for page in results.page_iter:
        items = [model.from_raw_data(item) for item in page.get("Items", [])]
        yield items, page.get("LastEvaluatedKey")


def _move(model: type[OldSession], old: OldSession) -> bool:
    """Move one session; False when the new table held it already (its old copy is deleted).

    A session the old code changes between the read and the move is read again; one that is gone
    meanwhile (ended, or moved by another run) counts as already there.
    """
    for _ in range(_MOVE_ATTEMPTS):
        try:
            with transaction() as write:
                write.save(Item.SESSION, _as_new(old), condition=Session.session_id.does_not_exist())
                write.delete(Item.OLD_SESSION, old, condition=_unchanged(model, old))
            return True
        except ConditionsFailed as refused:
            if Item.SESSION in refused.labels:
                _delete_old_copy(model, old)
                return False
        except Contended:
            pass  # the old code is writing it this moment: read it again
        try:
            old = model.get(old.org_id, old.session_id, consistent_read=True)
        except model.DoesNotExist:
            return False
    raise RuntimeError(f"session {old.session_id} of {old.org_id} kept changing; run the command again")


def _delete_old_copy(model: type[OldSession], old: OldSession) -> None:
    """The new table has the session: its copy in the old table goes, whatever it holds now
    (the new table's is the one keyward reads)."""
    model(old.org_id, old.session_id).delete()


def _as_new(old: OldSession) -> Session:
    """The session as the new table keys it, with every attribute it had (absent ones take the
    model's defaults, as reading them from the old table did)."""
    values = {
        name: getattr(old, name)
        for name in OldSession.get_attributes()
        if name not in ("org_id", "session_id", "user_id") and getattr(old, name) is not None
    }
    return Session.of_member(old.session_id, org_id=old.org_id, user_id=old.user_id, **values)


def _unchanged(model: type[OldSession], old: OldSession) -> Condition:
    """The old item is still as read: every attribute it had is equal, every other absent."""
    condition: Condition = model.session_id.exists()
    for name, attribute in model.get_attributes().items():
        if attribute.is_hash_key or attribute.is_range_key:
            continue
        value = getattr(old, name)
        condition &= attribute.does_not_exist() if value is None else attribute == value
    return condition
