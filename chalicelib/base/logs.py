"""keyward's log lines: one JSON object a line on standard output, which Lambda sends to
CloudWatch Logs as it is, each naming the invocation's request ID and, once a request is
authenticated, its organization and member.

Every module logs under ``keyward.<area>``; the ``keyward`` logger holds the one handler and
does not pass its records on to the root logger, where the Lambda runtime's own handler would
write each a second time, as text. What a line carries is what a call passes: identifiers and
reason codes, never a token, a secret, a code or a credential's body.

The standard library does this rather than Powertools' Logger, which keyward would use for the
same two things (a JSON formatter, keys kept for an invocation): importing it adds about 26 ms to
a cold start that imports ``app`` in about 100 ms, and 7 MB to the package. The lines use
Powertools' key names, so queries written for either read both.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from contextvars import ContextVar
from typing import Any

# The keys of the invocation at hand: set as it starts, so that nothing of the one before remains.
# A context variable, since `chalice local` serves each request on a thread of its own.
_invocation: ContextVar[dict[str, str]] = ContextVar("keyward_log_keys")
# What a LogRecord holds of its own; anything else on it came from a call's ``extra=``.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def start_invocation(*, request_id: str | None) -> None:
    """A new invocation (a request, a stream batch, a scheduled run) begins: its lines name it."""
    _invocation.set({"function_request_id": request_id} if request_id else {})


def annotate(*, org: str, user: str) -> None:
    """The invocation turned out to be a member's of an organization: its lines from here on say so."""
    _invocation.set({**_invocation.get({}), "org": org, "user": user})


def invocation_keys() -> dict[str, str]:
    """The invocation's keys (its request ID, and once known its organization and member), for
    lines written without the logger: metrics.py's."""
    return dict(_invocation.get({}))


class JsonLines(logging.Formatter):
    """A record as one line of JSON: time, level, message, where it was logged, the
    invocation's keys, what the call passed in ``extra=``, and a traceback if there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "location": f"{record.funcName}:{record.lineno}",
            "message": record.getMessage(),
            "service": "keyward",
            **_invocation.get({}),
        }
        for name, value in vars(record).items():
            if name not in _RECORD_ATTRIBUTES and not name.startswith("_"):
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class _StandardOutput(logging.Handler):
    """Writes to the ``sys.stdout`` of the moment, not the one of import time: the Lambda runtime
    and test runners replace it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stdout.write(self.format(record) + "\n")
            sys.stdout.flush()
        except Exception:
            self.handleError(record)


def configure(*, level: str) -> None:
    """keyward's lines at ``level`` and above, as JSON on standard output; once per process."""
    log = logging.getLogger("keyward")
    log.setLevel(level)
    log.propagate = False
    if not any(isinstance(handler, _StandardOutput) for handler in log.handlers):
        handler = _StandardOutput()
        handler.setFormatter(JsonLines())
        log.addHandler(handler)
