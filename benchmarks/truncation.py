"""Does the model earn its place in `extend`? The truncation benchmark.

Each song of ../shared/music/songs (any audio file of ``--songs-dir``) is cut at 60 %; the first part is extended back
to the song's full length (a) with the model guiding and (b) with similarity alone.
The generated remainder (output after the cut point) is compared with the song's
real remainder, beside two references computed in the same run:

- ``repeat-last``: the first part's last stretch, repeated to the remainder's length;
- ``random-excerpt``: a random excerpt of the first part of the same length
  (median distance over 5 seeded draws).

Distance: frames of 0.1 s described by chroma (harmony) and MFCC (timbre), aligned
with DTW inside a 25 % band (small timing differences are not penalised), and the
mean cosine distance along the path; reported per song, as medians and as ratios to
the random excerpt (target for the model-guided result: <= 0.9).

    python benchmarks/truncation.py [--songs-dir ../shared/music/songs] [--only N]
        [--model PATH] [--json benchmarks/results/truncation.json]
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

from harmonizer_cli.core.audio_io import AUDIO_SUFFIXES, Audio, load_audio, to_model_view  # noqa: E402
from harmonizer_cli.core.extend import extend_audio  # noqa: E402
from harmonizer_cli.core.model import load_predictor  # noqa: E402

CUT = 0.6
ANALYSIS_RATE = 22050
HOP = 2205  # 0.1 s


def describe(mono: np.ndarray) -> np.ndarray:
    """(n_frames, 12 + 19): chroma and MFCC 1-19 per 0.1 s, each block L2-normalised."""
    import librosa

    chroma = librosa.feature.chroma_stft(y=mono, sr=ANALYSIS_RATE, hop_length=HOP, n_fft=4096)
    mfcc = librosa.feature.mfcc(y=mono, sr=ANALYSIS_RATE, hop_length=HOP, n_mfcc=20)[1:]
    blocks = []
    for block in (chroma, mfcc):
        norms = np.linalg.norm(block, axis=0, keepdims=True)
        blocks.append(block / np.maximum(norms, 1e-9))
    return np.concatenate(blocks, axis=0).T


def aligned_distance(generated: np.ndarray, real: np.ndarray) -> float:
    """Mean cosine distance (chroma and MFCC halves averaged) along a banded DTW path."""
    import librosa

    a, b = describe(generated), describe(real)
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    cost = 1.0 - 0.5 * (a[:, :12] @ b[:, :12].T + a[:, 12:] @ b[:, 12:].T)
    _, path = librosa.sequence.dtw(C=cost, global_constraints=True, band_rad=0.25)
    return float(np.mean(cost[path[:, 0], path[:, 1]]))


def repeat_last(first: np.ndarray, n: int) -> np.ndarray:
    stretch = first[-n:] if n <= len(first) else first
    return np.tile(stretch, n // len(stretch) + 1)[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--songs-dir", type=Path, default=ROOT.parent / "shared" / "music" / "songs")
    parser.add_argument("--only", type=int, default=None, help="first N songs")
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: shipped)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    songs = sorted(p for p in args.songs_dir.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)[: args.only] \
        if args.songs_dir.is_dir() else []
    if not songs:
        sys.exit(f"error: {args.songs_dir}: no songs (is ../shared/music present?)")
    predictor = load_predictor(args.model)
    methods = ("model-guided", "similarity", "repeat-last", "random-excerpt")
    rows = []
    print(f"model: {predictor.name} (objective {predictor.config.objective})  cut at {CUT:.0%}  "
          f"distance: DTW chroma+MFCC cosine (lower is closer)")
    print(f"{'song':44} " + " ".join(f"{m:>15}" for m in methods) + "   guided/random")
    for song in songs:
        audio = load_audio(song)
        cut = int(CUT * audio.n_samples)
        first = Audio(audio.samples[:cut], audio.sample_rate)
        mono = to_model_view(audio)
        cut_mono = int(CUT * len(mono))
        real = mono[cut_mono:]
        first_mono = mono[:cut_mono]
        distances = {}
        timings = {}
        for method, guide in (("model-guided", predictor), ("similarity", None)):
            start = time.perf_counter()
            result = extend_audio(first, target_seconds=audio.duration_seconds, predictor=guide, seed=0)
            timings[method] = time.perf_counter() - start
            generated = to_model_view(Audio(result.samples, result.sample_rate))[cut_mono:][: len(real)]
            distances[method] = aligned_distance(generated, real)
        distances["repeat-last"] = aligned_distance(repeat_last(first_mono, len(real)), real)
        rng = np.random.default_rng(0)
        draws = []
        for _ in range(5):
            if len(real) < len(first_mono):
                start = int(rng.integers(0, len(first_mono) - len(real)))
                draws.append(aligned_distance(first_mono[start : start + len(real)], real))
            else:
                draws.append(aligned_distance(repeat_last(first_mono, len(real)), real))
        distances["random-excerpt"] = statistics.median(draws)
        ratio = distances["model-guided"] / distances["random-excerpt"]
        rows.append({"song": song.name, **distances, "guided_over_random": ratio,
                     "similarity_over_random": distances["similarity"] / distances["random-excerpt"],
                     "seconds": timings})
        print(f"{song.name[:44]:44} " + " ".join(f"{distances[m]:15.4f}" for m in methods) + f"   {ratio:13.3f}")
    medians = {m: statistics.median(r[m] for r in rows) for m in methods}
    ratio_guided = statistics.median(r["guided_over_random"] for r in rows)
    ratio_similarity = statistics.median(r["similarity_over_random"] for r in rows)
    print(f"{'median':44} " + " ".join(f"{medians[m]:15.4f}" for m in methods) + f"   {ratio_guided:13.3f}")
    print(f"median ratio to random excerpt: model-guided {ratio_guided:.3f}, similarity alone "
          f"{ratio_similarity:.3f} (target for model-guided: <= 0.9; "
          f"{'met' if ratio_guided <= 0.9 else 'NOT met'})")
    wins = sum(r["model-guided"] < r["similarity"] for r in rows)
    print(f"model-guided closer than similarity alone on {wins}/{len(rows)} songs")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows, "medians": medians,
                                         "median_guided_over_random": ratio_guided,
                                         "median_similarity_over_random": ratio_similarity}, indent=2))


if __name__ == "__main__":
    main()
