"""Speed and memory of `harmonizer extend`, beside PyMusicLooper in the same run.

Run by hand (a few minutes; nothing else heavy should run meanwhile):

    .venv/bin/python benchmarks/extension_speed.py [--runs 5] [--songs-dir ../shared/music/songs]
        [--skip-pml] [--skip-batch] [--out benchmarks/results/extension_speed.json]

1. A 3-minute mp3 is made in /tmp/harmonizer-bench (two songs of ../shared/music/songs
   concatenated with soundfile, cut to 180 s; never in the repository).
2. ``harmonizer extend 3min.mp3 --seconds 300 -o out.wav --force`` as a whole cold
   command, ``--runs`` times; and ``pymusiclooper extend --path 3min.mp3
   --extended-length 300 --format wav`` the same number of times, alternating. PyMusicLooper
   lives in its own virtual environment, /tmp/harmonizer-bench/pml-venv, created with pip
   on first use (its version is printed). Wall time (median) and peak RSS (largest
   ``ru_maxrss`` of the process tree, from ``os.wait4``) of each, and the ratios.
3. A folder of the songs to 300 s each with ``--jobs 2``: wall time and output seconds
   per wall second ("x real time").

Targets (issue 3, on the 2-core machine): wall time <= 0.5 x PyMusicLooper's, peak RSS
<= 700 MB, batch >= 100 x real time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BENCH = Path("/tmp/harmonizer-bench")
PML_VENV = BENCH / "pml-venv"
TARGET_SECONDS = 300.0


def make_three_minutes(songs_dir: Path, destination: Path) -> Path:
    """Concatenate two 44.1 kHz stereo songs into a 180 s mp3 (reused when present)."""
    import soundfile as sf

    if destination.exists():
        return destination
    songs = sorted(songs_dir.glob("*.mp3"))
    chosen, total, rate = [], 0.0, None
    for song in songs:
        info = sf.info(str(song))
        if info.samplerate != 44100 or info.channels != 2:
            continue
        chosen.append(song)
        total += info.duration
        rate = info.samplerate
        if total >= 180.0:
            break
    if total < 180.0:
        raise SystemExit(f"error: not enough 44.1 kHz stereo songs in {songs_dir} for 3 minutes")
    data = np.concatenate([sf.read(str(p), dtype="float32", always_2d=True)[0] for p in chosen])
    data = data[: int(180.0 * rate)]
    partial = destination.with_suffix(".part.mp3")
    sf.write(str(partial), data, rate, format="MP3")
    os.replace(partial, destination)
    print(f"made {destination} from {', '.join(p.name for p in chosen)}", file=sys.stderr)
    return destination


def ensure_pymusiclooper() -> tuple[Path, str]:
    """The pymusiclooper executable in its own venv (created on first use) and its version."""
    exe = PML_VENV / "bin" / "pymusiclooper"
    if not exe.exists():
        print(f"installing pymusiclooper into {PML_VENV} (first run) ...", file=sys.stderr, flush=True)
        python = shutil.which("python3") or sys.executable
        subprocess.run([python, "-m", "venv", str(PML_VENV)], check=True)
        subprocess.run([str(PML_VENV / "bin" / "pip"), "install", "-q", "pymusiclooper"], check=True)
    version = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=False).stdout.strip()
    return exe, version


def timed_run(command: list[str], *, cwd: Path | None = None) -> tuple[float, float, int]:
    """Wall seconds, peak RSS in MB (the process and its waited-for children), exit code."""
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # read stderr in the background would be nicer; the tools print little
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.stderr is not None:
        tail = process.stderr.read().decode(errors="replace").strip()[-300:]
        process.stderr.close()
        if process.returncode != 0:
            print(f"warning: {' '.join(command[:3])} ... exited {process.returncode}: {tail}", file=sys.stderr)
    return wall, usage.ru_maxrss / 1024.0, process.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--songs-dir", type=Path, default=REPO.parent / "shared" / "music" / "songs")
    parser.add_argument("--skip-pml", action="store_true", help="Do not run PyMusicLooper.")
    parser.add_argument("--skip-batch", action="store_true", help="Do not run the folder batch.")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "extension_speed.json")
    args = parser.parse_args(argv)

    BENCH.mkdir(parents=True, exist_ok=True)
    source = make_three_minutes(args.songs_dir, BENCH / "three-minutes.mp3")
    harmonizer = Path(sys.executable).with_name("harmonizer")
    out_dir = BENCH / "speed-out"
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir()
    ours_cmd = [str(harmonizer), "--quiet", "extend", str(source), "--seconds", f"{TARGET_SECONDS:g}",
                "-o", str(out_dir / "ours.wav"), "--force"]
    results: dict = {"source": str(source), "runs": args.runs, "ours": [], "pml": []}
    pml_cmd = None
    if not args.skip_pml:
        pml_exe, version = ensure_pymusiclooper()
        results["pml_version"] = version
        print(f"PyMusicLooper: {version}", file=sys.stderr)
        pml_dir = out_dir / "pml"
        pml_dir.mkdir()
        pml_cmd = [str(pml_exe), "extend", "--path", str(source), "--extended-length", f"{TARGET_SECONDS:g}",
                   "--output-dir", str(pml_dir), "--format", "wav"]

    for run in range(args.runs):
        wall, rss, code = timed_run(ours_cmd)
        results["ours"].append({"wall_seconds": wall, "peak_rss_mb": rss, "exit_code": code})
        line = f"run {run + 1}: harmonizer {wall:.2f} s {rss:.0f} MB"
        if pml_cmd is not None:
            wall, rss, code = timed_run(pml_cmd)
            results["pml"].append({"wall_seconds": wall, "peak_rss_mb": rss, "exit_code": code})
            line += f" | pymusiclooper {wall:.2f} s {rss:.0f} MB"
        print(line, file=sys.stderr, flush=True)

    def summary(runs: list[dict]) -> tuple[float, float]:
        ok = [r for r in runs if r["exit_code"] == 0] or runs
        return statistics.median(r["wall_seconds"] for r in ok), max(r["peak_rss_mb"] for r in ok)

    ours_wall, ours_rss = summary(results["ours"])
    print(f"\n3-minute mp3 -> {TARGET_SECONDS:g} s, median of {args.runs} cold runs")
    print(f"{'tool':<28}{'wall s (median)':>16}{'peak RSS MB':>14}")
    print(f"{'harmonizer extend':<28}{ours_wall:>16.2f}{ours_rss:>14.0f}")
    results["ours_median_wall_seconds"], results["ours_peak_rss_mb"] = ours_wall, ours_rss
    if results["pml"]:
        pml_wall, pml_rss = summary(results["pml"])
        results["pml_median_wall_seconds"], results["pml_peak_rss_mb"] = pml_wall, pml_rss
        ratio = ours_wall / pml_wall
        results["wall_ratio"] = ratio
        print(f"{'pymusiclooper ' + results.get('pml_version', '').split()[-1]:<28}{pml_wall:>16.2f}{pml_rss:>14.0f}")
        print(f"wall ratio harmonizer / pymusiclooper: {ratio:.2f} (target <= 0.5: {'pass' if ratio <= 0.5 else 'FAIL'})")
        print(f"RSS ratio harmonizer / pymusiclooper: {ours_rss / pml_rss:.2f}")
    print(f"peak RSS harmonizer: {ours_rss:.0f} MB (target <= 700: {'pass' if ours_rss <= 700 else 'FAIL'})")

    if not args.skip_batch:
        songs = sorted(args.songs_dir.glob("*.mp3"))
        batch_dir = out_dir / "batch"
        command = [str(harmonizer), "--quiet", "extend", *map(str, songs), "--seconds", f"{TARGET_SECONDS:g}",
                   "--out-dir", str(batch_dir), "--format", "wav", "--jobs", "2", "--force"]
        wall, rss, code = timed_run(command)
        realtime = len(songs) * TARGET_SECONDS / wall
        results["batch"] = {"songs": len(songs), "wall_seconds": wall, "peak_rss_mb": rss, "exit_code": code,
                            "x_real_time": realtime}
        print(f"\nbatch: {len(songs)} songs -> {TARGET_SECONDS:g} s each, --jobs 2: {wall:.1f} s wall, "
              f"{realtime:.0f} x real time of output (target >= 100: {'pass' if realtime >= 100 else 'FAIL'}), "
              f"exit {code}")

    shutil.rmtree(out_dir, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
