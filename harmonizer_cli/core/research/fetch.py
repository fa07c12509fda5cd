"""Fetching a data set: list a source, then download or copy its audio files safely.

Sources (``parse_source``):

- ``github:OWNER/REPO[/PATH][@REF]`` (or ``https://github.com/OWNER/REPO/tree/REF/PATH``):
  a folder of a GitHub repository, listed through the REST contents API and
  downloaded from each entry's ``download_url``. The default is the paper's data set.
- an ``http(s)://`` URL: an audio file when its name ends in an audio extension,
  otherwise a zip or tar(.gz/.bz2/.xz) archive (recognised by content).
- a local file: a zip or tar archive (by content), or else a manifest: one URL per
  line, optionally followed by the file's sha256; ``#`` starts a comment.
- a local folder: its audio files are copied (hidden files and links are not).

Every file goes to ``<dest>/<name>.part`` first and is renamed to its final name
only when complete and verified (size and hash against the listing when known, and
decoded from start to end), so a final name never holds a partial file. Downloads
resume from the ``.part`` file with HTTP ``Range`` (a server that ignores it sends
the whole file, which restarts it). Connection resets, timeouts, truncated bodies,
HTTP 5xx, 408, 429 and 403 rate limits are retried with exponential backoff and
jitter (``Retry-After`` and ``X-RateLimit-Reset`` honoured up to
``FetchOptions.backoff_cap_seconds``); other 4xx answers are not retried.

Only http and https URLs are opened, redirects are bounded, and sizes are capped
(per file, per run, listing size). Archives are never extracted with
``extractall``: only regular members with an audio extension are written, each
path checked to stay inside the destination; absolute paths, ``..``, drive letters,
links and device members are reported as failed and not written; other regular
members are ignored; member count and total size are capped (zip bombs).

Interruption (``KeyboardInterrupt`` or ``harmonizer_cli.errors.Interrupted`` in the
calling thread) stops the workers within a chunk, keeps the ``.part`` files that the
next run resumes, and re-raises.
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import http.client
import json
import os
import queue
import random
import re
import shutil
import socket
import ssl
import stat
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator

from harmonizer_cli import __version__
from harmonizer_cli.errors import AudioError, ConfigError, DataError, OutputError

__all__ = [
    "DEFAULT_SOURCE",
    "DEFAULT_GITHUB_API",
    "AUDIO_SUFFIXES",
    "FetchOptions",
    "Source",
    "RemoteFile",
    "FileResult",
    "FetchSummary",
    "parse_source",
    "parse_size",
    "list_source",
    "fetch_dataset",
    "extract_archive",
    "safe_relative_path",
    "verify_audio",
    "git_blob_sha1",
]

#: The paper's public data set: 181 mp3 mixes.
DEFAULT_SOURCE = "github:Gourav052003/Mix-Music-Splitter-Dataset/Mix Music"
DEFAULT_GITHUB_API = "https://api.github.com"

#: Files taken from listings, folders and archives (others are ignored).
AUDIO_SUFFIXES = frozenset(
    {".mp3", ".wav", ".flac", ".ogg", ".oga", ".opus", ".aif", ".aiff", ".m4a"}
)
_ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tbz",
                     ".tar.xz", ".txz")
PART_SUFFIX = ".part"
_MARKER_PREFIX = ".harmonizer-fetch-"
_GiB = 1 << 30

ProgressCallback = Callable[[int, int], None]


# === Options and records ===


@dataclass(frozen=True)
class FetchOptions:
    """How to fetch: concurrency, limits, retries.

    Attributes
    ----------
    jobs : int
        Files downloaded at the same time.
    force : bool
        Download again files already present, and replace files that differ.
    max_total_bytes : int
        Bytes downloaded (or extracted) in one run at most (``--max-bytes``).
    max_file_bytes : int
        Size of one file at most.
    max_listing_bytes : int
        Size of a listing (GitHub JSON answer, manifest) at most.
    max_entries : int
        Entries of a listing or members of an archive at most.
    max_redirects : int
        Redirects followed per request.
    timeout_seconds : float
        Socket timeout of each connect and read.
    max_attempts : int
        Tries per file (1 = no retry).
    backoff_base_seconds, backoff_cap_seconds : float
        Delay before retry ``k`` (0-based) is ``base * 2**k`` with jitter, raised to
        the server's ``Retry-After`` / ``X-RateLimit-Reset`` and capped at ``cap``.
    max_wait_seconds : float
        A server asking to wait longer than this fails the file at once.
    stop_grace_seconds : float
        After an interruption, how long to wait for the workers to stop.
    chunk_bytes : int
        Read size.
    github_api : str
        Base URL of the GitHub REST API (``HARMONIZER_GITHUB_API``).
    github_token : str or None
        Sent as ``Authorization: Bearer`` to the API host only (``GITHUB_TOKEN``).
    verify_audio : bool
        Decode every finished file; one that does not decode is removed and failed.
    """

    jobs: int = 4
    force: bool = False
    max_total_bytes: int = 20 * _GiB
    max_file_bytes: int = 2 * _GiB
    max_listing_bytes: int = 8 << 20
    max_entries: int = 20000
    max_redirects: int = 5
    timeout_seconds: float = 30.0
    max_attempts: int = 6
    backoff_base_seconds: float = 1.0
    backoff_cap_seconds: float = 60.0
    max_wait_seconds: float = 900.0
    stop_grace_seconds: float = 1.0
    chunk_bytes: int = 1 << 16
    github_api: str = DEFAULT_GITHUB_API
    github_token: str | None = field(default=None, repr=False)
    verify_audio: bool = True
    user_agent: str = f"harmonizer/{__version__}"

    def __post_init__(self) -> None:
        positive = {
            "jobs": self.jobs, "max_total_bytes": self.max_total_bytes,
            "max_file_bytes": self.max_file_bytes, "max_listing_bytes": self.max_listing_bytes,
            "max_entries": self.max_entries, "max_attempts": self.max_attempts,
            "chunk_bytes": self.chunk_bytes, "timeout_seconds": self.timeout_seconds,
        }
        for name, value in positive.items():
            if not value > 0:
                raise ConfigError(f"{name} must be positive, got {value}")
        if self.max_redirects < 0 or self.backoff_base_seconds < 0 or self.backoff_cap_seconds < 0:
            raise ConfigError("max_redirects and backoff times must not be negative")
        if urllib.parse.urlsplit(self.github_api).scheme not in ("http", "https"):
            raise ConfigError(f"the GitHub API URL must be http or https: {self.github_api!r}")


@dataclass(frozen=True)
class Source:
    """A parsed ``--source``.

    Attributes
    ----------
    kind : {"github", "file_url", "archive_url", "manifest", "archive_file", "folder"}
    location : str
        The URL, file or folder (for ``github``, the API's contents path).
    owner, repo, path, ref : str
        For ``github`` only (``ref`` empty: the default branch).
    """

    kind: str
    location: str
    owner: str = ""
    repo: str = ""
    path: str = ""
    ref: str = ""

    def __str__(self) -> str:
        if self.kind == "github":
            text = f"github:{self.owner}/{self.repo}" + (f"/{self.path}" if self.path else "")
            return text + (f"@{self.ref}" if self.ref else "")
        return self.location


@dataclass(frozen=True)
class RemoteFile:
    """One file to fetch.

    Attributes
    ----------
    name : str
        Safe relative POSIX path under the destination.
    url : str or None
        Where to download it from (http or https).
    local_path : Path or None
        Or where to copy it from (folder sources).
    size : int or None
        Expected size in bytes, when the listing says.
    sha256, git_sha1 : str or None
        Expected hashes (lower-case hex), when the listing says.
    check_audio : bool
        Decode it once complete.
    """

    name: str
    url: str | None = None
    local_path: Path | None = None
    size: int | None = None
    sha256: str | None = None
    git_sha1: str | None = None
    check_audio: bool = True


@dataclass(frozen=True)
class FileResult:
    """What happened to one file: ``status`` is downloaded, skipped or failed."""

    name: str
    status: str
    n_bytes: int = 0
    message: str = ""


@dataclass
class FetchSummary:
    """The outcome of ``fetch_dataset``.

    Attributes
    ----------
    source : str
    dest : Path
    results : list of FileResult
        One per file, sorted by name.
    n_ignored : int
        Archive members or listing entries that are not audio, left alone.
    """

    source: str
    dest: Path
    results: list[FileResult]
    n_ignored: int = 0

    def _with(self, status: str) -> list[FileResult]:
        return [r for r in self.results if r.status == status]

    @property
    def downloaded(self) -> list[FileResult]:
        return self._with("downloaded")

    @property
    def skipped(self) -> list[FileResult]:
        return self._with("skipped")

    @property
    def failed(self) -> list[FileResult]:
        return self._with("failed")

    @property
    def bytes_downloaded(self) -> int:
        return sum(r.n_bytes for r in self.downloaded)

    def to_dict(self) -> dict:
        """A JSON-ready summary (``--json``)."""
        return {
            "source": self.source,
            "dest": str(self.dest),
            "downloaded": len(self.downloaded),
            "skipped": len(self.skipped),
            "failed": len(self.failed),
            "ignored": self.n_ignored,
            "bytes_downloaded": self.bytes_downloaded,
            "files": [
                {"name": r.name, "status": r.status, "bytes": r.n_bytes, "message": r.message}
                for r in self.results
            ],
        }


# === Small helpers ===


class _RetryableError(Exception):
    """A transient failure: try again after ``wait_seconds`` (None: backoff)."""

    def __init__(self, message: str, *, wait_seconds: float | None = None) -> None:
        super().__init__(message)
        self.wait_seconds = wait_seconds


class _PermanentError(Exception):
    """A failure that another try will not fix (404, bad hash, caps, disk)."""


class _Stopped(Exception):
    """The run was interrupted; the worker leaves its ``.part`` file and returns."""


_DRIVE = re.compile(r"^[A-Za-z]:")
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_HEX40 = re.compile(r"^[0-9a-fA-F]{40}$")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?\s*$", re.IGNORECASE)


def parse_size(text: str | int) -> int:
    """Bytes from ``"500M"``, ``"20G"``, ``"1.5GiB"`` or ``"1048576"`` (K/M/G/T are powers of 1024).

    Raises
    ------
    ConfigError
        If the text is not a size.
    """
    if isinstance(text, int):
        return text
    match = _SIZE.match(str(text))
    if not match:
        raise ConfigError(f"not a size: {text!r} (use e.g. 500M, 20G or a number of bytes)")
    number, unit = float(match.group(1)), match.group(2).lower()
    value = int(number * (1024 ** " kmgt".index(unit or " ")))
    if value <= 0:
        raise ConfigError(f"size must be positive: {text!r}")
    return value


def _format_bytes(n_bytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n_bytes) < 1024 or unit == "GiB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    return f"{n_bytes:.1f} GiB"  # pragma: no cover


def safe_relative_path(name: str) -> str:
    """Check that an untrusted name stays inside the destination; return it normalised.

    Backslashes count as separators; ``.`` and empty components are dropped.

    Raises
    ------
    DataError
        An empty name, an absolute path, a drive letter, a ``..`` component, control
        characters, or a name ending in ``.part`` (reserved for partial files).

    Examples
    --------
    >>> safe_relative_path("Mix Music/./a.mp3")
    'Mix Music/a.mp3'
    """
    text = str(name).replace("\\", "/")
    shown = repr(str(name))
    if any(ord(c) < 32 for c in text):
        raise DataError(f"unsafe name {shown}: control characters")
    if text.startswith("/"):
        raise DataError(f"unsafe name {shown}: absolute path")
    if _DRIVE.match(text):
        raise DataError(f"unsafe name {shown}: drive letter")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise DataError(f"unsafe name {shown}: '..' leads outside the destination")
    if not parts:
        raise DataError(f"unsafe name {shown}: empty")
    if parts[-1].endswith(PART_SUFFIX):
        raise DataError(f"unsafe name {shown}: '{PART_SUFFIX}' is reserved for partial files")
    return "/".join(parts)


def _inside(dest: Path, relative: str) -> Path:
    """``dest / relative``, refusing a result outside ``dest`` (e.g. through a symlinked folder)."""
    target = dest / relative
    root = dest.resolve()
    parent = target.parent.resolve()
    if parent != root and root not in parent.parents:
        raise _PermanentError(f"would be written outside {dest} (through a link)")
    return target


def _is_audio_name(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in AUDIO_SUFFIXES


def git_blob_sha1(path: str | os.PathLike) -> str:
    """The git blob sha1 of a file (what GitHub's contents API calls ``sha``)."""
    path = Path(path)
    digest = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    _hash_file(path, digest)
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    _hash_file(path, digest)
    return digest.hexdigest()


def _hash_file(path: Path, digest: "hashlib._Hash") -> None:
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)


def verify_audio(path: str | os.PathLike) -> None:
    """Decode a file from start to end, block by block (memory stays bounded).

    Formats libsndfile reads are streamed; others (m4a) go through ``load_audio``.

    Raises
    ------
    AudioError
        The file does not decode, holds no samples, or holds NaN/infinite samples.
    """
    import numpy as np
    import soundfile as sf

    from harmonizer_cli.core.audio_io import load_audio

    path = Path(path)
    try:
        n_frames = 0
        with sf.SoundFile(str(path)) as handle:
            while True:
                block = handle.read(1 << 16, dtype="float32")
                if len(block) == 0:
                    break
                if not np.isfinite(block).all():
                    raise AudioError("contains NaN or infinite samples", path=path)
                n_frames += len(block)
    except (sf.LibsndfileError, RuntimeError, ValueError, EOFError):
        load_audio(path)  # audioread (ffmpeg) fallback; raises AudioError
        return
    if n_frames == 0:
        raise AudioError("contains no audio samples", path=path)


def _check_url(url: str) -> str:
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise DataError(
            f"{url}: only http and https URLs are accepted, not "
            f"{scheme + ':' if scheme else 'a relative URL'}"
        )
    return url


# === HTTP ===


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


# === Sources and listings ===


def parse_source(text: str) -> Source:
    """Recognise a ``--source``.

    Parameters
    ----------
    text : str
        ``github:OWNER/REPO[/PATH][@REF]``, ``https://github.com/OWNER/REPO/tree/REF/PATH``,
        an http(s) URL, an existing file (archive or manifest) or an existing folder.

    Raises
    ------
    DataError
        A URL with another scheme (``file:``, ``ftp:``...), or a path that does not exist.
    """
    text = str(text).strip()
    if text.startswith("github:"):
        return _parse_github(text[len("github:"):], text)
    scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]+):", text)
    if scheme and not Path(text).exists():
        _check_url(text)
        parts = urllib.parse.urlsplit(text)
        url_path = urllib.parse.unquote(parts.path)
        if parts.netloc.lower() in ("github.com", "www.github.com"):
            match = re.match(r"^/([^/]+)/([^/]+)/tree/([^/]+)/?(.*)$", url_path)
            if match:
                owner, repo, ref, path = match.groups()
                return _parse_github(f"{owner}/{repo}/{path}".rstrip("/") + f"@{ref}", text)
        lowered = url_path.lower()
        if _is_audio_name(lowered):
            return Source("file_url", text)
        return Source("archive_url", text)
    path = Path(text).expanduser()
    if path.is_dir():
        return Source("folder", str(path))
    if path.is_file():
        if _archive_kind(path) is not None:
            return Source("archive_file", str(path))
        return Source("manifest", str(path))
    raise DataError(
        "no such file or folder (a source is github:OWNER/REPO/PATH, an http(s) URL, "
        "a manifest or archive file, or a folder)",
        path=text,
    )


