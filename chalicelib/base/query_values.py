"""Query parameters within what DynamoDB accepts.

A value DynamoDB would refuse as a key (a sort key over 1024 bytes, say) makes it answer a
ValidationException, which keyward could only pass on as 503 ``StorageUnavailable`` — as if the
client's request were fine and the database broken. Such a value can never match anything
anyway: no ID token's ``sub`` is longer than keyward accepts at login, no audit action is longer
than its longest name. So it is refused here, as a malformed request, before DynamoDB sees it.
"""

from __future__ import annotations

from chalicelib.base.errors import MalformedRequest

# As at login (identity.verify_id_token): 255 characters of at most 4 UTF-8 bytes each stay
# within DynamoDB's 1024 bytes for a sort key (a member's, and the by-member indexes').
MAX_USER_ID_CHARACTERS = 255
# Audit actions are short dotted names (``key.sign_count_regression`` is the longest so far).
MAX_ACTION_CHARACTERS = 64
# Whoever acted is named by a user ID, ``backup credentials <key id>``, ``operator`` or ``keyward``:
# a user ID is the longest of these.
MAX_ACTOR_CHARACTERS = MAX_USER_ID_CHARACTERS


def user_id_filter(value: str | None) -> str | None:
    """A ``user_id`` to list by, or ``None`` for everyone when it is left out or empty.

    Raises:
        MalformedRequest: longer than any user ID keyward accepts, or not printable.
    """
    return _printable_filter(
        value,
        limit=MAX_USER_ID_CHARACTERS,
        refusal=f"'user_id' must be a user ID of at most {MAX_USER_ID_CHARACTERS} printable characters.",
    )


def search_filter(value: str | None) -> str | None:
    """A ``search``: the first characters of the user IDs to list, or ``None`` for everyone when it
    is left out or empty.

    Raises:
        MalformedRequest: longer than any user ID keyward accepts, or not printable.
    """
    return _printable_filter(
        value,
        limit=MAX_USER_ID_CHARACTERS,
        refusal=f"'search' must be the start of a user ID: at most {MAX_USER_ID_CHARACTERS} printable characters.",
    )


def action_filter(value: str | None) -> str | None:
    """An audit ``action`` to list by, or ``None`` for every action.

    Raises:
        MalformedRequest: longer than any action's name, or not printable.
    """
    return _printable_filter(
        value,
        limit=MAX_ACTION_CHARACTERS,
        refusal=f"'action' must be an action name of at most {MAX_ACTION_CHARACTERS} printable characters.",
    )


def actor_filter(value: str | None) -> str | None:
    """Whoever acted, as the log names them (an event's ``actor``), or ``None`` for anyone.

    Raises:
        MalformedRequest: longer than any actor's name, or not printable.
    """
    return _printable_filter(
        value,
        limit=MAX_ACTOR_CHARACTERS,
        refusal=f"'actor' must be an actor's name of at most {MAX_ACTOR_CHARACTERS} printable characters "
        "(a user ID, 'backup credentials <key id>', 'operator' or 'keyward').",
    )


def _printable_filter(value: str | None, *, limit: int, refusal: str) -> str | None:
    """``value`` as a filter (``None`` when left out or empty), refused when over ``limit``
    characters or not printable."""
    if not value:
        return None
    if len(value) > limit or not value.isprintable():
        raise MalformedRequest(refusal)
    return value
