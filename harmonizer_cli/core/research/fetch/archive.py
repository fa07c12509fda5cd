"""Safe extraction of zip and tar archives, and the marker of an archive already fetched.

Archives are never extracted with ``extractall``: only regular members with an
audio extension are written, each to a temporary folder inside the destination and
moved into place once decoded. Unsafe names, links and devices are reported as
failed; member count and total size are capped (zip bombs). After a complete
extraction a marker file lets the next run skip the archive.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator

from harmonizer_cli.core._typing import ProgressFn
from harmonizer_cli.core.research.fetch.http import _Context
from harmonizer_cli.core.research.fetch.options import (
    FetchOptions, FileResult, RemoteFile, _format_bytes, _PermanentError,
)
from harmonizer_cli.core.research.fetch.paths import _inside, _is_audio_name, _sha256, _verify_part, safe_relative_path
from harmonizer_cli.errors import DataError

_MARKER_PREFIX = ".harmonizer-fetch-"


def _archive_kind(path: Path) -> str | None:
    if zipfile.is_zipfile(path):
        return "zip"
    with contextlib.suppress(OSError, tarfile.TarError, EOFError, ValueError):
        if tarfile.is_tarfile(path):
            return "tar"
    return None


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
    on_progress: ProgressFn = None,
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
    tmp = Path(tempfile.mkdtemp(prefix=".harmonizer-extract-", dir=dest))
    try:
        with contextlib.ExitStack() as stack:
            try:
                members = _open_members(stack, kind, archive_path, options)
                results, staged, n_ignored = _stage_members(members, archive_path, tmp, ctx)
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


def _open_members(
    stack: contextlib.ExitStack, kind: str, archive_path: Path, options: FetchOptions
) -> Iterator[_Member]:
    """Open the archive (closed with ``stack``) and return its members, lazily."""
    if kind == "zip":
        handle = stack.enter_context(zipfile.ZipFile(archive_path))
        if len(handle.infolist()) > options.max_entries:
            raise DataError(
                f"has {len(handle.infolist())} members, more than {options.max_entries}",
                path=archive_path)
        return _zip_members(handle)
    handle = stack.enter_context(tarfile.open(archive_path, mode="r:*"))
    return _tar_members(handle)


def _stage_members(
    members: Iterator[_Member], archive_path: Path, tmp: Path, ctx: _Context
) -> tuple[list[FileResult], list[tuple[str, Path]], int]:
    """Write the audio members to ``tmp`` under the caps, in archive order.

    Returns
    -------
    results : list of FileResult
        The members refused (unsafe names, links, devices, over the per-file cap).
    staged : list of (name, Path)
        Each written member's safe name and its file in ``tmp``.
    n_ignored : int
        Regular members that are not audio files.

    Raises
    ------
    DataError
        More members or more bytes than the caps.
    """
    options = ctx.options
    results: list[FileResult] = []
    staged: list[tuple[str, Path]] = []
    n_ignored = 0
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
    return results, staged, n_ignored


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