def _parse_github(spec: str, original: str) -> Source:
    ref = ""
    head, _, last = spec.rpartition("/")
    if "@" in last:
        last, _, ref = last.partition("@")
        spec = f"{head}/{last}" if head else last
    parts = [p for p in spec.split("/") if p]
    if len(parts) < 2:
        raise DataError("a GitHub source is github:OWNER/REPO[/PATH][@REF]", path=original)
    owner, repo, path = parts[0], parts[1], "/".join(parts[2:])
    return Source("github", original, owner=owner, repo=repo, path=path, ref=ref)


def _archive_kind(path: Path) -> str | None:
    if zipfile.is_zipfile(path):
        return "zip"
    with contextlib.suppress(OSError, tarfile.TarError, EOFError, ValueError):
        if tarfile.is_tarfile(path):
            return "tar"
    return None


def list_source(
    source: Source, *, options: FetchOptions | None = None, dest: Path | None = None
) -> tuple[list[RemoteFile], list[FileResult], int]:
    """List the files of a github, manifest, folder or single-file source.

    Returns
    -------
    files : list of RemoteFile
    rejected : list of FileResult
        Entries refused before any download (unsafe names), as ``failed`` results.
    n_ignored : int
        Entries that are not audio files.

    Raises
    ------
    DataError
        The listing cannot be fetched, read or understood.
    """
    options = options or FetchOptions()
    ctx = _Context(Path(dest or "."), options)
    if source.kind == "github":
        return _list_github(source, ctx)
    if source.kind == "manifest":
        return _read_manifest(Path(source.location), options), [], 0
    if source.kind == "folder":
        return _list_folder(Path(source.location), dest, options)
    if source.kind == "file_url":
        name = PurePosixPath(urllib.parse.unquote(urllib.parse.urlsplit(source.location).path)).name
        return [RemoteFile(safe_relative_path(name), url=source.location)], [], 0
    raise DataError(f"{source.location}: cannot list a source of kind {source.kind}")


