"""The extend job handler: typed jobs and records, the model policy, and the batch runner.

``harmonizer extend`` (and the web app) describe what to do as ``ExtendJob``s, one
per input file, and get one ``ExtendRecord`` back per finished file (its
``to_json()`` is the ``--json`` line). ``run_job`` extends one file and writes it
(an audio file, or with ``--video`` the clip with the extended song as its audio);
``run_jobs`` runs a list of jobs serially or in worker processes, going on past
files that fail. Nothing here prints: messages and progress go to the callbacks
the caller passes (the CLI's ``console``).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from dataclasses import asdict, dataclass
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable, Optional

from harmonizer_cli.core._typing import Predictor, ProgressFn
from harmonizer_cli.core.audio_io import AUDIO_SUFFIXES
from harmonizer_cli.core.audio_out import OUTPUT_FORMATS
from harmonizer_cli.core.video import VIDEO_OUTPUT_FORMATS
from harmonizer_cli.errors import AudioError, BatchError, ConfigError, HarmonizerError, Interrupted, OutputError

__all__ = ["Engine", "OutputFormat", "ExtendJob", "ExtendRecord", "parse_duration", "target_seconds_from",
           "expand_inputs", "output_path_for", "video_format_for", "is_video_output", "make_jobs",
           "resolve_predictor", "run_job", "run_jobs", "MAX_INPUT_SECONDS", "SPOOL_OVER_SECONDS",
           "MAX_NEURAL_INPUT_SECONDS", "MAX_TARGET_SECONDS", "MAX_CLIP_SECONDS"]

#: Longest input and target. Songs up to ``SPOOL_OVER_SECONDS`` are held in memory; longer
#: ones are decoded into a temporary file and read by ranges (``core.decoded``). The output
#: is rendered as it is written, a block at a time, so its length costs disk, not memory.
MAX_INPUT_SECONDS = 2 * 60 * 60
SPOOL_OVER_SECONDS = 5 * 60
MAX_TARGET_SECONDS = 24 * 60 * 60
#: The neural engine holds the whole song and its generated frames in memory.
MAX_NEURAL_INPUT_SECONDS = 20 * 60
#: Longest video clip: a clip's new soundtrack is mixed and muxed whole (1.4 GB at 60 min).
MAX_CLIP_SECONDS = 60 * 60

#: Progress of one job is reported in these units (``on_progress(done, PROGRESS_UNITS)``).
PROGRESS_UNITS = 1000
#: Share of a job's progress at the start of each stage: load, analysis, plan, lay-out,
#: render-and-write (the output is rendered as it is written: the longest part of a long job).
_STAGE_STARTS = (0.0, 0.05, 0.2, 0.45, 0.55)


class Engine(str, Enum):
    """``--engine``: how the output is made."""

    guided = "guided"
    neural = "neural"


OutputFormat = Enum("OutputFormat", {name: name for name in (*OUTPUT_FORMATS, *VIDEO_OUTPUT_FORMATS)}, type=str)
OutputFormat.__doc__ = """``--format``: the output container, when not given by ``-o``'s extension
(audio formats, and with ``--video`` the video containers mp4, mov, mkv and webm)."""


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


def target_seconds_from(minutes: Optional[float], seconds: Optional[float], duration: Optional[str], *,
                        video: Optional[Path] = None, hours: Optional[float] = None) -> float:
    """The target length from exactly one of ``--hours``, ``--minutes``, ``--seconds``,
    ``--duration`` or ``--video``.

    With ``video``, the clip's exact duration (its video stream's, or its container's
    when it has none).

    Raises
    ------
    ConfigError
        None or several given, or a value out of range (a clip over the limit).
    AudioError
        The clip cannot be read.
    """
    given = [value is not None for value in (hours, minutes, seconds, duration)]
    if video is not None:
        if any(given):
            raise ConfigError("--video sets the target length (the clip's duration): "
                              "drop --hours, --minutes, --seconds and --duration")
        from harmonizer_cli.core.media import probe_media

        clip_seconds = probe_media(video).duration_seconds
        if clip_seconds > MAX_CLIP_SECONDS:
            raise ConfigError(f"the clip is {clip_seconds / 60:.1f} minutes long; clips of at most "
                              f"{MAX_CLIP_SECONDS // 60} minutes are accepted", path=video)
        return clip_seconds
    if sum(given) != 1:
        raise ConfigError("give exactly one of --hours, --minutes, --seconds, --duration or --video")
    if hours is not None:
        value = hours * 3600.0
    elif minutes is not None:
        value = minutes * 60.0
    elif seconds is not None:
        value = float(seconds)
    else:
        value = parse_duration(duration)  # type: ignore[arg-type]
    if not value > 0 or value > MAX_TARGET_SECONDS:
        raise ConfigError(f"the target duration must be more than 0 and at most "
                          f"{MAX_TARGET_SECONDS // 3600} hours, got {value:g} s")
    return value


def expand_inputs(inputs: Iterable[Path]) -> list[Path]:
    """Files to extend: each file as given, each folder's audio files (sorted, not recursive,
    earlier outputs ``*.extended.*`` left out).

    Raises
    ------
    AudioError
        A folder that holds no audio files.
    """
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


def output_path_for(source: Path, *, output: Optional[Path], out_dir: Optional[Path],
                    format: Optional[str]) -> Path:
    """``-o`` when given, else ``<stem>.extended.<format or wav>`` beside the input or in ``--out-dir``."""
    if output is not None:
        return output
    folder = out_dir if out_dir is not None else source.parent
    return folder / f"{source.stem}.extended.{format or 'wav'}"


def video_format_for(output: Optional[Path], format: Optional[str]) -> Optional[str]:
    """The video container (mp4, mov, mkv, webm) ``--format`` or ``output``'s extension names, else None."""
    name = (format or (output.suffix.lstrip(".") if output is not None else "")).lower()
    return name if name in VIDEO_OUTPUT_FORMATS else None


