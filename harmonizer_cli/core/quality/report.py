"""The extension report: every quality measure of an output against its original, and the targets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from harmonizer_cli.core._typing import ProgressFn
from harmonizer_cli.core.audio_io import MODEL_SAMPLE_RATE, Audio
from harmonizer_cli.core.quality._common import analysis_view, draw_share_above, p95, ratio
from harmonizer_cli.core.quality.clicks import CLICK_TARGETS, click_reference, click_report
from harmonizer_cli.core.quality.detection import detect_seams
from harmonizer_cli.core.quality.dips import level_dip_db
from harmonizer_cli.core.quality.ending import ending_match, trailing_silence_seconds
from harmonizer_cli.core.quality.groove import Pulse, find_pulse, groove_report, onset_envelope
from harmonizer_cli.core.quality.mood import librosa_beats, mood_descriptors
from harmonizer_cli.core.quality.repetition import (
    MAX_REPETITION_FRAMES, MIN_REPEATING_FRACTION, REPEATING_REFERENCE, REPETITION_FRAME_SECONDS,
    repetition_features, repetition_shares,
)
from harmonizer_cli.core.quality.seams import estimate_codec_cutoff, seam_broadband, seam_crest, seam_novelty

__all__ = ["TARGETS", "OriginalAnalysis", "analyse_original", "extension_report", "targets_met", "summary_rows"]


#: The per-file targets (medians over songs are the benchmark's business).
TARGETS = {
    "duration_error_seconds": 0.01,
    "seam_ratio": 1.1,
    "dip_excess_db": 1.0,
    "repetition_past_original": 0.3,
    "ending_correlation": 0.99,
    "ending_lag_seconds": 0.01,
    "padded_silence_seconds": 0.05,
    "tempo_delta_bpm": 1.0,
    "loudness_delta_lu": 0.75,
    "loudness_median_delta_lu": 0.1,
    "centroid_delta_percent": 4.0,
}


@dataclass
class OriginalAnalysis:
    """Everything the report needs from an original, computed once (reuse across outputs).

    Attributes
    ----------
    view : np.ndarray [shape=(n,)]
        22050 Hz mono.
    beat_times : np.ndarray [shape=(n_beats,)]
        Seconds (beats within 0.1 s of either end left out).
    tempo_bpm : float
    cutoff_hz : float or None
        Codec cut-off, None for a full-band source.
    beat_crest, beat_novelty, beat_broadband : np.ndarray [shape=(n_beats,)]
        The seam measures at the original's beats.
    dip_db : float
    repetition : dict
        ``repetition_shares`` of the original itself (``past`` over its second half).
    mood : dict
    clicks : dict
        ``clicks.click_reference``: the original's own worst moments.
    pulse : groove.Pulse or None
        The original's pulse and jitter (None without a measurable pulse).
    """

    view: np.ndarray
    beat_times: np.ndarray
    tempo_bpm: float
    cutoff_hz: float | None
    beat_crest: np.ndarray
    beat_novelty: np.ndarray
    beat_broadband: np.ndarray
    dip_db: float
    repetition: dict
    mood: dict
    clicks: dict
    pulse: Pulse | None


def analyse_original(original: Audio, *, beat_times: Sequence[float] | None = None) -> OriginalAnalysis:
    """Analyse an original once for ``extension_report``.

    Parameters
    ----------
    original : Audio
    beat_times : sequence of float, optional
        The original's beats in seconds; found with librosa when not given.

    Returns
    -------
    OriginalAnalysis
    """
    view = analysis_view(original)
    found_beats, tempo = librosa_beats(view)
    beats = found_beats if beat_times is None else np.asarray(beat_times, dtype=float)
    duration = original.duration_seconds
    beats = beats[(beats > 0.1) & (beats < duration - 0.1)]
    cutoff = estimate_codec_cutoff(original.samples, sample_rate=original.sample_rate)
    samples, rate = original.samples, original.sample_rate
    frame_seconds = max(REPETITION_FRAME_SECONDS, original.duration_seconds / MAX_REPETITION_FRAMES)
    features = repetition_features(view, frame_seconds=frame_seconds)
    clicks = click_reference(samples, sample_rate=rate, cutoff_hz=cutoff)
    return OriginalAnalysis(
        view=view,
        beat_times=beats,
        tempo_bpm=tempo,
        cutoff_hz=cutoff,
        beat_crest=seam_crest(samples, sample_rate=rate, times=beats),
        beat_novelty=seam_novelty(samples, sample_rate=rate, times=beats),
        beat_broadband=seam_broadband(samples, sample_rate=rate, times=beats, cutoff_hz=cutoff,
                                      floor_power=clicks["floor_power"]),
        dip_db=level_dip_db(original),
        repetition=repetition_shares(features, start_frame=features.shape[0] // 2, frame_seconds=frame_seconds),
        mood=mood_descriptors(original, view=view, tempo_bpm=tempo),
        clicks=clicks,
        pulse=find_pulse(*onset_envelope(view, sample_rate=MODEL_SAMPLE_RATE)),
    )


def extension_report(
    original: Audio,
    extended: Audio,
    *,
    seams: Sequence[float] | None = None,
    target_seconds: float | None = None,
    beat_times: Sequence[float] | None = None,
    analysis: OriginalAnalysis | None = None,
    on_progress: ProgressFn = None,
) -> dict:
    """Every extension-quality measure of ``extended`` against ``original``, JSON-able.

    Parameters
    ----------
    original : Audio
        The song as it was.
    extended : Audio
        The extended (or shortened) song.
    seams : sequence of float, optional
        Output times of the seams (``harmonizer extend --json`` gives them). When not
        given, ``detect_seams`` finds them by aligning the output to the original.
    target_seconds : float, optional
        The requested length, for the duration error.
    beat_times : sequence of float, optional
        The original's beats (seconds); librosa's beat tracker otherwise.
    analysis : OriginalAnalysis, optional
        ``analyse_original(original)`` computed earlier (the benchmark reuses it).
    on_progress : callable(done, total), optional
        Called after each of the steps.

    Returns
    -------
    dict
        Plain numbers, strings, lists and None::

            duration: original_seconds, output_seconds, target_seconds, error_seconds,
                      sample_rate_kept, channels_kept, ...
            seams:    source ("given" | "detected"), times, count, matched_share,
                      codec_cutoff_hz, n_beats, and for each of crest, novelty,
                      broadband: {seams_p95, beats_p95, ratio, p_value, values}
            dips:     original_db, output_db, excess_db
            repetition: past_original, repeating, original_repeating,
                        original_second_half, repeating_fraction
            ending:   correlation, lag_seconds, correlation_at_zero_lag,
                      trailing_silence_original, trailing_silence_output,
                      padded_silence_seconds, start_correlation, start_lag_seconds
            mood:     original {...}, output {...}, tempo_delta_bpm (after folding
                      a beat tracker's octave error, flagged by tempo_octave_factor
                      2 or 0.5), key_same, loudness_delta_lu, centroid_delta_percent

    Examples
    --------
    >>> song, longer = load_audio("song.mp3"), load_audio("song.extended.wav")  # doctest: +SKIP
    >>> report = extension_report(song, longer, seams=[61.2, 140.9], target_seconds=300)  # doctest: +SKIP
    >>> targets_met(report)["seam_crest"]  # doctest: +SKIP
    True
    """
    steps = 7
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        if on_progress is not None:
            on_progress(done, steps)

    if analysis is None:
        analysis = analyse_original(original, beat_times=beat_times)
    step()
    out_view = analysis_view(extended)
    rate, out_rate = original.sample_rate, extended.sample_rate
    duration = _duration_report(original, extended, target_seconds)
    seam_times, source, matched_share = _seam_times(original, extended, seams)
    step()
    seam_report = _seam_report(extended, analysis, seam_times, source, matched_share)
    step()
    clicks = click_report(original.samples, extended.samples, sample_rate=rate, cutoff_hz=analysis.cutoff_hz,
                          reference=analysis.clicks) if out_rate == rate else None
    groove = groove_report(analysis.view, out_view, sample_rate=MODEL_SAMPLE_RATE, seams=seam_times,
                           pulse=analysis.pulse)
    step()
    dips = {"original_db": analysis.dip_db, "output_db": level_dip_db(extended)}
    dips["excess_db"] = dips["output_db"] - dips["original_db"]
    repetition = _repetition_report(original, extended, out_view, analysis)
    step()
    ending = _ending_report(original, extended)
    step()
    mood = _mood_report(extended, out_view, analysis)
    step()
    return {
        "duration": duration,
        "seams": seam_report,
        "clicks": clicks,
        "groove": groove,
        "dips": dips,
        "repetition": repetition,
        "ending": ending,
        "mood": mood,
    }


def _duration_report(original: Audio, extended: Audio, target_seconds: float | None) -> dict:
    """The report's ``duration``: lengths, the error against the target, rate and channels kept."""
    rate, out_rate = original.sample_rate, extended.sample_rate
    return {
        "original_seconds": original.duration_seconds,
        "output_seconds": extended.duration_seconds,
        "target_seconds": None if target_seconds is None else float(target_seconds),
        "error_seconds": None if target_seconds is None else abs(extended.duration_seconds - float(target_seconds)),
        "original_sample_rate": rate,
        "output_sample_rate": out_rate,
        "sample_rate_kept": rate == out_rate,
        "original_channels": original.n_channels,
        "output_channels": extended.n_channels,
        "channels_kept": original.n_channels == extended.n_channels,
    }


