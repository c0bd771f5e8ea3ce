"""Opaque ``next`` cursors for lists that can be long (an organization's members and keys).

A cursor carries only the sort key where the next page starts; the partition (the caller's
organization) is always the caller's own, so a cursor can never reach into another organization.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from chalicelib.base.errors import InvalidCursor, MalformedRequest

DEFAULT_LIMIT = 100
MAX_LIMIT = 500
MAX_SORT_KEY_BYTES = 1024


@dataclass(frozen=True)
class Page[T]:
    items: list[T]
    next: str | None


def encode(position: str | None) -> str | None:
    if position is None:
        return None
    return base64.urlsafe_b64encode(json.dumps({"after": position}).encode()).decode().rstrip("=")


def decode(cursor: str | None) -> str | None:
    """The sort key a cursor resumes after; ``None`` for the first page."""
    if cursor is None or cursor == "":
        return None
    try:
        document = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        position = document["after"]
    except (binascii.Error, ValueError, TypeError, KeyError, UnicodeDecodeError):
        raise InvalidCursor("'next' is not a cursor this API returned.") from None
    # Every position is a sort key, and DynamoDB refuses a sort key over 1024 bytes (not characters).
    # Keys keyward writes are printable (no lone surrogates, which DynamoDB refuses too).
    if (
        not isinstance(position, str)
        or not position
        or not position.isprintable()
        or len(position.encode()) > MAX_SORT_KEY_BYTES
    ):
        raise InvalidCursor("'next' is not a cursor this API returned.")
    return position


def encode_fields(position: dict[str, str] | None) -> str | None:
    """A cursor for an index whose next page starts at more than one key (the keys by member: a
    member's user ID, then a key ID)."""
    if position is None:
        return None
    return base64.urlsafe_b64encode(json.dumps({"after": position}).encode()).decode().rstrip("=")


def decode_fields(cursor: str | None, *, names: tuple[str, ...]) -> dict[str, str] | None:
    """The keys a cursor of :func:`encode_fields` resumes after, exactly ``names``; ``None`` for
    the first page."""
    if cursor is None or cursor == "":
        return None
    try:
        document = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        position = document["after"]
    except (binascii.Error, ValueError, TypeError, KeyError, UnicodeDecodeError):
        raise InvalidCursor("'next' is not a cursor this API returned.") from None
    if not isinstance(position, dict) or sorted(position) != sorted(names):
        raise InvalidCursor("'next' is not a cursor this API returned.")
    for value in position.values():
        if (
            not isinstance(value, str)
            or not value
            or not value.isprintable()
            or len(value.encode()) > MAX_SORT_KEY_BYTES
        ):
            raise InvalidCursor("'next' is not a cursor this API returned.")
    return position


def limit_from(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    # Length first: Python refuses to convert a string of over 4,300 digits at all.
    if len(raw) > len(str(MAX_LIMIT)) or not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_LIMIT:
        raise MalformedRequest(f"'limit' must be a whole number from 1 to {MAX_LIMIT}.")
    return int(raw)
