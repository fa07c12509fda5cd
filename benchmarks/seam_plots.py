"""Look at seams and the stretch region of an extension: spectrograms and onset envelopes.

    python benchmarks/seam_plots.py SONG [--seconds 300] [--out plots/] [--no-model]

Extends SONG (the default engine, like ``harmonizer extend``), then writes one PNG per
seam and one for the stretch region into ``--out``:

* ``seam-NN.png``: around the seam (+-3 s), the output's log spectrogram, its energy
  above 8 kHz (clicks show as spikes) and its onset envelope with two beat grids: the
  song's pulse as it was before the seam (continued past it, blue) and as it is after
  (continued back before it, orange). On a seam on the beat the two grids coincide;
  a stumble shows as two combs out of step. The source's own spectrogram around the
  place the seam leaves from is drawn beside it.
* ``stretch.png``: the stretched region (+-1 s) of the output, the same three rows.

Nothing of the song is written but the pictures (never commit pictures of songs you may
not share). Run by hand; this is a way to *look*, the numbers are in
``extension_quality.py``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harmonizer_cli.core.audio_io import Audio, load_audio, to_mono  # noqa: E402
from harmonizer_cli.core.extend import extend_audio  # noqa: E402
from harmonizer_cli.core.quality import groove  # noqa: E402

SPAN = 3.0
HIGH_HZ = 8000.0


def _period(mono: np.ndarray, rate: int) -> float | None:
    """The song's pulse period (s), as the groove measure finds it."""
    envelope, frame_rate = groove.onset_envelope(mono, sample_rate=rate)
    pulse = groove.find_pulse(envelope, frame_rate)
    return None if pulse is None else float(pulse.periods[0])


def _beat_phase(envelope: np.ndarray, frame_rate: float, period: float, lo: int, hi: int) -> float:
    """The onset envelope's strongest phase (s, in [0, period)) within frames [lo, hi)."""
    total = envelope.sum(axis=1) if envelope.ndim == 2 else envelope
    times = np.arange(lo, hi) / frame_rate
    angle = 2 * np.pi * times / period
    vector = np.sum(total[lo:hi] * np.exp(1j * angle))
    return float((np.angle(vector) % (2 * np.pi)) / (2 * np.pi) * period)


def _rows(axes, samples: np.ndarray, rate: int, t0: float, t1: float, title: str):
    import matplotlib.pyplot as plt  # noqa: F401 - the backend is set by main

    mono = to_mono(samples)
    axes[0].specgram(mono, NFFT=1024, Fs=rate, noverlap=768, xextent=(t0, t1), cmap="magma",
                     vmin=-130, vmax=-20)
    axes[0].set_ylim(0, min(16000, rate / 2))
    axes[0].set_ylabel("Hz")
    axes[0].set_title(title, fontsize=9)
    spectrum_hop = max(1, int(0.005 * rate))
    n = mono.size // spectrum_hop
    frames = mono[:n * spectrum_hop].reshape(n, spectrum_hop)
    diff = np.diff(frames, axis=1)  # a first difference lifts the highs (clicks) above the music
    energy = 10 * np.log10(np.mean(diff ** 2, axis=1) + 1e-12)
    axes[1].plot(t0 + (np.arange(n) + 0.5) * spectrum_hop / rate, energy, lw=0.7, color="k")
    axes[1].set_ylabel("diff dB")


