"""Creating and emptying keyward's DynamoDB tables on a local DynamoDB, for development and tests.

Import this only after :func:`devstack.environment.apply_environment`: the models it imports
read their endpoint and table names at import time.
"""
from __future__ import annotations

from chalicelib.models import ALL_MODELS


def create_missing_tables() -> list[str]:
    """Create every table of :data:`chalicelib.models.ALL_MODELS` that does not exist yet.

    Returns the names of the tables created.
    """
    created: list[str] = []
    for model in ALL_MODELS:
        if model.exists():
            # A table made before its model gained a TTL attribute should still expire items;
            # DynamoDB refuses to enable TTL twice, which is what the ignored error means.
            model.update_ttl(ignore_update_ttl_errors=True)
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
        key_names = [attribute.attr_name for attribute in model.get_attributes().values() if attribute.is_hash_key or attribute.is_range_key]
        with model.batch_write() as batch:
            for item in model.scan(consistent_read=True, attributes_to_get=key_names):
                batch.delete(item)
                deleted += 1
    return deleted
