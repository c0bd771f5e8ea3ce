"""Every DynamoDB write keyward makes, with the partition it lands on and the write units DynamoDB
charges for it: the recorder of the capacity model (:mod:`bench.capacity`) and of the tests that
check which partitions a sign-in writes.

:class:`WriteRecorder` is a botocore handler of ``before-call`` and ``after-call`` on DynamoDB's
write operations (PutItem, UpdateItem, DeleteItem, BatchWriteItem, TransactWriteItems). For each
item a request names it keeps the item as stored before and after the request (read straight from
moto's backend, which runs in the same process), so that what DynamoDB charges can be computed
from the items themselves rather than from the request: an update's cost is the larger of the two
images, a delete's the item it removed.

:func:`charges` turns one such item write into write units on partitions, by DynamoDB's rules:

- an item's size is the sum of its attribute names' and values' sizes (:func:`item_bytes`);
- a write costs 1 write unit per started KB of the larger of the item before and after (at least
  1); inside TransactWriteItems twice that, and a ConditionCheck is charged as a write of the
  checked item;
- each index whose key attributes the item carries (before or after) is written too, unless the
  item's entry in it is unchanged: a global secondary index on the partition of the index's own
  partition key value, a local one on the base item's partition (its item collection). The
  entry's size is what the index projects (keys only, some attributes, or all). An entry whose
  index key changes is deleted and written again: two writes. Index writes are charged at the
  standard rate, transaction or not.

Key schemas are read from DescribeTable (:func:`key_schemas`), never assumed: the figures follow
whatever key design the code under test has.
"""

from __future__ import annotations

import base64
import json
import math
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

WRITE_OPERATIONS = ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems")
_WRITE_UNIT_BYTES = 1024

# An item as DynamoDB's JSON has it: attribute name -> {"S": "..."} and the like.
Item = dict[str, Any]


# --- DynamoDB's item size ------------------------------------------------------------------------


def item_bytes(item: Item) -> int:
    """DynamoDB's size of an item: each attribute's name (UTF-8 bytes) plus its value."""
    return sum(len(name.encode()) + _value_bytes(value) for name, value in item.items())


def _value_bytes(value: dict[str, Any]) -> int:
    [(kind, content)] = value.items()
    if kind == "S":
        return len(content.encode())
    if kind == "N":
        return _number_bytes(content)
    if kind == "B":
        return len(_binary(content))
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        # 3 bytes for the map, 1 per element, and each element's name and value.
        return 3 + sum(len(name.encode()) + 1 + _value_bytes(inner) for name, inner in content.items())
    if kind == "L":
        return 3 + sum(1 + _value_bytes(inner) for inner in content)
    if kind == "SS":
        return sum(len(element.encode()) for element in content)
    if kind == "NS":
        return sum(_number_bytes(element) for element in content)
    if kind == "BS":
        return sum(len(_binary(element)) for element in content)
    raise ValueError(f"unknown DynamoDB type {kind}")


def _number_bytes(number: str) -> int:
    # Up to 38 significant digits, stored two to a byte, plus one byte; leading and trailing
    # zeros do not count.
    mantissa = number.lstrip("-+").lower().split("e")[0]
    digits = mantissa.replace(".", "").strip("0") or "0"
    return math.ceil(len(digits) / 2) + 1


def _binary(content: str | bytes) -> bytes:
    # On the wire a binary value is base64; moto's backend may hold either.
    return content if isinstance(content, bytes) else base64.b64decode(content)


def write_units(size: int) -> int:
    """Standard write units for an item of ``size`` bytes: one per started KB, at least one."""
    return max(math.ceil(size / _WRITE_UNIT_BYTES), 1)


# --- key schemas, from DescribeTable ---------------------------------------------------------------


@dataclass(frozen=True)
class IndexSchema:
    """A secondary index as DescribeTable describes it."""

    name: str
    is_global: bool
    partition_key: str
    sort_key: str | None
    projection: str  # ALL, KEYS_ONLY or INCLUDE
    included: tuple[str, ...] = ()


@dataclass(frozen=True)
class KeySchema:
    """A table's primary key and its secondary indexes."""

    table: str
    partition_key: str
    sort_key: str | None
    indexes: tuple[IndexSchema, ...] = ()

    def key_of(self, item: Item) -> Item:
        names = [self.partition_key] + ([self.sort_key] if self.sort_key else [])
        return {name: item[name] for name in names}


def _keys(elements: list[dict[str, str]]) -> tuple[str, str | None]:
    by_type = {element["KeyType"]: element["AttributeName"] for element in elements}
    return by_type["HASH"], by_type.get("RANGE")