def _list_github(source: Source, ctx: _Context) -> tuple[list[RemoteFile], list[FileResult], int]:
    api = ctx.options.github_api.rstrip("/")
    headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
    query = f"?ref={urllib.parse.quote(source.ref, safe='')}" if source.ref else ""
    quote = lambda text: urllib.parse.quote(text, safe="/")  # noqa: E731
    base = f"{api}/repos/{quote(source.owner)}/{quote(source.repo)}/contents/"
    files: list[RemoteFile] = []
    rejected: list[FileResult] = []
    n_ignored = 0
    folders = [source.path.strip("/")]
    while folders:
        folder = folders.pop(0)
        url = base + quote(folder) + query
        try:
            raw = _get_bytes(ctx, url, headers, "the GitHub listing")
        except _PermanentError as exc:
            if "HTTP 404" in str(exc):
                raise DataError(
                    "not found on GitHub (check the owner, repository and folder)", path=str(source)
                ) from None
            raise DataError(f"cannot list the GitHub folder {folder!r}: {exc}", path=str(source)) from None
        try:
            entries = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"{url}: the GitHub listing is not JSON ({exc})") from None
        if isinstance(entries, dict):
            entries = [entries]  # the path is a single file
        if not isinstance(entries, list):
            raise DataError(f"{url}: the GitHub listing is not a list of entries")
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                raise DataError(f"{url}: the GitHub listing holds an entry without a name")
            if len(files) + len(rejected) + n_ignored + len(folders) >= ctx.options.max_entries:
                raise DataError(f"{url}: the GitHub listing has more than {ctx.options.max_entries} entries")
            entry_path = entry.get("path") if isinstance(entry.get("path"), str) else entry["name"]
            prefix = source.path.strip("/")
            if not prefix:
                relative = entry_path
            elif entry_path.startswith(prefix + "/"):
                relative = entry_path[len(prefix) + 1:]
            else:
                relative = entry["name"]
            if entry.get("type") == "dir":
                if entry_path.count("/") - prefix.count("/") > 8:
                    raise DataError(f"{url}: the GitHub folder is nested too deeply")
                folders.append(entry_path)
                continue
            if entry.get("type") != "file" or not _is_audio_name(entry["name"]):
                n_ignored += 1
                continue
            try:
                name = safe_relative_path(relative)
            except DataError as exc:
                rejected.append(FileResult(str(relative), "failed", message=exc.message))
                continue
            download_url = entry.get("download_url")
            if not isinstance(download_url, str):
                rejected.append(FileResult(name, "failed", message="no download_url in the listing"))
                continue
            size = entry.get("size")
            sha = entry.get("sha")
            files.append(RemoteFile(
                name, url=download_url,
                size=size if isinstance(size, int) and size >= 0 else None,
                git_sha1=sha.lower() if isinstance(sha, str) and _HEX40.match(sha) else None,
            ))
    return files, rejected, n_ignored


