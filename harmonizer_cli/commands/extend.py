"""`harmonizer extend`: extend (or shorten) songs to an exact duration."""

from __future__ import annotations

import contextlib

import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from harmonizer_cli.console import AppState, log, progress_for
from harmonizer_cli.errors import AudioError, BatchError, ConfigError, HarmonizerError, Interrupted, ModelError

__all__ = ["command", "parse_duration"]

#: Extensions picked up when a folder is given as input.
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".mp3", ".m4a", ".aac", ".aiff", ".aif", ".opus", ".wma"}
_FORMATS = ("wav", "flac", "ogg", "mp3")


def parse_duration(text: str) -> float:
    """Seconds in ``MM:SS`` or ``HH:MM:SS`` (fractional seconds allowed).

    Raises
    ------
    ConfigError
        If ``text`` is not such a duration.
    """
    match = re.fullmatch(r"\s*(?:(\d+):)?(\d+):(\d+(?:\.\d*)?)\s*", text)
    if not match:
        raise ConfigError(f"--duration must be MM:SS or HH:MM:SS, got {text!r}")
    hours = int(match.group(1) or 0)
    minutes, seconds = int(match.group(2)), float(match.group(3))
    if seconds >= 60 or (match.group(1) is not None and minutes >= 60):
        raise ConfigError(f"--duration {text!r}: minutes and seconds must be below 60")
    return hours * 3600 + minutes * 60 + seconds


#: Longest input and target. The whole song and the whole output are held in memory (not
#: streamed); the decoded output alone is 1.4 GB for 60 min at 48 kHz stereo.
MAX_INPUT_SECONDS = 20 * 60
MAX_TARGET_SECONDS = 60 * 60


def _target_seconds(minutes: Optional[float], seconds: Optional[float], duration: Optional[str]) -> float:
    given = [value is not None for value in (minutes, seconds, duration)]
    if sum(given) != 1:
        raise ConfigError("give exactly one of --minutes, --seconds or --duration")
    if minutes is not None:
        value = minutes * 60.0
    elif seconds is not None:
        value = float(seconds)
    else:
        value = parse_duration(duration)  # type: ignore[arg-type]
    if not value > 0 or value > MAX_TARGET_SECONDS:
        raise ConfigError(f"the target duration must be more than 0 and at most "
                          f"{MAX_TARGET_SECONDS // 60} minutes, got {value:g} s")
    return value


def _expand_inputs(inputs: list[Path]) -> list[Path]:
    files: list[Path] = []
    for item in inputs:
        if item.is_dir():
            found = sorted(p for p in item.iterdir()
                           if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES and ".extended." not in p.name)
            if not found:
                raise AudioError("folder holds no audio files", path=item)
            files.extend(found)
        else:
            files.append(item)
    return files


def _output_for(source: Path, *, output: Optional[Path], out_dir: Optional[Path], format: Optional[str]) -> Path:
    if output is not None:
        return output
    ext = format or "wav"  # the issue: "default: the output's extension, else wav" (encoding mp3 is slow)
    folder = out_dir if out_dir is not None else source.parent
    return folder / f"{source.stem}.extended.{ext}"


def _process_one(job: dict) -> dict:
    """Extend one file and write it; returns the JSON record. Runs in a worker process too."""
    from harmonizer_cli.core.audio_io import load_audio, output_format_for, output_subtype_for, save_audio
    from harmonizer_cli.core.extend import extend_audio

    started = time.perf_counter()
    source, destination = Path(job["input"]), Path(job["output"])
    from harmonizer_cli.core.audio_io import check_output_path

    check_output_path(destination, overwrite=job["force"], inputs=(source,))
    clock = time.perf_counter()
    audio = load_audio(source, max_seconds=MAX_INPUT_SECONDS)
    load_seconds = time.perf_counter() - clock
    predictor = None
    model_name = None
    if job["use_model"]:
        from harmonizer_cli.core.model import load_predictor

        try:
            predictor = load_predictor(job["model"])
        except ModelError:
            if job["model"] is not None or job["engine"] == "neural":
                raise
            predictor = None  # no shipped default yet: similarity alone
    if job["engine"] == "neural" and predictor is None:
        raise ModelError("no model available: the neural engine needs a trained model "
                         "(--model PATH, or a shipped default)")
    result = extend_audio(audio, target_seconds=job["target_seconds"], engine=job["engine"],
                          predictor=predictor, seed=job["seed"], path=str(source))
    if predictor is not None:
        model_name = getattr(predictor, "name", "model")
    clock = time.perf_counter()
    save_audio(destination, result.samples, result.sample_rate, format=job["format"],
               subtype=output_subtype_for(source, output_format_for(destination, job["format"])),
               overwrite=job["force"], inputs=(source,))
    timings = {"load": round(load_seconds, 4), **result.timings,
               "write": round(time.perf_counter() - clock, 4),
               "total": round(time.perf_counter() - started, 4)}
    return {
        "input": str(source),
        "output": str(destination),
        "input_seconds": round(audio.duration_seconds, 6),
        "output_seconds": round(result.duration_seconds, 6),
        "target_seconds": job["target_seconds"],
        "sample_rate": result.sample_rate,
        "channels": int(result.samples.shape[1]),
        "seams": result.seams_seconds,
        "segments": result.segments,
        "engine": result.engine,
        "model": model_name,
        "fallback": result.fallback,
        "tempo_bpm": result.tempo_bpm,
        "beats_per_bar": result.beats_per_bar,
        "stretch": result.stretch,
        "seed": job["seed"],
        "timings": timings,
    }


