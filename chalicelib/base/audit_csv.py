"""The audit log as CSV (RFC 4180) for spreadsheets: one event a row, its details as JSON in one
cell, and no cell that a spreadsheet would run as a formula.

Much of an event is chosen by people outside the organization's admins: a member's user ID (from
the IdP), a key's name, a user agent. A spreadsheet opening the file runs a cell that starts with
``=``, ``+``, ``-`` or ``@`` as a formula (``=HYPERLINK(...)`` sending the sheet away, say), and a
leading tab or carriage return can hide such a start. Every such cell is written with a single
quote before it, as OWASP's advice on CSV injection says: the spreadsheet shows the text, and a
reader of the file sees the quote that was added.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from typing import Any

# The fields of an event as the API describes it (audit.describe), in that order.
COLUMNS = ("at", "actor", "actor_kind", "action", "target", "user_id", "source_ip", "user_agent", "details")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def cell(value: Any) -> str:
    """A field's value as a CSV cell: nothing for null, JSON for details, quoted if a formula could start it."""
    if value is None:
        text = ""
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def rows(events: Iterable[Mapping[str, Any]], *, header: bool) -> str:
    """The events as CSV lines ending in CRLF, with the header row first when ``header``.

    An export continued with its cursor leaves the header out, so that its answers, put one after
    the other, make one CSV file.
    """
    out = io.StringIO()
    # QUOTE_MINIMAL quotes a cell holding a comma, a double quote or a line break, and doubles its
    # double quotes: RFC 4180 section 2.
    writer = csv.writer(out, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    if header:
        writer.writerow(COLUMNS)
    for event in events:
        writer.writerow([cell(event[column]) for column in COLUMNS])
    return out.getvalue()
