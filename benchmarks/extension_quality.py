"""Extension quality over real songs: our engine beside a naive loop and a bad splice.

Run by hand (it takes several minutes; it is niced):

    .venv/bin/python benchmarks/extension_quality.py [--panel songs|unseen|dev | --songs-dir DIR]
        [--targets 300 45] [--only N] [--out benchmarks/results/extension_quality.json]
        [--no-model] [--seed 0] [--keep DIR]

The panels are fixed (``benchmarks/panels.py``): ``songs`` (the 12 songs the engine was
tuned on), ``unseen`` (music it is never tuned on: tracks of ../shared/music/train and
3-13 s clips of the songs; report it beside ``songs``, never tune on it), ``dev`` and
``loops`` (7-13 s clips of the songs from elsewhere in them, to tune the looping of clips).

For every song and every target length (seconds) three outputs are measured with
``harmonizer_cli.core.quality.extension_report`` against the song:

engine  ``harmonizer extend SONGS --seconds T --out-dir TMP --format wav --json`` as a
        subprocess (one call per target; the seams come from its JSON);
loop    the naive loop: the song tiled and hard-cut to length (seams at each restart);
splice  the negative control: the song's real beginning, then pieces of 2-8 s from
        random places, then its real ending (last 12 s), every cut at a random point at
        least a quarter beat away from any beat, with no crossfade. The metrics MUST flag
        it on the seam measures.
late    the groove control: smooth seams (40 ms crossfades) that jump back 8 beats on
        librosa's beat grid but land a third of a beat late. Crest, novelty and
        broadband cannot hear it; the groove measure and the grid check MUST flag it.

Besides the report's measures (clicks anywhere, the groove at every seam, ...), each
seam is checked against an independent beat tracker (librosa's, on the original):
where the song is steady around both places (regular beats, and a clear pulse in its
onsets), the landing must sit at the same place
in the beat as the departure, within 50 ms (``grid``: seams off the grid).

Prints a per-song table for each variant and target, the medians, a pass/fail table
of the issue's targets (per-song targets count songs that pass, "12/12"; the median
and worst-case targets over songs are checked as the issue states them), and which
targets the negative control fails. Outputs are written to a temporary folder and
removed (``--keep DIR`` keeps them); the numbers go to ``--out`` (JSON, git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harmonizer_cli.core import quality  # noqa: E402
from harmonizer_cli.core.audio_io import Audio, load_audio  # noqa: E402

VARIANTS = ("engine", "loop", "splice", "late", "pml")
DEFAULT_VARIANTS = ("engine", "loop", "splice", "late")
#: A seam is off the independent beat grid beyond this (seconds).
GRID_TOLERANCE_SECONDS = 0.05
PML = Path("/tmp/harmonizer-bench/pml-venv/bin/pymusiclooper")
SEAM_TARGETS = ("seam_crest", "seam_novelty", "seam_broadband")
ENDING_SECONDS = 12.0


# --------------------------------------------------------------------------- outputs


def run_engine(songs: list[Path], target: float, out_dir: Path, *, seed: int, no_model: bool) -> tuple[dict, float]:
    """Run `harmonizer extend` on all songs; return {input path: JSON record} and wall seconds."""
    harmonizer = Path(sys.executable).with_name("harmonizer")
    command = [str(harmonizer) if harmonizer.exists() else sys.executable, *([] if harmonizer.exists() else
               ["-m", "harmonizer_cli"]), "--quiet", "extend", *map(str, songs), "--seconds", f"{target:g}",
               "--out-dir", str(out_dir), "--format", "wav", "--json", "--force", "--seed", str(seed)]
    if no_model:
        command.append("--no-model")
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    records = {}
    for line in result.stdout.splitlines():
        if line.strip().startswith("{"):
            record = json.loads(line)
            records[str(Path(record["input"]).resolve())] = record
    if result.returncode != 0:
        print(f"warning: harmonizer extend exited {result.returncode}: {result.stderr.strip()[-500:]}",
              file=sys.stderr)
    return records, wall


def run_pml(song: Path, target: float, out_dir: Path) -> Path | None:
    """PyMusicLooper's extend of one song (None when it fails or is not installed)."""
    if not PML.exists():
        print(f"warning: {PML} missing (run benchmarks/extension_speed.py once)", file=sys.stderr)
        return None
    folder = out_dir / song.stem
    folder.mkdir(parents=True, exist_ok=True)
    result = subprocess.run([str(PML), "extend", "--path", str(song), "--extended-length", f"{target:g}",
                             "--output-dir", str(folder), "--format", "wav"], capture_output=True, text=True,
                            check=False)
    outputs = sorted(folder.glob("*.wav"))
    if result.returncode != 0 or not outputs:
        print(f"warning: pymusiclooper failed on {song.name}: {result.stderr.strip()[-300:]}", file=sys.stderr)
        return None
    return outputs[-1]


