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

Modules: ``options`` (options and records), ``paths`` (safe names, hashes,
verification), ``http`` (requests, retries, ranged downloads), ``sources`` (parsing
and listing sources), ``archive`` (safe extraction), ``download`` (``fetch_dataset``
and its worker pool). This package re-exports their public names.
"""

from __future__ import annotations

from harmonizer_cli.core.research.fetch.archive import extract_archive
from harmonizer_cli.core.research.fetch.download import fetch_dataset
from harmonizer_cli.core.research.fetch.options import (
    DEFAULT_GITHUB_API, DEFAULT_SOURCE, FetchOptions, FetchSummary, FileResult, RemoteFile, Source,
    parse_size,
)
from harmonizer_cli.core.research.fetch.paths import (
    git_blob_sha1, safe_relative_path, verify_audio,
)
from harmonizer_cli.core.research.fetch.sources import list_source, parse_source

__all__ = [
    "DEFAULT_SOURCE",
    "DEFAULT_GITHUB_API",
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
