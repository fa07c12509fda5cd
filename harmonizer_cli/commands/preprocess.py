"""`harmonizer preprocess`: songs -> frame shards + manifest with a by-song split."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from harmonizer_cli.console import AppState, log, progress_for
from harmonizer_cli.errors import BatchError


def command(
    ctx: typer.Context,
    input: Annotated[Path, typer.Option("--input", "-i", help="Folder of songs (searched recursively; mp3, ogg, flac, wav...).")] = Path("data/raw"),
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for manifest.json and songs/<id>.npy frame shards (created; reused incrementally).")] = Path("data/processed"),
    representation: Annotated[str, typer.Option("--representation", "-r", help="Frame representation: logmel (default; 256 numbers per second) or waveform (the paper's 22050 samples).")] = "logmel",
    hop: Annotated[int, typer.Option("--hop", min=1, help="Seconds between the starts of consecutive (20 s in, 10 s out) windows of a song.")] = 2,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the train/validation/test split by song.")] = 0,
    validation: Annotated[Optional[float], typer.Option("--validation", min=0.0, max=1.0, help="Fraction of the songs held out for validation. Default: 0.1, or what --test leaves when that is less.")] = None,
    test: Annotated[float, typer.Option("--test", min=0.0, max=1.0, help="Fraction of the songs held out for test; 1.0 makes every song a test song (music to evaluate on, never to train on).")] = 0.1,
    exclude: Annotated[Optional[list[str]], typer.Option("--exclude", "-x", metavar="PATTERN", help="Leave out files whose relative path, name or stem matches this glob (repeatable), e.g. 'wesnoth-*'.")] = None,
    exclude_from: Annotated[Optional[Path], typer.Option("--exclude-from", metavar="FILE", help="Leave out the files matching any pattern of FILE (one glob per line; # comments).")] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Worker processes decoding songs in parallel.")] = 1,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 7 when any file could not be decoded (default: report and skip it).")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")] = False,
) -> None:
    """Decode songs to 22050 Hz mono, cut whole songs into 1-second frames, compute the
    representation, and write one shard per song plus manifest.json.

    Windows (20 s in, 10 s out, every --hop seconds) are indexed, not copied. Songs
    are split train/validation/test by song with --seed, so no window of a test song
    is ever trained on; --test 1.0 makes a folder of songs to evaluate on only.
    --exclude/--exclude-from leave files out entirely. Unchanged songs (same size, mtime and settings) are not
    decoded again; undecodable files are reported and skipped.
    """
    from harmonizer_cli.core.research.preprocess import PreprocessConfig, preprocess_dataset, read_pattern_file

    state: AppState = ctx.obj or AppState()
    patterns = list(exclude or []) + (read_pattern_file(exclude_from) if exclude_from is not None else [])
    if validation is None:
        validation = round(min(0.1, 1.0 - test), 6)
    config = PreprocessConfig(representation=representation, hop=hop, seed=seed,
                              validation_fraction=validation, test_fraction=test, jobs=jobs,
                              exclude=tuple(patterns))
    with progress_for(state, "preprocessing", batch=True) as update:
        result = preprocess_dataset(input, output, config=config, on_progress=update)
    for failure in result.failed:
        log(state, f"warning: {failure['source']}: skipped ({failure['error']})")
    summary = result.summary()
    if json_output:
        print(json.dumps(summary, indent=2))
    else:
        log(state, (f"{summary['songs']} songs ({result.processed} decoded, {result.skipped} unchanged, "
                    f"{len(result.failed)} failed, {summary['excluded']} excluded) -> {output}: windows train {summary['train_windows']}, "
                    f"validation {summary['validation_windows']}, test {summary['test_windows']}"))
    if strict and result.failed:
        raise BatchError(f"{len(result.failed)} of {len(result.failed) + summary['songs']} files "
                         "could not be decoded", path=input)