def is_video_output(output: Path, format: Optional[str]) -> bool:
    """Whether ``output`` (with ``--format``) is a video container: mp4, mov, mkv or webm."""
    return video_format_for(output, format) is not None


@dataclass(frozen=True)
class ExtendJob:
    """One file to extend: everything ``run_job`` needs (picklable, for worker processes).

    Attributes
    ----------
    input, output : Path
    target_seconds : float
    format : str or None
        Output format; None: from ``output``'s extension.
    seed : int
    force : bool
        Overwrite an existing output (never the input).
    engine : str
        ``"guided"`` or ``"neural"``.
    model : Path or None
        Model folder; None: the shipped default.
    use_model : bool
        False: the guided engine on similarity alone (``--no-model``).
    video : Path or None
        The clip the music is for (``--video``): ``target_seconds`` is its duration; a
        video ``output`` is the clip with the music as its audio.
    fade_out_seconds : float or None
        Fade the extended music out over its last seconds (``--fade-out``).
    keep_original_audio_db : float or None
        Mix the clip's own sound under the music at this level (``--keep-original-audio``).
    """

    input: Path
    output: Path
    target_seconds: float
    format: Optional[str] = None
    seed: int = 0
    force: bool = False
    engine: str = Engine.guided.value
    model: Optional[Path] = None
    use_model: bool = True
    video: Optional[Path] = None
    fade_out_seconds: Optional[float] = None
    keep_original_audio_db: Optional[float] = None


@dataclass
class ExtendRecord:
    """What ``run_job`` did: the ``--json`` record of one file (keys never renamed or dropped)."""

    input: str
    output: str
    input_seconds: float
    output_seconds: float
    target_seconds: float
    sample_rate: int
    channels: int
    seams: list
    segments: list
    engine: str
    model: Optional[str]
    fallback: Optional[str]
    tempo_bpm: Optional[float]
    beats_per_bar: Optional[int]
    stretch: Optional[dict]
    seed: int
    timings: dict
    video: Optional[str] = None
    video_seconds: Optional[float] = None

    def to_json(self) -> dict:
        """The record as a JSON-able dict, in this field order."""
        return asdict(self)


def _check_video_options(*, target_seconds: float, output: Optional[Path], format: Optional[str],
                         video: Optional[Path], fade_out_seconds: Optional[float],
                         keep_original_audio_db: Optional[float]) -> None:
    """The checks of ``--video``, ``--fade-out`` and ``--keep-original-audio`` made before any work."""
    import math

    video_format = video_format_for(output, format)
    if video is None:
        if video_format is not None:
            raise ConfigError(f"a video output (.{video_format}) needs --video CLIP: the clip whose picture it keeps",
                              path=output)
        if keep_original_audio_db is not None:
            raise ConfigError("--keep-original-audio needs --video CLIP (the clip whose sound it keeps)")
    if fade_out_seconds is not None and not (0 < fade_out_seconds <= target_seconds):
        raise ConfigError(f"--fade-out must be more than 0 and at most the target length "
                          f"({target_seconds:g} s), got {fade_out_seconds:g}")
    if keep_original_audio_db is not None and not math.isfinite(keep_original_audio_db):
        raise ConfigError(f"--keep-original-audio must be a level in dB (such as -12), got {keep_original_audio_db}")
    if video is None:
        return
    from harmonizer_cli.core.media import probe_media
    from harmonizer_cli.core.video import check_can_mux

    info = probe_media(video)
    if keep_original_audio_db is not None and not info.has_audio:
        raise ConfigError("the clip has no audio to keep (--keep-original-audio)", path=video)
    if video_format is not None:
        check_can_mux(info, video_format, path=output)


