"""`harmonizer evaluate`: score a model against baselines, or an extended file against its original."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from harmonizer_cli.console import AppState, progress_for, stderr
from harmonizer_cli.errors import ConfigError

_EXTENSION = "Extension quality"


def _same_file(a: str | Path, b: Path) -> bool:
    try:
        return Path(a).resolve() == b.resolve() or Path(a).name == b.name
    except OSError:
        return False


def _read_seams(path: Path, extended: Path) -> tuple[list[float], float | None]:
    """Seam times (and the target length, when known) from a JSON file.

    Accepts a JSON list of seconds, an object with a ``seams`` list (one line of
    ``harmonizer extend --json``), or several such lines (the one whose ``output`` is
    ``extended`` is used).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the seams file ({exc.strerror})", path=path) from exc
    records = []
    try:
        records = [json.loads(text)]
    except json.JSONDecodeError:
        try:
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise ConfigError(f"not JSON or JSON lines ({exc.msg}, line {exc.lineno})", path=path) from exc
    if len(records) == 1 and isinstance(records[0], list):
        record: object = {"seams": records[0]}
    else:
        matching = [r for r in records if isinstance(r, dict) and _same_file(r.get("output", ""), extended)]
        if len(matching) == 1 or (not matching and len(records) == 1):
            record = (matching or records)[0]
        else:
            raise ConfigError(f"no single record with output {extended.name} among {len(records)}", path=path)
    if not isinstance(record, dict) or not isinstance(record.get("seams"), list):
        raise ConfigError("expected a list of seam times or an object with a 'seams' list", path=path)
    try:
        seams = [float(t) for t in record["seams"]]
    except (TypeError, ValueError) as exc:
        raise ConfigError("seam times must be numbers (seconds)", path=path) from exc
    target = record.get("target_seconds")
    return seams, (float(target) if isinstance(target, (int, float)) else None)


def _print_extension_table(report: dict, checks: dict, original: Path, extended: Path) -> None:
    from rich.table import Table

    from harmonizer_cli.core.quality import summary_rows

    table = Table(title=f"{extended.name} against {original.name}", title_justify="left")
    for column in ("measure", "output", "original / reference", "target", "met"):
        table.add_column(column, justify="left" if column in ("measure", "target") else "right")
    marks = {True: "[green]yes[/green]", False: "[red]NO[/red]", None: "-"}
    for measure, value, reference, target, met in summary_rows(report, checks):
        table.add_row(measure, value, reference, target, marks[met])
    stderr.print(table)
    applicable = [v for v in checks.values() if v is not None]
    stderr.print(f"{sum(applicable)}/{len(applicable)} targets met", markup=False)


def _evaluate_extension(state: AppState, original: Path, extended: Path, *, seams_path: Optional[Path],
                        target_seconds: Optional[float], as_json: bool) -> None:
    import numpy as np

    from harmonizer_cli.core.audio_io import load_audio
    from harmonizer_cli.core.quality import extension_report, targets_met

    seams = None
    if seams_path is not None:
        seams, recorded_target = _read_seams(seams_path, extended)
        target_seconds = target_seconds if target_seconds is not None else recorded_target
    original_audio = load_audio(original)
    extended_audio = load_audio(extended)
    # numpy warns on 0/0 for silent stretches (digital silence): the measures handle it
    with progress_for(state, f"measuring {extended.name}") as update, np.errstate(divide="ignore", invalid="ignore"):
        report = extension_report(original_audio, extended_audio, seams=seams, target_seconds=target_seconds,
                                  on_progress=lambda done, total: update(done, total))
    checks = targets_met(report)
    if as_json:
        print(json.dumps({"original": str(original), "extended": str(extended), **report, "targets_met": checks}),
              flush=True)
    elif not state.quiet:
        _print_extension_table(report, checks, original, extended)


