"""Shared fixtures: seeded synthetic audio written to tmp_path, and the music folder."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

# The interrupt tests press Ctrl-C on a foreground command. A shell starts a background job
# with SIGINT ignored, and the commands the tests start would inherit that: run from one,
# the suite restores Python's own handler (a foreground run, like CI's, already has it).
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

#: ../shared/music beside the repository (CI has it; tests that need it skip without it).
MUSIC_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "music"
SONGS_DIR = MUSIC_DIR / "songs"
TRAIN_DIR = MUSIC_DIR / "train"


def require_music(folder: Path = SONGS_DIR) -> list[Path]:
    """The audio files of ``folder``, or skip the test with a clear message."""
    files = sorted(p for p in folder.glob("*") if p.suffix in {".mp3", ".ogg"}) if folder.is_dir() else []
    if not files:
        pytest.skip(f"real music not available: {folder} is absent or empty")
    return files


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261121)


def make_tone(
    seconds: float, *, sample_rate: int = 44100, n_channels: int = 2, seed: int = 0
) -> np.ndarray:
    """A seeded test signal: two sines per channel plus a little noise, shape (n, channels)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    columns = []
    for channel in range(n_channels):
        f = 220.0 * (1 + channel * 0.5)
        columns.append(0.3 * np.sin(2 * np.pi * f * t) + 0.1 * np.sin(2 * np.pi * 3.01 * f * t)
                       + 0.02 * rng.standard_normal(t.size))
    return np.stack(columns, axis=1).astype(np.float32)


@pytest.fixture
def tone_wav(tmp_path: Path) -> Path:
    """2.5 s stereo 44.1 kHz 16-bit WAV."""
    path = tmp_path / "tone.wav"
    sf.write(path, make_tone(2.5), 44100, subtype="PCM_16")
    return path


@pytest.fixture
def short_wav(tmp_path: Path) -> Path:
    """0.5 s mono 22.05 kHz WAV."""
    path = tmp_path / "short.wav"
    sf.write(path, make_tone(0.5, sample_rate=22050, n_channels=1), 22050)
    return path


@pytest.fixture
def silent_wav(tmp_path: Path) -> Path:
    """2 s of digital silence, stereo 48 kHz."""
    path = tmp_path / "silent.wav"
    sf.write(path, np.zeros((96000, 2), dtype=np.float32), 48000)
    return path