_IN_WORKER = False


def _raise_interrupted(signal_number: int, frame: object) -> None:
    raise Interrupted(signal_number)


def _worker_init() -> None:
    """Pool workers: SIGTERM (sent by the parent when it is interrupted) raises
    ``Interrupted``, so the job's partial output is removed; Ctrl-C is the parent's."""
    global _IN_WORKER
    import signal

    _IN_WORKER = True
    signal.signal(signal.SIGTERM, _raise_interrupted)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run_job(job: dict) -> tuple[dict | None, str | None, int]:
    """Worker wrapper: an error comes back as its message and exit code."""
    try:
        return _process_one(job), None, 0
    except HarmonizerError as exc:
        message = str(exc) if exc.path is not None else f"{job['input']}: {exc}"
        return None, message, exc.exit_code
    except Interrupted as exc:
        if _IN_WORKER:  # the output was cleaned up on the way here: stop now, take no next job
            os._exit(exc.exit_code)
        raise


def command(
    ctx: typer.Context,
    inputs: Annotated[list[Path], typer.Argument(
        help="Audio files, or folders (their audio files, sorted, not recursive).", show_default=False)],
    minutes: Annotated[Optional[float], typer.Option("--minutes", "-m", help="Target length in minutes.")] = None,
    seconds: Annotated[Optional[float], typer.Option("--seconds", "-s", help="Target length in seconds.")] = None,
    duration: Annotated[Optional[str], typer.Option("--duration", "-d", help="Target length as MM:SS or HH:MM:SS.")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Output file (one input only).")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out-dir", help="Folder for the outputs (created if missing).")] = None,
    format: Annotated[Optional[str], typer.Option("--format", "-f", help="wav, flac, ogg or mp3. Default: the extension of -o/--output, else wav (default names are <stem>.extended.wav).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed: the same seed and input give the same output.")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing outputs (never the input).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per input on stdout.")] = False,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Files processed in parallel (processes).")] = 1,
    engine: Annotated[str, typer.Option("--engine", help="guided (default): recombines the song's own beats, "
                                        "keeps its real beginning and ending. neural: the seed paper's method, "
                                        "appends model-predicted 1 s frames to the original: expect mushy, noisy "
                                        "audio; for research comparison only (needs a model).")] = "guided",
    model: Annotated[Optional[Path], typer.Option("--model", help="Model folder that guides the choice of jumps "
                                                  "(guided) or generates (neural). Default: the shipped model, if any.")] = None,
    no_model: Annotated[bool, typer.Option("--no-model", help="Guided engine on musical similarity alone.")] = False,
) -> None:
    """Extend (or shorten) songs to an exact duration, keeping their real beginning and ending.

    The guided engine analyses beats, bars, harmony, timbre and loudness, then
    plays the song's own beginning, a middle recomposed from its own bars
    (jumps only where the musical context matches, each seam a short
    beat-aligned crossfade) and its real ending, untouched. Every seam is
    checked against the song's own moments (sample step, spectral jump) and a
    path whose seam stands out is re-planned. The length matches
    the request within 10 ms without padding or trimming: each seam may move by
    up to 10 ms to absorb the fraction of a beat that is left, and what the
    seams cannot absorb is taken by a local, pitch-preserving time-stretch
    (WSOLA) of 2-20 s of the steadiest passage between the seams (at most
    3 %, typically 2 %; pitch unchanged; reported as "stretch" in --json:
    factor and output region). The song's first seconds and its real
    ending are never stretched. A target shorter than the song shortens it
    the same way (forward jumps).

    Fallbacks: input shorter than 6 s (or fewer than 8 beats) and digital
    silence are errors (exit 3); music without a detectable pulse is cut on a
    fixed 0.5 s grid with longer (80 ms) crossfades whose seams may move freely
    ("fallback": "no-pulse" in --json).

    --json prints, per input, one line: input, output, input_seconds,
    output_seconds, target_seconds, sample_rate, channels, seams (output times,
    s), segments (source_start, source_end, output_start, s), engine, model,
    fallback, tempo_bpm, beats_per_bar, stretch ({"factor", "region_seconds"}
    or null), seed, timings (s).

    The neural engine needs a model; it only extends, appending frames after
    the untouched original (no real ending: that is the paper's method).
    """
    state: AppState = ctx.obj if isinstance(ctx.obj, AppState) else AppState()
    # one BLAS thread (set before numpy loads; a user's setting wins): the matrices here
    # are small, and threads only contend with each other and with --jobs workers
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")
    target = _target_seconds(minutes, seconds, duration)
    if engine not in ("guided", "neural"):
        raise ConfigError(f"--engine must be guided or neural, got {engine!r}")
    if format is not None:
        format = format.lower()
        if format not in _FORMATS:
            raise ConfigError(f"--format must be one of {', '.join(_FORMATS)}, got {format!r}")
    if no_model and model is not None:
        raise ConfigError("--model and --no-model exclude each other")
    if no_model and engine == "neural":
        raise ConfigError("the neural engine needs a model: drop --no-model")
    files = _expand_inputs(list(inputs))
    if output is not None and len(files) != 1:
        raise ConfigError("-o/--output takes one input; use --out-dir for several")
    if output is not None and out_dir is not None:
        raise ConfigError("give -o/--output or --out-dir, not both")
    if out_dir is not None:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            from harmonizer_cli.errors import OutputError

            raise OutputError(f"cannot create the folder ({exc.strerror})", path=out_dir) from exc
    jobs_list = [{
        "input": str(source),
        "output": str(_output_for(source, output=output, out_dir=out_dir, format=format)),
        "format": format,
        "target_seconds": target,
        "seed": seed,
        "force": force,
        "engine": engine,
        "model": str(model) if model is not None else None,
        "use_model": not no_model,
    } for source in files]

    def report(record: dict) -> None:
        if as_json:
            print(json.dumps(record), flush=True)
        log(state, f"{record['input']} -> {record['output']} ({record['output_seconds']:.2f} s, "
                   f"{len(record['seams'])} seams)")

    if len(jobs_list) == 1:
        with progress_for(state, f"extending {Path(jobs_list[0]['input']).name}") as update:
            update(0, 1)
            record = _process_one(jobs_list[0])  # errors propagate with their own exit code
            update(1, 1)
        report(record)
        return

    failures: list[str] = []
    with progress_for(state, "extending", batch=True) as update, contextlib.ExitStack() as stack:
        update(0, len(jobs_list))
        if jobs > 1:
            import concurrent.futures
            import multiprocessing

            context = multiprocessing.get_context("spawn" if sys.platform == "darwin" else "forkserver")
            pool = stack.enter_context(concurrent.futures.ProcessPoolExecutor(
                max_workers=min(jobs, len(jobs_list)), mp_context=context, initializer=_worker_init))
            results = pool.map(_run_job, jobs_list)
        else:
            pool = None
            results = map(_run_job, jobs_list)
        try:
            for done, (job, (record, error, _code)) in enumerate(zip(jobs_list, results), start=1):
                update(done, len(jobs_list), text=Path(job["input"]).name)
                if error is not None:
                    failures.append(job["input"])
                    print(f"error: {error}", file=sys.stderr, flush=True)
                else:
                    report(record)
        except (Interrupted, KeyboardInterrupt):
            if pool is not None:  # stop the workers now (each removes its partial output)
                pool.shutdown(wait=False, cancel_futures=True)
                for child in multiprocessing.active_children():
                    child.terminate()
            raise
    summary = f"{len(jobs_list) - len(failures)} of {len(jobs_list)} files extended"
    if failures:
        raise BatchError(f"{summary}; {len(failures)} failed")
    log(state, summary)
