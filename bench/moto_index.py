"""A bench-only speed-up of moto's Query on a global secondary index.

moto answers a Query of a global index by sorting every item of the table (``Table.all_items``)
and keeping those whose index key matches (``moto/dynamodb/models/table.py``, ``Table.query``).
A page of one of the by-org-shard index's 128 shards therefore costs the whole table, and the
invalidation bench, 128 shards' pages over N sessions, grows with N². On DynamoDB a page reads
only its own partition.

:func:`indexed_global_queries` keeps, for each table keyed by a hash key alone, its items filed
by the value of each global index's (first) hash key attribute, and while it is active moto's
``Table.query`` on such an index walks only the items filed under the value asked for, instead
of all the table's items. The answers do not change:

- ``Table.query`` takes its candidates from ``self.all_items()`` (the table's items sorted by
  the table's key) and then applies all its own checks (every hash key condition, range key
  equalities and presence), sorts by the index's keys, skips to ``ExclusiveStartKey``, cuts at
  ``Limit`` or 1 MB, filters and projects. The patch hands it, in place of ``all_items()``, the
  items filed under the asked value, sorted by the same key: every item its checks would keep, in
  the same relative order. Items, order, pagination and ``LastEvaluatedKey`` are the same.
- The filing is kept current on every write: moto's puts, deletes and devstack's rollback of a
  cancelled transaction all assign to or pop from ``table.items``, which here is a ``defaultdict``
  that files as it stores; an UpdateItem changes an item in place, so the backend's
  ``update_item`` files the item again afterwards. A filed item is checked again at query time
  (still stored, still under that value), so a stale entry can only be skipped, never answered.
- Tables with a range key (whose ``items`` nest a dict per hash key), local indexes and the
  table's own key go to moto's query unchanged.

Only ``python -m bench invalidation`` (and its test) uses it; devstack, the other tests and
``make run`` use moto as it is.
"""

from __future__ import annotations

import functools
import inspect
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType, Item
from moto.dynamodb.models.table import GlobalSecondaryIndex, Table


def _first_hash_attribute(index: GlobalSecondaryIndex) -> str:
    return next(key["AttributeName"] for key in index.schema if key["KeyType"] == "HASH")