def _read_manifest(path: Path, options: FetchOptions) -> list[RemoteFile]:
    try:
        if path.stat().st_size > options.max_listing_bytes:
            raise DataError(f"manifest larger than {_format_bytes(options.max_listing_bytes)}", path=path)
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise DataError("manifest is not UTF-8 text", path=path) from None
    except OSError as exc:
        raise DataError(f"cannot read the manifest ({exc.strerror})", path=path) from None
    files: list[RemoteFile] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if "#" in [t[:1] for t in tokens]:
            tokens = tokens[: [t[:1] for t in tokens].index("#")]
        if not tokens:
            continue
        where = f"line {number}"
        if len(tokens) > 2:
            raise DataError(f"{where}: expected 'URL [SHA256]', got {len(tokens)} fields", path=path)
        url = tokens[0]
        scheme = urllib.parse.urlsplit(url).scheme.lower()
        if scheme not in ("http", "https"):
            raise DataError(
                f"{where}: only http and https URLs are accepted, not {scheme + ':' if scheme else repr(url)}",
                path=path,
            )
        sha256 = None
        if len(tokens) == 2:
            digest = tokens[1].removeprefix("sha256:")
            if not _HEX64.match(digest):
                raise DataError(f"{where}: {tokens[1]!r} is not a sha256 (64 hex digits)", path=path)
            sha256 = digest.lower()
        raw_name = PurePosixPath(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).name
        try:
            name = safe_relative_path(raw_name)
        except DataError as exc:
            raise DataError(f"{where}: no usable file name in the URL ({exc.message})", path=path) from None
        if name in seen:
            raise DataError(f"{where}: file name {name!r} already used on line {seen[name]}", path=path)
        seen[name] = number
        if len(files) >= options.max_entries:
            raise DataError(f"more than {options.max_entries} entries", path=path)
        files.append(RemoteFile(name, url=url, sha256=sha256))
    return files


