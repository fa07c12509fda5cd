"""Startup time of `harmonizer --help`, `harmonizer extend --help` and `harmonizer serve --help` (target < 1.5 s).

Run by hand:  python benchmarks/startup.py [--runs 11]

Prints the median wall time of each command as a fresh process, beside a baseline
in the same run (`python -c pass`, the interpreter alone), the ratio, and which
heavy modules (tensorflow, librosa, fastapi, uvicorn, ...) each command imported (there must be none).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

HEAVY = ("tensorflow", "keras", "librosa", "numba", "matplotlib", "scipy", "soundfile", "av", "fastapi", "uvicorn",
         "starlette")
PROBE = (
    "import sys\n"
    "from harmonizer_cli.cli import main\n"
    "try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
    "print('HEAVY=' + ','.join(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)\n"
)


def time_command(argv: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def heavy_imports(argv: list[str]) -> str:
    code = PROBE.format(argv=argv, heavy=HEAVY)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    line = [l for l in result.stderr.splitlines() if l.startswith("HEAVY=")]
    return (line[-1][6:] or "none") if line else "probe failed"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=11)
    args = parser.parse_args()
    baseline = time_command([sys.executable, "-c", "pass"], args.runs)
    print(f"{'command':32} {'median s':>9} {'x baseline':>11}  heavy modules imported")
    print(f"{'python -c pass (baseline)':32} {baseline:9.3f} {1.0:11.1f}")
    for argv in (["--help"], ["extend", "--help"], ["serve", "--help"]):
        median = time_command([sys.executable, "-m", "harmonizer_cli", *argv], args.runs)
        verdict = "ok" if median < 1.5 else "OVER 1.5 s TARGET"
        print(f"{'harmonizer ' + ' '.join(argv):32} {median:9.3f} {median / baseline:11.1f}  "
              f"{heavy_imports(argv)}  [{verdict}]")


if __name__ == "__main__":
    main()
