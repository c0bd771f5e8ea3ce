"""Work over an organization's items that outlasts one invocation of the stream function (the
enforcement's session clean-up, the compliance recount), under one rule:

- The work goes page by page from a cursor stored on the organization item, so any invocation can
  resume it where the last one stopped.
- Progress is saved after each page on a condition (the run is still the current one, at the
  handoff count it read), so a newer run that started meanwhile takes over and this one stops.
- Before the invocation's deadline comes within ``settings().invalidation_reserve_seconds``, the
  progress is saved with ``handoffs`` bumped; the stream record of that change starts the next
  invocation, which carries on (and a record naming an older handoff count is stale).
- The last page finishes the work, on the same condition.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from chalicelib.base.config import settings

if TYPE_CHECKING:
    from chalicelib.base.context import Deadline


@dataclass(frozen=True)
class Page:
    """What one page of work left: the cursor the next page starts from (None: nothing is left),
    or that a newer run took over (then nothing more is written)."""

    next_cursor: str | None
    taken_over: bool = False


class ResumableWork(Protocol):
    """One organization's resumable work, as :func:`run` drives it."""

    def work_page(self, *, after: str | None) -> Page:
        """Do one page of the work, starting after ``after`` (None: from the start)."""
        ...

    def save_progress(self, *, cursor: str | None, handoff: bool) -> bool:
        """Store ``cursor`` (and with ``handoff``, bump ``handoffs``), on the condition that this
        run is still the current one; False when another took over."""
        ...

    def finish(self) -> None:
        """Mark the work done, on the same condition as its progress."""
        ...


def run(work: ResumableWork, *, cursor: str | None, deadline: Deadline) -> None:
    """Carry ``work`` on from ``cursor`` until it is done, taken over, or handed to the next
    invocation because this one's deadline is near.

    Raises:
        whatever ``work`` raises; the progress saved so far stands, and the stream record is
        retried from there.
    """
    reserve = settings().invalidation_reserve_seconds
    while True:
        if deadline.seconds_left() < reserve:
            work.save_progress(cursor=cursor, handoff=True)
            return
        page = work.work_page(after=cursor)
        if page.taken_over:
            return
        cursor = page.next_cursor
        if cursor is None:
            work.finish()
            return
        if not work.save_progress(cursor=cursor, handoff=False):
            return
