"""Benchmark `harmonizer preprocess`: audio seconds per wall second and peak memory.

Preprocesses a quarter of the corpus and then the whole corpus, each in a fresh
process and a fresh output folder, and prints the speed (target >= 60x real time)
and the peak resident memory of each run (target: whole within 10 % of a quarter,
under 1.5 GB: memory must not grow with the corpus).

Usage::

    .venv/bin/python benchmarks/preprocess_speed.py [--input ../shared/music/train] [--jobs 1]

The quarter is made of symbolic links to the first quarter of the files (sorted) in a
temporary folder; nothing is copied.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

_CHILD = r"""
import json, resource, sys, time
from harmonizer_cli.core.research.preprocess import PreprocessConfig, preprocess_dataset
started = time.perf_counter()
result = preprocess_dataset(sys.argv[1], sys.argv[2], config=PreprocessConfig(jobs=int(sys.argv[3])))
wall = time.perf_counter() - started
own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"wall_seconds": wall, "audio_seconds": result.audio_seconds,
                  "songs": result.processed, "peak_rss_mb": max(own, workers) / 1024}))
"""


def run(input_folder: Path, output: Path, jobs: int) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHILD, str(input_folder), str(output), str(jobs)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    default = Path(__file__).resolve().parents[1] / ".." / "shared" / "music" / "train"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, default=default)
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()
    from harmonizer_cli.core.research.preprocess import find_audio_files

    files = find_audio_files(args.input)
    with tempfile.TemporaryDirectory(prefix="harmonizer-bench-") as tmp:
        tmp = Path(tmp)
        quarter = tmp / "quarter"
        quarter.mkdir()
        for path in files[: max(1, len(files) // 4)]:
            (quarter / path.name).symlink_to(path.resolve())
        results = {"quarter": run(quarter, tmp / "out-quarter", args.jobs),
                   "whole": run(args.input, tmp / "out-whole", args.jobs)}
    for name, r in results.items():
        speed = r["audio_seconds"] / r["wall_seconds"]
        print(f"{name:8s} {r['songs']:4d} songs  {r['audio_seconds'] / 3600:6.2f} h audio  "
              f"{r['wall_seconds']:7.1f} s wall  {speed:7.1f}x real time  "
              f"peak RSS {r['peak_rss_mb']:7.1f} MB")
    ratio = results["whole"]["peak_rss_mb"] / results["quarter"]["peak_rss_mb"]
    print(f"peak RSS whole / quarter = {ratio:.3f} (target <= 1.10, whole < 1500 MB); jobs={args.jobs}")


if __name__ == "__main__":
    main()