def plot_seam(path: Path, song, output, seam: float, previous: dict, following: dict, index: int,
              period: float | None) -> None:
    import matplotlib.pyplot as plt

    rate = output.sample_rate
    lo, hi = max(0.0, seam - SPAN), min(output.samples.shape[0] / rate, seam + SPAN)
    piece = output.samples[int(lo * rate):int(hi * rate)]
    fig, axes = plt.subplots(3, 2, figsize=(13, 7), sharex="col", gridspec_kw={"width_ratios": [2, 1]})
    _rows(axes[:, 0], piece, rate, lo, hi, f"output around seam {index} at {seam:.3f} s")
    envelope, frame_rate = groove.onset_envelope(to_mono(piece), sample_rate=rate)
    total = envelope.sum(axis=1)
    times = lo + np.arange(total.size) / frame_rate
    axes[2, 0].plot(times, total, lw=0.7, color="k")
    axes[2, 0].set_ylabel("onsets")
    if period:
        split = int((seam - lo) * frame_rate)
        for (a, b), color, label in (((0, split), "tab:blue", "pulse before"),
                                     ((split, total.size), "tab:orange", "pulse after")):
            if b - a < 2 * period * frame_rate:
                continue
            phase = _beat_phase(envelope, frame_rate, period, a, b)
            ticks = lo + phase + period * np.arange(-1, int((hi - lo) / period) + 2)
            ticks = ticks[(ticks >= lo) & (ticks <= hi)]
            axes[2, 0].vlines(ticks, 0, total.max() * (0.5 if color == "tab:blue" else 0.4), color=color,
                              lw=1.2, label=label)
        axes[2, 0].legend(loc="upper right", fontsize=7)
        axes[2, 0].set_title(f"onset envelope, pulse {period * 1000:.0f} ms ({60 / period:.1f} BPM)", fontsize=9)
    for axis in axes[:, 0]:
        axis.axvline(seam, color="c", lw=0.8, ls="--")
    source_at = float(previous["source_end"])
    s_lo = max(0.0, source_at - SPAN)
    s_hi = min(song.samples.shape[0] / song.sample_rate, source_at + SPAN)
    source = song.samples[int(s_lo * song.sample_rate):int(s_hi * song.sample_rate)]
    _rows(axes[:, 1], source, song.sample_rate, s_lo, s_hi,
          f"original around {source_at:.2f} s (left); lands on {float(following['source_start']):.2f} s")
    axes[2, 1].axis("off")
    for axis in axes[:2, 1]:
        axis.axvline(source_at, color="c", lw=0.8, ls="--")
    axes[2, 0].set_xlabel("output time (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_stretch(path: Path, output, stretch: dict) -> None:
    import matplotlib.pyplot as plt

    rate = output.sample_rate
    r0, r1 = stretch["region_seconds"]
    lo, hi = max(0.0, r0 - 1.0), min(output.samples.shape[0] / rate, r1 + 1.0)
    piece = output.samples[int(lo * rate):int(hi * rate)]
    fig, axes = plt.subplots(3, 1, figsize=(11, 7), sharex=True)
    _rows(axes, piece, rate, lo, hi, f"stretch x{stretch['factor']} over {r0:.2f}-{r1:.2f} s of the output")
    envelope, frame_rate = groove.onset_envelope(to_mono(piece), sample_rate=rate)
    total = envelope.sum(axis=1)
    axes[2].plot(lo + np.arange(total.size) / frame_rate, total, lw=0.7, color="k")
    axes[2].set_ylabel("onsets")
    for axis in axes:
        axis.axvline(r0, color="c", lw=0.8, ls="--")
        axis.axvline(r1, color="c", lw=0.8, ls="--")
    axes[2].set_xlabel("output time (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    import matplotlib

    matplotlib.use("Agg")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("song", type=Path)
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--out", type=Path, default=Path("plots"))
    parser.add_argument("--no-model", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    predictor = None
    if not args.no_model:
        from harmonizer_cli.core.model import load_predictor

        predictor = load_predictor()
    song = load_audio(args.song)
    result = extend_audio(song, target_seconds=args.seconds, seed=args.seed, predictor=predictor,
                          path=str(args.song))
    output = Audio(np.asarray(result.samples), song.sample_rate)
    args.out.mkdir(parents=True, exist_ok=True)
    period = _period(to_mono(song.samples), song.sample_rate)
    segments = list(result.segments)
    for i, seam in enumerate(result.seams_seconds):
        plot_seam(args.out / f"seam-{i:02d}.png", song, output, float(seam), segments[i], segments[i + 1], i,
                  period)
    if result.stretch:
        plot_stretch(args.out / "stretch.png", output, result.stretch)
    print(f"{len(result.seams_seconds)} seam plots{' and the stretch' if result.stretch else ''} in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
