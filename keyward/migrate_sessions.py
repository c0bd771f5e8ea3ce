"""``python -m keyward migrate sessions``: the command line of
chalicelib/background/session_migration.py (the procedure is in docs/operations.md)."""

from __future__ import annotations

import argparse
import sys


def add_migrate_sessions(migrate: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = migrate.add_parser(
        "sessions",
        help="move every session of the sessions table of before the sharded layout into "
        "KEYWARD_SESSIONS_TABLE; resumable (--cursor), safe to run again",
    )
    command.add_argument(
        "--from", dest="old_table", required=True, metavar="TABLE", help="the old sessions table's name"
    )
    command.add_argument("--cursor", help="go on where an interrupted run's last printed cursor says")
    # Read as text and checked here, so that a wrong value is one line, not argparse's usage.
    command.add_argument("--page-size", default="500", metavar="N", help="sessions scanned a page (default 500)")


def migrate_sessions(args: argparse.Namespace) -> int:
    # Imported late: the models read the table names and endpoint from the environment.
    from chalicelib.background import session_migration
    from chalicelib.base.errors import ConfigurationError
    from chalicelib.base.models import Session

    page_size = args.page_size
    if not (page_size.isascii() and page_size.isdigit() and 1 <= int(page_size) <= 1000):
        print(f"not a page size: {page_size!r}: give a whole number from 1 to 1000", file=sys.stderr)
        return 2

    def report(progress: session_migration.Progress) -> None:
        where = "scan complete" if progress.complete else f"cursor {progress.cursor}"
        print(f"{progress.moved} moved, {progress.present} already there; {where}", flush=True)

    try:
        done = session_migration.migrate(
            old_table=args.old_table, cursor=args.cursor, page_size=int(page_size), on_page=report
        )
    except (ConfigurationError, session_migration.BadCursor) as refused:
        print(refused, file=sys.stderr)
        return 2
    print(
        f"sessions of {args.old_table} moved to {Session.Meta.table_name}: "
        f"{done.moved} moved, {done.present} already there"
    )
    return 0