def make_jobs(inputs: Iterable[Path], *, target_seconds: float, output: Optional[Path] = None,
              out_dir: Optional[Path] = None, format: Optional[str] = None, seed: int = 0, force: bool = False,
              engine: str = Engine.guided.value, model: Optional[Path] = None,
              use_model: bool = True, video: Optional[Path] = None, fade_out_seconds: Optional[float] = None,
              keep_original_audio_db: Optional[float] = None) -> list[ExtendJob]:
    """One ``ExtendJob`` per input file, after checking the options work together.

    Raises
    ------
    ConfigError
        Options that exclude each other, ``-o`` with several inputs, a video output
        without ``--video``, a clip whose video the output container cannot hold,
        ``--keep-original-audio`` with a clip without sound.
    AudioError
        A folder without audio files; a clip that cannot be read.
    OutputError
        ``out_dir`` cannot be created.
    """
    if not use_model and model is not None:
        raise ConfigError("--model and --no-model exclude each other")
    if not use_model and engine == Engine.neural.value:
        raise ConfigError("the neural engine needs a model: drop --no-model")
    _check_video_options(target_seconds=target_seconds, output=output, format=format, video=video,
                         fade_out_seconds=fade_out_seconds, keep_original_audio_db=keep_original_audio_db)
    files = expand_inputs(inputs)
    if output is not None and len(files) != 1:
        raise ConfigError("-o/--output takes one input; use --out-dir for several")
    if output is not None and out_dir is not None:
        raise ConfigError("give -o/--output or --out-dir, not both")
    if out_dir is not None:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create the folder ({exc.strerror})", path=out_dir) from exc
    return [ExtendJob(input=source, output=output_path_for(source, output=output, out_dir=out_dir, format=format),
                      target_seconds=target_seconds, format=format, seed=seed, force=force, engine=engine,
                      model=model, use_model=use_model, video=video, fade_out_seconds=fade_out_seconds,
                      keep_original_audio_db=keep_original_audio_db) for source in files]


@lru_cache(maxsize=4)
def _load_predictor(model: Optional[Path]) -> Predictor:
    from harmonizer_cli.core.model import load_predictor

    return load_predictor(model)


def resolve_predictor(job: ExtendJob) -> Optional[Predictor]:
    """The model policy, in one place: which predictor (if any) a job runs with.

    ``--no-model``: none (the guided engine plans on similarity alone). Otherwise the
    model folder given, or the shipped default; a model that cannot be loaded is an
    error (``ModelError``, exit 5), never silently dropped. Loaded models are kept for
    the next job of a batch.
    """
    if not job.use_model:
        return None
    return _load_predictor(job.model)


