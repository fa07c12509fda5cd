"""A real HTTP server on 127.0.0.1 that mimics GitHub's contents API and raw downloads.

Each path serves bytes with HTTP Range support; a script of behaviours per path makes
the next requests fail in chosen ways (reset mid-file, HTTP 500, 403 rate limit,
truncated body, a server ignoring Range, a stall until released). Every request is
logged with its Range header so tests can assert that a download resumed.
"""

from __future__ import annotations

import hashlib
import json
import socket
import struct
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable


@dataclass
class Request:
    path: str
    range: str | None
    authorization: str | None


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        fake = self.server.fake
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        fake.requests.append(Request(path, self.headers.get("Range"), self.headers.get("Authorization")))
        with fake.lock:
            script = fake.scripts.get(path)
            behaviour = script.pop(0) if script else "ok"
        data = fake.files.get(path)
        if behaviour == "404" or data is None:
            return self._status(404, b'{"message": "Not Found"}')
        if behaviour == "500":
            return self._status(500, b"boom")
        if behaviour == "403-ratelimit":
            return self._status(403, b'{"message": "API rate limit exceeded"}', {
                "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(time.time()) + 1)})
        if behaviour == "429":
            return self._status(429, b"slow down", {"Retry-After": "1"})
        if behaviour == "redirect-loop":
            return self._status(302, b"", {"Location": self.path})
        if behaviour.startswith("redirect:"):
            return self._status(302, b"", {"Location": behaviour[len("redirect:"):]})
        start = 0
        requested = self.headers.get("Range")
        if requested and behaviour != "norange":
            start = int(requested.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                return self._status(416, b"", {"Content-Range": f"bytes */{len(data)}"})
        body = data[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        half = max(1, len(body) // 2)
        if behaviour == "ok" or behaviour == "norange":
            self.wfile.write(body)
        elif behaviour == "truncate":
            self.wfile.write(body[:half])
            self.close_connection = True
        elif behaviour == "reset":
            self.wfile.write(body[:half])
            time.sleep(0.2)  # let the client read the first half before the reset
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        elif behaviour == "stall":
            self.wfile.write(body[:half])
            fake.stalled.set()
            if fake.on_stall is not None:
                fake.on_stall()
            fake.release.wait(20)
            self.close_connection = True
        else:
            raise ValueError(f"unknown behaviour {behaviour!r}")

    def _status(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: "FakeServer"

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # resets and stalls are on purpose


class FakeServer:
    """Serves ``files`` (URL path -> bytes); ``scripts`` (path -> behaviours) inject failures.

    Behaviours: ``ok``, ``404``, ``500``, ``403-ratelimit`` (X-RateLimit-Remaining: 0),
    ``429`` (Retry-After: 1), ``reset`` (half the body, then a TCP reset), ``truncate``
    (half the body with the full Content-Length), ``norange`` (200 with the whole file
    whatever the Range), ``stall`` (half the body, then wait for ``release``),
    ``redirect-loop``, ``redirect:URL``.
    """

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.scripts: dict[str, list[str]] = {}
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        self.stalled = threading.Event()
        self.release = threading.Event()
        self.on_stall: Callable[[], None] | None = None
        self.httpd = _Server(("127.0.0.1", 0), _Handler)
        self.httpd.fake = self
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    def __enter__(self) -> "FakeServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base_url + urllib.parse.quote(path)

    def add(self, path: str, data: bytes, *behaviours: str) -> str:
        self.files[path] = data
        if behaviours:
            self.scripts[path] = list(behaviours)
        return self.url(path)

    def script(self, path: str, *behaviours: str) -> None:
        self.scripts[path] = list(behaviours)

    def github_folder(self, owner: str, repo: str, folder: str, files: dict[str, bytes],
                      *, extra_entries: list[dict] | None = None) -> str:
        """Register a contents-API listing of ``folder`` and raw files; return the API path."""
        entries = []
        for name, data in files.items():
            raw_path = f"/raw/{owner}/{repo}/main/{folder}/{name}"
            self.files[raw_path] = data
            entries.append({
                "name": name, "path": f"{folder}/{name}", "type": "file", "size": len(data),
                "sha": git_blob_sha1(data), "download_url": self.url(raw_path),
            })
        entries.extend(extra_entries or [])
        api_path = f"/repos/{owner}/{repo}/contents/{folder}"
        self.files[api_path] = json.dumps(entries).encode()
        return api_path

    def raw_path(self, owner: str, repo: str, folder: str, name: str) -> str:
        return f"/raw/{owner}/{repo}/main/{folder}/{name}"

    def requests_for(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]
