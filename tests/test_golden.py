"""Golden regression: pinned plans and output hashes of the guided engine.

A refactoring must leave these unchanged. When a change is *meant* to alter what
``extend`` produces, run ``python tests/test_golden.py`` to print the new pins,
paste them below and say in the commit message why the output changed.

Pinned: the segments (source spans and where they start in the output), the seam
times and the SHA-256 of the output as 16-bit PCM (what a WAV file holds).
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import SONGS_DIR  # noqa: E402
from test_extension import make_song  # noqa: E402

from harmonizer_cli.core.audio_io import load_audio  # noqa: E402
from harmonizer_cli.core.extend import extend_audio  # noqa: E402

#: The real song of the golden case (skipped when ../shared/music is absent).
REAL_SONG = SONGS_DIR / "funk-casino-163105.mp3"


def fingerprint(result) -> dict:
    """What is pinned of an ``ExtensionResult``."""
    pcm = np.clip(np.round(result.samples.astype(np.float64) * 32767.0), -32768, 32767).astype("<i2")
    return {
        "segments": [(s["source_start"], s["source_end"], s["output_start"]) for s in result.segments],
        "seams": list(result.seams_seconds),
        "stretch": result.stretch,
        "n_samples": int(result.samples.shape[0]),
        "sha256": hashlib.sha256(pcm.tobytes()).hexdigest(),
    }


def _synthetic_longer():
    return extend_audio(make_song(), target_seconds=41.3, seed=0)


def _synthetic_shorter():
    return extend_audio(make_song(seconds=30.0, seed=3), target_seconds=19.5, seed=1)


def _real_song():
    from harmonizer_cli.core.model import load_predictor

    return extend_audio(load_audio(REAL_SONG), target_seconds=150.0, seed=0, predictor=load_predictor(),
                        path=str(REAL_SONG))


CASES = {"synthetic-longer": _synthetic_longer, "synthetic-shorter": _synthetic_shorter, "real-song": _real_song}

# --- pins (printed by `python tests/test_golden.py`) -------------------------------
PINS: dict = {'real-song': {'n_samples': 6615000,
               'seams': [47.5971, 64.28, 85.863, 100.888, 109.971],
               'segments': [[0.0, 47.5971, 0.0],
                            [17.1283, 33.8112, 47.5971],
                            [7.1534, 28.7364, 64.28],
                            [19.2157, 34.2407, 85.863],
                            [41.8645, 50.9475, 100.888],
                            [28.5902, 68.6498, 109.971]],
               'sha256': 'c8ba9dd3b09d45bdc309cffa87b3e6d5acd15ada89da513512f245c9a977b3b2',
               'stretch': {'factor': 0.984728, 'region_seconds': [118.1973, 120.1667]}},
 'synthetic-longer': {'n_samples': 1982400,
                      'seams': [9.4436, 17.9294],
                      'segments': [[0.0, 9.4436, 0.0], [1.9512, 10.437, 9.4436], [0.4323, 24.0, 17.9294]],
                      'sha256': 'fe2b251a7da82fd2aa8f4025721aa8354c15f598fbeba5ae03e75c63725e24af',
                      'stretch': {'factor': 0.98, 'region_seconds': [19.5493, 29.2085]}},
 'synthetic-shorter': {'n_samples': 936000,
                       'seams': [4.4466],
                       'segments': [[0.0, 4.4466, 0.0], [14.9461, 30.0, 4.4466]],
                       'sha256': '29a0acf66916f20147f1ca49de266040023dd74105cd11f986bc6c335b9908fe',
                       'stretch': {'factor': 0.99975, 'region_seconds': [7.3923, 9.3918]}}}
# --- end of pins ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_output_is_unchanged(name):
    if name == "real-song" and not REAL_SONG.is_file():
        pytest.skip(f"real music not available: {REAL_SONG} is absent")
    got = fingerprint(CASES[name]())
    want = PINS[name]
    assert got["segments"] == [tuple(s) for s in want["segments"]], "the plan changed"
    assert got["seams"] == want["seams"], "the seams moved"
    assert got["stretch"] == want["stretch"], "the stretch changed"
    assert got["n_samples"] == want["n_samples"]
    assert got["sha256"] == want["sha256"], "same plan, different samples"


if __name__ == "__main__":
    import pprint

    pins = {}
    for case in sorted(CASES):
        if case == "real-song" and not REAL_SONG.is_file():
            continue
        pins[case] = fingerprint(CASES[case]())
        pins[case]["segments"] = [list(s) for s in pins[case]["segments"]]
    print("PINS: dict = " + pprint.pformat(pins, width=110, sort_dicts=True))