def _list_folder(
    folder: Path, dest: Path | None, options: FetchOptions
) -> tuple[list[RemoteFile], list[FileResult], int]:
    root = folder.resolve()
    skip = dest.resolve() if dest is not None else None
    if skip == root:
        raise DataError("the source folder is the destination", path=folder)
    files: list[RemoteFile] = []
    n_ignored = 0
    for current, subfolders, names in os.walk(root):
        here = Path(current)
        subfolders[:] = sorted(
            d for d in subfolders
            if not d.startswith(".") and (skip is None or (here / d).resolve() != skip)
        )
        for name in sorted(names):
            path = here / name
            if name.startswith(".") or path.is_symlink() or not path.is_file():
                continue
            if not _is_audio_name(name):
                n_ignored += 1
                continue
            if len(files) >= options.max_entries:
                raise DataError(f"more than {options.max_entries} audio files", path=folder)
            relative = path.relative_to(root).as_posix()
            files.append(RemoteFile(safe_relative_path(relative), local_path=path,
                                    size=path.stat().st_size))
    return files, [], n_ignored


# === Fetching one file ===


def _part_path(final: Path) -> Path:
    return final.with_name(final.name + PART_SUFFIX)


def _matches(final: Path, item: RemoteFile) -> str | None:
    """None when ``final`` is the listed file; otherwise what differs."""
    size = final.stat().st_size
    if item.size is not None and size != item.size:
        return f"size {size} differs from the source's {item.size}"
    if item.sha256 is not None and _sha256(final) != item.sha256:
        return "sha256 differs from the source's"
    if item.git_sha1 is not None and git_blob_sha1(final) != item.git_sha1:
        return "git sha1 differs from the source's"
    return None


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
            if over_cap:
                drop_part()
                raise _PermanentError(over_cap)
            if length is not None and received < length:
                raise _RetryableError(f"truncated body ({received} of {length} bytes); resuming")

    ctx.retry(attempt, item.name)


def _copy_to_part(item: RemoteFile, part: Path, ctx: _Context) -> None:
    size = item.local_path.stat().st_size
    if size > ctx.options.max_file_bytes:
        raise _PermanentError(f"is {_format_bytes(size)}, more than the per-file cap")
    ctx.budget.take(size)
    try:
        with open(item.local_path, "rb") as source, open(part, "wb") as out:
            while True:
                ctx.check_stop()
                block = source.read(1 << 20)
                if not block:
                    break
                out.write(block)
    except OSError as exc:
        raise _PermanentError(f"cannot copy ({exc.strerror or exc})") from exc


def _verify_part(item: RemoteFile, part: Path, ctx: _Context) -> None:
    """Check a complete ``.part`` file; remove it and raise ``_PermanentError`` if wrong."""
    try:
        size = part.stat().st_size
        if item.size is not None and size != item.size:
            raise _PermanentError(f"downloaded {size} bytes, the listing says {item.size}")
        if item.sha256 is not None:
            got = _sha256(part)
            if got != item.sha256:
                raise _PermanentError(f"sha256 mismatch (expected {item.sha256[:12]}..., got {got[:12]}...)")
        if item.git_sha1 is not None:
            got = git_blob_sha1(part)
            if got != item.git_sha1:
                raise _PermanentError(f"git sha1 mismatch (expected {item.git_sha1[:12]}..., got {got[:12]}...)")
        if item.check_audio and ctx.options.verify_audio:
            try:
                verify_audio(part)
            except AudioError as exc:
                raise _PermanentError(f"does not decode as audio ({exc.message})") from None
    except _PermanentError:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
        raise


