"""Test helpers for the web app: a real uvicorn server in a thread, multipart bodies, songs, waiting.

``LiveServer`` runs ``create_app(settings)`` on 127.0.0.1 (a free port) in a
background thread, as ``harmonizer serve`` does in its main thread, with the
app's lifespan (start-up and shut-down) included. ``multipart`` builds a body
byte for byte (file names exactly as given: ``../../evil.wav`` stays that); ``make_clip``
makes a small H.264 clip.
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

__all__ = ["LiveServer", "multipart", "song_bytes", "make_clip", "wait_for", "wait_done", "tree",
           "CLIP_TONE_HZ", "CLIP_TONE_LEVEL"]

#: The sound of the clips ``make_clip`` makes: a sine at this frequency and amplitude.
CLIP_TONE_HZ, CLIP_TONE_LEVEL = 1000.0, 0.3


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


def make_clip(path: Path, seconds: float, *, sound: bool = True, container_format: Optional[str] = None) -> Path:
    """A small real clip made with PyAV: H.264 (64x48, 10 fps, a moving bar) and, with ``sound``,
    a 1 kHz tone at 0.3 as AAC (48 kHz stereo). Skips the test where PyAV or its encoders are missing."""
    import pytest

    av = pytest.importorskip("av", reason="PyAV is not installed")
    from fractions import Fraction

    import numpy as np

    for codec in ("libx264", "aac"):
        try:
            av.Codec(codec, "w")
        except Exception:  # noqa: BLE001 - any failure: this PyAV build cannot encode it
            pytest.skip(f"this PyAV build has no {codec} encoder")
    with av.open(str(path), "w", format=container_format) as container:
        video = container.add_stream("libx264", rate=10)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        video.options = {"preset": "ultrafast"}
        audio = None
        if sound:
            audio = container.add_stream("aac", rate=48000)
            audio.layout = "stereo"
        for index in range(int(round(seconds * 10))):
            image = np.full((48, 64, 3), 40, np.uint8)
            image[:, (index * 3) % 64] = 255
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = index
            container.mux(video.encode(frame))
        container.mux(video.encode())
        if audio is not None:
            t = np.arange(int(round(seconds * 48000))) / 48000
            tone = (CLIP_TONE_LEVEL * np.sin(2 * np.pi * CLIP_TONE_HZ * t)).astype(np.float32)
            frame = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
            frame.sample_rate, frame.pts, frame.time_base = 48000, 0, Fraction(1, 48000)
            container.mux(audio.encode(frame))
            container.mux(audio.encode(None))
    return path


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
