"""`harmonizer serve`: the local web app (upload a song, choose a length, listen, download)."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from harmonizer_cli.console import AppState, log, stderr

__all__ = ["command"]


def command(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Address to listen on. The default, 127.0.0.1, is this "
                                      "machine only; anything else lets other machines use the server.")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", min=0, max=65535, help="TCP port (0: any free one).")] = 8000,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Songs extended at once (each in its own "
                                      "process); more wait in a queue.")] = 1,
    max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", min=0.001, help="Largest upload (all its "
                                                 "files together), in MB; larger ones are refused (413).")] = 200.0,
    queue_limit: Annotated[int, typer.Option("--queue-limit", min=0, help="Jobs that may wait for a free "
                                             "worker; more are refused (503) until one finishes.")] = 8,
) -> None:
    """Serve the web app: drop a song (and optionally a video clip), choose a length, listen, download.

    The page shows a progress bar while the song is extended, then a player,
    the waveform with the original beginning, every seam and the real ending
    marked, the facts of the --json record and a Download button. It uses the
    JSON API described in README ("The web app"), which works without the page.

    Safe defaults: listens on 127.0.0.1 only (a warning otherwise), caps
    uploads, refuses files that are not audio or video from their first bytes,
    keeps each job in its own temporary folder under a name of its own (never
    the uploaded file's name), removes results after an hour or 10 minutes
    after their download, and on Ctrl-C or SIGTERM cancels running jobs and
    removes every temporary file.
    """
    state: AppState = ctx.obj if isinstance(ctx.obj, AppState) else AppState()
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")  # as extend: before numpy loads in the job processes
    from harmonizer_cli.serve import Settings, is_loopback_host, run_server  # fastapi, uvicorn: only now

    settings = Settings(host=host, port=port, workers=jobs, max_upload_bytes=max(1, int(max_upload_mb * 1024 * 1024)),
                        queue_limit=queue_limit)
    if not is_loopback_host(host):
        stderr.print(f"warning: listening on {host}: other machines on the network can upload files to this "
                     "server and download its results (there is no login); use --host 127.0.0.1 to keep it "
                     "to this machine", markup=False)
    run_server(settings, log_level="warning" if state.quiet else "info", access_log=state.verbose,
               on_listening=lambda url: log(state, f"harmonizer serve: open {url} in a browser (Ctrl-C to stop)"))