def naive_loop(song: Audio, target: float) -> tuple[Audio, list[float], list[tuple[float, float]]]:
    n = int(round(target * song.sample_rate))
    reps = int(np.ceil(n / song.n_samples))
    samples = np.tile(song.samples, (reps, 1))[:n]
    seams = [k * song.duration_seconds for k in range(1, reps) if k * song.n_samples < n]
    return Audio(samples, song.sample_rate), seams, [(song.duration_seconds, 0.0)] * len(seams)


def _off_beat(rng: np.random.Generator, lo: float, hi: float, beats: np.ndarray, min_gap: float) -> float:
    """A random time in [lo, hi] at least ``min_gap`` from every beat."""
    for _ in range(1000):
        t = float(rng.uniform(lo, hi))
        if beats.size == 0 or np.min(np.abs(beats - t)) >= min_gap:
            return t
    return float(rng.uniform(lo, hi))


def bad_splice(song: Audio, target: float, beats: np.ndarray, *,
               seed: int) -> tuple[Audio, list[float], list[tuple[float, float]]]:
    """Real beginning, random 2-8 s pieces, real ending; every cut off the beat, no crossfade."""
    rng = np.random.default_rng(seed)
    rate, duration = song.sample_rate, song.duration_seconds
    period = float(np.median(np.diff(beats))) if beats.size > 1 else 0.5
    gap = 0.25 * period
    end_start = _off_beat(rng, duration - ENDING_SECONDS - 1.0, duration - ENDING_SECONDS, beats, gap)
    tail = song.samples[int(end_start * rate):]
    budget = int(round(target * rate)) - tail.shape[0]
    pieces, seams, total, pairs = [], [], 0, []
    first_end = _off_beat(rng, 3.0, min(8.0, max(3.5, budget / rate - 1.0)), beats, gap)
    pieces.append(song.samples[: int(first_end * rate)])
    total = pieces[0].shape[0]
    left = first_end
    while total < budget:
        seams.append(total / rate)
        start = _off_beat(rng, 1.0, duration - ENDING_SECONDS - 9.0, beats, gap)
        length = int(_off_beat(rng, start + 2.0, start + 8.0, beats, gap) * rate) - int(start * rate)
        length = min(length, budget - total)
        pieces.append(song.samples[int(start * rate): int(start * rate) + length])
        pairs.append((left, start))
        left = start + length / rate
        total += length
    seams.append(total / rate)
    pairs.append((left, end_start))
    pieces.append(tail)
    return Audio(np.concatenate(pieces)[: int(round(target * rate))], rate), seams, pairs


def late_splice(song: Audio, target: float, beats: np.ndarray) -> tuple[Audio, list[float], list[tuple[float, float]]]:
    """Smooth seams (40 ms crossfades) that jump back 8 beats but land a third of a beat late."""
    rate = song.sample_rate
    if beats.size < 40:
        return naive_loop(song, target)
    period = float(np.median(np.diff(beats)))
    fade = int(0.04 * rate)
    ramp = (0.5 - 0.5 * np.cos(np.pi * (np.arange(fade) + 0.5) / fade)).astype(np.float32)[:, None]
    n_target = int(round(target * rate))
    k = 16
    out = [song.samples[:int(beats[k] * rate)]]
    position = out[0].shape[0]
    seams: list[float] = []
    pairs: list[tuple[float, float]] = []
    left = int(beats[k] * rate)  # where the source would have gone on
    while position < n_target:
        land = float(beats[k - 8] + period / 3.0)
        start, stop = int(land * rate), int(beats[k + 8] * rate)
        piece = song.samples[start:stop].copy()
        follow = song.samples[left:left + fade]
        piece[:fade] = piece[:fade] * ramp + follow * (1.0 - ramp)
        seams.append(position / rate)
        pairs.append((left / rate, land))
        out.append(piece)
        position += piece.shape[0]
        left = stop
        k = k + 8 if k + 16 < beats.size - 1 else 16
    return Audio(np.concatenate(out)[:n_target], rate), seams, pairs


