"""Shortening: does a song cut down to the target still sound like the whole song?

Each long track (``--panel``: the training tracks of at least 7 minutes that are not in
the unseen panel, so it can be tuned on; or any folder with ``--songs-dir``) is cut to
``--target`` seconds by ``extend_audio`` and by a naive cut (the first and the last
half of the target, joined by a 50 ms crossfade), and both are measured against the
track: integrated loudness change (LU, pyloudnorm) and spectral-centroid change (%)
(``quality.mood_descriptors``), the figures of the quality benchmark's mood targets
(within 0.75 LU and 4 %; median within 0.1 LU).

    python benchmarks/shortening.py [--target 300] [--songs-dir DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from harmonizer_cli.core.audio_io import AUDIO_SUFFIXES, Audio, load_audio  # noqa: E402
from harmonizer_cli.core.extend import extend_audio  # noqa: E402
from harmonizer_cli.core.model import load_predictor  # noqa: E402
from harmonizer_cli.core.quality.mood import mood_descriptors  # noqa: E402

MIN_SECONDS = 420.0


def panel_tracks() -> list[Path]:
    """Training tracks of at least ``MIN_SECONDS`` outside the unseen panel (tuned on)."""
    import soundfile as sf

    import panels

    unseen = {p.stem for p in panels.panel_sources("unseen")[0]}
    return [p for p in panels._train() if p.stem not in unseen and sf.info(str(p)).duration >= MIN_SECONDS]


def naive_cut(audio: Audio, seconds: float) -> Audio:
    """The first and the last half of ``seconds``, joined by a 50 ms equal-power crossfade."""
    rate, n = audio.sample_rate, int(round(seconds * audio.sample_rate))
    fade = int(0.05 * rate)
    half = (n + fade) // 2
    head, tail = audio.samples[:half], audio.samples[audio.n_samples - (n + fade - half):]
    angle = np.linspace(0.0, np.pi / 2, fade, dtype=np.float32)[:, None]
    mixed = head[-fade:] * np.cos(angle) + tail[:fade] * np.sin(angle)
    return Audio(np.concatenate([head[:-fade], mixed, tail[fade:]])[:n], rate)


def drift(original: dict, shortened: Audio) -> tuple[float, float]:
    mood = mood_descriptors(shortened, tempo_bpm=0.0)
    return (mood["loudness_lufs"] - original["loudness_lufs"],
            100.0 * (mood["centroid_hz"] / original["centroid_hz"] - 1.0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, default=300.0)
    parser.add_argument("--songs-dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    tracks = (sorted(p for p in args.songs_dir.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
              if args.songs_dir else panel_tracks())
    if not tracks:
        sys.exit("error: no tracks (is ../shared/music present?)")
    predictor = load_predictor(None)
    rows = []
    print(f"{'track':28} {'length':>7} {'seams':>5} {'dLU':>6} {'dCent%':>7}   {'naive dLU':>9} {'dCent%':>7} {'seconds':>8}")
    for path in tracks:
        audio = load_audio(path)
        if audio.duration_seconds <= args.target:
            continue
        original = mood_descriptors(audio, tempo_bpm=0.0)
        start = time.perf_counter()
        result = extend_audio(audio, target_seconds=args.target, predictor=predictor, seed=0)
        seconds = time.perf_counter() - start
        engine = drift(original, Audio(result.samples, result.sample_rate))
        naive = drift(original, naive_cut(audio, args.target))
        rows.append({"track": path.stem, "seconds": audio.duration_seconds, "seams": len(result.seams_seconds),
                     "engine": engine, "naive": naive, "wall": seconds})
        print(f"{path.stem[:28]:28} {audio.duration_seconds:7.0f} {len(result.seams_seconds):5d} {engine[0]:+6.2f} "
              f"{engine[1]:+7.1f}   {naive[0]:+9.2f} {naive[1]:+7.1f} {seconds:8.1f}", flush=True)
    for name in ("engine", "naive"):
        loud = [abs(r[name][0]) for r in rows]
        cent = [abs(r[name][1]) for r in rows]
        print(f"{name:7} loudness |change| median {statistics.median(loud):.2f} LU, worst {max(loud):.2f} "
              f"(> 0.75: {sum(v > 0.75 for v in loud)} of {len(rows)}); centroid median {statistics.median(cent):.1f} %, "
              f"worst {max(cent):.1f} (> 4 %: {sum(v > 4.0 for v in cent)})")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
