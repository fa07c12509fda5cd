"""Framing: properties of frame_audio / window_frames / unframe_audio (hypothesis)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from harmonizer_cli.core.framing import (
    count_frames,
    count_windows,
    frame_audio,
    frame_length_for,
    unframe_audio,
    window_frames,
)
from harmonizer_cli.errors import AudioError, ConfigError

finite = st.floats(-1.0, 1.0, allow_nan=False, width=32)
signals = st.integers(1, 3000).flatmap(lambda n: arrays(np.float32, n, elements=finite))


@given(audio=signals, frame_length=st.integers(1, 700))
@settings(max_examples=200, deadline=None)
def test_round_trip_and_frame_count(audio: np.ndarray, frame_length: int) -> None:
    frames = frame_audio(audio, frame_length=frame_length)
    assert frames.shape == (math.ceil(audio.size / frame_length), frame_length)
    assert frames.shape[0] == count_frames(audio.size, frame_length=frame_length)
    np.testing.assert_array_equal(unframe_audio(frames, n_samples=audio.size), audio)
    # the padding is zeros
    assert not frames.reshape(-1)[audio.size :].any()


@given(
    n_frames=st.integers(0, 80),
    n_input=st.integers(1, 25),
    n_output=st.integers(1, 12),
    hop=st.integers(1, 7),
)
@settings(max_examples=200, deadline=None)
def test_window_counts_and_contents(n_frames: int, n_input: int, n_output: int, hop: int) -> None:
    frames = np.arange(n_frames * 3, dtype=np.float32).reshape(n_frames, 3)
    inputs, targets = window_frames(frames, n_input=n_input, n_output=n_output, hop=hop)
    n_windows = max(0, (n_frames - n_input - n_output) // hop + 1)
    assert n_windows == count_windows(n_frames, n_input=n_input, n_output=n_output, hop=hop)
    assert inputs.shape == (n_windows, n_input, 3)
    assert targets.shape == (n_windows, n_output, 3)
    for w in range(n_windows):
        start = w * hop
        np.testing.assert_array_equal(inputs[w], frames[start : start + n_input])
        np.testing.assert_array_equal(targets[w], frames[start + n_input : start + n_input + n_output])
    if n_windows:  # every frame a window may use is used, and the next window would not fit
        assert (n_windows - 1) * hop + n_input + n_output <= n_frames < n_windows * hop + n_input + n_output


def test_windows_are_read_only_views() -> None:
    frames = np.zeros((40, 4), dtype=np.float32)
    inputs, targets = window_frames(frames)
    assert inputs.shape == (11, 20, 4) and targets.shape == (11, 10, 4)
    assert not inputs.flags.writeable and not targets.flags.writeable
    assert np.shares_memory(inputs, frames)


def test_paper_window_on_one_minute() -> None:
    sample_rate = 22050
    audio = np.random.default_rng(0).uniform(-1, 1, 60 * sample_rate).astype(np.float32)
    frames = frame_audio(audio, frame_length=frame_length_for(frame_seconds=1.0, sample_rate=sample_rate))
    inputs, targets = window_frames(frames, hop=5)
    assert frames.shape == (60, 22050)
    assert inputs.shape == (7, 20, 22050) and targets.shape == (7, 10, 22050)
    np.testing.assert_array_equal(targets[1, 0], audio[25 * sample_rate : 26 * sample_rate])


@given(
    n_frames=st.integers(1, 12),
    frame_length=st.integers(8, 300),
    fraction=st.floats(0.0, 0.5),
)
@settings(max_examples=100, deadline=None)
def test_crossfade_length_and_constant_power(n_frames: int, frame_length: int, fraction: float) -> None:
    crossfade = min(int(fraction * frame_length), frame_length // 2)
    frames = np.ones((n_frames, frame_length), dtype=np.float32)
    audio = unframe_audio(frames, crossfade_samples=crossfade)
    expected = n_frames * frame_length - (n_frames - 1) * crossfade if n_frames > 1 else frame_length
    assert audio.size == expected
    # equal-power fades of uncorrelated material keep power; of equal (fully correlated)
    # material the sum of gains stays between 1 and sqrt(2): no dropout at joins
    assert audio.min() >= 1.0 - 1e-5 and audio.max() <= math.sqrt(2) + 1e-5


def test_crossfade_leaves_frame_middles_untouched() -> None:
    rng = np.random.default_rng(1)
    frames = rng.uniform(-1, 1, (3, 100)).astype(np.float32)
    audio = unframe_audio(frames, crossfade_samples=10)
    np.testing.assert_array_equal(audio[10:90], frames[0, 10:90])
    np.testing.assert_array_equal(audio[100:180], frames[1, 10:90])


@pytest.mark.parametrize(
    ("audio", "message"),
    [
        (np.zeros(0, dtype=np.float32), "empty"),
        (np.zeros((10, 2), dtype=np.float32), "mono"),
        (np.array([0.0, np.nan], dtype=np.float32), "NaN"),
        (np.array([0.0, np.inf], dtype=np.float32), "NaN or infinite"),
    ],
)
def test_bad_audio_raises_audio_error(audio: np.ndarray, message: str) -> None:
    with pytest.raises(AudioError, match=message):
        frame_audio(audio, frame_length=4)


def test_bad_configuration_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="frame_length"):
        frame_audio(np.ones(10, dtype=np.float32), frame_length=0)
    with pytest.raises(ConfigError, match="hop"):
        window_frames(np.ones((40, 2)), hop=0)
    with pytest.raises(ConfigError, match="crossfade_samples"):
        unframe_audio(np.ones((3, 10)), crossfade_samples=6)
    with pytest.raises(ConfigError, match="no samples per frame"):
        frame_length_for(frame_seconds=0.00001, sample_rate=22050)