class _FiledItems(defaultdict[Any, Any]):
    """A hash-key-only table's ``items`` (hash value → Item), also filing each item under
    (index name, value of the index's first hash key attribute) for every global index."""

    def __init__(self, table: Table, items: dict[Any, Any]) -> None:
        super().__init__(dict)
        self._attributes = {index.name: _first_hash_attribute(index) for index in table.global_indexes}
        # (index name, hash value) → {table hash value: Item}
        self.filed: dict[tuple[str, DynamoType], dict[DynamoType, Item]] = {}
        # table hash value → the (index name, hash value) it is filed under
        self._filed_as: dict[DynamoType, list[tuple[str, DynamoType]]] = {}
        for key, item in items.items():
            self[key] = item

    def __setitem__(self, key: Any, item: Any) -> None:
        super().__setitem__(key, item)
        self.refile(key)

    def __delitem__(self, key: Any) -> None:
        super().__delitem__(key)
        self._unfile(key)

    def pop(self, key: Any, *default: Any) -> Any:
        had = key in self
        value = super().pop(key, *default)
        if had:
            self._unfile(key)
        return value

    def popitem(self) -> tuple[Any, Any]:
        key, value = super().popitem()
        self._unfile(key)
        return key, value

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, item in dict(*args, **kwargs).items():
            self[key] = item

    def setdefault(self, key: Any, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def __reduce__(self) -> Any:
        # Copies (moto deep-copies tables for a transaction's rollback and a backup) are plain
        # items; a copy queried later is filed then.
        return (defaultdict, (dict,), None, None, iter(self.items()))

    def clear(self) -> None:
        super().clear()
        self.filed.clear()
        self._filed_as.clear()

    def refile(self, key: Any) -> None:
        """File the item stored under ``key`` by its current attributes."""
        self._unfile(key)
        item = self.get(key)
        if not isinstance(item, Item):
            return
        places = []
        for index_name, attribute in self._attributes.items():
            value = item.attrs.get(attribute)
            if value is not None:
                self.filed.setdefault((index_name, value), {})[key] = item
                places.append((index_name, value))
        if places:
            self._filed_as[key] = places

    def _unfile(self, key: Any) -> None:
        for place in self._filed_as.pop(key, ()):
            bucket = self.filed.get(place)
            if bucket is not None:
                bucket.pop(key, None)
                if not bucket:
                    del self.filed[place]

    def candidates(self, index_name: str, value: DynamoType) -> list[Item]:
        """The items filed under ``value``, still stored and still of that value, in
        ``Table.all_items`` order (by the table's hash key)."""
        attribute = self._attributes[index_name]
        found = [
            item
            for key, item in self.filed.get((index_name, value), {}).items()
            if self.get(key) is item and item.attrs.get(attribute) == value
        ]
        found.sort(key=lambda item: item.hash_key)
        return found


def _filed(table: Table) -> _FiledItems | None:
    """The table's filed items, filing them now if they are not yet; None where the patch does
    not apply (a range key, or no global index)."""
    if table.range_key_attr is not None or not table.global_indexes:
        return None
    if not isinstance(table.items, _FiledItems):
        table.items = _FiledItems(table, table.items)
    return table.items


@contextmanager
def indexed_global_queries() -> Iterator[None]:
    """Within the block, moto's Query of a global index on a hash-key-only table walks only the
    items of the asked hash key value. The tables that exist are filed on entry, so that no timed
    query pays for it, and given back their plain items on exit."""
    from moto.dynamodb.models import dynamodb_backends

    original_query: Callable[..., Any] = Table.query
    original_update: Callable[..., Any] = DynamoDBBackend.update_item
    signature = inspect.signature(original_query)

    @functools.wraps(original_query)
    def query(table: Table, *args: Any, **kwargs: Any) -> Any:
        call = signature.bind(table, *args, **kwargs).arguments
        index_name = call.get("index_name")
        conditions = dict(call.get("hash_key_conditions") or ())
        index = next((i for i in table.global_indexes if i.name == index_name), None)
        items = _filed(table) if index is not None else None
        if index is None or items is None or _first_hash_attribute(index) not in conditions:
            return original_query(table, *args, **kwargs)
        candidates = items.candidates(index.name, conditions[_first_hash_attribute(index)])
        # Shadows the method for this one call; moto's server handles one request at a time
        # (devstack's _OneRequestAtATime), so no other request sees it.
        table.all_items = lambda: candidates  # type: ignore[method-assign]
        try:
            return original_query(table, *args, **kwargs)
        finally:
            del table.all_items

    @functools.wraps(original_update)
    def update_item(backend: DynamoDBBackend, table_name: str, key: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return original_update(backend, table_name, key, *args, **kwargs)
        finally:
            table = backend.tables.get(table_name)
            if table is not None and isinstance(table.items, _FiledItems) and table.hash_key_attr in key:
                table.items.refile(DynamoType(key[table.hash_key_attr]))

    def tables() -> list[Table]:
        return [
            table
            for account in dynamodb_backends.values()
            for backend in account.values()
            for table in backend.tables.values()
        ]

    for table in tables():
        _filed(table)
    Table.query = query  # type: ignore[method-assign]
    DynamoDBBackend.update_item = update_item  # type: ignore[method-assign]
    try:
        yield
    finally:
        Table.query = original_query  # type: ignore[method-assign]
        DynamoDBBackend.update_item = original_update  # type: ignore[method-assign]
        for table in tables():
            if isinstance(table.items, _FiledItems):
                table.items = defaultdict(dict, table.items)
