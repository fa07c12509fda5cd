"""The seam audit: every rendered seam is measured, and a path with a seam that stands out is re-planned.

Each seam is measured as the quality benchmark measures seams: the sample-step crest
within +-5 ms and the spectral jump between the 50 ms either side (``quality.seams``)
against the song's own moments (the 80th percentile over points every 50 ms), and the
groove (``quality.groove``: the phase of the song's pulse in the 3 s before against
the 3 s after, against the song's own jitter). A jump whose seam stands out or
stumbles is banned, with the same jump a beat either side, and the path re-planned,
at most ``SEAM_AUDIT_ROUNDS`` plans in all; the least exposed is kept.
"""

from __future__ import annotations

from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Optional

import numpy as np

from harmonizer_cli.core.audio_io import MODEL_SAMPLE_RATE, Audio, resample, to_mono
from harmonizer_cli.core.extend.analysis import SongAnalysis
from harmonizer_cli.core.extend.guidance import TargetCost
from harmonizer_cli.core.extend.plan import (
    PlannedPath, plan_path,
)
from harmonizer_cli.core.extend.render import Spliced, splice
from harmonizer_cli.core.extend.stretch import stretch_can_finish
from harmonizer_cli.core.quality.groove import (
    GROOVE_GAP_SECONDS, GROOVE_WINDOW_SECONDS, Pulse, find_pulse, onset_envelope, phase_jumps,
)
from harmonizer_cli.core.quality.seams import seam_exposure

__all__ = ["audited_plan", "AuditedPlan", "SeamReference", "Deferred", "exposure_limits", "SEAM_AUDIT_ROUNDS",
           "EXPOSURE_PERCENTILE"]

#: A seam is exposed where it reads above this percentile of the song's own moments.
EXPOSURE_PERCENTILE = 80.0
#: Plans tried at most when rendered seams are more exposed than the song's own moments.
SEAM_AUDIT_ROUNDS = 4


def exposure_limits(audio: Audio, song_mono: np.ndarray, duration: float) -> np.ndarray:
    """How exposed the song's own moments are: a high percentile of crest and novelty [2].

    Measured every 50 ms (at most 1000 points, evenly spread): a seam should not
    stand out among the song's own moments (``EXPOSURE_PERCENTILE``, the 80th).
    (At the analysis beats themselves the measures read high: the beats sit on the
    onsets. Over all moments the 90th percentile is, on 10 of the 12 songs of
    ../shared/music/songs, at or below the 95th percentile at librosa's beats, the
    benchmark's reference, and within 6 % of it on the other two; the 80th leaves a
    margin, which quiet orchestral music needs.)
    ``duration`` is the song's, in seconds.
    """
    step = max(0.05, duration / 1000.0)
    points = np.arange(0.2, duration - 0.2, step)
    values = seam_exposure(audio.samples, song_mono, sample_rate=audio.sample_rate, points=points)
    limits = np.array([np.nanpercentile(values[:, k], EXPOSURE_PERCENTILE) if np.isfinite(values[:, k]).any() else np.inf
                       for k in range(2)])
    return np.maximum(limits, 1e-6)


class Deferred(Executor):
    """An executor that runs each task on the thread that first asks for its result (a
    long song's stages, one after the other), behind the same ``Future`` as a thread's."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        return _DeferredFuture(fn, args, kwargs)


class _DeferredFuture(Future):
    def __init__(self, fn, args, kwargs) -> None:
        super().__init__()
        self._call = (fn, args, kwargs)

    def result(self, timeout=None):
        if self._call is not None:
            fn, args, kwargs = self._call
            self._call = None
            try:
                self.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # (raised again just below, as a thread's future does)
                self.set_exception(exc)
        return super().result(timeout)


class SeamReference:
    """What rendered seams are measured against: the song's exposure limits and its pulse.

    Both depend on the song alone; ``executor`` finds them: on another thread while the
    song is analysed and planned (the cold command's two cores), or when first asked
    for (``Deferred``, the default). ``limits`` and ``pulse`` wait for them.
    """

    def __init__(self, audio: Audio, song_mono: np.ndarray, view: np.ndarray, *,
                 executor: Optional[Executor] = None) -> None:
        executor = executor or Deferred()
        self._futures: dict[str, Future] = {
            "limits": executor.submit(exposure_limits, audio, song_mono, view.size / MODEL_SAMPLE_RATE),
            "groove": executor.submit(_groove, view),
        }

    def _value(self, name: str):
        return self._futures[name].result()

    @property
    def limits(self) -> np.ndarray:
        """``exposure_limits`` of the song [2]."""
        return self._value("limits")

    @property
    def groove(self) -> tuple:
        """``(envelope, frame_rate, pulse)``: the song's ``groove.onset_envelope`` (on its
        view) and its pulse (``groove.find_pulse``, None without one)."""
        return self._value("groove")

    @property
    def pulse(self) -> Optional[Pulse]:
        """The song's pulse (``groove.find_pulse`` on its view), None without one."""
        return self.groove[2]


def _groove(view: np.ndarray) -> tuple:
    envelope, frame_rate = onset_envelope(view, sample_rate=MODEL_SAMPLE_RATE)
    return envelope, frame_rate, find_pulse(envelope, frame_rate)