def _fetch_one(item: RemoteFile, ctx: _Context) -> FileResult:
    """Download (or copy) one file into place; never raises except ``_Stopped``."""
    try:
        final = _inside(ctx.dest, item.name)
        final.parent.mkdir(parents=True, exist_ok=True)
        final = _inside(ctx.dest, item.name)  # again, now that the folder exists
        part = _part_path(final)
        if final.is_symlink() or (final.exists() and not final.is_file()):
            return FileResult(item.name, "failed", message="exists and is not a regular file")
        if final.exists() and not ctx.options.force:
            difference = _matches(final, item)
            if difference is None:
                return FileResult(item.name, "skipped", final.stat().st_size, "already complete")
            return FileResult(item.name, "failed",
                              message=f"exists and {difference} (use --force to replace it)")
        if part.is_symlink() or (part.exists() and not part.is_file()):
            return FileResult(item.name, "failed", message=f"{part.name} is not a regular file")
        if ctx.options.force or item.local_path is not None:
            with contextlib.suppress(FileNotFoundError):
                part.unlink()
        if item.local_path is not None:
            _copy_to_part(item, part, ctx)
        else:
            _download_to_part(item, part, ctx)
        _verify_part(item, part, ctx)
        n_bytes = part.stat().st_size
        os.replace(part, final)
        return FileResult(item.name, "downloaded", n_bytes)
    except _PermanentError as exc:
        return FileResult(item.name, "failed", message=str(exc))
    except OSError as exc:
        return FileResult(item.name, "failed", message=f"cannot write ({exc.strerror or exc})")


def _run_pool(
    items: list[RemoteFile],
    ctx: _Context,
    *,
    done_before: list[FileResult],
    on_progress: ProgressCallback | None,
    on_file: Callable[[FileResult], None] | None,
) -> list[FileResult]:
    """Fetch ``items`` with ``ctx.options.jobs`` daemon threads; the caller's thread waits.

    Daemon threads rather than an executor: after an interruption the process must not
    wait for a worker stuck in a socket read (each read times out, but only after
    ``timeout_seconds``).
    """
    results = list(done_before)
    total = len(items) + len(done_before)
    todo: queue.Queue[RemoteFile] = queue.Queue()
    for item in items:
        todo.put(item)
    finished: queue.Queue[FileResult | BaseException] = queue.Queue()

    def work() -> None:
        while not ctx.stop.is_set():
            try:
                item = todo.get_nowait()
            except queue.Empty:
                return
            try:
                finished.put(_fetch_one(item, ctx))
            except _Stopped:
                return
            except BaseException as exc:  # a bug: re-raised in the caller's thread
                finished.put(exc)
                return

    threads = [
        threading.Thread(target=work, name=f"harmonizer-fetch-{i}", daemon=True)
        for i in range(min(ctx.options.jobs, len(items)))
    ]
    try:
        if on_progress is not None:
            on_progress(len(results), total)
        for thread in threads:
            thread.start()
        while len(results) < total:
            try:
                outcome = finished.get(timeout=0.1)
            except queue.Empty:
                if not any(t.is_alive() for t in threads) and finished.empty():
                    raise RuntimeError("fetch workers stopped before finishing")  # a bug
                continue
            if isinstance(outcome, BaseException):
                raise outcome
            results.append(outcome)
            if on_file is not None:
                on_file(outcome)
            if on_progress is not None:
                on_progress(len(results), total)
    except BaseException:
        ctx.stop.set()
        deadline = time.monotonic() + ctx.options.stop_grace_seconds
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        raise
    return results


# === Archives ===


@dataclass
class _Member:
    raw_name: str
    name: str | None  # safe relative name, None when refused
    problem: str | None
    size: int
    open: Callable[[], "contextlib.AbstractContextManager"] | None = None


def _zip_members(archive: zipfile.ZipFile) -> Iterator[_Member]:
    for info in archive.infolist():
        mode = info.external_attr >> 16
        kind = stat.S_IFMT(mode)
        if info.is_dir():
            continue
        problem = None
        if kind == stat.S_IFLNK:
            problem = "symbolic link, not extracted"
        elif kind not in (0, stat.S_IFREG):
            problem = "special file (device, fifo), not extracted"
        elif info.flag_bits & 0x1:
            problem = "encrypted, not extracted"
        yield _Member(info.filename, None, problem, info.file_size,
                      lambda info=info: archive.open(info))


def _tar_members(archive: tarfile.TarFile) -> Iterator[_Member]:
    for info in archive:
        if info.isdir():
            continue
        problem = None
        if info.issym():
            problem = "symbolic link, not extracted"
        elif info.islnk():
            problem = "hard link, not extracted"
        elif info.ischr() or info.isblk() or info.isfifo():
            problem = "device or fifo, not extracted"
        elif not info.isreg():
            problem = "unsupported member type, not extracted"
        yield _Member(info.name, None, problem, info.size,
                      lambda info=info: archive.extractfile(info))


