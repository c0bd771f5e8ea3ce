"""The capacity model's recorder (bench/writes.py) counts what DynamoDB charges: item sizes by
DynamoDB's rules, write units per started KB, transactions twice, and index writes on the
partitions they land on; against a table of its own on moto, with one index of each kind."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from bench.writes import Charge, ItemWrite, KeySchema, MotoItems, WriteRecorder, charges, item_bytes, key_schema

TABLE = "bench-writes"


@pytest.fixture
def dynamodb() -> Any:
    from chalicelib.base.models import Organization

    return boto3.client("dynamodb", endpoint_url=Organization.Meta.host, region_name=Organization.Meta.region)


@pytest.fixture
def table(dynamodb: Any) -> Iterator[KeySchema]:
    """A table keyed (pk, sk), with a local index on lsi_sort (all attributes) and a global one on
    gsi_pk (keys only)."""
    string = [{"AttributeName": name, "AttributeType": "S"} for name in ("pk", "sk", "lsi_sort", "gsi_pk")]
    dynamodb.create_table(
        TableName=TABLE,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=string,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        LocalSecondaryIndexes=[
            {
                "IndexName": "by-lsi",
                "KeySchema": [
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "lsi_sort", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by-gsi",
                "KeySchema": [{"AttributeName": "gsi_pk", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
        ],
    )
    try:
        yield key_schema(dynamodb.describe_table(TableName=TABLE)["Table"])
    finally:
        dynamodb.delete_table(TableName=TABLE)


@pytest.fixture
def recorded(dynamodb: Any) -> Iterator[tuple[Any, list[ItemWrite]]]:
    """A DynamoDB client whose writes are recorded, and the list they are recorded in."""
    from chalicelib.base.models import Organization

    recorder = WriteRecorder(MotoItems())
    with recorder.installed(fresh_connections=lambda: None), recorder.recording() as writes:
        # A session made after the recorder is installed registers it.
        client = boto3.session.Session().client(
            "dynamodb", endpoint_url=Organization.Meta.host, region_name=Organization.Meta.region
        )
        yield client, writes


def _charges(writes: list[ItemWrite], schema: KeySchema) -> list[Charge]:
    return [charge for write in writes for charge in charges(write, schema)]


# --- sizes by DynamoDB's rules -------------------------------------------------------------------


def test_an_items_size_is_its_attribute_names_and_values_by_dynamodbs_rules():
    # Strings and binaries: their bytes (UTF-8; binary decoded from the wire's base64).
    assert item_bytes({"pk": {"S": "org-1"}}) == 2 + 5
    assert item_bytes({"név": {"S": "é"}}) == 4 + 2
    assert item_bytes({"blob": {"B": base64.b64encode(bytes(10)).decode()}}) == 4 + 10
    # Numbers: 1 byte per two significant digits, plus 1; leading and trailing zeros do not count.
    assert item_bytes({"n": {"N": "12345"}}) == 1 + 3 + 1
    assert item_bytes({"n": {"N": "-1000"}}) == 1 + 1 + 1
    assert item_bytes({"n": {"N": "0.0001200"}}) == 1 + 1 + 1
    assert item_bytes({"n": {"N": "123456789012"}}) == 1 + 6 + 1
    # Booleans and nulls: 1 byte.
    assert item_bytes({"flag": {"BOOL": True}, "none": {"NULL": True}}) == 4 + 1 + 4 + 1
    # Maps and lists: 3 bytes, 1 per element, and the elements (a map's with their names).
    assert item_bytes({"m": {"M": {"a": {"S": "xy"}}}}) == 1 + 3 + 1 + 1 + 2
    assert item_bytes({"l": {"L": [{"S": "xy"}, {"N": "7"}]}}) == 1 + 3 + (1 + 2) + (1 + 2)
    # Sets: the sum of their elements.
    assert item_bytes({"ss": {"SS": ["ab", "c"]}}) == 2 + 3


# --- write units ------------------------------------------------------------------------------------


def _padded(size: int, **keys: str) -> dict[str, Any]:
    """An item of exactly ``size`` bytes with the given string attributes and a padding string."""
    item = {name: {"S": value} for name, value in keys.items()}
    fixed = item_bytes(item) + len("pad")
    return {**item, "pad": {"S": "x" * (size - fixed)}}


def test_a_put_costs_one_write_unit_per_started_kb_of_the_item_on_its_partition(table, recorded):
    client, writes = recorded
    known = {
        "pk": {"S": "org-1"},
        "sk": {"S": "a"},
        "count": {"N": "12345"},
        "flag": {"BOOL": True},
        "blob": {"B": bytes(10)},
    }
    client.put_item(TableName=TABLE, Item=known)
    client.put_item(TableName=TABLE, Item=_padded(1024, pk="org-1", sk="b"))
    client.put_item(TableName=TABLE, Item=_padded(1025, pk="org-2", sk="c"))
    client.put_item(TableName=TABLE, Item=_padded(2500, pk="org-2", sk="d"))

    found = [(charge.partition_key, charge.bytes, charge.units, charge.index) for charge in _charges(writes, table)]
    # 7 + 3 + (5 + 4) + (4 + 1) + (4 + 10) bytes
    assert found == [
        ("org-1", 38, 1, None),
        ("org-1", 1024, 1, None),
        ("org-2", 1025, 2, None),
        ("org-2", 2500, 3, None),
    ]


def test_an_update_costs_the_larger_of_the_item_before_and_after_and_a_delete_the_item_it_removed(table, recorded):
    client, writes = recorded
    key = {"pk": {"S": "org-1"}, "sk": {"S": "a"}}
    client.put_item(TableName=TABLE, Item=_padded(100, pk="org-1", sk="a"))
    client.update_item(
        TableName=TABLE,
        Key=key,
        UpdateExpression="SET #pad = :pad",
        ExpressionAttributeNames={"#pad": "pad"},
        ExpressionAttributeValues={":pad": {"S": "x" * 2000}},
    )
    client.update_item(
        TableName=TABLE,
        Key=key,
        UpdateExpression="SET #pad = :pad",
        ExpressionAttributeNames={"#pad": "pad"},
        ExpressionAttributeValues={":pad": {"S": "x"}},
    )
    client.delete_item(TableName=TABLE, Key=key)

    assert [(write.action, charge.units) for write in writes for charge in charges(write, table)] == [
        ("Put", 1),
        ("Update", 2),  # after: 2,008 bytes
        ("Update", 2),  # before: 2,008 bytes
        ("Delete", 1),
    ]


def test_a_transaction_costs_twice_and_a_condition_check_is_charged_as_a_write(table, recorded):
    client, writes = recorded
    client.put_item(TableName=TABLE, Item=_padded(1500, pk="org-1", sk="checked"))
    client.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": TABLE, "Item": _padded(1500, pk="org-1", sk="new")}},
            {
                "ConditionCheck": {
                    "TableName": TABLE,
                    "Key": {"pk": {"S": "org-1"}, "sk": {"S": "checked"}},
                    "ConditionExpression": "attribute_exists(pk)",
                }
            },
        ]
    )

    assert [
        (write.action, write.transactional, charge.units) for write in writes for charge in charges(write, table)
    ] == [
        ("Put", False, 2),
        ("Put", True, 4),
        ("ConditionCheck", True, 4),
    ]


def test_a_global_index_write_is_charged_on_the_index_key_and_a_local_one_on_the_items_partition(table, recorded):
    client, writes = recorded
    client.put_item(
        TableName=TABLE,
        Item={"pk": {"S": "org-1"}, "sk": {"S": "a"}, "gsi_pk": {"S": "hot"}, "pad": {"S": "x" * 2000}},
    )
    client.put_item(
        TableName=TABLE, Item={"pk": {"S": "org-1"}, "sk": {"S": "b"}, "lsi_sort": {"S": "s"}, "pad": {"S": "x" * 2000}}
    )
    client.put_item(TableName=TABLE, Item={"pk": {"S": "org-1"}, "sk": {"S": "c"}})

    assert [(charge.where, charge.index, charge.partition_key, charge.units) for charge in _charges(writes, table)] == [
        ("bench-writes", None, "org-1", 2),
        # Keys only (the table's and the index's key attributes), on the index's own partition key.
        ("bench-writes by-gsi", "by-gsi", "hot", 1),
        ("bench-writes", None, "org-1", 2),
        # Every attribute, in the item's own partition (its item collection).
        ("bench-writes", "by-lsi", "org-1", 2),
        # Neither index's key: no index write.
        ("bench-writes", None, "org-1", 1),
    ]
    [gsi] = [charge for charge in _charges(writes, table) if charge.global_index]
    assert gsi.bytes == len("pk") + len("org-1") + len("sk") + len("a") + len("gsi_pk") + len("hot")


def test_an_index_entry_is_written_again_only_when_it_changes_and_moving_its_key_deletes_and_writes_it(table, recorded):
    client, writes = recorded
    key = {"pk": {"S": "org-1"}, "sk": {"S": "a"}}
    client.put_item(TableName=TABLE, Item={**key, "gsi_pk": {"S": "old"}, "count": {"N": "1"}})
    # Keys only: a change of another attribute leaves the entry as it was.
    client.update_item(
        TableName=TABLE,
        Key=key,
        UpdateExpression="ADD #c :one",
        ExpressionAttributeNames={"#c": "count"},
        ExpressionAttributeValues={":one": {"N": "1"}},
    )
    client.update_item(
        TableName=TABLE, Key=key, UpdateExpression="SET gsi_pk = :new", ExpressionAttributeValues={":new": {"S": "new"}}
    )

    index_writes = [(charge.action, charge.partition_key) for charge in _charges(writes, table) if charge.global_index]
    assert index_writes == [("Put", "old"), ("Delete", "old"), ("Put", "new")]


def test_a_batch_write_records_each_put_and_delete(table, recorded):
    client, writes = recorded
    client.put_item(TableName=TABLE, Item={"pk": {"S": "org-1"}, "sk": {"S": "gone"}})
    client.batch_write_item(
        RequestItems={
            TABLE: [
                {"PutRequest": {"Item": {"pk": {"S": "org-2"}, "sk": {"S": "a"}}}},
                {"DeleteRequest": {"Key": {"pk": {"S": "org-1"}, "sk": {"S": "gone"}}}},
            ]
        }
    )

    assert [(write.action, write.key["pk"]["S"], write.after is None) for write in writes[1:]] == [
        ("Put", "org-2", False),
        ("Delete", "org-1", True),
    ]
