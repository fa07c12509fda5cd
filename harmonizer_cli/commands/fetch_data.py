"""`harmonizer fetch-data`: download the paper's data set (or another source) into a folder."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from harmonizer_cli.console import AppState, log, progress_for
from harmonizer_cli.errors import BatchError

#: Same value as ``harmonizer_cli.core.research.fetch.DEFAULT_SOURCE`` (the core is not imported here).
DEFAULT_SOURCE = "github:Gourav052003/Mix-Music-Splitter-Dataset/Mix Music"

_SOURCE_HELP = (
    "Where to fetch from. github:OWNER/REPO/PATH[@REF] (or a github.com/.../tree/REF/PATH URL) lists "
    "a repository folder through the GitHub API; an http(s) URL ending in an audio extension is one "
    "file, any other http(s) URL a zip or tar(.gz/.bz2/.xz) archive; an existing file is an archive "
    "(by content) or else a manifest (one URL per line, optional sha256 after a space, # comments); "
    "an existing folder has its audio files copied. Only http and https URLs are accepted."
)


def command(
    ctx: typer.Context,
    source: Annotated[str, typer.Option("--source", "-s", help=_SOURCE_HELP)] = DEFAULT_SOURCE,
    dest: Annotated[Path, typer.Option("--dest", "-d", help="Destination folder (created if missing).")] = Path("data/raw"),
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, max=32, help="Files downloaded at the same time.")] = 4,
    force: Annotated[bool, typer.Option("--force", help="Download again files already present, and replace files that differ from the source.")] = False,
    max_bytes: Annotated[str, typer.Option("--max-bytes", help="Most bytes downloaded or extracted in this run (e.g. 500M, 20G; K/M/G are powers of 1024).")] = "20G",
    max_file_bytes: Annotated[str, typer.Option("--max-file-bytes", help="Largest single file accepted.")] = "2G",
    timeout: Annotated[float, typer.Option("--timeout", min=1.0, help="Seconds a connection or read may stall before it is retried.")] = 30.0,
    retries: Annotated[int, typer.Option("--retries", min=0, max=20, help="Retries per file after connection resets, timeouts, truncated bodies, HTTP 5xx and rate limits (exponential backoff).")] = 5,
    github_api: Annotated[str, typer.Option("--github-api", envvar="HARMONIZER_GITHUB_API", help="Base URL of the GitHub REST API. GITHUB_TOKEN, when set, is sent to this host only.")] = "https://api.github.com",
    json_output: Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.")] = False,
) -> None:
    """Download a data set into --dest: by default the paper's 181 mp3 mixes (github:Gourav052003/Mix-Music-Splitter-Dataset, folder "Mix Music").

    Each file is downloaded to NAME.part and renamed only once complete, checked against the listing's size and hash, and decoded. Run it again after a failure or Ctrl-C: finished files are skipped and partial ones resume (HTTP Range). Archives are extracted safely: only audio members, never outside --dest, no links or devices, caps on size and member count.

    Exit codes: 0 every file present, 7 some files failed (the others are kept), 4 the source could not be listed, 130/143 interrupted (run again to resume).
    """  # noqa: E501
    from harmonizer_cli.core.research.fetch import FetchOptions, fetch_dataset, parse_size

    state: AppState = ctx.obj if isinstance(ctx.obj, AppState) else AppState()
    options = FetchOptions(
        jobs=jobs,
        force=force,
        max_total_bytes=parse_size(max_bytes),
        max_file_bytes=parse_size(max_file_bytes),
        timeout_seconds=timeout,
        max_attempts=retries + 1,
        github_api=github_api,
        github_token=os.environ.get("GITHUB_TOKEN") or None,
    )

    def report(result) -> None:  # noqa: ANN001 - a core FileResult
        if result.status == "failed":
            log(state, f"failed: {result.name}: {result.message}")
        else:
            log(state, f"{result.status}: {result.name}", verbose_only=True)

    log(state, f"fetching {source} into {dest}", verbose_only=True)
    with progress_for(state, "Fetching", batch=True) as update:
        summary = fetch_dataset(source, dest, options=options, on_progress=update, on_file=report)

    n_failed = len(summary.failed)
    log(state, (
        f"{len(summary.downloaded)} downloaded ({summary.bytes_downloaded / 2**20:.1f} MiB), "
        f"{len(summary.skipped)} already present, {n_failed} failed"
        + (f", {summary.n_ignored} non-audio entries ignored" if summary.n_ignored else "")
        + f" -> {dest}"
    ))
    if json_output:
        print(json.dumps(summary.to_dict(), indent=2))
    if n_failed:
        raise BatchError(
            f"{n_failed} of {len(summary.results)} files failed (run again to retry; "
            "finished files are kept)",
            path=dest,
        )
