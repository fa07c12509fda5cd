"""Test helpers for the web app: a real uvicorn server in a thread, multipart bodies, songs, waiting.

``LiveServer`` runs ``create_app(settings)`` on 127.0.0.1 (a free port) in a
background thread, as ``harmonizer serve`` does in its main thread, with the
app's lifespan (start-up and shut-down) included. ``multipart`` builds a body
byte for byte (file names exactly as given: ``../../evil.wav`` stays that).
"""

from __future__ import annotations

import io
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Optional

import httpx
import soundfile as sf
import uvicorn

from harmonizer_cli.serve import Settings, create_app
from test_extension import make_song

__all__ = ["LiveServer", "multipart", "song_bytes", "wait_for", "wait_done", "tree"]


class LiveServer:
    """``with LiveServer(tmp_path, workers=2) as server:`` -> ``server.client`` (httpx), ``server.url``.

    ``temp_root`` is ``tmp_path / "temp"``: after the server stops it must be empty.
    """

    def __init__(self, tmp_path: Path, **settings) -> None:
        self.temp_root = tmp_path / "temp"
        self.temp_root.mkdir(exist_ok=True)
        self.settings = Settings(host="127.0.0.1", port=0, temp_root=self.temp_root, **settings)
        self.app = create_app(self.settings)
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="warning",
                                                    lifespan="on", timeout_graceful_shutdown=5))
        self.thread = threading.Thread(target=self.server.run, name="uvicorn-test", daemon=True)
        self.url = ""
        self.client: Optional[httpx.Client] = None

    @property
    def pool(self):
        return self.app.state.pool

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        wait_for(lambda: self.server.started or not self.thread.is_alive(), timeout=30, what="uvicorn start-up")
        assert self.server.started, "the server did not start"
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.client = httpx.Client(base_url=self.url, timeout=60)
        return self

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
        self.server.should_exit = True
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the server did not stop"

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def submit(self, song: bytes, *, filename: str = "song.wav", **fields: str) -> httpx.Response:
        """POST /api/jobs with ``song`` as the ``file`` field and text ``fields``."""
        body, content_type = multipart(fields, [("file", filename, song)])
        return self.client.post("/api/jobs", content=body, headers={"content-type": content_type})


def multipart(fields: dict[str, str], files: list[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body (text fields first) and its Content-Type, names written as given."""
    boundary = uuid.uuid4().hex
    out = io.BytesIO()
    for name, value in fields.items():
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, filename, data in files:
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                  f'Content-Type: application/octet-stream\r\n\r\n'.encode())
        out.write(data)
        out.write(b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def song_bytes(seconds: float = 12.0, *, sample_rate: int = 22050, fmt: str = "WAV") -> bytes:
    """A short synthetic song (click track over four chords, real ending) as file bytes."""
    buffer = io.BytesIO()
    sf.write(buffer, make_song(seconds, sample_rate=sample_rate).samples, sample_rate, format=fmt)
    return buffer.getvalue()


def wait_for(predicate: Callable[[], object], *, timeout: float, what: str, interval: float = 0.05):
    """Poll ``predicate`` until it is truthy (returned) or ``timeout`` s pass (AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def wait_done(client: httpx.Client, status_url: str, *, timeout: float = 120) -> tuple[dict, list[float]]:
    """Poll a job until done or failed: its last state and every progress value seen."""
    seen: list[float] = []

    def finished():
        state = client.get(status_url).json()
        seen.append(state["progress"])
        return state if state["status"] in ("done", "failed") else None

    return wait_for(finished, timeout=timeout, what=f"job {status_url}", interval=0.1), seen


def tree(folder: Path) -> list[str]:
    """Every path under ``folder``, relative, sorted."""
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))