def _seam_times(
    original: Audio, extended: Audio, seams: Sequence[float] | None
) -> tuple[np.ndarray, str, float | None]:
    """The seam times (given, or detected by alignment), their source and the matched share."""
    if seams is None:
        detection = detect_seams(original, extended)
        return detection.times, "detected", detection.matched_share
    return np.asarray(list(seams), dtype=float), "given", None


def _seam_report(
    extended: Audio, analysis: OriginalAnalysis, seam_times: np.ndarray, source: str, matched_share: float | None
) -> dict:
    """The report's ``seams``: crest, novelty and broadband at the seams against the original's beats."""
    out_rate = extended.sample_rate
    seam_report: dict = {
        "source": source,
        "times": [float(t) for t in seam_times],
        "count": int(len(seam_times)),
        "matched_share": matched_share,
        "codec_cutoff_hz": analysis.cutoff_hz,
        "n_beats": int(len(analysis.beat_times)),
    }
    measured = {
        "crest": (seam_crest(extended.samples, sample_rate=out_rate, times=seam_times), analysis.beat_crest),
        "novelty": (seam_novelty(extended.samples, sample_rate=out_rate, times=seam_times), analysis.beat_novelty),
        "broadband": (
            seam_broadband(extended.samples, sample_rate=out_rate, times=seam_times, cutoff_hz=analysis.cutoff_hz,
                           floor_power=analysis.clicks["floor_power"]),
            analysis.beat_broadband,
        ),
    }
    for name, (at_seams, at_beats) in measured.items():
        n_measured = int(np.sum(np.isfinite(at_seams)))
        seams_p95, beats_p95 = p95(at_seams), p95(at_beats)
        seam_report[name] = {
            "seams_p95": seams_p95,
            "beats_p95": beats_p95,
            "ratio": ratio(seams_p95, beats_p95),
            "p_value": draw_share_above(at_beats, n_measured, seams_p95),
            "values": [None if not np.isfinite(v) else float(v) for v in at_seams],
        }
    return seam_report


