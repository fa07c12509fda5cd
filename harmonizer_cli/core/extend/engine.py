"""``extend_audio``: extend (or shorten) a song to an exact duration, and its result.

``guided`` (the default) keeps the song's real beginning and real ending and
recomposes the middle from the song's own beats: ``analysis`` -> ``plan`` (checked
by the seam ``audit``) -> ``render`` -> ``stretch`` to the exact length.

``neural`` is the seed paper's method: from the last 20 s predict 10 s of frames,
append, repeat; rendered by the predictor (``render_frames``) and appended to the
untouched original (there is no real ending: the paper only appends). It needs a
model and sounds like the paper's output (mushy, noisy); it exists for research
comparison and only extends.
"""

from __future__ import annotations

import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum
from typing import Optional

import numpy as np

from harmonizer_cli.core._typing import Predictor, ProgressFn
from harmonizer_cli.core.audio_io import MODEL_SAMPLE_RATE, Audio, resample, to_mono
from harmonizer_cli.core.decoded import is_on_disk, spooled_view
from harmonizer_cli.core.extend.analysis import analyze_song
from harmonizer_cli.core.extend.audit import Deferred, SeamReference, audited_plan
from harmonizer_cli.core.extend.guidance import TargetCost
from harmonizer_cli.core.extend.render import Timeline, splice
from harmonizer_cli.core.extend.stretch import Output, finish_length
from harmonizer_cli.errors import AudioError, ConfigError, ModelError

__all__ = ["Engine", "ENGINES", "ExtensionResult", "extend_audio"]


class Engine(str, Enum):
    """How ``extend_audio`` makes the output."""

    GUIDED = "guided"
    NEURAL = "neural"


ENGINES = tuple(engine.value for engine in Engine)


@dataclass
class ExtensionResult:
    """An extended song and how it was made.

    Attributes
    ----------
    output : stretch.Output
        The output at the input's sample rate and channel count, rendered on demand:
        ``output.blocks()`` gives it a block at a time (an output of hours is never
        whole in memory), ``output.read(start, stop)`` any range; ``samples`` all of it.
    sample_rate : int
    seams_seconds : list of float
        Output times of the seams (crossfade centres).
    segments : list of dict
        ``{"source_start", "source_end", "output_start"}`` in seconds, in order.
    engine : str
    model : str or None
        Name of the predictor used, None without one.
    fallback : str or None
        ``"no-pulse"`` when the song had no detectable beat.
    tempo_bpm : float or None
        None for the neural engine.
    beats_per_bar : int or None
    stretch : dict or None
        The local, pitch-preserving time-stretch that made the length exact:
        ``{"factor": output / input length of the region (> 1 lengthens),
        "region_seconds": [start, end] in the output}``; None when none was needed.
    timings : dict
        Seconds spent in ``analysis``, ``plan`` and ``render``.
    """

    output: Output
    sample_rate: int
    seams_seconds: list
    segments: list
    engine: str
    model: Optional[str]
    fallback: Optional[str]
    tempo_bpm: Optional[float]
    beats_per_bar: Optional[int]
    stretch: Optional[dict] = None
    timings: dict = field(default_factory=dict)

    @property
    def n_samples(self) -> int:
        return self.output.n_samples

    @property
    def n_channels(self) -> int:
        return self.output.n_channels

    @property
    def samples(self) -> np.ndarray:
        """The whole output [shape=(n_samples, n_channels), dtype=float32] (rendered at each call)."""
        return self.output.read(0, self.output.n_samples)

    @property
    def duration_seconds(self) -> float:
        return self.n_samples / float(self.sample_rate)


