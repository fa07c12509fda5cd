"""The 1-second framing of the seed paper: audio to frames, frames to windows, and back.

The model reads 20 frames of one second (22050 samples at 22050 Hz) and predicts
the next 10. ``frame_audio`` cuts a mono signal into such frames, ``window_frames``
makes the sliding (input, target) pairs, and ``unframe_audio`` joins frames back
into audio, optionally crossfading neighbours. Pure numpy.
"""

from __future__ import annotations

import numpy as np

from harmonizer_cli.core.audio_io import MODEL_SAMPLE_RATE
from harmonizer_cli.errors import AudioError, ConfigError

__all__ = [
    "DEFAULT_FRAME_LENGTH",
    "N_INPUT_FRAMES",
    "N_OUTPUT_FRAMES",
    "frame_length_for",
    "count_frames",
    "count_windows",
    "frame_audio",
    "window_frames",
    "unframe_audio",
]

#: One second at the model's 22050 Hz.
DEFAULT_FRAME_LENGTH = MODEL_SAMPLE_RATE
#: The paper's window: 20 frames in, 10 frames out.
N_INPUT_FRAMES = 20
N_OUTPUT_FRAMES = 10


def frame_length_for(*, frame_seconds: float = 1.0, sample_rate: int = MODEL_SAMPLE_RATE) -> int:
    """Samples per frame, ``round(frame_seconds * sample_rate)``.

    Raises
    ------
    ConfigError
        If the frame would be shorter than one sample.
    """
    n = int(round(frame_seconds * sample_rate))
    if n < 1:
        raise ConfigError(
            f"frame_seconds={frame_seconds} at sample_rate={sample_rate} gives no samples per frame"
        )
    return n