def extract_archive(
    archive_path: str | os.PathLike,
    dest: str | os.PathLike,
    *,
    options: FetchOptions | None = None,
    on_progress: ProgressCallback | None = None,
    on_file: Callable[[FileResult], None] | None = None,
) -> tuple[list[FileResult], int]:
    """Extract the audio members of a zip or tar archive into ``dest``, safely.

    Members go to a temporary folder inside ``dest`` and are moved into place once
    written and decoded. Nothing is ever written outside ``dest``.

    Parameters
    ----------
    archive_path : path
        A zip or tar file (gz, bz2 and xz compression recognised by content).
    dest : path
        The destination folder (must exist).

    Returns
    -------
    results : list of FileResult
        One per audio member and per refused member (links, devices, unsafe paths:
        ``failed``).
    n_ignored : int
        Regular members that are not audio files, not extracted.

    Raises
    ------
    DataError
        Not an archive, corrupt, or over the caps (member count, total size).
    """
    options = options or FetchOptions()
    archive_path, dest = Path(archive_path), Path(dest)
    kind = _archive_kind(archive_path)
    if kind is None:
        raise DataError("not a zip or tar archive", path=archive_path)
    ctx = _Context(dest, options)
    results: list[FileResult] = []
    n_ignored = 0
    staged: list[tuple[str, Path]] = []
    tmp = Path(tempfile.mkdtemp(prefix=".harmonizer-extract-", dir=dest))
    try:
        with contextlib.ExitStack() as stack:
            try:
                if kind == "zip":
                    handle = stack.enter_context(zipfile.ZipFile(archive_path))
                    if len(handle.infolist()) > options.max_entries:
                        raise DataError(
                            f"has {len(handle.infolist())} members, more than {options.max_entries}",
                            path=archive_path)
                    members = _zip_members(handle)
                else:
                    handle = stack.enter_context(tarfile.open(archive_path, mode="r:*"))
                    members = _tar_members(handle)
                n_members = 0
                declared_total = 0
                for member in members:
                    n_members += 1
                    if n_members > options.max_entries:
                        raise DataError(f"has more than {options.max_entries} members", path=archive_path)
                    try:
                        member.name = safe_relative_path(member.raw_name)
                    except DataError as exc:
                        results.append(FileResult(repr(member.raw_name)[1:-1], "failed",
                                                  message=f"{exc.message}; not extracted"))
                        continue
                    if member.problem:
                        results.append(FileResult(member.name, "failed", message=member.problem))
                        continue
                    # Every regular member counts, extracted or not: skipping a huge one in
                    # a compressed tar still means decompressing it.
                    declared_total += member.size
                    if declared_total > options.max_total_bytes:
                        raise DataError(
                            f"members total more than {_format_bytes(options.max_total_bytes)} "
                            "uncompressed (--max-bytes)", path=archive_path)
                    if not _is_audio_name(member.name):
                        n_ignored += 1
                        continue
                    if member.size > options.max_file_bytes:
                        results.append(FileResult(member.name, "failed", message=(
                            f"is {_format_bytes(member.size)}, more than the per-file cap")))
                        continue
                    target = tmp / f"{len(staged):06d}{PurePosixPath(member.name).suffix}"
                    problem = _copy_member(member, target, ctx)
                    if problem:
                        results.append(FileResult(member.name, "failed", message=problem))
                        continue
                    staged.append((member.name, target))
            except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, zlib.error,
                    NotImplementedError, RuntimeError) as exc:
                raise DataError(f"cannot extract: corrupt archive or no space ({exc})",
                                path=archive_path) from None
        for result in results:  # the members refused so far
            if on_file is not None:
                on_file(result)
        total = len(staged)
        for done, (name, staged_path) in enumerate(staged):
            result = _place_member(name, staged_path, ctx)
            results.append(result)
            if on_file is not None:
                on_file(result)
            if on_progress is not None:
                on_progress(done + 1, total)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return results, n_ignored


def _copy_member(member: _Member, target: Path, ctx: _Context) -> str | None:
    """Stream one member to ``target`` under the caps; a message when refused."""
    written = 0
    with member.open() as source, open(target, "wb") as out:
        while True:
            block = source.read(1 << 20)
            if not block:
                break
            written += len(block)
            if written > ctx.options.max_file_bytes:
                return "larger than the per-file cap once decompressed"
            try:
                ctx.budget.take(len(block))
            except _PermanentError:
                raise DataError(
                    f"uncompressed audio exceeds {_format_bytes(ctx.options.max_total_bytes)} (--max-bytes)",
                ) from None
            out.write(block)
    return None


def _place_member(name: str, staged: Path, ctx: _Context) -> FileResult:
    try:
        final = _inside(ctx.dest, name)
        final.parent.mkdir(parents=True, exist_ok=True)
        final = _inside(ctx.dest, name)
        if final.is_symlink() or (final.exists() and not final.is_file()):
            return FileResult(name, "failed", message="exists and is not a regular file")
        if final.exists() and not ctx.options.force:
            if final.stat().st_size == staged.stat().st_size and _sha256(final) == _sha256(staged):
                return FileResult(name, "skipped", final.stat().st_size, "already complete")
            return FileResult(name, "failed", message="exists and differs from the archive's (use --force to replace it)")
        _verify_part(RemoteFile(name), staged, ctx)
        n_bytes = staged.stat().st_size
        os.replace(staged, final)
        return FileResult(name, "downloaded", n_bytes)
    except _PermanentError as exc:
        return FileResult(name, "failed", message=str(exc))
    except OSError as exc:
        return FileResult(name, "failed", message=f"cannot write ({exc.strerror or exc})")


def _marker_path(dest: Path, url: str) -> Path:
    return dest / f"{_MARKER_PREFIX}{hashlib.sha256(url.encode()).hexdigest()[:16]}.json"


def _read_marker(marker: Path, dest: Path) -> list[FileResult] | None:
    """Results 'skipped' when every file the archive gave last time is still there."""
    try:
        if marker.stat().st_size > 16 << 20:
            return None
        files = json.loads(marker.read_text(encoding="utf-8"))["files"]
        results = []
        for name, size in files.items():
            path = _inside(dest, safe_relative_path(name))
            if not path.is_file() or path.stat().st_size != size:
                return None
            results.append(FileResult(name, "skipped", size, "already complete"))
        return results
    except (OSError, ValueError, KeyError, TypeError, AttributeError, DataError, _PermanentError):
        return None


