"""Speed and memory of `harmonizer extend`, beside PyMusicLooper in the same run.

Run by hand (a few minutes; nothing else heavy should run meanwhile):

    .venv/bin/python benchmarks/extension_speed.py [--runs 5] [--songs-dir ../shared/music/songs]
        [--skip-pml] [--skip-batch] [--cases default|long|all] [--long-case NAME]
        [--out benchmarks/results/extension_speed.json]

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

The package is byte-compiled first (``compileall``), as an installed package and
PyMusicLooper are: from an editable checkout with ``PYTHONDONTWRITEBYTECODE`` set,
Python would compile every module of the command on every run (0.1-0.2 s).

Targets (on the 2-core machine): the cold command's wall time <= 0.2 x PyMusicLooper's
(issue 12; 0.5 before), peak RSS <= 500 MB, batch >= 100 x real time.

4. ``--cases long`` (or ``all``: both) runs the long cases instead, one at a time, each
   once as a whole cold command (``--long-case NAME`` picks some):

   ============  ==================================  ==========================
   case          command                             targets (issue 12)
   ============  ==================================  ==========================
   3min-3h       3-minute mp3, ``--hours 3``, flac   wall <= 90 s, RSS <= 700 MB
   3min-10h      3-minute mp3, ``--hours 10``, flac  wall <= 300 s, RSS <= 700 MB
   10min-60min   10-minute mp3, ``--minutes 60``     RSS <= 700 MB
   1h-2h         1-hour mp3, ``--hours 2``           RSS <= 700 MB
   2h-150min     2-hour mp3 (the longest accepted),  RSS <= 700 MB
                 ``--minutes 150``, flac
   ============  ==================================  ==========================

   The 10-minute, 1-hour and 2-hour inputs are made once in /tmp/harmonizer-bench by
   concatenating the 44.1 kHz stereo songs of ../shared/music/songs, looped, in blocks
   (never in the repository). Each output is checked for its exact length in samples and
   for its real ending: its last 10 s against the input's last 10 s as ``save_audio``
   writes them (overs of full scale softened by its limiter; correlation, and the
   largest difference: 16-bit quantisation is 3e-5). PyMusicLooper runs beside only
   in 10min-60min (``--skip-pml`` skips it): it renders the whole output in memory (at 3
   and 10 hours, 3.8 and 12.7 GB of float32 samples), and an hour-long input is beyond
   what it was made for.

   Each long case runs with ``--json`` (its record written to a file beside the output;
   timed as before) and reports the repetition of its output from the record's segments
   (``quality.segment_repetition``: exact copies, outputs of any length): ``rep``, the
   share of all frames that replay earlier material at the single modal lag, that lag,
   ``past``, the same over the frames past the input's length (a plain loop: 1), and
   ``cycle``, the largest share of the output in which the segment sequence repeats with
   one period (a plan settled into a short cycle: near 1).
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


def make_long_input(songs_dir: Path, destination: Path, seconds: float) -> Path:
    """The 44.1 kHz stereo songs of ``songs_dir`` concatenated (looped) into a ``seconds`` long mp3.

    Written in blocks (an hour of samples is never in memory); reused when present.
    """
    import soundfile as sf

    if destination.exists():
        return destination
    songs = [p for p in sorted(songs_dir.glob("*.mp3")) if (lambda i: i.samplerate == 44100 and i.channels == 2)(
        sf.info(str(p)))]
    if not songs:
        raise SystemExit(f"error: no 44.1 kHz stereo songs in {songs_dir}")
    partial = destination.with_suffix(".part.mp3")
    wanted, written = int(seconds * 44100), 0
    with sf.SoundFile(str(partial), "w", samplerate=44100, channels=2, format="MP3") as out:
        while written < wanted:
            for song in songs:
                data = sf.read(str(song), dtype="float32", always_2d=True)[0][: wanted - written]
                for start in range(0, data.shape[0], 1 << 16):
                    out.write(data[start:start + (1 << 16)])
                written += data.shape[0]
                if written >= wanted:
                    break
    os.replace(partial, destination)
    print(f"made {destination} ({seconds / 60:g} minutes of {len(songs)} songs, looped)", file=sys.stderr)
    return destination


def ending_check(source: Path, output: Path, *, seconds: float = 10.0) -> dict:
    """The output's last ``seconds`` against the source's: correlation and largest difference.

    The source's overs of full scale are brought down as ``save_audio`` writes them (its
    peak limiter, over the tail and 50 ms before it), so the two agree to 16-bit rounding.
    """
    import soundfile as sf

    from harmonizer_cli.core import audio_io

    with sf.SoundFile(str(source)) as handle:  # decoded through, keeping the tail (mp3 seeks are estimates)
        rate, n = handle.samplerate, int(seconds * handle.samplerate)
        keep = n + int(0.05 * rate)
        tail = np.zeros((0, handle.channels), np.float32)
        while True:
            block = handle.read(1 << 18, dtype="float32", always_2d=True)
            if block.shape[0] == 0:
                break
            tail = np.concatenate([tail, block])[-keep:]
    limiter = getattr(audio_io, "limited", None)
    if limiter is not None:
        tail = np.concatenate(list(limiter([tail], sample_rate=rate)))
    tail = np.clip(tail[-n:], -1.0, 1.0)
    with sf.SoundFile(str(output)) as handle:
        handle.seek(max(0, handle.frames - n))
        end = handle.read(n, dtype="float32", always_2d=True)
    if end.shape != tail.shape:
        return {"correlation": None, "max_difference": None, "ok": False}
    a, b = tail.astype(np.float64).ravel(), end.astype(np.float64).ravel()
    correlation = float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))
    difference = float(np.max(np.abs(a - b)))
    return {"correlation": correlation, "max_difference": difference,
            "ok": correlation >= 0.9999 and difference <= 1e-4}


#: The long cases: name -> (input, input seconds, target option, target value, target seconds, format,
#: wall-time target in seconds or None, whether PyMusicLooper runs beside).
LONG_CASES = {
    "3min-3h": ("three-minutes.mp3", 180.0, "--hours", "3", 3 * 3600.0, "flac", 90.0, False),
    "3min-10h": ("three-minutes.mp3", 180.0, "--hours", "10", 10 * 3600.0, "flac", 300.0, False),
    "10min-60min": ("ten-minutes.mp3", 600.0, "--minutes", "60", 3600.0, "wav", None, True),
    "1h-2h": ("one-hour.mp3", 3600.0, "--hours", "2", 7200.0, "wav", None, False),
    "2h-150min": ("two-hours.mp3", 7200.0, "--minutes", "150", 9000.0, "flac", None, False),
}


def run_long_cases(names: list[str], *, songs_dir: Path, harmonizer: Path, skip_pml: bool) -> list[dict]:
    """Each long case once, one at a time: wall, peak RSS, exact length and the real ending."""
    import soundfile as sf

    rows = []
    out_dir = BENCH / "long-out"
    for name in names:
        file_name, seconds, option, value, target, fmt, wall_target, with_pml = LONG_CASES[name]
        if file_name == "three-minutes.mp3":
            source = make_three_minutes(songs_dir, BENCH / file_name)
        else:
            source = make_long_input(songs_dir, BENCH / file_name, seconds)
        shutil.rmtree(out_dir, ignore_errors=True)
        out_dir.mkdir(parents=True)
        output = out_dir / f"out.{fmt}"
        record_path = out_dir / "extend.json"
        wall, rss, code = timed_run([str(harmonizer), "--quiet", "extend", str(source), option, value,
                                     "-o", str(output), "--force", "--json"], stdout_path=record_path)
        row = {"case": name, "command": f"extend {source.name} {option} {value} -o out.{fmt} --json",
               "wall_seconds": wall, "peak_rss_mb": rss, "exit_code": code}
        if code == 0:
            info = sf.info(str(output))
            row["n_samples"], row["expected_samples"] = info.frames, int(round(target * info.samplerate))
            row["exact_length"] = info.frames == row["expected_samples"]
            row["ending"] = ending_check(source, output)
            row["repetition"] = long_repetition(record_path)
        row["wall_target_seconds"], row["rss_target_mb"] = wall_target, 700.0
        if with_pml and not skip_pml:
            pml_exe, version = ensure_pymusiclooper()
            pml_dir = out_dir / "pml"
            pml_dir.mkdir()
            p_wall, p_rss, p_code = timed_run([str(pml_exe), "extend", "--path", str(source), "--extended-length",
                                               f"{target:g}", "--output-dir", str(pml_dir), "--format", "wav"])
            row["pml"] = {"version": version, "wall_seconds": p_wall, "peak_rss_mb": p_rss, "exit_code": p_code}
        shutil.rmtree(out_dir, ignore_errors=True)
        rows.append(row)
        print(_long_line(row), file=sys.stderr, flush=True)
    print(f"\n{'case':<13}{'wall s':>9}{'target':>9}{'peak RSS MB':>13}{'exact length':>14}{'ending corr':>13}"
          f"{'ending ok':>11}{'rep':>6}{'lag s':>7}{'past':>6}{'cycle':>7}")
    for row in rows:
        ending = row.get("ending") or {}
        corr = ending.get("correlation")
        wall_target = row["wall_target_seconds"]
        verdicts = [] if row["exit_code"] == 0 else [f"exit {row['exit_code']}"]
        if wall_target is not None and row["wall_seconds"] > wall_target:
            verdicts.append("wall FAIL")
        if row["peak_rss_mb"] > row["rss_target_mb"]:
            verdicts.append("RSS FAIL")
        if not row.get("exact_length") or not ending.get("ok"):
            verdicts.append("check FAIL")
        rep = row.get("repetition") or {}
        print(f"{row['case']:<13}{row['wall_seconds']:>9.1f}{'<= %g' % wall_target if wall_target else '-':>9}"
              f"{row['peak_rss_mb']:>13.0f}{str(row.get('exact_length')):>14}"
              f"{'%.5f' % corr if corr is not None else '-':>13}{str(ending.get('ok')):>11}"
              f"{_figure(rep.get('share'), '.2f'):>6}{_figure(rep.get('modal_lag_seconds'), '.0f'):>7}"
              f"{_figure(rep.get('past'), '.2f'):>6}{_figure(rep.get('cycle'), '.2f'):>7}"
              f"  {'pass' if not verdicts else ', '.join(verdicts)} (RSS target <= 700 MB)")
        if "pml" in row:
            pml = row["pml"]
            print(f"{'  pymusiclooper ' + pml['version'].split()[-1]:<22}{pml['wall_seconds']:>9.1f} s"
                  f"{pml['peak_rss_mb']:>13.0f} MB  exit {pml['exit_code']}")
    return rows


def long_repetition(record_path: Path) -> dict | None:
    """``segment_repetition`` of the output whose ``extend --json`` record is in ``record_path``.

    None when the record is missing or has no segments. Counted exactly from the
    segment list, which the audio measure's n x n matrices cannot do over hours (see
    ``harmonizer_cli.core.quality.segment_repetition``).
    """
    from harmonizer_cli.core.quality import segment_repetition

    lines = record_path.read_text().strip().splitlines() if record_path.exists() else []
    if not lines:
        return None
    record = json.loads(lines[-1])
    if not record.get("segments"):
        return None
    return segment_repetition(record["segments"], source_seconds=record["input_seconds"],
                              output_seconds=record["output_seconds"])


def _figure(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _long_line(row: dict) -> str:
    ending = row.get("ending") or {}
    rep = row.get("repetition") or {}
    return (f"{row['case']}: {row['wall_seconds']:.1f} s, {row['peak_rss_mb']:.0f} MB, exit {row['exit_code']}, "
            f"exact length {row.get('exact_length')}, ending {ending.get('correlation')} "
            f"(max difference {ending.get('max_difference')}), rep {_figure(rep.get('share'), '.2f')} "
            f"(lag {_figure(rep.get('modal_lag_seconds'), '.0f')} s), past {_figure(rep.get('past'), '.2f')}, "
            f"cycle {_figure(rep.get('cycle'), '.2f')}")


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


def timed_run(command: list[str], *, cwd: Path | None = None,
              stdout_path: Path | None = None) -> tuple[float, float, int]:
    """Wall seconds, peak RSS in MB (the process and its waited-for children), exit code.

    stdout goes to ``stdout_path`` when given (a file, not a pipe: the ``--json`` record
    of hours has thousands of segments, more than a pipe holds while nobody reads it),
    else nowhere; the file is opened before the clock starts.
    """
    sink = open(stdout_path, "wb") if stdout_path is not None else subprocess.DEVNULL
    try:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, stdout=sink, stderr=subprocess.PIPE)
        # read stderr in the background would be nicer; the tools print little
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
    finally:
        if stdout_path is not None:
            sink.close()
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
    parser.add_argument("--cases", choices=("default", "long", "all"), default="default",
                        help="default: the 5-minute runs and the batch; long: the long cases (minutes each); all: both.")
    parser.add_argument("--long-case", action="append", choices=sorted(LONG_CASES),
                        help="Run only this long case (repeatable; default: all of them).")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "extension_speed.json")
    args = parser.parse_args(argv)

    BENCH.mkdir(parents=True, exist_ok=True)
    harmonizer = Path(sys.executable).with_name("harmonizer")
    # byte-compiled as `pip install .` leaves it (and as PyMusicLooper is): an editable
    # checkout run with PYTHONDONTWRITEBYTECODE set would compile every module every run
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "harmonizer_cli")], check=False)
    long_rows = None
    if args.cases in ("long", "all"):
        names = args.long_case or list(LONG_CASES)
        long_rows = run_long_cases(names, songs_dir=args.songs_dir, harmonizer=harmonizer, skip_pml=args.skip_pml)
        if args.cases == "long":
            out = args.out.with_name(args.out.stem + "_long.json")
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({"long": long_rows}, indent=1))
            print(f"results: {out}")
            return 0
    source = make_three_minutes(args.songs_dir, BENCH / "three-minutes.mp3")
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
        print(f"wall ratio harmonizer / pymusiclooper: {ratio:.2f} (target <= 0.2: {'pass' if ratio <= 0.2 else 'FAIL'})")
        print(f"RSS ratio harmonizer / pymusiclooper: {ours_rss / pml_rss:.2f}")
    print(f"peak RSS harmonizer: {ours_rss:.0f} MB (target <= 500: {'pass' if ours_rss <= 500 else 'FAIL'})")

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
    if long_rows is not None:
        results["long"] = long_rows
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