def _repetition_report(original: Audio, extended: Audio, out_view: np.ndarray, analysis: OriginalAnalysis) -> dict:
    """The report's ``repetition``: how much of the output past the original repeats, beside the original's own."""
    # [n, n] matrices: beyond 10 minutes the hop grows so that n stays <= 6000 (memory)
    frame_seconds = max(REPETITION_FRAME_SECONDS, extended.duration_seconds / MAX_REPETITION_FRAMES)
    features = repetition_features(out_view, frame_seconds=frame_seconds)
    start = int(np.ceil(original.duration_seconds / frame_seconds))
    shares = repetition_shares(features, start_frame=start, frame_seconds=frame_seconds)
    return {
        "past_original": shares["past"],
        "repeating": shares["repeating"],
        "repeating_fraction": shares["repeating_fraction"],
        "modal_lag_seconds": None if shares["modal_lag_frames"] is None else shares["modal_lag_frames"] * frame_seconds,
        "original_repeating": analysis.repetition["repeating"],
        "original_repeating_fraction": analysis.repetition["repeating_fraction"],
        "original_second_half": analysis.repetition["past"],
    }


def _ending_report(original: Audio, extended: Audio) -> dict:
    """The report's ``ending``: the end (and start) matched against the original's, and padded silence."""
    end = ending_match(original, extended)
    begin = ending_match(original, extended, at_start=True)
    silence_original = trailing_silence_seconds(original)
    silence_output = trailing_silence_seconds(extended)
    return {
        "correlation": end["correlation"],
        "lag_seconds": end["lag_seconds"],
        "correlation_at_zero_lag": end["correlation_at_zero_lag"],
        "trailing_silence_original": silence_original,
        "trailing_silence_output": silence_output,
        "padded_silence_seconds": silence_output - silence_original,
        "start_correlation": begin["correlation"],
        "start_lag_seconds": begin["lag_seconds"],
    }


