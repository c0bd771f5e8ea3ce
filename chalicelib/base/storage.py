"""How DynamoDB failures become refusals: what a condition failure means is the caller's
business; throttling and outages become :class:`StorageUnavailable` so that a request either
succeeds or reports that nothing was done."""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Iterator, Sequence
from enum import Enum
from typing import Any

from pynamodb.exceptions import PynamoDBException, TransactWriteError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from chalicelib.base import metrics
from chalicelib.base.errors import StorageUnavailable
from chalicelib.base.models import connection

log = logging.getLogger("keyward.storage")

CONDITION_FAILED = "ConditionalCheckFailedException"
TRANSACTION_CANCELED = "TransactionCanceledException"
THROTTLED = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TransactionConflictException",
        "InternalServerError",
        "ServiceUnavailable",
    }
)
# Of those, the ones that say the table's capacity (or the account's) was exceeded.
CAPACITY_EXCEEDED = frozenset({"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"})


def response_code(error: PynamoDBException) -> str | None:
    """DynamoDB's error code, or None when there was no answer at all (a timeout, a refused connection)."""
    response = getattr(error.cause, "response", None)
    if not isinstance(response, dict):
        return None
    return response.get("Error", {}).get("Code")


def condition_failed(error: PynamoDBException) -> bool:
    """True when a single-item write was refused by its condition."""
    return response_code(error) == CONDITION_FAILED


class Item(Enum):
    """The items a transaction writes, named so that a cancellation can say whose condition failed.

    A plain Enum rather than strings: a misspelt or invented label is a type error, not a test
    that never matches. The organization's item has two names for the two things transactions
    do with it (each touches it at most once): ``ORG`` for its settings, ``ORG_COUNTERS`` for its
    counts (see chalicelib/counters/coverage.py).
    """

    ORG = "org"
    ORG_COUNTERS = "org counters"
    MEMBER = "member"
    # The member's last sign-in (MemberActivity).
    MEMBER_ACTIVITY = "member activity"
    KEY = "key"
    CLAIM = "claim"
    SESSION = "session"
    # A session in the sessions table of before the sharded layout, which
    # `python -m keyward migrate sessions` moves (chalicelib/background/session_migration.py).
    OLD_SESSION = "old session"
    CHALLENGE = "challenge"
    ENROLLMENT_PASS = "enrollment pass"
    BACKUP_CREDENTIAL = "backup credential"
    WEBHOOK = "webhook"
    WEBHOOK_CHANGE = "webhook change"
    RELYING_PARTY = "relying party"
    SIGNING_KEY = "signing key"
    AUDIT = "audit"
    # The OpenID provider's pending authorization request, and the code it issues.
    AUTHORIZATION = "authorization"
    CODE = "code"
    # One shard of the organization's logins this second (chalicelib/access/login_rate.py).
    LOGIN_RATE = "login rate"


class ConditionsFailed(Exception):
    """A transaction was cancelled because conditions failed; ``labels`` names those items."""

    def __init__(self, labels: frozenset[Item]) -> None:
        super().__init__(", ".join(sorted(label.value for label in labels)))
        self.labels = labels


class Contended(TransactWriteError):
    """A transaction was cancelled because another transaction was writing one of its items at the
    same moment; ``labels`` names those items. Nothing was written.

    A TransactWriteError still, with DynamoDB's answer as its cause: a caller that does not try
    again meets it as any other failed transaction (a 503).
    """

    def __init__(self, labels: frozenset[Item], *, cause: Exception | None) -> None:
        super().__init__(", ".join(sorted(label.value for label in labels)), cause=cause)
        self.labels = labels


# DynamoDB's limit on the items of one TransactWriteItems.
MAX_TRANSACTION_ITEMS = 100


class LabelledWrite:
    """A TransactWrite whose items carry labels, so a cancellation can say which condition failed.

    PynamoDB sends condition checks, deletes, puts and updates in that order, whatever order
    they were added in; the labels are kept in the same order to match DynamoDB's reasons.
    """

    def __init__(self, write: TransactWrite) -> None:
        self._write = write
        self._labels: dict[str, list[Item]] = {"check": [], "delete": [], "save": [], "update": []}

    def condition_check(
        self, label: Item, model_cls: type[Model], hash_key: Any, range_key: Any = None, *, condition: Condition
    ) -> None:
        self._write.condition_check(model_cls, hash_key, range_key, condition=condition)
        self._labels["check"].append(label)

    def delete(self, label: Item, model: Model, *, condition: Condition | None = None) -> None:
        self._write.delete(model, condition=condition)
        self._labels["delete"].append(label)

    def save(self, label: Item, model: Model, *, condition: Condition | None = None) -> None:
        self._write.save(model, condition=condition)
        self._labels["save"].append(label)

    def update(
        self, label: Item, model: Model, *, actions: Sequence[Action], condition: Condition | None = None
    ) -> None:
        self._write.update(model, actions=list(actions), condition=condition)
        self._labels["update"].append(label)

    def room(self, *, keeping: int = 0) -> int:
        """How many more items fit in this transaction, leaving ``keeping`` places for items the
        caller adds afterwards."""
        held = sum(len(labels) for labels in self._labels.values())
        return max(MAX_TRANSACTION_ITEMS - held - keeping, 0)

    def failed_conditions(self, error: TransactWriteError) -> frozenset[Item]:
        return self._items_cancelled_by(error, "ConditionalCheckFailed")

    def conflicts(self, error: TransactWriteError) -> frozenset[Item]:
        return self._items_cancelled_by(error, "TransactionConflict")

    def _items_cancelled_by(self, error: TransactWriteError, code: str) -> frozenset[Item]:
        order = [label for kind in ("check", "delete", "save", "update") for label in self._labels[kind]]
        reasons = error.cancellation_reasons or []
        # One reason per item, in order, when DynamoDB gives reasons at all; without them none is named.
        return frozenset(
            label for label, reason in zip(order, reasons, strict=False) if reason is not None and reason.code == code
        )


@contextlib.contextmanager
def transaction() -> Iterator[LabelledWrite]:
    """One atomic TransactWriteItems, sent when the block ends.

    Raises:
        ConditionsFailed: the transaction was cancelled by conditions; it names the items.
        Contended: it was cancelled by another transaction on the same items (and no condition
            failed); it names them.
    """
    try:
        # The token makes botocore's retry of a transaction whose answer was lost (a timeout)
        # the same transaction, instead of a second one refused by the first one's writes.
        with TransactWrite(connection=connection(), client_request_token=secrets.token_hex(16)) as write:
            labelled = LabelledWrite(write)
            yield labelled
    except TransactWriteError as error:
        failed = labelled.failed_conditions(error)
        if failed:
            raise ConditionsFailed(failed) from None
        contended = labelled.conflicts(error)
        if contended:
            raise Contended(contended, cause=error.cause) from None
        raise


@contextlib.contextmanager
def unavailable_on_failure() -> Iterator[None]:
    """Turn DynamoDB errors that are not a refusal of ours into a retryable 503.

    Condition failures are expected to be handled inside the block; any PynamoDB error that
    escapes it means DynamoDB did not do the work, which the caller must be told.
    """
    try:
        yield
    except PynamoDBException as error:
        code = response_code(error)
        if code in CAPACITY_EXCEEDED:
            metrics.count("DynamoDBThrottles", error_code=code)
        if code in THROTTLED or code is None:
            log.warning("DynamoDB throttled or unavailable: %s", code)
        else:
            log.error("DynamoDB call failed: %s", error, exc_info=True)
        raise StorageUnavailable("The database is busy or unavailable; nothing was changed. Try again.") from None