def key_schema(table: dict[str, Any]) -> KeySchema:
    """The key schema of a DescribeTable answer's ``Table``."""
    partition_key, sort_key = _keys(table["KeySchema"])
    indexes = []
    for kind, is_global in (("GlobalSecondaryIndexes", True), ("LocalSecondaryIndexes", False)):
        for index in table.get(kind, []):
            index_partition, index_sort = _keys(index["KeySchema"])
            projection = index.get("Projection", {})
            indexes.append(
                IndexSchema(
                    name=index["IndexName"],
                    is_global=is_global,
                    partition_key=index_partition,
                    sort_key=index_sort,
                    projection=projection.get("ProjectionType", "ALL"),
                    included=tuple(projection.get("NonKeyAttributes", ())),
                )
            )
    return KeySchema(table["TableName"], partition_key, sort_key, tuple(indexes))


def key_schemas(
    describe_table: Callable[..., dict[str, Any]], tables: Iterator[str] | list[str]
) -> dict[str, KeySchema]:
    """The key schema of each of ``tables``, by name; ``describe_table`` is a boto3 client's."""
    return {name: key_schema(describe_table(TableName=name)["Table"]) for name in tables}


# --- what one request wrote --------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemWrite:
    """One item one write request named: the action, and the item as stored before and after."""

    action: str  # Put, Update, Delete or ConditionCheck
    table: str
    key: Item
    before: Item | None
    after: Item | None
    transactional: bool


@dataclass(frozen=True)
class Charge:
    """Write units DynamoDB charges one partition for one item write."""

    table: str
    index: str | None  # the index written, None for the table itself
    partition_key: str  # the partition key's value (of the index, for a global index)
    bytes: int
    units: int
    action: str
    global_index: bool = False

    @property
    def where(self) -> str:
        """The table, or the table's global index, whose partition this is. A local index's
        writes land in the table's own partition (the item collection)."""
        return f"{self.table} {self.index}" if self.global_index else self.table


def _key_text(value: dict[str, Any]) -> str:
    [(kind, content)] = value.items()
    return base64.b64encode(_binary(content)).decode() if kind == "B" else str(content)


def _entry(item: Item | None, table: KeySchema, index: IndexSchema) -> Item | None:
    """The item's entry in ``index``, as the index projects it; None when it lacks the index keys."""
    index_keys = [index.partition_key] + ([index.sort_key] if index.sort_key else [])
    if item is None or any(name not in item for name in index_keys):
        return None
    if index.projection == "ALL":
        return dict(item)
    names = {*table.key_of(item), *index_keys, *(index.included if index.projection == "INCLUDE" else ())}
    return {name: value for name, value in item.items() if name in names}


def charges(write: ItemWrite, schema: KeySchema) -> list[Charge]:
    """The write units ``write`` costs, on each partition it lands on (the table's, and each
    index's whose entry it writes)."""
    sizes = [item_bytes(image) for image in (write.before, write.after) if image is not None]
    size = max(sizes, default=0)
    units = write_units(size) * (2 if write.transactional else 1)
    found = [Charge(write.table, None, _key_text(write.key[schema.partition_key]), size, units, write.action)]
    if write.action == "ConditionCheck":
        return found
    for index in schema.indexes:
        before, after = _entry(write.before, schema, index), _entry(write.after, schema, index)
        if before == after:
            continue

        def charge(entry: Item, action: str, index: IndexSchema = index) -> Charge:
            partition = entry[index.partition_key] if index.is_global else write.key[schema.partition_key]
            size = item_bytes(entry)
            return Charge(
                write.table, index.name, _key_text(partition), size, write_units(size), action, index.is_global
            )

        same_key = (
            before is not None
            and after is not None
            and all(before[name] == after[name] for name in (index.partition_key, index.sort_key) if name)
        )
        if same_key and after is not None:
            found.append(charge(after, "Update"))
            continue
        if before is not None:
            found.append(charge(before, "Delete"))
        if after is not None:
            found.append(charge(after, "Put"))
    return found


# --- the recorder ----------------------------------------------------------------------------------