def _mood_report(extended: Audio, out_view: np.ndarray, analysis: OriginalAnalysis) -> dict:
    """The report's ``mood``: tempo (octave errors folded), key, loudness and brightness against the original."""
    mood_orig = analysis.mood
    mood_out = mood_descriptors(extended, view=out_view, start_bpm=mood_orig["tempo_bpm"])
    lufs_o, lufs_e = mood_orig["loudness_lufs"], mood_out["loudness_lufs"]
    tempo_out, tempo_orig = mood_out["tempo_bpm"], mood_orig["tempo_bpm"]
    octave = None
    for factor in (2.0, 0.5):  # the tracker locked onto another metrical level
        if abs(tempo_out / max(tempo_orig, 1e-9) / factor - 1.0) < 0.04:
            octave, tempo_out = factor, tempo_out / factor
    return {
        "original": mood_orig,
        "output": mood_out,
        "tempo_delta_bpm": tempo_out - tempo_orig,
        "tempo_octave_factor": octave,
        "key_same": mood_out["key"] == mood_orig["key"],
        "loudness_delta_lu": None if lufs_o is None or lufs_e is None else lufs_e - lufs_o,
        "centroid_delta_percent": 100.0 * (mood_out["centroid_hz"] - mood_orig["centroid_hz"])
        / max(mood_orig["centroid_hz"], 1e-9),
    }