def grid_errors(beats: np.ndarray, pairs: list[tuple[float, float]], *, steady=None) -> list[float | None]:
    """How far each jump (source time left, source time landed on) is off the beat grid (s).

    The place in the beat (librosa's beats of the original, interpolated) of the landing
    minus that of the departure, times the local beat period, wrapped into half a beat;
    None where the song is not steady around either place (librosa's beat periods within
    +-4 beats varying by more than 10 %, or ``steady(t)`` false: no clear pulse in the
    onsets there) or outside the tracked beats.
    """
    beats = np.asarray(beats, dtype=float)
    if beats.size < 10:
        return [None] * len(pairs)
    periods = np.diff(beats)

    def place(t: float):
        k = int(np.searchsorted(beats, t, side="right") - 1)
        if k < 4 or k >= beats.size - 5 or (steady is not None and not steady(t)):
            return None
        around = periods[k - 4:k + 4]
        if np.max(np.abs(around - np.mean(around))) > 0.1 * np.mean(around):
            return None  # the tracker is not steady here (it slips phase in fills and breaks)
        return k + (t - beats[k]) / periods[k], float(np.mean(around))

    errors: list[float | None] = []
    for left, landed in pairs:
        a, b = place(left), place(landed)
        if a is None or b is None:
            errors.append(None)
            continue
        phase = (b[0] - a[0] + 0.5) % 1.0 - 0.5
        errors.append(float(abs(phase) * 0.5 * (a[1] + b[1])))
    return errors


def check_detection(song: Audio, extended: Audio, seams: list[float], *, tolerance: float = 0.001) -> dict:
    """How well ``detect_seams`` finds the known seams of a splice (within 1 ms)."""
    found = quality.detect_seams(song, extended).times
    hits = sum(1 for t in seams if found.size and np.min(np.abs(found - t)) <= tolerance)
    false = sum(1 for t in found if not seams or np.min(np.abs(np.asarray(seams) - t)) > tolerance)
    return {"true": len(seams), "found": int(found.size), "hits": hits, "false": false}


# --------------------------------------------------------------------------- tables


COLUMNS = [
    ("dur err", lambda r: r["duration"]["error_seconds"], "{:.4f}"),
    ("seams", lambda r: r["seams"]["count"], "{:.0f}"),
    ("crest", lambda r: r["seams"]["crest"]["ratio"], "{:.2f}"),
    ("novel", lambda r: r["seams"]["novelty"]["ratio"], "{:.2f}"),
    ("bband", lambda r: r["seams"]["broadband"]["ratio"], "{:.2f}"),
    ("min p", lambda r: min([r["seams"][k]["p_value"] for k in ("crest", "novelty", "broadband")
                             if r["seams"][k]["p_value"] is not None], default=None), "{:.3f}"),
    ("oob+dB", lambda r: (r.get("clicks") or {}).get("out_of_band") and r["clicks"]["out_of_band"]["excess_db"],
     "{:+.1f}"),
    ("crestX", lambda r: r.get("clicks") and r["clicks"]["crest"]["ratio"], "{:.2f}"),
    ("stumble", lambda r: r.get("groove") and (f"{r['groove']['stumbling']}/{r['groove']['measured']}"), "{}"),
    ("grid", lambda r: r.get("grid") and f"{r['grid']['off']}/{r['grid']['checked']}", "{}"),
    ("dip+dB", lambda r: r["dips"]["excess_db"], "{:+.1f}"),
    ("rep(a)", lambda r: r["repetition"]["past_original"], "{:.2f}"),
    ("rep(b)", lambda r: r["repetition"]["repeating"], "{:.2f}"),
    ("orig(b)", lambda r: r["repetition"]["original_repeating"], "{:.2f}"),
    ("end corr", lambda r: r["ending"]["correlation"], "{:.4f}"),
    ("dBPM", lambda r: r["mood"]["tempo_delta_bpm"], "{:+.1f}"),
    ("key", lambda r: r["mood"]["key_same"], "{}"),
    ("dLU", lambda r: r["mood"]["loudness_delta_lu"], "{:+.2f}"),
    ("dCent%", lambda r: r["mood"]["centroid_delta_percent"], "{:+.1f}"),
]


