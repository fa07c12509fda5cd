"""The job's own process: build the ``ExtendJob``, run it, report through a pipe.

``JobSpec`` is what the web app knows about a job (names inside its folder, target,
format, seed); ``build_extend_job`` turns it into the CLI's ``ExtendJob`` (the one
adapter between the web app and the extend job handler, video included);
``run_in_child`` runs ``harmonizer_cli.jobs.run_job`` in a child process, sends
its progress, then its record (or its one-line error) to the parent, and
``summarize_waveform`` makes the peak envelope the page draws. The child is
terminated (SIGTERM) to cancel a job: ``run_job`` then removes its partial output.
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from harmonizer_cli.errors import HarmonizerError, Interrupted
from harmonizer_cli.jobs import PROGRESS_UNITS, ExtendJob

__all__ = ["JobSpec", "build_extend_job", "run_in_child", "summarize_waveform", "warm_up", "WAVEFORM_POINTS"]

#: Result formats whose waveform is read block by block through libsndfile.
_BLOCK_READ_FORMATS = frozenset({"wav", "flac", "ogg", "mp3"})
#: Points of the waveform summary (each a min and a max over its stretch of samples).
WAVEFORM_POINTS = 1000


@dataclass(frozen=True)
class JobSpec:
    """One web job, as the child process needs it (picklable; names only, no client paths).

    Attributes
    ----------
    folder : str
        The job's own folder; every file the job reads or writes is in it.
    input : str
        The song's file name in ``folder`` (``input.<suffix>``).
    input_name : str
        The client's name for it, shown in messages and the result instead of the path.
    target_seconds : float or None
        Target length; None with a clip (the clip's duration).
    format : str
        Output extension: an audio format, or the clip's container with a clip.
    seed : int
    use_model : bool
    download_name : str
        The name the result is offered under.
    video, video_name : str or None
        The clip's file name in ``folder`` (``video.<suffix>``) and the client's name for it.
    fade_out_seconds : float or None
        Fade the music out over its last seconds (``fade_out``).
    keep_original_audio_db : float or None
        The clip's own sound mixed under the music at this level (``keep_original_audio``).
    """

    folder: str
    input: str
    input_name: str
    target_seconds: Optional[float]
    format: str
    seed: int
    use_model: bool
    download_name: str
    video: Optional[str] = None
    video_name: Optional[str] = None
    fade_out_seconds: Optional[float] = None
    keep_original_audio_db: Optional[float] = None

    @property
    def output(self) -> Path:
        """Where the job writes its result."""
        return Path(self.folder) / f"result.{self.format}"


def build_extend_job(spec: JobSpec) -> ExtendJob:
    """The ``ExtendJob`` for a web job: the one place the web app speaks the job handler's language.

    With a clip the target is its exact duration (``target_seconds_from``: the same
    probe and limit as ``extend --video``), and the output, ``result.<format>`` with a
    video container as ``format``, is the clip with the music as its soundtrack.

    Raises
    ------
    HarmonizerError
        The clip cannot be probed, or is longer than the longest target.
    """
    from harmonizer_cli.jobs import target_seconds_from

    folder = Path(spec.folder)
    clip = None if spec.video is None else folder / spec.video
    target = float(spec.target_seconds) if clip is None else target_seconds_from(None, None, None, video=clip)
    return ExtendJob(input=folder / spec.input, output=spec.output, target_seconds=target, format=spec.format,
                     seed=spec.seed, use_model=spec.use_model, video=clip, fade_out_seconds=spec.fade_out_seconds,
                     keep_original_audio_db=spec.keep_original_audio_db)


def _envelope(samples, n_points: int) -> tuple[list, list]:
    """Min and max of ``samples`` [shape=(n, channels)] over ``n_points`` equal stretches."""
    import numpy as np

    n_points = max(1, min(n_points, samples.shape[0]))
    edges = np.linspace(0, samples.shape[0], n_points + 1).astype(np.int64)
    lows = np.minimum.reduceat(samples.min(axis=1), edges[:-1])
    highs = np.maximum.reduceat(samples.max(axis=1), edges[:-1])
    return np.round(lows, 4).tolist(), np.round(highs, 4).tolist()


def summarize_waveform(path: Path, *, n_points: int = WAVEFORM_POINTS) -> Optional[dict]:
    """The peak envelope of a written result, for the page's waveform, or None if it cannot be read.

    What libsndfile reads (wav, flac, ogg, mp3) is read in ``n_points`` consecutive
    blocks (never the whole file at once); an m4a or opus result and a video result's
    audio track (mp4, mov, mkv, webm) are decoded whole through ``load_audio`` (PyAV).

    Returns
    -------
    dict or None
        ``{"points", "duration_seconds", "min", "max"}``: per point the lowest and the
        highest sample of any channel, in [-1, 1] (4 decimals).
    """
    import numpy as np
    import soundfile as sf

    from harmonizer_cli.core.audio_io import load_audio

    try:
        if path.suffix.lstrip(".") not in _BLOCK_READ_FORMATS:
            audio = load_audio(path)
            lows, highs = _envelope(audio.samples, n_points)
            return {"points": len(lows), "duration_seconds": round(audio.duration_seconds, 6),
                    "min": lows, "max": highs}
        with sf.SoundFile(str(path)) as handle:
            n_frames, sample_rate = handle.frames, handle.samplerate
            n_points = max(1, min(n_points, n_frames))
            edges = np.linspace(0, n_frames, n_points + 1).astype(np.int64)
            lows, highs = [], []
            for count in np.diff(edges):
                block = handle.read(int(count), dtype="float32", always_2d=True)
                lows.append(round(float(block.min()), 4) if block.size else 0.0)
                highs.append(round(float(block.max()), 4) if block.size else 0.0)
    except (HarmonizerError, sf.LibsndfileError, RuntimeError, ValueError):
        return None
    return {"points": n_points, "duration_seconds": round(n_frames / sample_rate, 6), "min": lows, "max": highs}


def _public(text: str, names: dict[str, str]) -> str:
    """``text`` with the job's temporary paths replaced by the client's names."""
    for path, name in sorted(names.items(), key=lambda item: -len(item[0])):
        text = text.replace(path, name)
    return text


def _names(spec: JobSpec, job: Optional[ExtendJob]) -> dict[str, str]:
    folder = Path(spec.folder)
    names = {str(folder / spec.input): spec.input_name, str(spec.output): spec.download_name}
    if spec.video is not None:
        names[str(folder / spec.video)] = spec.video_name or "clip"
    if job is not None:
        names[str(job.input)] = spec.input_name
    return names


def warm_up() -> None:
    """Nothing: run once in a process at start-up, so the forkserver (with the engine imported) is ready
    before the first job."""


def _raise_interrupted(signal_number: int, frame: object) -> None:
    raise Interrupted(signal_number)


def run_in_child(spec: JobSpec, connection) -> None:
    """A child process's whole life: run one job, send what happens, exit.

    Messages on ``connection`` (a ``multiprocessing`` pipe end): ``("progress",
    fraction)`` as the job goes on, then one of ``("done", record, waveform)`` (the
    ``--json`` record with the client's names instead of paths) or ``("failed",
    message)`` (the one line the CLI prints after ``error: ``). SIGTERM cancels: the
    job's partial output is removed and the process exits 143 without a message.
    """
    signal.signal(signal.SIGTERM, _raise_interrupted)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's: it terminates us
    job: Optional[ExtendJob] = None
    last = [-1]

    def progress(done: int, total: int) -> None:
        if done != last[0]:
            last[0] = done
            connection.send(("progress", done / (total or PROGRESS_UNITS)))

    try:
        from harmonizer_cli.jobs import run_job

        job = build_extend_job(spec)
        record = run_job(job, on_progress=progress).to_json()
        names = _names(spec, job)
        record = {key: names.get(value, value) if isinstance(value, str) else value for key, value in record.items()}
        connection.send(("done", record, summarize_waveform(spec.output)))
    except HarmonizerError as exc:
        message = str(exc) if exc.path is not None else f"{spec.input_name}: {exc}"
        connection.send(("failed", _public(message, _names(spec, job))))
    except Interrupted as exc:
        os._exit(exc.exit_code)  # run_job's clean-up has run on the way here
    except Exception as exc:  # a bug: say so in one line, the traceback goes to the server's log
        traceback.print_exc(file=sys.stderr)
        connection.send(("failed", _public(f"{spec.input_name}: unexpected error ({type(exc).__name__}: {exc}); "
                                           "see the server's log", _names(spec, job))))
    finally:
        connection.close()
