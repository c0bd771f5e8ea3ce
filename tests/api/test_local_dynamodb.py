"""The local DynamoDB (moto, as devstack runs it): a cancelled transaction leaves every item it
named, and the tables' streams, as they were, and takes nothing else back with it; a transaction
sent again with its ClientRequestToken is applied once."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.core import DEFAULT_ACCOUNT_ID
from moto.dynamodb.models import dynamodb_backends

from chalicelib.base.config import settings
from chalicelib.base.models import Member, Organization

ORGS = Organization.Meta.table_name
MEMBERS = Member.Meta.table_name


@pytest.fixture
def dynamodb():
    return boto3.client("dynamodb", endpoint_url=settings().dynamodb_endpoint, region_name=settings().region)


def _member(org: str, user: str, key_count: int) -> dict:
    return {"org_id": {"S": org}, "user_id": {"S": user}, "key_count": {"N": str(key_count)}}


def _stream_records(table: str) -> int:
    shard = dynamodb_backends[DEFAULT_ACCOUNT_ID][settings().region].tables[table].stream_shard
    return len(shard.items)


def test_a_cancelled_transaction_puts_back_only_its_own_items(dynamodb):
    dynamodb.put_item(TableName=ORGS, Item={"org_id": {"S": "acme"}, "members_total": {"N": "2"}})
    dynamodb.put_item(TableName=MEMBERS, Item=_member("acme", "bob", 1))
    dynamodb.put_item(TableName=MEMBERS, Item=_member("acme", "carol", 0))
    records = _stream_records(ORGS)

    with pytest.raises(ClientError) as cancelled:
        dynamodb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": MEMBERS, "Item": _member("acme", "dave", 0)}},
                {
                    "Update": {
                        "TableName": ORGS,
                        "Key": {"org_id": {"S": "acme"}},
                        "UpdateExpression": "ADD members_total :one",
                        "ExpressionAttributeValues": {":one": {"N": "1"}},
                    }
                },
                {"Delete": {"TableName": MEMBERS, "Key": {"org_id": {"S": "acme"}, "user_id": {"S": "bob"}}}},
                # Refused: carol holds no key.
                {
                    "ConditionCheck": {
                        "TableName": MEMBERS,
                        "Key": {"org_id": {"S": "acme"}, "user_id": {"S": "carol"}},
                        "ConditionExpression": "key_count > :none",
                        "ExpressionAttributeValues": {":none": {"N": "0"}},
                    }
                },
            ]
        )
    reasons = [reason["Code"] for reason in cancelled.value.response["CancellationReasons"]]
    assert reasons == ["None", "None", "None", "ConditionalCheckFailed"]

    members = dynamodb.scan(TableName=MEMBERS, ConsistentRead=True)["Items"]
    assert sorted((m["user_id"]["S"], m["key_count"]["N"]) for m in members) == [("bob", "1"), ("carol", "0")]
    org = dynamodb.get_item(TableName=ORGS, Key={"org_id": {"S": "acme"}}, ConsistentRead=True)["Item"]
    assert org["members_total"] == {"N": "2"}
    assert _stream_records(ORGS) == records

    # The next transaction writes, and its record follows the earlier ones on the same stream.
    dynamodb.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": MEMBERS, "Item": _member("acme", "dave", 0)}},
            {
                "Update": {
                    "TableName": ORGS,
                    "Key": {"org_id": {"S": "acme"}},
                    "UpdateExpression": "ADD members_total :one",
                    "ExpressionAttributeValues": {":one": {"N": "1"}},
                }
            },
        ]
    )
    org = dynamodb.get_item(TableName=ORGS, Key={"org_id": {"S": "acme"}}, ConsistentRead=True)["Item"]
    assert org["members_total"] == {"N": "3"}
    assert _stream_records(ORGS) == records + 1
    assert len(dynamodb.scan(TableName=MEMBERS, ConsistentRead=True)["Items"]) == 3


def test_a_transaction_sent_again_with_its_token_is_applied_once(dynamodb):
    """As a retry after a timeout sends it: DynamoDB answers with the first attempt's success."""
    dynamodb.put_item(TableName=ORGS, Item={"org_id": {"S": "acme"}, "members_total": {"N": "0"}})
    add_one = {
        "Update": {
            "TableName": ORGS,
            "Key": {"org_id": {"S": "acme"}},
            "UpdateExpression": "ADD members_total :one",
            "ExpressionAttributeValues": {":one": {"N": "1"}},
        }
    }

    dynamodb.transact_write_items(TransactItems=[add_one], ClientRequestToken="retried-token")
    dynamodb.transact_write_items(TransactItems=[add_one], ClientRequestToken="retried-token")
    dynamodb.transact_write_items(TransactItems=[add_one], ClientRequestToken="another-token")

    item = dynamodb.get_item(TableName=ORGS, Key={"org_id": {"S": "acme"}}, ConsistentRead=True)["Item"]
    assert item["members_total"] == {"N": "2"}


def test_a_refused_transaction_is_not_remembered_by_its_token(dynamodb):
    guarded = {
        "Put": {"TableName": ORGS, "Item": {"org_id": {"S": "acme"}}, "ConditionExpression": "attribute_exists(org_id)"}
    }

    with pytest.raises(ClientError):
        dynamodb.transact_write_items(TransactItems=[guarded], ClientRequestToken="refused-token")
    dynamodb.put_item(TableName=ORGS, Item={"org_id": {"S": "acme"}, "members_total": {"N": "5"}})
    dynamodb.transact_write_items(TransactItems=[guarded], ClientRequestToken="refused-token")

    item = dynamodb.get_item(TableName=ORGS, Key={"org_id": {"S": "acme"}}, ConsistentRead=True)["Item"]
    assert "members_total" not in item  # the second attempt was applied: the Put replaced the item


def test_a_transaction_naming_an_item_without_its_key_is_refused_and_leaves_the_other_items(dynamodb):
    dynamodb.put_item(TableName=MEMBERS, Item=_member("acme", "bob", 1))

    with pytest.raises(ClientError) as refused:
        dynamodb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": MEMBERS, "Item": {"user_id": {"S": "dave"}}}},  # no org_id
                {"Delete": {"TableName": MEMBERS, "Key": {"org_id": {"S": "acme"}, "user_id": {"S": "bob"}}}},
            ]
        )

    # moto's refusal, where it failed with an internal error before (DynamoDB answers ValidationException).
    assert refused.value.response["Error"]["Code"] == "TransactionCanceledException"
    members = dynamodb.scan(TableName=MEMBERS, ConsistentRead=True)["Items"]
    assert [m["user_id"]["S"] for m in members] == ["bob"]
