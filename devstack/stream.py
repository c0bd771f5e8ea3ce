"""The organizations table's stream, pumped from the local DynamoDB into keyward's stream
function, as Lambda's event source mapping does on AWS (batches, ReportBatchItemFailures retries).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Literal

import boto3

log = logging.getLogger("devstack.stream")

# A Lambda invocation's limit; the stream function watches what is left of it.
INVOCATION_SECONDS = 900
MAX_DELIVERY_ATTEMPTS = 5

StreamHandler = Callable[[dict[str, Any], Any], Any]


class InvocationContext:
    """The part of a Lambda context the stream function uses: the time it has left."""

    def __init__(self, *, seconds: float) -> None:
        self._deadline = time.monotonic() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class StreamPump:
    """Reads a table's stream shards and delivers their records to a stream handler."""

    def __init__(
        self,
        *,
        handler: StreamHandler,
        table_name: str,
        endpoint: str,
        region: str = "us-east-1",
        batch_size: int = 100,
        invocation_seconds: float = INVOCATION_SECONDS,
    ) -> None:
        self._handler = handler
        self._batch_size = batch_size
        self._invocation_seconds = invocation_seconds
        dynamodb = boto3.client("dynamodb", endpoint_url=endpoint, region_name=region)
        self._streams = boto3.client("dynamodbstreams", endpoint_url=endpoint, region_name=region)
        self._stream_arn = dynamodb.describe_table(TableName=table_name)["Table"]["LatestStreamArn"]
        self._iterators: dict[str, str] = {}
        self._last_sequence: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        # The local stand-in of the event source's dead-letter queue: records given up on.
        self.dead_letters: list[dict[str, Any]] = []
        # Start at the stream's current end: what happened before the pump started is not replayed.
        self._open_new_shards(position="LATEST")

    def _open_new_shards(self, *, position: Literal["LATEST", "TRIM_HORIZON"]) -> None:
        shards = self._streams.describe_stream(StreamArn=self._stream_arn)["StreamDescription"]["Shards"]
        for shard in shards:
            shard_id = shard["ShardId"]
            if shard_id not in self._iterators:
                self._iterators[shard_id] = self._streams.get_shard_iterator(
                    StreamArn=self._stream_arn,
                    ShardId=shard_id,
                    ShardIteratorType=position,
                )["ShardIterator"]

    def drain(self) -> int:
        """Deliver every record written so far, and the records their handling writes; returns how many."""
        delivered = 0
        with self._lock:
            while True:
                self._open_new_shards(position="TRIM_HORIZON")
                batch = self._read()
                if not batch:
                    return delivered
                self._deliver(batch)
                delivered += len(batch)

    def _read(self) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        for shard_id, iterator in list(self._iterators.items()):
            response = self._streams.get_records(ShardIterator=iterator, Limit=self._batch_size)
            last = self._last_sequence.get(shard_id)
            if not response["Records"] and last is not None:
                # moto rolls a cancelled transaction back by putting back a copy of each table it
                # touched, stream included; an iterator of the replaced stream reads nothing more.
                # A fresh one after the last record read goes on (and costs DynamoDB nothing).
                iterator = self._streams.get_shard_iterator(
                    StreamArn=self._stream_arn,
                    ShardId=shard_id,
                    ShardIteratorType="AFTER_SEQUENCE_NUMBER",
                    SequenceNumber=last,
                )["ShardIterator"]
                response = self._streams.get_records(ShardIterator=iterator, Limit=self._batch_size)
            self._iterators[shard_id] = response.get("NextShardIterator") or iterator
            if response["Records"]:
                self._last_sequence[shard_id] = response["Records"][-1]["dynamodb"]["SequenceNumber"]
            records.extend(_as_lambda_record(record, self._stream_arn) for record in response["Records"])
        return records

    def _deliver(self, records: list[dict[str, Any]]) -> None:
        """Invoke the handler; retry from the first failed record on, as Lambda does; the records
        still failing after the last attempt go to :attr:`dead_letters`."""
        failures: list[str] = []
        for attempt in range(1, MAX_DELIVERY_ATTEMPTS + 1):
            response = self._handler({"Records": records}, InvocationContext(seconds=self._invocation_seconds))
            failures = [failure["itemIdentifier"] for failure in (response or {}).get("batchItemFailures", [])]
            if not failures:
                return
            first = next(i for i, record in enumerate(records) if record["dynamodb"]["SequenceNumber"] in failures)
            records = records[first:]
            log.warning("stream function failed %d record(s); retry %d", len(failures), attempt)
            time.sleep(min(2.0, 0.1 * 2**attempt))
        log.error(
            "stream records %s still failing after %d attempts; giving up on them",
            [r["dynamodb"]["SequenceNumber"] for r in records],
            MAX_DELIVERY_ATTEMPTS,
        )
        self.dead_letters.extend(record for record in records if record["dynamodb"]["SequenceNumber"] in failures)

    def start(self, *, interval_seconds: float = 0.25) -> None:
        """Pump in the background until :meth:`stop`."""

        def run() -> None:
            while not self._stop.wait(interval_seconds):
                try:
                    self.drain()
                except Exception:  # keep pumping: a broken poll must not end the local stack's stream
                    log.exception("stream pump poll failed")

        self._thread = threading.Thread(target=run, name="stream-pump", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def _as_lambda_record(record: Mapping[str, Any], stream_arn: str) -> dict[str, Any]:
    """A dynamodbstreams record as Lambda delivers it (epoch seconds, the stream's ARN)."""
    change = dict(record["dynamodb"])
    created = change.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        change["ApproximateCreationDateTime"] = created.timestamp()
    return {**record, "dynamodb": change, "eventSourceARN": stream_arn}


def org_stream_pump(*, endpoint: str) -> StreamPump:
    """The pump the local stack runs: the organizations table into ``app.end_sessions_on_enforcement``."""
    from app import end_sessions_on_enforcement
    from chalicelib.base.config import settings

    return StreamPump(handler=end_sessions_on_enforcement, table_name=settings().tables.orgs, endpoint=endpoint)