def _extend_neural(audio: Audio, mono: np.ndarray, target_seconds: float, predictor: Predictor,
                   on_progress: ProgressFn, *, path: Optional[str] = None) -> np.ndarray:
    n_target = int(round(target_seconds * audio.sample_rate))
    if n_target <= audio.n_samples:
        raise ConfigError("the neural engine only extends: the target must be longer than the song "
                          "(use the guided engine to shorten)")
    features = np.asarray(predictor.frame_features(mono), dtype=np.float32)
    n_in = int(predictor.n_input_frames)
    frame_seconds = float(predictor.frame_seconds)
    if features.shape[0] < n_in:
        raise AudioError(f"too short for the neural engine (needs {n_in * frame_seconds:.0f} s of context)",
                         path=path)
    # the last frame is zero-padded by framing: use whole frames only as context
    whole = int(mono.size // int(round(frame_seconds * MODEL_SAMPLE_RATE)))
    history = features[:max(whole, n_in)]
    missing = target_seconds - audio.duration_seconds
    n_frames_needed = int(np.ceil(missing / frame_seconds))
    generated = []
    total = 0
    while total < n_frames_needed:
        context = history[-n_in:][None]
        predicted = np.asarray(predictor.predict(context), dtype=np.float32)[0]
        generated.append(predicted)
        history = np.concatenate([history, predicted], axis=0)
        total += predicted.shape[0]
        if on_progress:
            on_progress(min(total, n_frames_needed), n_frames_needed)
    frames = np.concatenate(generated, axis=0)[:n_frames_needed]
    rendered = np.asarray(predictor.render_frames(frames), dtype=np.float32).reshape(-1)
    rendered = resample(rendered, from_rate=MODEL_SAMPLE_RATE, to_rate=audio.sample_rate)
    rendered = np.repeat(rendered[:, None], audio.n_channels, axis=1)
    need = n_target - audio.n_samples
    if rendered.shape[0] < need:
        rendered = np.concatenate([rendered, np.zeros((need - rendered.shape[0], audio.n_channels), np.float32)])
    peak = float(np.max(np.abs(rendered))) if rendered.size else 0.0
    if peak > 1.0:
        rendered = rendered / peak
    return np.concatenate([audio.samples, rendered[:need]], axis=0)


def _neural_result(audio: Audio, mono: np.ndarray, target_seconds: float, predictor: Optional[Predictor], *,
                   path: Optional[str], on_progress: ProgressFn) -> ExtensionResult:
    if predictor is None:
        raise ModelError("no model available: the neural engine needs a trained model (--model PATH)")
    if float(np.max(np.abs(mono))) < 1e-4:
        raise AudioError("is digital silence: nothing to extend", path=path)
    clock = time.perf_counter()
    out = _extend_neural(audio, mono, target_seconds, predictor, on_progress, path=path)
    length = round(audio.duration_seconds, 4)
    segments = [{"source_start": 0.0, "source_end": length, "output_start": 0.0},
                {"source_start": None, "source_end": None, "output_start": length, "generated": True}]
    return ExtensionResult(Output(Timeline.of_array(out)), audio.sample_rate, [length], segments,
                           Engine.NEURAL.value, predictor.name, None, None, None, None,
                           {"render": round(time.perf_counter() - clock, 4)})


@contextlib.contextmanager
def _second_thread(*, enabled: bool = True):
    """An executor of one thread, shut down on leaving (work not yet started is dropped);
    when not ``enabled``, one that runs each task when its result is asked for."""
    if not enabled:
        yield Deferred()
        return
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="harmonizer-song")
    try:
        yield executor
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def extend_audio(
    audio: Audio,
    *,
    target_seconds: float,
    engine: str = "guided",
    predictor: Optional[Predictor] = None,
    seed: int = 0,
    path: str | None = None,
    on_progress: ProgressFn = None,
) -> ExtensionResult:
    """Extend or shorten ``audio`` to ``target_seconds``.

    Parameters
    ----------
    audio : Audio
        The original samples (their rate and channel count are kept): an array, or a
        long song's ``decoded.DecodedFile`` (read by ranges; it must stay open until the
        output has been read: the output is rendered from it on demand).
    target_seconds : float
        Requested output length in seconds (> 0).
    engine : {"guided", "neural"}
        ``guided`` recombines the song's beats (default); ``neural`` appends the
        predictor's frames (the seed paper's method; needs ``predictor``).
    predictor : Predictor, optional
        Guides the ``guided`` engine (target cost); required by ``neural``.
    seed : int
        Same seed and input give the same output.
    path : str, optional
        Named in error messages.
    on_progress : callable(done, total), optional
        Called as the stages finish (analysis, plan, render).

    Returns
    -------
    ExtensionResult

    Raises
    ------
    AudioError
        Too short to analyse (< 2 s) or digital silence.
    ConfigError
        Unknown engine, non-positive target, or the neural engine asked to shorten.
    ModelError
        ``neural`` without a predictor.
    """
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r} (choose from {', '.join(ENGINES)})")
    if not np.isfinite(target_seconds) or target_seconds <= 0:
        raise ConfigError(f"the target duration must be positive, got {target_seconds}")
    clock = time.perf_counter()
    on_disk = is_on_disk(audio.samples)  # a long song, decoded to a temporary file and read by ranges
    if on_disk and engine == Engine.NEURAL.value:
        raise ConfigError("the neural engine holds the whole song in memory: it takes songs of at most "
                          "20 minutes (use the guided engine)")
    if on_disk:
        if audio.samples.view is None:
            audio.samples.view = spooled_view(audio.samples, audio.sample_rate, MODEL_SAMPLE_RATE)
        mono = audio.samples.view
    else:  # (the mono mix at the song's rate serves the seams too: ``song_mono`` below)
        full_mono = to_mono(audio.samples)
        mono = resample(full_mono, from_rate=audio.sample_rate, to_rate=MODEL_SAMPLE_RATE)  # to_model_view
    if engine == Engine.NEURAL.value:
        return _neural_result(audio, mono, target_seconds, predictor, path=path, on_progress=on_progress)
    progress = on_progress or (lambda done, total: None)
    timings: dict = {}
    progress(0, 3)
    song_mono = audio.samples.mono() if on_disk else full_mono
    # what depends on the song alone (the model's costs, the seams' reference) is found
    # on the second core while the first analyses the song and plans; a long song's
    # stages run one after the other (each holds its own blocks: together they would
    # double the peak memory)
    with _second_thread(enabled=not on_disk) as executor:
        guidance_future = executor.submit(TargetCost, predictor, mono) if predictor is not None else None
        reference = SeamReference(audio, song_mono, mono, executor=executor)
        analysis = analyze_song(mono, path=path)
        timings["analysis"] = round(time.perf_counter() - clock, 4)
        progress(1, 3)
        clock = time.perf_counter()
        guidance = guidance_future.result() if guidance_future is not None else None
        guidance_seconds = time.perf_counter() - clock
        audited = audited_plan(audio, analysis, target_seconds, seed=seed, guidance=guidance, song_mono=song_mono,
                               view=mono, reference=reference)
        seconds = audited.seconds
        if not audited.reaches and analysis.fallback is None:
            # no beat-grid path comes close enough (a short clip extended by less than a
            # bar, say): the fine no-pulse grid can cut anywhere
            analysis = analyze_song(mono, path=path, force_grid=True)
            audited = audited_plan(audio, analysis, target_seconds, seed=seed, guidance=guidance,
                                   song_mono=song_mono, view=mono, reference=reference)
            seconds = {key: seconds[key] + audited.seconds[key] for key in seconds}
    timings["plan"] = round(guidance_seconds + seconds["plan"], 4)
    progress(2, 3)
    clock = time.perf_counter()
    # (the audit laid the kept plan out already)
    spliced = audited.spliced or splice(audio, analysis, audited.plan, target_seconds, song_mono=song_mono)
    try:
        out, seams, segments, stretch = finish_length(spliced, audio.sample_rate)
    except AudioError as exc:  # (the stretch knows no file name)
        raise AudioError(exc.message, path=exc.path or path) from None
    timings["render"] = round(seconds["render"] + time.perf_counter() - clock, 4)
    progress(3, 3)
    return ExtensionResult(
        output=out, sample_rate=audio.sample_rate, seams_seconds=seams, segments=segments,
        engine=Engine.GUIDED.value, model=predictor.name if predictor is not None else None,
        fallback=analysis.fallback, tempo_bpm=round(analysis.tempo_bpm, 2),
        beats_per_bar=analysis.beats_per_bar, stretch=stretch, timings=timings,
    )