def command(
    ctx: typer.Context,
    model: Annotated[Optional[Path], typer.Option(
        "--model", help="Model folder to evaluate. Default: the shipped model.")] = None,
    data: Annotated[Path, typer.Option(
        "--data", help="Preprocessed dataset folder (from `harmonizer preprocess`).")] = Path("data/processed"),
    split: Annotated[str, typer.Option("--split", help="Which split's windows to score: train, validation (or val), test, or all (every song of the folder, e.g. one preprocessed with --test 1.0).")] = "test",
    max_windows: Annotated[Optional[int], typer.Option(
        "--max-windows", min=1, help="Score at most this many windows (one every 10 s of each song).")] = 400,
    plots: Annotated[Optional[Path], typer.Option(
        "--plots", help="Write spectrogram and loss-curve PNG files to this folder.")] = None,
    candidates: Annotated[int, typer.Option(
        "--candidates", min=2, help="Ranking: the true next 10 s among this many segments of the same song "
                                    "(the truth included).")] = 16,
    seed: Annotated[int, typer.Option("--seed", help="Ranking: seed of the candidate segments.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout instead of a table.")] = False,
    extension: Annotated[Optional[tuple[Path, Path]], typer.Option(
        "--extension", metavar="ORIGINAL EXTENDED", rich_help_panel=_EXTENSION,
        help="Instead of a model, measure an extended file against its original: seams, level dips, "
             "repetition, ending and mood (works for any extender's output).")] = None,
    seams: Annotated[Optional[Path], typer.Option(
        "--seams", rich_help_panel=_EXTENSION,
        help="JSON with the seam times of EXTENDED: a list of seconds, or the `harmonizer extend --json` "
             "output. Without it, seams are found by aligning EXTENDED to ORIGINAL.")] = None,
    target_seconds: Annotated[Optional[float], typer.Option(
        "--target-seconds", rich_help_panel=_EXTENSION,
        help="Requested length, for the duration error (read from --seams when it is extend's JSON).")] = None,
) -> None:
    """Score a trained model against trivial baselines on held-out windows, or, with
    --extension, an extended song against its original.

    Model mode: ranking first: for every window of --split, the true next 10 s
    against --candidates minus one other 10 s segments of the same song that overlap
    neither the context nor the truth, ranked by the model's score, by the cosine of
    the context's last second and each candidate's first (what extend does without
    a model) and by chance: top-1 and mean reciprocal rank (JSON: "ranking"). Then,
    on held-out windows (20 s in, 10 s out), the model and three baselines computed
    in the same run (silence, repeat the last 10 s, copy the most similar earlier
    10 s) are scored with waveform MSE per frame (the paper's metric), log-mel
    distance and chroma and MFCC similarity.

    Extension mode: seam detectability (sample-step crest, spectral novelty and,
    for lossy sources, energy above the codec cut-off, each as the 95th percentile
    at the seams over that at the original's beats), the deepest level dip,
    repetition (share of frames repeating at one single lag), the ending
    (correlation of the last 10 s) and mood (tempo, key, loudness, spectral
    centroid), each against its target (README, Benchmarks). A table on stderr, or
    with --json one JSON object on stdout.
    """
    state: AppState = ctx.obj if isinstance(ctx.obj, AppState) else AppState()
    if extension is not None:
        original, extended = extension
        _evaluate_extension(state, original, extended, seams_path=seams, target_seconds=target_seconds,
                            as_json=as_json)
        return
    if seams is not None or target_seconds is not None:
        raise ConfigError("--seams and --target-seconds go with --extension ORIGINAL EXTENDED")
    _evaluate_model(state, model=model, data=data, split=split, plots=plots, as_json=as_json,
                    max_windows=max_windows, candidates=candidates, seed=seed)


def _print_ranking(ranking: dict, split: str) -> None:
    from rich.table import Table

    if not ranking.get("n_windows"):
        stderr.print(f"ranking: not measured ({ranking.get('skipped_reason', 'no window')})", markup=False)
        return
    table = Table(title=f"ranking: the true next 10 s among {ranking['candidates']} segments of the same song "
                        f"({ranking['n_windows']} windows, {ranking['n_songs']} {split} songs)")
    for column in ("ranked by", "top-1 (higher)", "mean reciprocal rank (higher)"):
        table.add_column(column, justify="left" if column == "ranked by" else "right")
    for method, label in (("model", "model"), ("similarity", "similarity (last 1 s vs first 1 s)"),
                          ("random", "random")):
        if ranking.get(f"{method}_top1") is not None:
            table.add_row(label, f"{ranking[f'{method}_top1']:.3f}", f"{ranking[f'{method}_mrr']:.3f}")
    stderr.print(table)


def _evaluate_model(state: AppState, *, model: Optional[Path], data: Path, split: str,
                    plots: Optional[Path], as_json: bool, max_windows: Optional[int],
                    candidates: int, seed: int) -> None:
    from harmonizer_cli.core.research.evaluation import evaluate_model

    split = {"val": "validation"}.get(split, split)
    with progress_for(state, f"evaluating on the {split} split", batch=True) as update:
        document = evaluate_model(model=model, data=data, split=split, plots=plots,
                                  max_windows=max_windows, ranking_candidates=candidates,
                                  ranking_seed=seed, on_progress=update)
    if as_json:
        print(json.dumps(document))
        return
    if state.quiet:
        return
    from rich.table import Table

    _print_ranking(document["ranking"], split)
    table = Table(title=f"{document['model_name']} on {document['n_windows']} held-out windows "
                        f"({document['n_songs']} {split} songs), 20 s in, 10 s out")
    table.add_column("predictor")
    for name, header in (("waveform_mse", "waveform MSE / frame (lower)"),
                         ("logmel_distance_db", "log-mel distance dB (lower)"),
                         ("chroma_similarity", "chroma similarity (higher)"),
                         ("mfcc_similarity", "MFCC similarity (higher)")):
        table.add_column(header, justify="right")
    for method, row in document["rows"].items():
        table.add_row(method, *(f"{row[k]:.4f}" for k in ("waveform_mse", "logmel_distance_db",
                                                          "chroma_similarity", "mfcc_similarity")))
    stderr.print(table)
    for path in document["plots"]:
        stderr.print(f"wrote {path}", markup=False)