def targets_met(report: dict, *, full: bool | None = None) -> dict:
    """Check one report against the per-file targets (``TARGETS``).

    Parameters
    ----------
    report : dict
        From ``extension_report``.
    full : bool, optional
        Check every target (the 300 s case: repetition and mood too); otherwise only
        duration, seams, dips and ending (the shortening case). Default: full when the
        output is longer than the original.

    Returns
    -------
    dict
        Target name -> True (met), False (missed) or None (not applicable: no seams, no
        codec cut-off, no target length). Names: ``duration``, ``format_kept``,
        ``seam_crest``, ``seam_novelty``, ``seam_broadband``, ``clicks_out_of_band``,
        ``clicks_crest`` (anywhere in the output), ``groove`` (no seam stumbles), ``dips``, ``ending``,
        and when ``full``: ``repetition_past``, ``repetition_repeating`` (against the
        original's own share, or ``REPEATING_REFERENCE`` when fewer than
        ``MIN_REPEATING_FRACTION`` of the original's frames repeat at all), ``tempo``,
        ``loudness``, ``centroid``.
    """
    t = TARGETS
    d, s, e = report["duration"], report["seams"], report["ending"]
    if full is None:
        full = d["output_seconds"] > d["original_seconds"] + 1.0

    def at_most(value: float | None, limit: float) -> bool | None:
        return None if value is None else bool(value <= limit)

    checks: dict = {
        "duration": at_most(d["error_seconds"], t["duration_error_seconds"]),
        "format_kept": bool(d["sample_rate_kept"] and d["channels_kept"]),
    }
    for name in ("crest", "novelty", "broadband"):
        checks[f"seam_{name}"] = None if s["count"] == 0 else at_most(s[name]["ratio"], t["seam_ratio"])
    clicks, groove = report.get("clicks"), report.get("groove")
    if clicks is not None:
        band = clicks["out_of_band"]
        checks["clicks_out_of_band"] = None if band is None else at_most(band["excess_db"],
                                                                          CLICK_TARGETS["out_of_band_excess_db"])
        checks["clicks_crest"] = at_most(clicks["crest"]["ratio"], CLICK_TARGETS["crest_ratio"])
    if groove is not None:
        checks["groove"] = None if not groove["measured"] else groove["stumbling"] == 0
    checks["dips"] = at_most(report["dips"]["excess_db"], t["dip_excess_db"])
    corr = e["correlation"]
    checks["ending"] = None if corr is None else bool(
        corr >= t["ending_correlation"]
        and abs(e["lag_seconds"]) <= t["ending_lag_seconds"]
        and e["padded_silence_seconds"] <= t["padded_silence_seconds"]
    )
    if full:
        r, m = report["repetition"], report["mood"]
        checks["repetition_past"] = at_most(r["past_original"], t["repetition_past_original"])
        own = r["original_repeating"]
        if r.get("original_repeating_fraction", 1.0) < MIN_REPEATING_FRACTION:
            own = REPEATING_REFERENCE  # the song never repeats itself: hold to the corpus median
        checks["repetition_repeating"] = None if own is None else bool(r["repeating"] <= own + 1e-9)
        checks["tempo"] = bool(abs(m["tempo_delta_bpm"]) <= t["tempo_delta_bpm"])
        loud = m["loudness_delta_lu"]
        checks["loudness"] = None if loud is None else bool(abs(loud) <= t["loudness_delta_lu"])
        checks["centroid"] = bool(abs(m["centroid_delta_percent"]) <= t["centroid_delta_percent"])
    return checks


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "n/a" if value is None else format(value, spec)


