"""Fetching a data set: ``fetch_dataset``, its worker pool, and one file into place.

``fetch_dataset`` checks the destination, lists the source (or extracts the
archive) and runs ``_run_pool``: ``jobs`` daemon threads that each take a file,
download or copy it to ``<name>.part``, verify it and rename it to its final name.
Results and progress are reported in the caller's thread.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import threading
import time
import urllib.parse
from pathlib import Path, PurePosixPath
from typing import Callable

from harmonizer_cli.core._typing import ProgressFn
from harmonizer_cli.core.research.fetch.archive import _marker_path, _read_marker, extract_archive
from harmonizer_cli.core.research.fetch.http import _Context, _download_to_part
from harmonizer_cli.core.research.fetch.options import (
    DEFAULT_SOURCE, FetchOptions, FetchSummary, FileResult, RemoteFile, Source,
    _format_bytes, _PermanentError, _Stopped,
)
from harmonizer_cli.core.research.fetch.paths import _inside, _matches, _part_path, _verify_part, safe_relative_path
from harmonizer_cli.core.research.fetch.sources import list_source, parse_source
from harmonizer_cli.errors import DataError, OutputError


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
    on_progress: ProgressFn,
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


def _fetch_archive(
    source: Source,
    dest: Path,
    options: FetchOptions,
    on_progress: ProgressFn,
    on_file: Callable[[FileResult], None] | None,
) -> FetchSummary:
    from harmonizer_cli.core.audio_out import atomic_output

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
    on_progress: ProgressFn = None,
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
