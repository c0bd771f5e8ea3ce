"""Playing a concurrent request against a stale one: change the table after a ceremony's response
was verified and before the request's final transaction writes, as another request would."""

from __future__ import annotations

from collections.abc import Callable

from chalicelib.ceremony import ceremonies


def after_verification(monkeypatch, change: Callable[[], object], *, ceremony: str = "verify_authentication") -> None:
    """Run ``change`` right after ``ceremonies.<ceremony>`` verified a response."""
    verify = getattr(ceremonies, ceremony)

    def verify_then_change(**arguments):
        verified = verify(**arguments)
        change()
        return verified

    monkeypatch.setattr(ceremonies, ceremony, verify_then_change)