def summary_rows(report: dict, checks: dict | None = None) -> list[tuple[str, str, str, str, bool | None]]:
    """The report as table rows: (measure, output, original or reference, target, met).

    Used by ``harmonizer evaluate --extension`` and the benchmark. ``met`` comes from
    ``targets_met`` (None where the target does not apply).

    Parameters
    ----------
    report : dict
        From ``extension_report``.
    checks : dict, optional
        From ``targets_met(report)``; computed when not given.

    Returns
    -------
    list of tuple (str, str, str, str, bool or None)
    """
    checks = targets_met(report) if checks is None else checks
    d, s, dips, r, e, m = (report[k] for k in ("duration", "seams", "dips", "repetition", "ending", "mood"))
    t = TARGETS
    rows = [
        ("duration (s)", _fmt(d["output_seconds"], ".3f"),
         f"target {_fmt(d['target_seconds'], '.3f')}, error {_fmt(d['error_seconds'], '.4f')}",
         f"<= {t['duration_error_seconds']}", checks.get("duration")),
        ("sample rate / channels", f"{d['output_sample_rate']} Hz / {d['output_channels']}",
         f"{d['original_sample_rate']} Hz / {d['original_channels']}", "kept", checks.get("format_kept")),
        ("seams", f"{s['count']} ({s['source']})",
         f"{s['n_beats']} beats; cut-off {_fmt(s['codec_cutoff_hz'], '.0f')} Hz", "", None),
    ]
    for name in ("crest", "novelty", "broadband"):
        part = s[name]
        rows.append((f"seam {name} p95 (ratio, p)",
                     f"{_fmt(part['seams_p95'])} ({_fmt(part['ratio'])}, {_fmt(part['p_value'], '.3f')})",
                     f"beats {_fmt(part['beats_p95'])}", f"ratio <= {t['seam_ratio']}", checks.get(f"seam_{name}")))
    clicks, groove = report.get("clicks"), report.get("groove")
    if clicks is not None:
        band, crest = clicks["out_of_band"], clicks["crest"]
        if band is not None:
            rows.append(("clicks: out-of-band max (dB)", f"{_fmt(band['output_max_db'], '.1f')} ({band['clicks']} places)",
                         _fmt(band["original_max_db"], ".1f"),
                         f"<= original + {CLICK_TARGETS['out_of_band_excess_db']:g}", checks.get("clicks_out_of_band")))
        rows.append(("clicks: step crest max", f"{_fmt(crest['output_max'])} ({crest['clicks']} places)",
                     _fmt(crest["original_max"]), f"ratio <= {CLICK_TARGETS['crest_ratio']:g}",
                     checks.get("clicks_crest")))
    if groove is not None:
        rows.append(("groove: stumbling seams", f"{groove['stumbling']} of {groove['measured']} measured",
                     "pulse " + ("n/a" if groove["pulse_seconds"] is None else f"{groove['pulse_seconds'][0]:.3f} s"),
                     "0", checks.get("groove")))
    rows.append(("deepest level dip (dB)", _fmt(dips["output_db"], ".1f"), _fmt(dips["original_db"], ".1f"),
                 f"<= original + {t['dip_excess_db']:g}", checks.get("dips")))
    rows.append(("repetition past original", _fmt(r["past_original"]),
                 f"song's 2nd half {_fmt(r['original_second_half'])}", f"<= {t['repetition_past_original']}",
                 checks.get("repetition_past")))
    rows.append(("repetition of repeats", _fmt(r["repeating"]), _fmt(r["original_repeating"]),
                 "<= original", checks.get("repetition_repeating")))
    rows.append(("ending corr (lag s, pad s)",
                 f"{_fmt(e['correlation'], '.4f')} ({_fmt(e['lag_seconds'], '.3f')}, "
                 f"{_fmt(e['padded_silence_seconds'], '.3f')})",
                 f"start corr {_fmt(e['start_correlation'], '.4f')}", f">= {t['ending_correlation']}",
                 checks.get("ending")))
    mo, mi = m["output"], m["original"]
    rows.append(("tempo (BPM)", _fmt(mo["tempo_bpm"], ".1f"), _fmt(mi["tempo_bpm"], ".1f"),
                 f"+-{t['tempo_delta_bpm']:g}", checks.get("tempo")))
    rows.append(("key", mo["key"], mi["key"], "same", None if "tempo" not in checks else m["key_same"]))
    rows.append(("loudness (LUFS)", _fmt(mo["loudness_lufs"]), _fmt(mi["loudness_lufs"]),
                 f"+-{t['loudness_delta_lu']:g} LU", checks.get("loudness")))
    rows.append(("spectral centroid (Hz)", _fmt(mo["centroid_hz"], ".0f"),
                 f"{_fmt(mi['centroid_hz'], '.0f')} ({_fmt(m['centroid_delta_percent'], '+.1f')} %)",
                 f"+-{t['centroid_delta_percent']:g} %", checks.get("centroid")))
    return rows
