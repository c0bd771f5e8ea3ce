"""Finding out, before starting a server, whether its port is free."""

from __future__ import annotations

import socket


def ensure_free(*, host: str, port: int) -> None:
    """Raise ``OSError`` naming ``host:port`` if a server could not listen there now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # The servers started afterwards set SO_REUSEADDR too, so TIME_WAIT leftovers are fine.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise OSError(error.errno, f"{host}:{port} is taken: {error.strerror}") from error
