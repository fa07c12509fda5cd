"""What a fetch is told and what it reports: options, sources, files, results, sizes.

``FetchOptions`` holds the limits, retries and concurrency of a run; ``Source``,
``RemoteFile``, ``FileResult`` and ``FetchSummary`` are the records passed between
listing, downloading and reporting. Also the three failure kinds the other modules
raise internally (retry, give up, stopped) and the size parser of ``--max-bytes``.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from harmonizer_cli import __version__
from harmonizer_cli.errors import ConfigError

#: The paper's public data set: 181 mp3 mixes.
DEFAULT_SOURCE = "github:Gourav052003/Mix-Music-Splitter-Dataset/Mix Music"
DEFAULT_GITHUB_API = "https://api.github.com"

_GiB = 1 << 30


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


# === Failures between the modules ===


class _RetryableError(Exception):
    """A transient failure: try again after ``wait_seconds`` (None: backoff)."""

    def __init__(self, message: str, *, wait_seconds: float | None = None) -> None:
        super().__init__(message)
        self.wait_seconds = wait_seconds


class _PermanentError(Exception):
    """A failure that another try will not fix (404, bad hash, caps, disk)."""


class _Stopped(Exception):
    """The run was interrupted; the worker leaves its ``.part`` file and returns."""


# === Sizes ===


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