class MotoItems:
    """Items as moto's backend in this process stores them: the images a write is charged on."""

    def __init__(self, *, account: str | None = None, region: str | None = None) -> None:
        from moto.core import DEFAULT_ACCOUNT_ID

        if region is None:
            from bench.stack import tree_models

            region = tree_models().Organization.Meta.region
        self._account = account or DEFAULT_ACCOUNT_ID
        self._region = region

    def _table(self, name: str) -> Any:
        from moto.dynamodb.models import dynamodb_backends

        return dynamodb_backends[self._account][self._region].get_table(name)

    def key_of(self, table_name: str, item: Item) -> Item:
        table = self._table(table_name)
        names = [table.hash_key_attr] + ([table.range_key_attr] if table.range_key_attr else [])
        return {name: item[name] for name in names}

    def get(self, table_name: str, key: Item) -> Item | None:
        from moto.dynamodb.models.dynamo_type import DynamoType

        table = self._table(table_name)
        range_value = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
        stored = table.get_item(DynamoType(key[table.hash_key_attr]), range_value)
        return None if stored is None else dict(stored.to_json()["Attributes"])


@dataclass
class _Pending:
    """A write request between before-call and after-call: what it names, and the images before."""

    named: list[tuple[str, str, Item, Item | None, bool]] = field(default_factory=list)


_CONTEXT_KEY = "bench.writes"


class WriteRecorder:
    """Records each item every DynamoDB write request names, with its images before and after.

    Installed with :meth:`installed` (or by appending :meth:`handlers` to botocore's built-in
    handlers before any session exists). Thread-safe: keyward sends batch writes from several
    threads at once.
    """

    def __init__(self, items: MotoItems) -> None:
        self._items = items
        self._lock = threading.Lock()
        self._recording: list[list[ItemWrite]] = []

    def handlers(self) -> list[tuple[str, Callable[..., None]]]:
        return [("before-call.dynamodb", self._before), ("after-call.dynamodb", self._after)]

    @contextmanager
    def recording(self) -> Iterator[list[ItemWrite]]:
        """The item writes of requests sent in the block."""
        recorded: list[ItemWrite] = []
        with self._lock:
            self._recording.append(recorded)
        try:
            yield recorded
        finally:
            with self._lock:
                self._recording.remove(recorded)

    def _named(self, operation: str, request: dict[str, Any]) -> list[tuple[str, str, Item]]:
        """(action, table, key) of each item ``request`` names."""
        if operation == "PutItem":
            return [("Put", request["TableName"], self._items.key_of(request["TableName"], request["Item"]))]
        if operation in ("UpdateItem", "DeleteItem"):
            return [(operation.removesuffix("Item"), request["TableName"], request["Key"])]
        if operation == "BatchWriteItem":
            named = []
            for table, requests in request["RequestItems"].items():
                for one in requests:
                    if "PutRequest" in one:
                        named.append(("Put", table, self._items.key_of(table, one["PutRequest"]["Item"])))
                    else:
                        named.append(("Delete", table, one["DeleteRequest"]["Key"]))
            return named
        named = []
        for one in request["TransactItems"]:
            [(action, detail)] = one.items()
            key = detail["Key"] if "Key" in detail else self._items.key_of(detail["TableName"], detail["Item"])
            named.append((action, detail["TableName"], key))
        return named

    def _before(self, model: Any, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        # A before-call handler that returns something replaces the request's answer: return None.
        if model.name not in WRITE_OPERATIONS or not self._recording:
            return
        body = params.get("body") or b"{}"
        request = json.loads(body if isinstance(body, str) else body.decode())
        transactional = model.name == "TransactWriteItems"
        pending = _Pending()
        for action, table, key in self._named(model.name, request):
            pending.named.append((action, table, key, self._items.get(table, key), transactional))
        context[_CONTEXT_KEY] = pending

    def _after(self, context: dict[str, Any], **_: Any) -> None:
        pending = context.pop(_CONTEXT_KEY, None)
        if pending is None:
            return
        written = [
            ItemWrite(action, table, key, before, self._items.get(table, key), transactional)
            for action, table, key, before, transactional in pending.named
        ]
        with self._lock:
            for recorded in self._recording:
                recorded.extend(written)

    @contextmanager
    def installed(self, *, fresh_connections: Callable[[], None]) -> Iterator[WriteRecorder]:
        """Registered with every botocore session made in the block; ``fresh_connections`` drops
        the connections PynamoDB holds, whose sessions were made without the recorder."""
        from botocore import handlers

        for handler in self.handlers():
            handlers.BUILTIN_HANDLERS.append(handler)
        fresh_connections()
        try:
            yield self
        finally:
            for handler in self.handlers():
                handlers.BUILTIN_HANDLERS.remove(handler)
            fresh_connections()


def drop_keyward_connections() -> None:
    """Make keyward's models open new connections (new botocore sessions) on their next request."""
    from bench.stack import tree_models

    models = tree_models()
    for model in models.ALL_MODELS:
        model._connection = None
    models.connection.cache_clear()
