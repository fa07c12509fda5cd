"""Running the web app: bind the socket ourselves (a clear error if we cannot), then uvicorn.

``bind_socket`` opens the listening socket, so a port in use is a ``ConfigError``
(exit 2) naming the address rather than uvicorn's log line, and port 0 gives a real
port to print. ``run_server`` serves ``create_app(settings)`` on it until Ctrl-C or
SIGTERM; uvicorn then stops accepting, lets requests finish (at most
``GRACEFUL_SHUTDOWN_SECONDS``), and the app's shut-down terminates running jobs and
removes every job folder (done again here in ``finally``, should uvicorn skip it on
a second Ctrl-C). The signal is re-raised afterwards, so the CLI exits 130 or 143.
"""

from __future__ import annotations

import socket
from typing import Callable, Optional

from harmonizer_cli.errors import ConfigError
from harmonizer_cli.serve.settings import Settings

__all__ = ["bind_socket", "server_url", "run_server", "GRACEFUL_SHUTDOWN_SECONDS"]

#: How long requests in flight may take to finish once the server is asked to stop.
GRACEFUL_SHUTDOWN_SECONDS = 5


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket listening on ``host``:``port`` (port 0: any free one).

    Raises
    ------
    ConfigError
        The address cannot be resolved or bound (in use, not this machine's, no permission).
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise ConfigError(f"--host {host}: cannot resolve the address ({exc.strerror})") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --port "
                          "or --host") from None
    sock.set_inheritable(False)
    return sock


def server_url(sock: socket.socket) -> str:
    """``http://host:port/`` of a listening socket."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def run_server(settings: Settings, *, log_level: str = "info", access_log: bool = False,
               on_listening: Optional[Callable[[str], None]] = None) -> None:
    """Serve the web app until interrupted.

    Parameters
    ----------
    settings : Settings
    log_level : str
        uvicorn's ("warning" for ``--quiet``).
    access_log : bool
        Log every request (``--verbose``).
    on_listening : callable(url), optional
        Told the page's address once the socket listens.

    Raises
    ------
    ConfigError
        The address cannot be bound.
    KeyboardInterrupt, Interrupted
        Re-raised after a clean stop on Ctrl-C or SIGTERM.
    """
    import uvicorn

    from harmonizer_cli.serve.app import create_app

    sock = bind_socket(settings.host, settings.port)
    app = create_app(settings)
    try:
        if on_listening is not None:
            on_listening(server_url(sock))
        config = uvicorn.Config(app, host=settings.host, port=sock.getsockname()[1], log_level=log_level,
                                access_log=access_log, lifespan="on",
                                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS)
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        app.state.pool.close()
        sock.close()