def count_frames(n_samples: int, *, frame_length: int = DEFAULT_FRAME_LENGTH) -> int:
    """Frames ``frame_audio`` makes of ``n_samples`` samples: ``ceil(n_samples / frame_length)``."""
    return -(-int(n_samples) // int(frame_length))


def count_windows(
    n_frames: int, *, n_input: int = N_INPUT_FRAMES, n_output: int = N_OUTPUT_FRAMES, hop: int = 1
) -> int:
    """Windows ``window_frames`` makes of ``n_frames`` frames.

    ``max(0, (n_frames - n_input - n_output) // hop + 1)``.
    """
    span = n_input + n_output
    return max(0, (int(n_frames) - span) // int(hop) + 1)


def frame_audio(audio: np.ndarray, *, frame_length: int = DEFAULT_FRAME_LENGTH) -> np.ndarray:
    """Cut mono audio into consecutive frames, zero-padding the last one.

    Parameters
    ----------
    audio : np.ndarray [shape=(n_samples,)]
        Mono samples, finite.
    frame_length : int > 0
        Samples per frame (22050 = one second at 22050 Hz).

    Returns
    -------
    np.ndarray [shape=(ceil(n_samples / frame_length), frame_length), dtype=float32]

    Raises
    ------
    AudioError
        If ``audio`` is not one-dimensional, is empty or holds NaN/infinite values.
    ConfigError
        If ``frame_length`` is not positive.

    Examples
    --------
    >>> frame_audio(np.ones(5, dtype=np.float32), frame_length=2)
    array([[1., 1.],
           [1., 1.],
           [1., 0.]], dtype=float32)
    """
    audio = np.asarray(audio, dtype=np.float32)
    if frame_length < 1:
        raise ConfigError(f"frame_length must be positive, got {frame_length}")
    if audio.ndim != 1:
        raise AudioError(f"expected mono audio of shape (n_samples,), got shape {audio.shape}")
    if audio.size == 0:
        raise AudioError("cannot frame empty audio")
    if not np.isfinite(audio).all():
        raise AudioError("audio contains NaN or infinite samples")
    n_frames = count_frames(audio.size, frame_length=frame_length)
    padded = np.zeros(n_frames * frame_length, dtype=np.float32)
    padded[: audio.size] = audio
    return padded.reshape(n_frames, frame_length)


def window_frames(
    frames: np.ndarray,
    *,
    n_input: int = N_INPUT_FRAMES,
    n_output: int = N_OUTPUT_FRAMES,
    hop: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Sliding (input, target) windows over a sequence of frames.

    Window ``w`` reads frames ``[w*hop, w*hop + n_input)`` and its target is the
    following ``n_output`` frames. Both are read-only views (no copy).

    Parameters
    ----------
    frames : np.ndarray [shape=(n_frames, ...)]
        Frames in time order (samples, or features of each frame).
    n_input, n_output : int > 0
        Frames read and predicted (the paper: 20 and 10).
    hop : int > 0
        Frames between the starts of consecutive windows.

    Returns
    -------
    inputs : np.ndarray [shape=(n_windows, n_input, ...)]
    targets : np.ndarray [shape=(n_windows, n_output, ...)]
        ``n_windows = max(0, (n_frames - n_input - n_output) // hop + 1)``.

    Raises
    ------
    ConfigError
        If a count or the hop is not positive.
    """
    for name, value in (("n_input", n_input), ("n_output", n_output), ("hop", hop)):
        if int(value) < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value}")
    frames = np.asarray(frames)
    n_windows = count_windows(frames.shape[0], n_input=n_input, n_output=n_output, hop=hop)
    span = n_input + n_output
    if n_windows == 0:
        empty = frames[:0]
        return (np.broadcast_to(empty[:, None], (0, n_input) + frames.shape[1:]),
                np.broadcast_to(empty[:, None], (0, n_output) + frames.shape[1:]))
    views = np.lib.stride_tricks.sliding_window_view(frames, span, axis=0)[::hop][:n_windows]
    views = np.moveaxis(views, -1, 1)  # (n_windows, span, ...)
    views.flags.writeable = False
    return views[:, :n_input], views[:, n_input:]


def unframe_audio(
    frames: np.ndarray,
    *,
    n_samples: int | None = None,
    crossfade_samples: int = 0,
) -> np.ndarray:
    """Join frames back into audio, optionally crossfading neighbours.

    Parameters
    ----------
    frames : np.ndarray [shape=(n_frames, frame_length)]
    n_samples : int, optional
        Trim the result to this many samples (undo the padding of ``frame_audio``).
    crossfade_samples : int >= 0
        Overlap each frame with the previous one by this many samples using an
        equal-power (sine/cosine) crossfade, which smooths the discontinuities of
        independently generated frames. The result is then
        ``n_frames * frame_length - (n_frames - 1) * crossfade_samples`` long.
        0 concatenates, the exact inverse of ``frame_audio``.

    Returns
    -------
    np.ndarray [shape=(n_out,), dtype=float32]

    Raises
    ------
    ConfigError
        If ``crossfade_samples`` is negative or not shorter than a frame.
    AudioError
        If ``frames`` is not two-dimensional.
    """
    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim != 2:
        raise AudioError(f"expected frames of shape (n_frames, frame_length), got {frames.shape}")
    n_frames, frame_length = frames.shape
    if not 0 <= crossfade_samples <= frame_length // 2:
        raise ConfigError(
            f"crossfade_samples must be in [0, {frame_length // 2}] (at most half a frame, "
            f"so only neighbours overlap), got {crossfade_samples}"
        )
    if crossfade_samples == 0 or n_frames < 2:
        audio = frames.reshape(-1).copy()
    else:
        step = frame_length - crossfade_samples
        audio = np.zeros(n_frames * step + crossfade_samples, dtype=np.float32)
        phase = (np.arange(crossfade_samples, dtype=np.float32) + 0.5) / crossfade_samples
        fade_in = np.sin(0.5 * np.pi * phase).astype(np.float32)
        fade_out = np.cos(0.5 * np.pi * phase).astype(np.float32)
        for index, frame in enumerate(frames):
            frame = frame.copy()
            if index > 0:
                frame[:crossfade_samples] *= fade_in
            if index < n_frames - 1:
                frame[-crossfade_samples:] *= fade_out
            start = index * step
            audio[start : start + frame_length] += frame
    if n_samples is not None:
        audio = audio[: int(n_samples)]
    return audio