class _JobProgress:
    """One job's progress in ``PROGRESS_UNITS``, stage by stage (see ``_STAGE_STARTS``)."""

    LOAD, ANALYSIS, PLAN, RENDER, WRITE = range(5)

    def __init__(self, on_progress: ProgressFn) -> None:
        self.on_progress = on_progress

    def at(self, stage: int, done: float = 0.0, total: float = 1.0) -> None:
        """Report ``done / total`` of the way through ``stage``."""
        if self.on_progress is None:
            return
        lo = _STAGE_STARTS[stage]
        hi = _STAGE_STARTS[stage + 1] if stage + 1 < len(_STAGE_STARTS) else 1.0
        share = lo + (hi - lo) * (done / total if total else 0.0)
        self.on_progress(int(round(PROGRESS_UNITS * share)), PROGRESS_UNITS)

    def engine(self, done: int, total: int) -> None:
        """``extend_audio``'s callback: its stages finish at 1, 2 and 3 of 3 (analysis, plan, render)."""
        self.at(min(self.ANALYSIS + done * 3 // max(total, 1), self.WRITE))


def run_job(job: ExtendJob, *, on_progress: ProgressFn = None) -> ExtendRecord:
    """Extend one file and write it.

    Parameters
    ----------
    job : ExtendJob
    on_progress : callable(done, total), optional
        Called as the job goes on, in ``PROGRESS_UNITS``.

    Returns
    -------
    ExtendRecord

    Raises
    ------
    HarmonizerError
        Whatever makes the file fail (bad audio, model, output); nothing is left behind
        (a song over ``SPOOL_OVER_SECONDS``, decoded into a temporary file, is read from
        it until the output is written; the file is deleted on the way out, whatever
        happens, and has no name to leave behind even if the process is killed).
    """
    from harmonizer_cli.core.audio_io import load_audio
    from harmonizer_cli.core.audio_out import check_output_path

    started = time.perf_counter()
    progress = _JobProgress(on_progress)
    inputs = (job.input,) if job.video is None else (job.input, job.video)
    check_output_path(job.output, overwrite=job.force, inputs=inputs)
    video_format = video_format_for(job.output, job.format)
    if video_format is not None and job.video is None:
        raise ConfigError("a video output needs --video CLIP: the clip whose picture it keeps", path=job.output)
    progress.at(progress.LOAD)
    clock = time.perf_counter()
    max_seconds = MAX_NEURAL_INPUT_SECONDS if job.engine == Engine.neural.value else MAX_INPUT_SECONDS
    audio = load_audio(job.input, max_seconds=max_seconds, spool_over_seconds=SPOOL_OVER_SECONDS)
    load_seconds = time.perf_counter() - clock
    with audio:  # (a long song's temporary file is deleted however this ends)
        return _extend_and_write(job, audio, started=started, load_seconds=load_seconds, progress=progress,
                                 video_format=video_format, inputs=inputs, reporting=on_progress is not None)


def _extend_and_write(job: ExtendJob, audio, *, started: float, load_seconds: float, progress: _JobProgress,
                      video_format: Optional[str], inputs: tuple, reporting: bool) -> ExtendRecord:
    """``run_job`` once the song is loaded: extend, write, and the record."""
    from harmonizer_cli.core.audio_io import Audio, output_subtype_for
    from harmonizer_cli.core.audio_out import output_format_for, save_audio
    from harmonizer_cli.core.extend import extend_audio

    on_progress = progress.on_progress if reporting else None
    predictor = resolve_predictor(job)
    result = extend_audio(audio, target_seconds=job.target_seconds, engine=job.engine, predictor=predictor,
                          seed=job.seed, path=str(job.input),
                          on_progress=progress.engine if on_progress is not None else None)
    clock = time.perf_counter()
    if job.keep_original_audio_db is not None or video_format is not None:
        music = result.samples  # a clip's length (60 minutes at most): mixed and muxed whole
        if job.fade_out_seconds is not None:  # after the extension: the real ending is still there, under the fade
            from harmonizer_cli.core.media import fade_out

            music = fade_out(music, result.sample_rate, job.fade_out_seconds)
    else:  # rendered as it is written, a block at a time (an output of hours never whole in memory)
        music = result.output
        if job.fade_out_seconds is not None:
            from harmonizer_cli.core.media import FadedOut

            music = FadedOut(music, result.sample_rate, job.fade_out_seconds)
    if job.keep_original_audio_db is not None and job.video is not None:
        from harmonizer_cli.core.media import read_clip_audio
        from harmonizer_cli.core.video import mix_under

        clip_sound = read_clip_audio(job.video, sample_rate=result.sample_rate, n_channels=music.shape[1],
                                     n_samples=music.shape[0])
        music = mix_under(music, clip_sound, level_db=job.keep_original_audio_db)
    if video_format is not None:
        from harmonizer_cli.core.media import encoded_sample_rate
        from harmonizer_cli.core.video import mux_soundtrack

        mux_soundtrack(job.video, Audio(music, result.sample_rate), job.output,  # type: ignore[arg-type]
                       format=video_format, overwrite=job.force, inputs=(job.input,))
        written_rate = encoded_sample_rate(VIDEO_OUTPUT_FORMATS[video_format][1], result.sample_rate)
    else:
        out_format = output_format_for(job.output, job.format)
        save_audio(job.output, music, result.sample_rate, format=job.format,
                   subtype=output_subtype_for(job.input, out_format), overwrite=job.force, inputs=inputs,
                   on_progress=None if on_progress is None else
                   (lambda done, total: progress.at(progress.WRITE, done, total)))
        written_rate = _written_rate(out_format, result.sample_rate)
    progress.at(progress.WRITE, 1, 1)
    timings = {"load": round(load_seconds, 4), **result.timings,
               "write": round(time.perf_counter() - clock, 4),
               "total": round(time.perf_counter() - started, 4)}
    return ExtendRecord(
        input=str(job.input), output=str(job.output), input_seconds=round(audio.duration_seconds, 6),
        output_seconds=round(result.duration_seconds, 6), target_seconds=job.target_seconds,
        sample_rate=written_rate, channels=result.n_channels, seams=result.seams_seconds,
        segments=result.segments, engine=result.engine, model=result.model, fallback=result.fallback,
        tempo_bpm=result.tempo_bpm, beats_per_bar=result.beats_per_bar, stretch=result.stretch, seed=job.seed,
        timings=timings, video=None if job.video is None else str(job.video),
        video_seconds=None if job.video is None else round(job.target_seconds, 6))


def _written_rate(format: str, sample_rate: int) -> int:
    """The sample rate an audio output is written at (Opus: 48 kHz unless the music is at a rate it takes)."""
    from harmonizer_cli.core.audio_out import OUTPUT_FORMATS
    from harmonizer_cli.core.media import AUDIO_OUTPUT_CODECS, encoded_sample_rate

    if format in AUDIO_OUTPUT_CODECS and format in OUTPUT_FORMATS:
        return encoded_sample_rate(AUDIO_OUTPUT_CODECS[format][1], sample_rate)
    return sample_rate


# ----------------------------------------------------------------------------- batches

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


def _run_caught(job: ExtendJob) -> tuple[Optional[ExtendRecord], Optional[str]]:
    """A job whose error comes back as its one-line message (``<file>: <what>``)."""
    try:
        return run_job(job), None
    except HarmonizerError as exc:
        return None, str(exc) if exc.path is not None else f"{job.input}: {exc}"
    except Interrupted as exc:
        if _IN_WORKER:  # the output was cleaned up on the way here: stop now, take no next job
            os._exit(exc.exit_code)
        raise


def run_jobs(jobs: list[ExtendJob], *, workers: int = 1, on_record: Callable[[ExtendRecord], None],
             on_error: Callable[[str], None], on_progress: Optional[Callable[..., None]] = None) -> int:
    """Run a batch of jobs, serially or in ``workers`` processes, going on past failures.

    A single job runs in this process with its errors raised as they are (and its
    progress reported stage by stage); a batch reports files done (``on_progress(done,
    total, text=name)``), calls ``on_error`` with each failed file's message and raises
    ``BatchError`` at the end if any failed. On Ctrl-C or SIGTERM the workers stop at
    once and each removes its partial output.

    Returns
    -------
    int
        Files extended.

    Raises
    ------
    BatchError
        Some files of a batch failed (the others are written).
    """
    if len(jobs) == 1:
        on_record(run_job(jobs[0], on_progress=on_progress))
        return 1
    failures = 0
    progress = on_progress or (lambda done, total, text=None: None)
    with contextlib.ExitStack() as stack:
        progress(0, len(jobs))
        pool = None
        if workers > 1:
            import concurrent.futures
            import multiprocessing

            context = multiprocessing.get_context("spawn" if sys.platform == "darwin" else "forkserver")
            if context.get_start_method() == "forkserver":
                context.set_forkserver_preload(["harmonizer_cli._pool_quiet"])
            pool = stack.enter_context(concurrent.futures.ProcessPoolExecutor(
                max_workers=min(workers, len(jobs)), mp_context=context, initializer=_worker_init))
            results = pool.map(_run_caught, jobs)
        else:
            results = map(_run_caught, jobs)
        try:
            for done, (job, (record, error)) in enumerate(zip(jobs, results), start=1):
                progress(done, len(jobs), text=job.input.name)
                if error is not None:
                    failures += 1
                    on_error(error)
                else:
                    on_record(record)
        except (Interrupted, KeyboardInterrupt):
            if pool is not None:  # stop the workers now (each removes its partial output)
                import threading

                # the pool's manager thread may trip over the workers it loses: we are
                # leaving anyway, and the one line the user sees is the interruption
                threading.excepthook = lambda args: None
                pool.shutdown(wait=False, cancel_futures=True)
                for child in multiprocessing.active_children():
                    child.terminate()
            raise
    if failures:
        raise BatchError(f"{len(jobs) - failures} of {len(jobs)} files extended; {failures} failed")
    return len(jobs)
