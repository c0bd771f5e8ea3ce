"""keyward's performance report: DynamoDB round trips per API operation and the cold-import cost
of ``app``. Run it with ``make bench`` (``python -m bench``); see docs/performance.md."""