def _fetch_archive(
    source: Source,
    dest: Path,
    options: FetchOptions,
    on_progress: ProgressCallback | None,
    on_file: Callable[[FileResult], None] | None,
) -> FetchSummary:
    from harmonizer_cli.core.audio_io import atomic_output

    marker = _marker_path(dest, source.location)
    if not options.force:
        previous = _read_marker(marker, dest)
        if previous:
            if on_progress is not None:
                on_progress(len(previous), len(previous))
            return FetchSummary(str(source), dest, sorted(previous, key=lambda r: r.name))
    if source.kind == "archive_url":
        raw_name = PurePosixPath(urllib.parse.unquote(urllib.parse.urlsplit(source.location).path)).name
        try:
            name = safe_relative_path(raw_name or "archive")
        except DataError:
            name = "archive"
        archive_item = RemoteFile(f".{name}", url=source.location, check_audio=False)
        ctx = _Context(dest, options)
        (result,) = _run_pool([archive_item], ctx, done_before=[], on_progress=None, on_file=None)
        if result.status != "downloaded":
            raise DataError(f"{source.location}: cannot download the archive: {result.message}")
        archive_path = dest / archive_item.name
    else:
        archive_path = Path(source.location)
    try:
        results, n_ignored = extract_archive(
            archive_path, dest, options=options, on_progress=on_progress, on_file=on_file)
    except Exception:
        if source.kind == "archive_url":  # refused or corrupt: do not resume it
            with contextlib.suppress(FileNotFoundError):
                archive_path.unlink()
        raise
    # Interrupted: the downloaded archive stays for the next run. Done: it goes.
    if source.kind == "archive_url":
        with contextlib.suppress(FileNotFoundError):
            archive_path.unlink()
    if not any(r.status == "failed" for r in results) and results:
        done = {r.name: r.n_bytes for r in results}
        with atomic_output(marker, overwrite=True) as tmp:
            tmp.write_text(json.dumps({"source": source.location, "files": done}, indent=1),
                           encoding="utf-8")
    return FetchSummary(str(source), dest, sorted(results, key=lambda r: r.name), n_ignored)


# === Entry point ===


def fetch_dataset(
    source: str | Source = DEFAULT_SOURCE,
    dest: str | os.PathLike = "data/raw",
    *,
    options: FetchOptions | None = None,
    on_progress: ProgressCallback | None = None,
    on_file: Callable[[FileResult], None] | None = None,
) -> FetchSummary:
    """Fetch the audio files of ``source`` into ``dest``.

    Parameters
    ----------
    source : str or Source
        See ``parse_source``; default the paper's data set on GitHub.
    dest : path
        Destination folder, created if missing.
    options : FetchOptions, optional
    on_progress : callable(done, total), optional
        Files finished (downloaded, skipped or failed) out of all files; called in the
        caller's thread.
    on_file : callable(FileResult), optional
        Called once per finished file, in the caller's thread.

    Returns
    -------
    FetchSummary
        One result per file. Per-file failures do not raise: check ``summary.failed``.

    Raises
    ------
    DataError
        The source cannot be listed (missing, not found, not http(s), bad manifest,
        archive refused or corrupt) or lists no audio file.
    OutputError
        ``dest`` cannot be created or written.
    KeyboardInterrupt, Interrupted
        Re-raised after the workers stopped; ``.part`` files are kept for a resume.
    """
    options = options or FetchOptions()
    if not isinstance(source, Source):
        source = parse_source(source)
    dest = Path(dest)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the destination folder ({exc.strerror or exc})", path=dest) from None
    if not dest.is_dir():
        raise OutputError("the destination is not a folder", path=dest)
    if not os.access(dest, os.W_OK):
        raise OutputError("the destination folder is not writable", path=dest)
    if source.kind in ("archive_url", "archive_file"):
        return _fetch_archive(source, dest, options, on_progress, on_file)
    items, rejected, n_ignored = list_source(source, options=options, dest=dest)
    if not items and not rejected:
        raise DataError("the source lists no audio files", path=str(source))
    _check_total_size(items, dest, options)
    ctx = _Context(dest, options)
    for result in rejected:
        if on_file is not None:
            on_file(result)
    results = _run_pool(items, ctx, done_before=rejected, on_progress=on_progress, on_file=on_file)
    return FetchSummary(str(source), dest, sorted(results, key=lambda r: r.name), n_ignored)


def _check_total_size(items: list[RemoteFile], dest: Path, options: FetchOptions) -> None:
    """Refuse at once a listing whose missing files exceed ``max_total_bytes``."""
    needed = 0
    for item in items:
        if item.size is None:
            continue
        final = dest / item.name
        if final.exists() and not options.force:
            continue
        part = _part_path(final)
        have = part.stat().st_size if part.is_file() and not options.force else 0
        needed += max(0, item.size - have)
    if needed > options.max_total_bytes:
        raise DataError(
            f"the files to fetch total {_format_bytes(needed)}, more than the cap "
            f"{_format_bytes(options.max_total_bytes)} (raise --max-bytes)",
        )

