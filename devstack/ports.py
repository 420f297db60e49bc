"""Pick a free TCP port on the loopback interface for a devstack server."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """Return a port nothing listens on right now.

    The port is released before the caller binds it, so another process could take it
    in between; on a developer machine or a CI runner that window is harmless, and it
    lets the server own the socket (Tansu cannot be handed an open one).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port
