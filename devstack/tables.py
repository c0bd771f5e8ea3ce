"""Creating and emptying keyward's DynamoDB tables on a local DynamoDB, for development and tests.

Import this only after :func:`devstack.environment.apply_environment`: the models it imports
read their endpoint and table names at import time.
"""

from __future__ import annotations

from typing import Any

from pynamodb.models import Model

from chalicelib.base.models import ALL_MODELS


def create_missing_tables() -> list[str]:
    """Create every table of :data:`chalicelib.base.models.ALL_MODELS` that does not exist yet.

    Returns the names of the tables created.
    """
    created: list[str] = []
    for model in ALL_MODELS:
        if model.exists():
            # A table made before its model gained a TTL attribute should still expire items;
            # DynamoDB refuses to enable TTL twice, which is what the ignored error means.
            model.update_ttl(ignore_update_ttl_errors=True)
            _add_missing_global_indexes(model)
            continue
        # create_table also enables TTL on models that have a TTLAttribute.
        model.create_table(billing_mode="PAY_PER_REQUEST", wait=True, ignore_update_ttl_errors=True)
        created.append(model.Meta.table_name)
    return created


def truncate_tables() -> int:
    """Delete every item of every table, so each test starts from empty tables.

    Returns how many items were deleted.
    """
    deleted = 0
    for model in ALL_MODELS:
        key_names = [
            attribute.attr_name
            for attribute in model.get_attributes().values()
            if attribute.is_hash_key or attribute.is_range_key
        ]
        with model.batch_write() as batch:
            for item in model.scan(consistent_read=True, attributes_to_get=key_names):
                batch.delete(item)
                deleted += 1
    return deleted


def _add_missing_global_indexes(model: type[Model]) -> None:
    """Add the global secondary indexes a model gained after its table was made (a persistent
    DYNAMODB_ENDPOINT); DynamoDB adds them to a table in place, as CloudFormation does on AWS."""
    import boto3

    from chalicelib.base.config import settings

    description = model.describe_table()
    existing = {index["IndexName"] for index in description.get("GlobalSecondaryIndexes", [])}
    schema = model._get_schema()  # PynamoDB's own description of the table, as create_table sends it
    # PynamoDB's schema is what DynamoDB takes, in TypedDicts of its own that boto3's stubs do not know.
    wanted: list[Any] = [
        index for index in schema.get("global_secondary_indexes", []) if index["index_name"] not in existing
    ]
    if not wanted:
        return
    client = boto3.client("dynamodb", endpoint_url=settings().dynamodb_endpoint, region_name=settings().region)
    for index in wanted:
        client.update_table(
            TableName=model.Meta.table_name,
            AttributeDefinitions=index["attribute_definitions"],
            GlobalSecondaryIndexUpdates=[
                {
                    "Create": {
                        "IndexName": index["index_name"],
                        "KeySchema": index["key_schema"],
                        "Projection": index["projection"],
                    }
                }
            ],
        )