def _cell(value, spec: str) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, (bool, np.bool_)):
        return "same" if value else "DIFF"
    if isinstance(value, str):
        return value
    return spec.format(value)


def print_song_table(title: str, rows: list[tuple[str, dict, dict]]) -> None:
    print(f"\n## {title}")
    header = f"{'song':<22}" + "".join(f"{name:>9}" for name, _, _ in COLUMNS) + "  failed targets"
    print(header)
    for song, report, checks in rows:
        failed = ",".join(k for k, v in checks.items() if v is False) or "-"
        print(f"{song[:22]:<22}" + "".join(f"{_cell(get(report), spec):>9}" for _, get, spec in COLUMNS)
              + f"  {failed}")
    medians = []
    for _, get, spec in COLUMNS:
        values = [get(r) for _, r, _ in rows]
        values = [float(v) for v in values if v is not None and not isinstance(v, (bool, np.bool_, str))]
        medians.append(_cell(statistics.median(values), spec) if values else "n/a")
    print(f"{'MEDIAN':<22}" + "".join(f"{m:>9}" for m in medians))


def aggregate_targets(rows: list[tuple[str, dict, dict]], *, full: bool) -> dict:
    """The issue's targets over the songs: {target: (passed: bool|None, detail: str)}."""
    out: dict = {}
    names = [k for k in rows[0][2]] if rows else []
    for name in names:
        values = [checks.get(name) for _, _, checks in rows]
        known = [v for v in values if v is not None]
        if not known:
            out[name] = (None, "n/a")
            continue
        out[name] = (all(known), f"{sum(known)}/{len(known)}")
    if rows:
        total = lambda key, field: sum(r[key][field] for _, r, _ in rows if r.get(key))  # noqa: E731
        out["groove"] = (total("groove", "stumbling") == 0,
                         f"{total('groove', 'stumbling')} of {total('groove', 'measured')} seams stumble")
        out["grid"] = (total("grid", "off") == 0, f"{total('grid', 'off')} of {total('grid', 'checked')} off the grid")
        clicks = sum((r["clicks"]["crest"]["clicks"] + ((r["clicks"]["out_of_band"] or {}).get("clicks") or 0))
                     for _, r, _ in rows if r.get("clicks"))
        out["clicks"] = (clicks == 0, f"{clicks} places in {len(rows)} outputs")
    if full and rows:
        past = [r["repetition"]["past_original"] for _, r, _ in rows if r["repetition"]["past_original"] is not None]
        if past:
            median = statistics.median(past)
            out["repetition_past"] = (median <= quality.TARGETS["repetition_past_original"], f"median {median:.2f}")
        loud = [abs(r["mood"]["loudness_delta_lu"]) for _, r, _ in rows if r["mood"]["loudness_delta_lu"] is not None]
        if loud:
            median, worst = statistics.median(loud), max(loud)
            ok = median <= quality.TARGETS["loudness_median_delta_lu"] and worst <= quality.TARGETS["loudness_delta_lu"]
            out["loudness"] = (ok, f"median {median:.2f}, worst {worst:.2f} LU")
        cent = [abs(r["mood"]["centroid_delta_percent"]) for _, r, _ in rows]
        out["centroid"] = (max(cent) <= quality.TARGETS["centroid_delta_percent"], f"worst {max(cent):.1f} %")
    return out


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--panel", choices=("songs", "unseen", "dev", "loops"), default="songs",
                        help="The fixed panel (benchmarks/panels.py); --songs-dir overrides it.")
    parser.add_argument("--songs-dir", type=Path, default=None, help="A folder of songs instead of a panel.")
    parser.add_argument("--targets", type=float, nargs="+", default=[300.0, 45.0])
    parser.add_argument("--only", type=int, default=None, help="Only the first N songs.")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "extension_quality.json")
    parser.add_argument("--no-model", action="store_true", help="Run the engine with --no-model.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, default=None, help="Keep the engine's outputs in this folder.")
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS), choices=VARIANTS,
                        help="pml: also PyMusicLooper's `extend` (from benchmarks/extension_speed.py's venv; "
                             "targets longer than the song only), measured with blindly detected seams.")
    args = parser.parse_args(argv)
    try:
        os.nice(10)
    except OSError:
        pass

    work = Path(tempfile.mkdtemp(prefix="harmonizer-quality-"))
    if args.songs_dir is not None:
        songs = sorted(p for p in args.songs_dir.glob("*") if p.suffix.lower() in {".mp3", ".ogg", ".wav", ".flac"})
    else:
        from panels import materialize

        songs = materialize(args.panel, work / "panel")
    if args.only:
        songs = songs[: args.only]
    if not songs:
        print(f"error: no songs in {args.songs_dir or args.panel}", file=sys.stderr)
        return 2
    engine_records: dict = {}
    engine_wall: dict = {}
    failed: dict = {target: [] for target in args.targets}
    try:
        if "engine" in args.variants:
            for target in args.targets:
                folder = (args.keep or work) / f"{target:g}s"
                folder.mkdir(parents=True, exist_ok=True)
                print(f"running harmonizer extend on {len(songs)} songs to {target:g} s ...", file=sys.stderr,
                      flush=True)
                engine_records[target], engine_wall[target] = run_engine(
                    songs, target, folder, seed=args.seed, no_model=args.no_model)
                print(f"  {engine_wall[target]:.1f} s wall", file=sys.stderr, flush=True)

        results: dict = {(v, t): [] for v in args.variants for t in args.targets}
        for index, song_path in enumerate(songs):
            started = time.perf_counter()
            song = load_audio(song_path)
            analysis = quality.analyse_original(song)
            envelope, frame_rate = quality.onset_envelope(analysis.view, sample_rate=22050)

            def steady(t: float, envelope=envelope, frame_rate=frame_rate, pulse=analysis.pulse) -> bool:
                """A clear pulse in the original's onsets around ``t`` (the groove measure can phase it)."""
                return pulse is not None and bool(np.isfinite(quality.phase_jumps(envelope, frame_rate,
                                                                                   np.array([t]), pulse)[0, 0]))
            for target in args.targets:
                full = target > song.duration_seconds + 1.0
                for variant in args.variants:
                    pairs = None
                    if variant == "engine":
                        record = engine_records[target].get(str(song_path.resolve()))
                        if record is None:
                            print(f"warning: no engine output for {song_path.name}", file=sys.stderr)
                            failed[target].append(song_path.stem)
                            continue
                        extended, seams = load_audio(record["output"]), record["seams"]
                        segments = record["segments"]
                        pairs = [(segments[k]["source_end"], segments[k + 1]["source_start"])
                                 for k in range(len(segments) - 1) if segments[k + 1]["source_start"] is not None]
                    elif variant == "pml":
                        if not full:
                            continue
                        made = run_pml(song_path, target, work / f"pml-{target:g}s")
                        if made is None:
                            continue
                        extended, seams = load_audio(made), None  # seams found blindly
                    elif variant == "loop":
                        extended, seams, pairs = naive_loop(song, target)
                    elif variant == "late":
                        extended, seams, pairs = late_splice(song, target, analysis.beat_times)
                    else:
                        extended, seams, pairs = bad_splice(song, target, analysis.beat_times,
                                                            seed=args.seed + index)
                    report = quality.extension_report(song, extended, seams=seams, target_seconds=target,
                                                      analysis=analysis)
                    if variant == "engine":
                        report["engine_record"] = {k: record.get(k) for k in
                                                   ("engine", "model", "fallback", "stretch", "timings")}
                    if variant == "splice" and full:
                        report["blind_detection"] = check_detection(song, extended, seams)
                    errors = [] if pairs is None else grid_errors(analysis.beat_times, pairs, steady=steady)
                    off = [e for e in errors if e is not None and e > GRID_TOLERANCE_SECONDS]
                    report["grid"] = {"checked": sum(e is not None for e in errors), "off": len(off),
                                      "errors_seconds": errors}
                    checks = quality.targets_met(report, full=full)
                    checks["grid"] = None if pairs is None or not report["grid"]["checked"] else not off
                    results[(variant, target)].append((song_path.stem, report, checks))
            print(f"[{index + 1}/{len(songs)}] {song_path.name} measured in {time.perf_counter() - started:.0f} s",
                  file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    summary: dict = {}
    for (variant, target), rows in results.items():
        if not rows:
            continue
        full = target > 60.0
        print_song_table(f"{variant} to {target:g} s", rows)
        summary[(variant, target)] = aggregate_targets(rows, full=full)

    print("\n## Targets (per-song targets: songs passing; medians and worst cases as the issue states them)")
    keys = [k for k in summary]
    names: list[str] = []
    for k in keys:
        names += [n for n in summary[k] if n not in names]
    print(f"{'target':<22}" + "".join(f"{v + '@' + format(t, 'g'):>26}" for v, t in keys))
    for name in names:
        cells = []
        for k in keys:
            passed, detail = summary[k].get(name, (None, "n/a"))
            mark = {True: "pass", False: "FAIL", None: "-"}[passed]
            cells.append(f"{mark} ({detail})")
        print(f"{name:<22}" + "".join(f"{c:>26}" for c in cells))

    verdicts = {}
    for target in args.targets:
        if ("splice", target) not in summary:
            continue
        caught = [n for n, (p, _) in summary[("splice", target)].items() if p is False]
        flagged = all(n in caught for n in SEAM_TARGETS if summary[("splice", target)].get(n, (None,))[0] is not None)
        verdicts[target] = {"fails": caught, "seam_targets_flagged": flagged}
        print(f"\nnegative control (splice) at {target:g} s fails: {', '.join(caught) or 'nothing'} -> "
              f"{'FLAGGED: the seam measures catch it' if flagged else 'NOT FLAGGED by every seam measure'}")
    for (variant, target), rows in results.items():
        checks = [r["blind_detection"] for _, r, _ in rows if "blind_detection" in r]
        if checks:
            true, hits, false = (sum(c[k] for c in checks) for k in ("true", "hits", "false"))
            print(f"blind seam detection on {variant}@{target:g}: {hits}/{true} seams found within 1 ms, "
                  f"{false} false")
    for target in args.targets:
        late = summary.get(("late", target))
        if late:
            caught = [n for n in ("groove", "grid") if late.get(n, (None,))[0] is False]
            print(f"groove control (late) at {target:g} s: {late.get('groove', (None, 'n/a'))[1]}; "
                  f"{late.get('grid', (None, 'n/a'))[1]} -> "
                  f"{'FLAGGED by ' + ' and '.join(caught) if caught else 'NOT FLAGGED'}")
    for target in args.targets:
        if "engine" in args.variants:
            print(f"engine failures at {target:g} s: {len(failed[target])} of {len(songs)}"
                  + (f" ({', '.join(failed[target])})" if failed[target] else ""))
    for target, wall in engine_wall.items():
        print(f"engine wall time for {len(songs)} songs to {target:g} s: {wall:.1f} s (one process, --jobs 1)")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "songs": [p.name for p in songs],
        "targets": args.targets,
        "engine_wall_seconds": {f"{t:g}": w for t, w in engine_wall.items()},
        "results": {f"{v}@{t:g}": [{"song": s, "report": r, "targets_met": c} for s, r, c in rows]
                    for (v, t), rows in results.items()},
        "summary": {f"{v}@{t:g}": {n: {"passed": p, "detail": d} for n, (p, d) in s.items()}
                    for (v, t), s in summary.items()},
        "negative_control": {f"{t:g}": v for t, v in verdicts.items()},
        "engine_failures": {f"{t:g}": v for t, v in failed.items()},
    }
    args.out.write_text(json.dumps(payload, indent=1, default=float))
    print(f"\nresults: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
