"""Benchmark training speed (windows per second) of the default and the paper configuration.

Each configuration runs in its own process on random windows of the right shape,
batch size 20 (the paper's), Adam + MSE:

- ``default``: logmel frames (256 numbers), shared weights, 10 steps per execution
  (what ``harmonizer train`` runs); timed over ``--windows`` windows after a warm-up.
- ``paper`` (with ``--paper``): waveform frames (22050 samples), per-step weights (31
  units), the reference code's configuration: builds it, reports its parameter count
  and size, runs ONE warm-up training step and then ``--paper-steps`` timed steps.

Peak resident memory of each process is printed beside it.

Usage::

    .venv/bin/python benchmarks/train_speed.py [--paper] [--windows 4000] [--paper-steps 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

_CHILD = r"""
import json, resource, sys, time
import numpy as np
from harmonizer_cli.core.model import ModelConfig, build_model, count_parameters
name, n_windows, n_steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
config = ModelConfig() if name == "default" else ModelConfig.paper()
batch = 20
started = time.perf_counter()
model = build_model(config, learning_rate=0.01, steps_per_execution=10 if name == "default" else 1)
build_seconds = time.perf_counter() - started
rng = np.random.default_rng(0)
result = {"config": name, "parameters": count_parameters(model),
          "float32_mb": count_parameters(model) * 4 / 1e6, "build_seconds": build_seconds}
if name == "default":
    x = rng.standard_normal((n_windows, 20, config.frame_size)).astype(np.float32)
    y = rng.standard_normal((n_windows, 10, config.frame_size)).astype(np.float32)
    model.fit(x[:400], y[:400], batch_size=batch, epochs=1, verbose=0)  # trace + warm up
    started = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)
    seconds = time.perf_counter() - started
    result.update(windows=n_windows, seconds=seconds)
else:
    x = rng.standard_normal((batch, 20, config.frame_size)).astype(np.float32) * 0.1
    y = rng.standard_normal((batch, 10, config.frame_size)).astype(np.float32) * 0.1
    started = time.perf_counter()
    loss = float(model.train_on_batch(x, y))
    result["first_step_seconds"] = time.perf_counter() - started
    result["first_step_loss"] = loss
    started = time.perf_counter()
    for _ in range(n_steps):
        model.train_on_batch(x, y)
    seconds = time.perf_counter() - started
    result.update(windows=n_steps * batch, seconds=seconds)
result["windows_per_second"] = result["windows"] / result["seconds"] if result["seconds"] else None
result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(result))
"""


def run(name: str, windows: int, steps: int) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHILD, name, str(windows), str(steps)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        return {"config": name, "error": out.stderr.strip().splitlines()[-1:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paper", action="store_true", help="Also run the paper configuration (~6.5 GB RAM).")
    parser.add_argument("--windows", type=int, default=4000)
    parser.add_argument("--paper-steps", type=int, default=2)
    args = parser.parse_args()
    results = [run("default", args.windows, 0)]
    if args.paper:
        results.append(run("paper", 0, args.paper_steps))
    for r in results:
        if "error" in r:
            print(f"{r['config']:8s} FAILED: {r['error']}")
            continue
        extra = (f"  first step {r['first_step_seconds']:.1f} s" if "first_step_seconds" in r else "")
        print(f"{r['config']:8s} {r['parameters']:>12,d} parameters ({r['float32_mb']:8.1f} MB float32)  "
              f"build {r['build_seconds']:5.1f} s  {r['windows_per_second']:8.2f} windows/s{extra}  "
              f"peak RSS {r['peak_rss_mb']:8.1f} MB")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
