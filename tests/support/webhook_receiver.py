"""A webhook endpoint for tests: a local HTTP server that checks every delivery's Standard Webhooks
signature with the ``standardwebhooks`` library and keeps what it received."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    verified: bool
    payload: Any
    # What the endpoint answered: 0 when it was too slow for keyward to wait.
    status: int

    @property
    def message_id(self) -> str:
        return self.headers["webhook-id"]


@dataclass
class Receiver:
    """What the endpoint answers (``statuses`` first, then 204), how slowly, and what it got."""

    url: str = ""
    secret: str | None = None
    statuses: list[int] = field(default_factory=list)
    delay_seconds: float = 0.0
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def accepted(self) -> list[Received]:
        """Deliveries it answered 2xx, in order."""
        with self.lock:
            return [r for r in self.received if 200 <= r.status < 300]

    def accepted_ids(self) -> list[str]:
        return [r.message_id for r in self.accepted()]


@contextmanager
def running_receiver() -> Iterator[Receiver]:
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            headers = {name.lower(): value for name, value in self.headers.items()}
            verified, payload = False, None
            if receiver.secret is not None:
                try:
                    payload = Webhook(receiver.secret).verify(body, headers)
                    verified = True
                except WebhookVerificationError:
                    payload = json.loads(body or b"null")
            with receiver.lock:
                status = receiver.statuses.pop(0) if receiver.statuses else 204
                # A slow answer is one the tests make keyward stop waiting for: it counts as none.
                entry = Received(
                    headers=headers,
                    body=body,
                    verified=verified,
                    payload=payload,
                    status=0 if receiver.delay_seconds else status,
                )
                receiver.received.append(entry)
            if receiver.delay_seconds:
                time.sleep(receiver.delay_seconds)
            try:
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()
            except OSError:
                pass  # the sender gave up waiting

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/keyward"
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
