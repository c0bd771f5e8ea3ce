"""``python -m keyward migrate audit``: copy a deployment's audit events from the table of before
events were spread over shards (KEYWARD_LEGACY_AUDIT_TABLE, one partition key an organization) to
the audit table (KEYWARD_AUDIT_TABLE), each to shard 0 of its day, where the delivery function and
the log look for an event of that table (chalicelib/base/audit.py ``moved_to``).

Nothing is lost and nothing is sent twice:

- every put is conditional on the event not being there yet, so a second run, or a run over a
  page an interrupted run had half copied, copies nothing twice and overwrites nothing;
- the scan's position is saved after each page in the progress file, so an interrupted run
  resumes where it stopped (``--restart`` starts over; the conditional puts make that safe too);
- every copy is marked ``migrated``: the new table's stream shows it to the delivery function as
  a new event, which skips it, because the original was delivered from the old table's stream.

Events already past their retention (their ``ttl``) are not copied.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

DEFAULT_PROGRESS = "keyward-audit-migration.json"
MAX_PAGE_SIZE = 1000


@dataclass
class Progress:
    """How far a migration got: where its scan resumes, and what it did so far."""

    source: str
    target: str
    after: dict[str, Any] | None = None
    copied: int = 0
    present: int = 0
    expired: int = 0
    done: bool = False


class BadProgressFile(Exception):
    """The progress file cannot be read, or belongs to another pair of tables."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--progress",
        default=DEFAULT_PROGRESS,
        help=f"where the scan's position is kept between runs (default: ./{DEFAULT_PROGRESS})",
    )
    parser.add_argument("--restart", action="store_true", help="start the scan over, ignoring the progress file")
    # Read as text and checked here, so that a wrong value is one line, not argparse's usage.
    parser.add_argument("--page-size", default="100", help=f"events read a page (1 to {MAX_PAGE_SIZE}; default 100)")


def main(args: argparse.Namespace) -> int:
    """Run the migration as the command line asked; the exit status."""
    from chalicelib.base.config import settings

    page_size = args.page_size
    if not (page_size.isascii() and page_size.isdigit()) or not 1 <= int(page_size) <= MAX_PAGE_SIZE:
        print(f"not a page size: {page_size!r}: give a whole number from 1 to {MAX_PAGE_SIZE}", file=sys.stderr)
        return 2
    tables = settings().tables
    if tables.legacy_audit == tables.audit:
        print(
            f"KEYWARD_LEGACY_AUDIT_TABLE and KEYWARD_AUDIT_TABLE both name {tables.audit!r}: "
            "set KEYWARD_LEGACY_AUDIT_TABLE to the old table (the stack's AuditTableName output)",
            file=sys.stderr,
        )
        return 2
    path = Path(args.progress)
    try:
        progress = _start(path, source=tables.legacy_audit, target=tables.audit, restart=args.restart)
    except BadProgressFile as bad:
        print(bad, file=sys.stderr)
        return 2
    if progress.done:
        print(f"already done: {_summary(progress)} (--restart copies anything missing again)")
        return 0
    migrate(progress=progress, page_size=int(page_size), checkpoint=lambda: _save(path, progress))
    print(f"done: {_summary(progress)}")
    return 0


def migrate(*, progress: Progress, page_size: int, checkpoint: Any = None) -> Progress:
    """Copy every event from ``progress.after`` on, calling ``checkpoint()`` after each page."""
    from pynamodb.exceptions import PutError

    from chalicelib.base import audit, clock
    from chalicelib.base.models import AuditEvent, LegacyAuditEvent
    from chalicelib.base.storage import condition_failed

    now = clock.now()
    while not progress.done:
        page = LegacyAuditEvent.scan(
            limit=page_size, page_size=page_size, last_evaluated_key=progress.after, consistent_read=True
        )
        for original in page:
            if original.ttl is not None and original.ttl <= now:
                progress.expired += 1
                continue
            fields = {name: value for name, value in original.attribute_values.items() if name != "event_key"}
            copy = AuditEvent(
                audit.moved_to(original.org_id, original.event_key), original.event_key, **fields, migrated=True
            )
            try:
                copy.save(condition=AuditEvent.event_key.does_not_exist())
            except PutError as error:
                if not condition_failed(error):
                    raise
                progress.present += 1
                continue
            progress.copied += 1
        progress.after = page.last_evaluated_key
        progress.done = progress.after is None
        if checkpoint is not None:
            checkpoint()
    return progress


def _start(path: Path, *, source: str, target: str, restart: bool) -> Progress:
    if restart or not path.exists():
        return Progress(source=source, target=target)
    try:
        saved = json.loads(path.read_text())
        progress = Progress(**saved)
        counts = (progress.copied, progress.present, progress.expired)
        if not all(type(count) is int for count in counts) or not isinstance(progress.after, dict | None):
            raise ValueError("its counts or position are not what this command writes")
    except (OSError, ValueError, TypeError) as error:
        raise BadProgressFile(
            f"{path} is not a progress file of this command ({error}): remove it, or give --restart"
        ) from None
    if (progress.source, progress.target) != (source, target):
        raise BadProgressFile(
            f"{path} is the progress of copying {progress.source} to {progress.target}, not {source} to {target}: "
            "give another --progress, or --restart"
        )
    return progress


def _save(path: Path, progress: Progress) -> None:
    # Written whole then renamed: an interruption mid-write leaves the previous position.
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(asdict(progress)))
    partial.replace(path)


def _summary(progress: Progress) -> str:
    return (
        f"{progress.copied} event(s) copied from {progress.source} to {progress.target}, "
        f"{progress.present} there already, {progress.expired} past their retention left behind"
    )
