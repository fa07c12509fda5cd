"""HTTP for fetching: URL checks, bounded redirects, retries, size caps, ranged downloads.

Only http and https are opened (``_build_opener`` has no other handler) and
redirects are bounded. ``_Context`` is what the workers share: the opener, the
run's byte budget, the stop flag and the retry loop (exponential backoff with
jitter, honouring ``Retry-After`` and ``X-RateLimit-Reset``). ``_download_to_part``
downloads one file into its ``.part`` file, resuming with HTTP ``Range``.
"""

from __future__ import annotations

import contextlib
import email.utils
import http.client
import random
import re
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable

from harmonizer_cli.core.research.fetch.options import (
    FetchOptions, RemoteFile, _format_bytes, _PermanentError, _RetryableError, _Stopped,
)
from harmonizer_cli.errors import DataError


def _check_url(url: str) -> str:
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise DataError(
            f"{url}: only http and https URLs are accepted, not "
            f"{scheme + ':' if scheme else 'a relative URL'}"
        )
    return url


class _RedirectHandler(urllib.request.HTTPRedirectHandler):
    """Follows at most ``max_redirects`` redirects, and only to http or https."""

    def __init__(self, max_redirects: int) -> None:
        super().__init__()
        self.max_redirections = max_redirects
        self.max_repeats = max(1, min(4, max_redirects))

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001, ANN201
        scheme = urllib.parse.urlsplit(newurl).scheme.lower()
        if scheme not in ("http", "https"):
            raise urllib.error.HTTPError(
                newurl, code, f"redirect to a {scheme}: URL refused", headers, fp
            )
        if self.max_redirections == 0:
            raise urllib.error.HTTPError(newurl, code, "redirects are not allowed", headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _build_opener(options: FetchOptions) -> urllib.request.OpenerDirector:
    """An opener that knows only http and https (no file:, ftp:, data:)."""
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler(),
        urllib.request.UnknownHandler(),
        urllib.request.HTTPHandler(),
        urllib.request.HTTPSHandler(),
        urllib.request.HTTPDefaultErrorHandler(),
        _RedirectHandler(options.max_redirects),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener


def _server_wait_seconds(headers: object) -> float | None:
    """Seconds the server asks to wait: ``Retry-After``, else ``X-RateLimit-Reset``."""
    if headers is None:
        return None
    retry_after = headers.get("Retry-After")
    if retry_after:
        retry_after = retry_after.strip()
        if retry_after.isdigit():
            return float(retry_after)
        with contextlib.suppress(TypeError, ValueError, IndexError):
            when = email.utils.parsedate_to_datetime(retry_after)
            return max(0.0, when.timestamp() - time.time())
    if headers.get("X-RateLimit-Remaining") == "0":
        with contextlib.suppress(TypeError, ValueError):
            return max(0.0, float(headers.get("X-RateLimit-Reset")) - time.time())
    return None


def _classify_http_error(exc: urllib.error.HTTPError) -> Exception:
    code, headers = exc.code, exc.headers
    reason = f"HTTP {code} {exc.reason}".strip()
    rate_limited = code == 429 or (
        code == 403
        and headers is not None
        and (headers.get("X-RateLimit-Remaining") == "0" or headers.get("Retry-After"))
    )
    if rate_limited:
        return _RetryableError(f"rate limited ({reason})", wait_seconds=_server_wait_seconds(headers))
    if code >= 500 or code == 408:
        return _RetryableError(reason, wait_seconds=_server_wait_seconds(headers))
    if 300 <= code < 400:
        return _PermanentError(f"{reason} (more than the allowed redirects, or a refused one)")
    return _PermanentError(reason)


def _classify_network_error(exc: BaseException) -> Exception:
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        reason = exc.reason
        if isinstance(reason, ssl.SSLCertVerificationError):
            return _PermanentError(f"TLS certificate rejected ({reason})")
        if isinstance(reason, str) and "unknown url type" in reason:
            return _PermanentError(reason)
        return _RetryableError(f"cannot connect ({reason})")
    return _RetryableError(f"{type(exc).__name__}: {exc}".rstrip(": "))


# OSError covers ConnectionResetError, TimeoutError and socket errors.
_NETWORK_ERRORS = (OSError, http.client.HTTPException, socket.timeout)


class _Budget:
    """Bytes this run may still write (``--max-bytes``), shared by the workers."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def take(self, n_bytes: int) -> None:
        with self._lock:
            if self.used + n_bytes > self.limit:
                raise _PermanentError(
                    f"the run's size cap ({_format_bytes(self.limit)}, --max-bytes) is reached"
                )
            self.used += n_bytes


class _Context:
    """What every worker shares: options, opener, budget, the stop flag."""

    def __init__(self, dest: Path, options: FetchOptions) -> None:
        self.dest = dest
        self.options = options
        self.opener = _build_opener(options)
        self.budget = _Budget(options.max_total_bytes)
        self.stop = threading.Event()
        self.api_host = urllib.parse.urlsplit(options.github_api).netloc.lower()

    def check_stop(self) -> None:
        if self.stop.is_set():
            raise _Stopped()

    def open(self, url: str, headers: dict[str, str]) -> http.client.HTTPResponse:
        """Open ``url`` (http/https only); raise urllib's errors unchanged."""
        try:
            _check_url(url)
        except DataError as exc:
            raise _PermanentError(exc.message) from None
        request = urllib.request.Request(url, headers=headers)
        request.add_header("User-Agent", self.options.user_agent)
        if self.options.github_token and urllib.parse.urlsplit(url).netloc.lower() == self.api_host:
            # Unredirected: never forwarded to another host by a redirect.
            request.add_unredirected_header("Authorization", f"Bearer {self.options.github_token}")
        return self.opener.open(request, timeout=self.options.timeout_seconds)

    def retry(self, action: Callable[[int], object], what: str) -> object:
        """Run ``action(attempt)`` until it does not raise ``_RetryableError``."""
        options = self.options
        last: _RetryableError | None = None
        for attempt in range(options.max_attempts):
            self.check_stop()
            try:
                return action(attempt)
            except _RetryableError as exc:
                last = exc
            if attempt + 1 == options.max_attempts:
                break
            delay = options.backoff_base_seconds * (2 ** attempt) * random.uniform(0.5, 1.0)
            if last.wait_seconds is not None:
                if last.wait_seconds > options.max_wait_seconds:
                    hint = " (set GITHUB_TOKEN for a higher rate limit)" if "rate" in str(last) else ""
                    raise _PermanentError(
                        f"{last}; the server asks to wait {last.wait_seconds:.0f} s{hint}"
                    )
                delay = max(delay, last.wait_seconds)
            if self.stop.wait(min(delay, options.backoff_cap_seconds)):
                raise _Stopped()
        raise _PermanentError(f"{last} (gave up after {options.max_attempts} attempts)")


def _parse_content_range(value: str | None) -> tuple[int | None, int | None]:
    """``(start, total)`` from ``bytes 100-199/200`` or ``bytes */200``."""
    match = re.match(r"^\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*$", value or "")
    if not match:
        return None, None
    start = int(match.group(1)) if match.group(1) is not None else None
    total = int(match.group(2)) if match.group(2) != "*" else None
    return start, total


def _read_capped(response: http.client.HTTPResponse, limit: int, what: str) -> bytes:
    length = response.headers.get("Content-Length")
    if length and length.isdigit() and int(length) > limit:
        raise _PermanentError(f"{what} is {_format_bytes(int(length))}, larger than {_format_bytes(limit)}")
    try:
        data = response.read(limit + 1)
    except _NETWORK_ERRORS as exc:
        raise _classify_network_error(exc) from exc
    if len(data) > limit:
        raise _PermanentError(f"{what} is larger than {_format_bytes(limit)}")
    if length and length.isdigit() and len(data) < int(length):
        raise _RetryableError(f"{what} truncated ({len(data)} of {length} bytes)")
    return data


def _get_bytes(ctx: _Context, url: str, headers: dict[str, str], what: str) -> bytes:
    def attempt(_: int) -> bytes:
        try:
            with ctx.open(url, headers) as response:
                return _read_capped(response, ctx.options.max_listing_bytes, what)
        except urllib.error.HTTPError as exc:
            exc.close()
            raise _classify_http_error(exc) from None
        except _NETWORK_ERRORS as exc:
            raise _classify_network_error(exc) from exc

    return ctx.retry(attempt, what)  # type: ignore[return-value]


def _download_to_part(item: RemoteFile, part: Path, ctx: _Context) -> None:
    """Download ``item.url`` into ``part``, resuming what is there, with retries."""
    options = ctx.options
    headers_base = {"Accept-Encoding": "identity", "Accept": "*/*"}

    def drop_part() -> None:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()

    def attempt(_: int) -> None:
        offset = part.stat().st_size if part.exists() else 0
        if item.size is not None:
            if item.size > options.max_file_bytes:
                raise _PermanentError(
                    f"is {_format_bytes(item.size)}, more than the per-file cap "
                    f"({_format_bytes(options.max_file_bytes)})"
                )
            if offset > item.size:
                drop_part()
                offset = 0
            elif offset == item.size and offset > 0:
                return  # complete from an earlier run; verified by the caller
        headers = dict(headers_base)
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            response = ctx.open(item.url, headers)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 416 and offset:
                _, total = _parse_content_range(exc.headers.get("Content-Range") if exc.headers else None)
                if total == offset:
                    return  # the partial file is already the whole file
                drop_part()
                raise _RetryableError("HTTP 416: the partial file does not fit the server's; restarting") from None
            raise _classify_http_error(exc) from None
        except _NETWORK_ERRORS as exc:
            raise _classify_network_error(exc) from exc
        with response:
            if response.status == 206:
                start, _ = _parse_content_range(response.headers.get("Content-Range"))
                if start != offset:
                    drop_part()
                    raise _RetryableError("the server sent another byte range; restarting")
                mode = "ab"
            elif response.status == 200:
                mode, offset = "wb", 0  # no Range, or the server ignored it: start over
            else:
                raise _PermanentError(f"unexpected HTTP {response.status}")
            length_text = response.headers.get("Content-Length")
            length = int(length_text) if length_text and length_text.isdigit() else None
            if length is not None and offset + length > options.max_file_bytes:
                raise _PermanentError(
                    f"is {_format_bytes(offset + length)}, more than the per-file cap "
                    f"({_format_bytes(options.max_file_bytes)})"
                )
            received, over_cap = _stream_to_part(response, part, mode, offset, ctx)
            if over_cap:
                drop_part()
                raise _PermanentError(over_cap)
            if length is not None and received < length:
                raise _RetryableError(f"truncated body ({received} of {length} bytes); resuming")

    ctx.retry(attempt, item.name)


def _stream_to_part(
    response: http.client.HTTPResponse, part: Path, mode: str, offset: int, ctx: _Context
) -> tuple[int, str | None]:
    """Write the body of ``response`` to ``part`` (``mode`` "ab" or "wb") chunk by chunk.

    Returns
    -------
    received : int
        Bytes written.
    over_cap : str or None
        Why it stopped early: the per-file or the run's size cap; None at the end of
        the body.
    """
    options = ctx.options
    received = 0
    over_cap: str | None = None
    try:
        with open(part, mode) as out:
            while True:
                ctx.check_stop()
                try:
                    chunk = response.read1(options.chunk_bytes)
                except _NETWORK_ERRORS as exc:
                    raise _RetryableError(
                        f"connection lost after {offset + received} bytes ({type(exc).__name__})"
                    ) from exc
                if not chunk:
                    break
                if offset + received + len(chunk) > options.max_file_bytes:
                    over_cap = f"more than the per-file cap ({_format_bytes(options.max_file_bytes)})"
                    break
                try:
                    ctx.budget.take(len(chunk))
                except _PermanentError as exc:
                    over_cap = str(exc)
                    break
                out.write(chunk)
                out.flush()  # what is on disk is what a resume continues from
                received += len(chunk)
    except OSError as exc:
        raise _PermanentError(f"cannot write {part.name} ({exc.strerror or exc})") from exc
    return received, over_cap