def _seam_exposure_of(spliced, jumps: list, limits: np.ndarray, sample_rate: int,
                      pulse: Optional[Pulse]) -> np.ndarray:
    """The worst of crest and novelty at each rendered seam over the song's limits, and of
    the groove's phase jump over the song's own jitter (1 = as exposed as allowed).

    Each seam is rendered with the output around it (3.2 s either side, what the groove
    measure reads); a jump taken many times (a long output) is measured where it is
    first taken, and that reading stands for every time it is taken.
    """
    worst = np.zeros(len(spliced.seams))
    reach = int((GROOVE_WINDOW_SECONDS + GROOVE_GAP_SECONDS + 0.1) * sample_rate)
    measured: dict = {}
    for k, (seam, jump) in enumerate(zip(spliced.seams, jumps)):
        if jump in measured:
            worst[k] = measured[jump]
            continue
        at_sample = int(round(seam * sample_rate))
        window_start = max(0, at_sample - reach)
        window = spliced.timeline.read(window_start, at_sample + reach)
        mono = to_mono(window)
        at = (at_sample - window_start) / sample_rate
        exposure = seam_exposure(window, mono, sample_rate=sample_rate, points=np.array([at]))[0] / limits
        worst[k] = float(np.nan_to_num(np.max(exposure), nan=0.0))
        if pulse is not None:
            envelope, frame_rate = onset_envelope(resample(mono, from_rate=sample_rate, to_rate=MODEL_SAMPLE_RATE),
                                                  sample_rate=MODEL_SAMPLE_RATE)
            jumps_k = np.abs(phase_jumps(envelope, frame_rate, np.array([at]), pulse)[0]) / pulse.thresholds
            if np.isfinite(jumps_k).any():
                worst[k] = max(worst[k], float(np.nanmax(jumps_k)))
        measured[jump] = worst[k]
    return worst


@dataclass
class AuditedPlan:
    """The plan the audit kept, laid out, and whether the local stretch can finish it."""

    plan: PlannedPath
    spliced: Optional[Spliced]
    reaches: bool
    seconds: dict   # time spent planning ("plan") and rendering the seams to audit them ("render")


def audited_plan(audio: Audio, analysis: SongAnalysis, target_seconds: float, *, seed: int,
                 guidance: Optional[TargetCost], song_mono: np.ndarray, view: np.ndarray,
                 reference: Optional[SeamReference] = None) -> AuditedPlan:
    """The least exposed of at most ``SEAM_AUDIT_ROUNDS`` plans.

    Every seam as rendered must be no more exposed (sample step, spectral jump) than
    most of the song's own moments, and must not make the song's pulse stumble; a
    jump whose seam does gets banned and the path re-planned. ``view`` is the song's
    22050 Hz mono view (its pulse is found there once). ``reference`` holds the song's
    limits and pulse when they are already found or being found (made here if not).

    The length is checked as laid out: each seam is aligned on the groove (up to 15 ms
    either way), and over the hundreds of seams of a looped clip those alignments can
    add up to more than the seams' shifts and the local stretch can take. A plan whose
    laid-out length the stretch cannot finish is re-planned for the target moved by
    what it missed (the same junctions align the same way), and ranks last.
    """
    import time

    reference = reference or SeamReference(audio, song_mono, view)
    banned: set = set()
    best = None
    plan_seconds = render_seconds = 0.0
    offset = 0.0  # what the layout of the last plan missed, added to the target the next plan aims for
    for attempt in range(SEAM_AUDIT_ROUNDS):
        clock = time.perf_counter()
        plan = plan_path(analysis, target_seconds + offset, seed=seed, target_cost=guidance, banned=frozenset(banned),
                         groove_of=lambda: reference.groove)
        plan_seconds += time.perf_counter() - clock
        clock = time.perf_counter()
        spliced = splice(audio, analysis, plan, target_seconds, song_mono=song_mono)
        if plan.jumps:
            worst = _seam_exposure_of(spliced, plan.jumps, reference.limits, audio.sample_rate,
                                      None if analysis.fallback else reference.pulse)
        else:
            worst = np.zeros(0)
        render_seconds += time.perf_counter() - clock
        reaches = stretch_can_finish(spliced, audio.sample_rate)
        # (a plan the seams and the local stretch cannot bring to length ranks last)
        rank = (not reaches, float(worst.max()) if worst.size else 0.0)
        if np.isfinite(plan.score) and (best is None or rank < best[0]):
            best = (rank, plan, spliced)
        exposed = [plan.jumps[k] for k in np.flatnonzero(worst > 1.0)]
        if (reaches and not exposed) or attempt + 1 == SEAM_AUDIT_ROUNDS:
            break
        if not reaches:
            offset += (spliced.n_target - spliced.timeline.n_samples) / audio.sample_rate
        for a, b in exposed:  # the cut and the same cut a beat either side
            banned.update({(a, b), (a - 1, b - 1), (a + 1, b + 1)})
    seconds = {"plan": plan_seconds, "render": render_seconds}
    if best is None:  # no plan at all: the stretch says why it cannot be done
        return AuditedPlan(plan, spliced, False, seconds)
    (unreachable, _), plan, spliced = best
    return AuditedPlan(plan, spliced, not unreachable, seconds)
