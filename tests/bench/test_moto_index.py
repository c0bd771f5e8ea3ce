"""The bench's speed-up of moto's global index Query (bench/moto_index.py) answers exactly what
moto answers without it: the same pages, items, order and LastEvaluatedKey, also after puts,
deletes, updates and a cancelled transaction made while it is active."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.dynamodb.models.table import Table

from bench.moto_index import indexed_global_queries
from tests.support.process_stack import prepared

TABLE = "bench-moto-index"
GROUPS = ["g0", "g1", "g2", "g3"]


@pytest.fixture
def client() -> Iterator[Any]:
    client = boto3.client("dynamodb", endpoint_url=prepared().endpoint)
    client.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[
            {"AttributeName": "id", "AttributeType": "S"},
            {"AttributeName": "grp", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        GlobalSecondaryIndexes=[
            # As by-org-shard: a hash and a sort key, whole items.
            {
                "IndexName": "by-grp-sk",
                "KeySchema": [
                    {"AttributeName": "grp", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            },
            # A hash key alone: moto orders by the table's key.
            {
                "IndexName": "by-grp",
                "KeySchema": [{"AttributeName": "grp", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            },
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    draw = random.Random(7)
    for i in range(80):
        item = {"id": {"S": f"{draw.getrandbits(40):010x}"}, "grp": {"S": draw.choice(GROUPS)}, "n": {"N": str(i)}}
        if i % 9:  # some items lack the sort key: not in by-grp-sk
            item["sk"] = {"S": f"s{draw.randrange(20):02d}"}  # repeated sort keys: ties broken by id
        client.put_item(TableName=TABLE, Item=item)
    try:
        yield client
    finally:
        client.delete_table(TableName=TABLE)


QUERIES: list[dict[str, Any]] = [
    {},
    {"Limit": 3},
    {"Limit": 4, "ScanIndexForward": False},
    {"Limit": 5, "FilterExpression": "n > :n", "ExpressionAttributeValues": {":n": {"N": "30"}}},
    {"Limit": 7, "ProjectionExpression": "id"},
]


def answers(client: Any) -> list[tuple[str, str, int, list[dict[str, Any]]]]:
    """Every page of every query of every group on both indexes, as the client receives them."""
    pages = []
    for index in ("by-grp-sk", "by-grp"):
        for group in [*GROUPS, "missing"]:
            for number, extra in enumerate(QUERIES):
                query = {
                    "TableName": TABLE,
                    "IndexName": index,
                    "KeyConditionExpression": "grp = :g",
                    **extra,
                    "ExpressionAttributeValues": {":g": {"S": group}, **extra.get("ExpressionAttributeValues", {})},
                }
                while True:
                    page = client.query(**query)
                    pages.append((index, group, number, [page["Items"], page.get("LastEvaluatedKey"), page["Count"]]))
                    if "LastEvaluatedKey" not in page:
                        break
                    query["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return pages


def _ids(client: Any, group: str) -> list[str]:
    items = client.query(
        TableName=TABLE,
        IndexName="by-grp",
        KeyConditionExpression="grp = :g",
        ExpressionAttributeValues={":g": {"S": group}},
    )["Items"]
    return [item["id"]["S"] for item in items]


def _write_while_patched(client: Any) -> None:
    g0, g1, g2 = _ids(client, "g0"), _ids(client, "g1"), _ids(client, "g2")
    for session_id in g0[:5]:
        client.delete_item(TableName=TABLE, Key={"id": {"S": session_id}})
    client.batch_write_item(
        RequestItems={TABLE: [{"DeleteRequest": {"Key": {"id": {"S": session_id}}}} for session_id in g1[:4]]}
    )
    # An update moves an item from g2 to g3, another takes away its sort key.
    client.update_item(
        TableName=TABLE,
        Key={"id": {"S": g2[0]}},
        UpdateExpression="SET grp = :g",
        ExpressionAttributeValues={":g": {"S": "g3"}},
    )
    client.update_item(TableName=TABLE, Key={"id": {"S": g2[1]}}, UpdateExpression="REMOVE sk")
    # An update that creates its item, a put over an item that changes its group, a new item.
    client.update_item(
        TableName=TABLE,
        Key={"id": {"S": "new-by-update"}},
        UpdateExpression="SET grp = :g, sk = :s, n = :n",
        ExpressionAttributeValues={":g": {"S": "g0"}, ":s": {"S": "s05"}, ":n": {"N": "1"}},
    )
    client.put_item(TableName=TABLE, Item={"id": {"S": g2[2]}, "grp": {"S": "g1"}, "sk": {"S": "s00"}, "n": {"N": "2"}})
    client.put_item(TableName=TABLE, Item={"id": {"S": "new-by-put"}, "grp": {"S": "g2"}, "sk": {"S": "s10"}})
    # A cancelled transaction: its deletion of a g1 item is put back.
    with pytest.raises(client.exceptions.TransactionCanceledException):
        client.transact_write_items(
            TransactItems=[
                {"Delete": {"TableName": TABLE, "Key": {"id": {"S": g1[4]}}}},
                {
                    "ConditionCheck": {
                        "TableName": TABLE,
                        "Key": {"id": {"S": g1[5]}},
                        "ConditionExpression": "attribute_not_exists(id)",
                    }
                },
            ]
        )


def test_queries_answer_the_same_with_the_patch_and_without_it_before_and_after_writes(client):
    unpatched = answers(client)
    assert any(last is not None for _, _, _, (_, last, _) in unpatched), "no query was paged"
    with indexed_global_queries():
        assert answers(client) == unpatched
        _write_while_patched(client)
        patched_after_writes = answers(client)
    assert patched_after_writes != unpatched
    assert answers(client) == patched_after_writes


def test_a_patched_query_does_not_walk_the_tables_items(client, monkeypatch):
    def every_item(self: Table) -> list[Any]:
        raise AssertionError("the query walked every item of the table")

    with indexed_global_queries():
        monkeypatch.setattr(Table, "all_items", every_item)
        assert answers(client)
