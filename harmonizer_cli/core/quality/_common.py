"""Helpers shared by the quality measures: array shapes, the 22050 Hz mono view, percentiles."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from harmonizer_cli.core.audio_io import MODEL_SAMPLE_RATE, Audio, resample, to_mono
from harmonizer_cli.errors import AudioError

__all__ = ["EPS", "samples_2d", "analysis_view", "p95", "draw_share_above", "ratio", "as_audio"]

EPS = 1e-12


def samples_2d(samples: np.ndarray) -> np.ndarray:
    samples = np.asarray(samples, dtype=np.float32)
    return samples[:, None] if samples.ndim == 1 else samples


def analysis_view(audio: Audio) -> np.ndarray:
    """22050 Hz mono float32 (the model's view)."""
    return resample(to_mono(audio.samples), from_rate=audio.sample_rate, to_rate=MODEL_SAMPLE_RATE)


def p95(values: Sequence[float] | np.ndarray) -> float | None:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    return float(np.percentile(values, 95)) if values.size else None


def draw_share_above(values: np.ndarray, n: int, level: float | None, *, draws: int = 1000,
                      seed: int = 0) -> float | None:
    """Share of random draws of ``n`` of ``values`` whose 95th percentile is >= ``level``.

    A p-value for "the seams are no more detectable than ordinary beats": with a few
    seams, their 95th percentile is nearly their maximum, which random beats exceed
    only so often."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0 or level is None or n <= 0:
        return None
    rng = np.random.default_rng(seed)
    size = min(n, values.size)
    picks = np.stack([rng.choice(values, size=size, replace=n > values.size) for _ in range(draws)])
    return float(np.mean(np.percentile(picks, 95, axis=1) >= level))


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None:
        return None
    return float(numerator / max(denominator, EPS))


def as_audio(audio: Audio | np.ndarray, sample_rate: int | None) -> Audio:
    if isinstance(audio, Audio):
        return audio
    if sample_rate is None:
        raise AudioError("sample_rate is required with a plain array")
    return Audio(samples_2d(audio), int(sample_rate))
