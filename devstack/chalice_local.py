"""``chalice local`` as the local stack runs it: each request's context carries the client's real
address as ``sourceIp``, as API Gateway's does, instead of chalice local's fixed 127.0.0.1.

keyward keys rules on the source address (the backup login's failure limit is per key ID and
source), so the local stack must tell its clients apart. On Linux every 127.x.y.z address is a
distinct local source: a test binds 127.0.0.2 and 127.0.0.3 to play two clients.

Run as ``python -m devstack.chalice_local local --stage local ...``: the arguments are chalice's.
"""

from __future__ import annotations

import sys

from chalice import local

_HTTP_METHODS = ("GET", "PUT", "POST", "HEAD", "DELETE", "PATCH", "OPTIONS")


def pass_peer_address() -> None:
    """Make chalice local's request handler put the connection's peer address in the event."""
    handler = local.ChaliceRequestHandler
    if getattr(handler, "passes_peer_address", False):
        return
    handle = handler._generic_handle

    def handle_with_peer_address(self: local.ChaliceRequestHandler) -> None:
        # One gateway per connection, so setting it on the instance concerns this client only.
        self.local_gateway.event_converter.LOCAL_SOURCE_IP = self.client_address[0]
        handle(self)

    for method in _HTTP_METHODS:
        setattr(handler, f"do_{method}", handle_with_peer_address)
    handler.passes_peer_address = True


def main(argv: list[str]) -> int:
    from chalice.cli import cli

    pass_peer_address()
    # chalice's reloader restarts its worker with sys.argv: it must name this module, not chalice.
    sys.argv = [sys.executable, "-m", "devstack.chalice_local", *argv]
    return cli.main(args=argv, prog_name="chalice", obj={})


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
