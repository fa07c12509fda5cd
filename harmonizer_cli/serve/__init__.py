"""``harmonizer serve``: a local web app over the same extend job handler as the CLI.

* ``settings``: ``Settings``, the frozen configuration;
* ``app``: ``create_app(settings)``, the FastAPI app (API and page routers);
* ``pool``: ``JobPool``, bounded workers running each job in its own process;
* ``worker``: the job's process (``ExtendJob`` adapter, progress, waveform summary);
* ``upload``: streaming multipart upload, size cap, media sniffing, safe names;
* ``server``: binding the socket and running uvicorn;
* ``static/``: the page (HTML, CSS, JS; no CDN, no build step).

FastAPI is imported only when ``create_app`` is first used, so importing this
package (as the job processes do) stays light.
"""

from __future__ import annotations

from typing import Any

from harmonizer_cli.serve.settings import Settings, is_loopback_host

__all__ = ["Settings", "is_loopback_host", "create_app", "run_server"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from harmonizer_cli.serve.app import create_app

        return create_app
    if name == "run_server":
        from harmonizer_cli.serve.server import run_server

        return run_server
    raise AttributeError(f"module 'harmonizer_cli.serve' has no attribute {name!r}")
