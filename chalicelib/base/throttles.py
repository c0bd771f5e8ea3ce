"""Counting failed attempts against one subject in a fixed window, in the throttles table.

An attempt reserves one of the subject's failure slots *before* its secret is checked and gives
it back on success, so parallel guesses cannot exceed the limit: N attempts at once take N slots.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from pynamodb.exceptions import PutError, UpdateError

from chalicelib.base import clock
from chalicelib.base.errors import TooManyAttempts
from chalicelib.base.models import Throttle
from chalicelib.base.storage import condition_failed


def reserve_attempt(*, subject: str, max_failures: int, window_seconds: int, refusal: str) -> datetime:
    """Take one of the subject's failure slots in the current window.

    Args:
        subject: what is being guessed at, e.g. one member's enrolment passes.
        max_failures: failures allowed in one window.
        window_seconds: the window's length, from its first failure.
        refusal: the message of the 429 once the slots are used up.

    Returns:
        The start of the window the slot was taken in (for :func:`release_attempt`).

    Raises:
        TooManyAttempts: every slot of the current window is taken.
    """
    now = clock.now()
    window = timedelta(seconds=window_seconds)
    window_open = now - window
    for _ in range(3):
        throttle = Throttle(subject)
        try:
            throttle.update(
                actions=[Throttle.failures.add(1)],
                condition=(Throttle.window_start > window_open) & (Throttle.failures < max_failures),
            )
            return throttle.window_start
        except UpdateError as error:
            if not condition_failed(error):
                raise
        try:
            # No window yet, or the last one has passed: open a new one with this attempt in it.
            Throttle(subject, window_start=now, failures=1, ttl=now + window).save(
                condition=Throttle.subject.does_not_exist() | (Throttle.window_start <= window_open)
            )
            return now
        except PutError as error:
            if not condition_failed(error):
                raise
        throttle = Throttle.get(subject, consistent_read=True)
        if throttle.window_start > window_open and throttle.failures >= max_failures:
            # The window's first failure opened it; a slot frees when the whole window has passed.
            remaining = throttle.window_start + window - now
            raise TooManyAttempts(refusal, retry_after=max(1, math.ceil(remaining.total_seconds())))
    # Three conflicting writers in a row: someone else is counting right now; try again shortly.
    raise TooManyAttempts(refusal, retry_after=1)


def release_attempt(*, subject: str, window: datetime) -> None:
    """A successful attempt does not count as a failure — in the window its slot was taken from."""
    try:
        Throttle(subject).update(
            actions=[Throttle.failures.add(-1)],
            condition=(Throttle.failures > 0) & (Throttle.window_start == window),
        )
    except UpdateError as error:
        if not condition_failed(error):
            raise
