"""Frame representations of the model: ``logmel`` (default) and ``waveform`` (the paper's).

Both cut 22050 Hz mono audio into frames of one second (``framing.frame_audio``, the
last frame zero-padded) and describe each frame by a vector of ``frame_size`` numbers.

``waveform``
    The frame's 22050 samples themselves (the seed paper's representation).

``logmel``
    A phase-invariant log-mel view of each 1-second frame, computed with numpy only
    (no librosa, so nothing is compiled by numba on this path):

    1. each frame of 22050 samples is analysed on its own (no padding, no overlap with
       its neighbours): 40 windows of ``n_fft = 2048`` samples (Hann, periodic), hop
       ``512``, starting at samples 0, 512, ..., 19968;
    2. power spectrum ``|rfft(window * x)|**2 / sum(window)**2`` (a full-scale sine
       gives about 0.25 in its bin), 1025 bins;
    3. ``n_mels = 64`` triangular mel filters (HTK mel scale, 0 to 11025 Hz, each
       filter normalised to unit area over Hz, as librosa's ``norm="slaney"``);
    4. the 40 analysis windows are averaged in ``n_steps = 4`` groups of 10
       (0.25 s each) and the log taken: ``log(1e-10 + mean mel power)`` (natural log;
       music's mel power spans about 1e-3 to 1e-9 on this scale, so the floor sits below it);
    5. the frame vector is the 4 x 64 matrix flattened step-major:
       element ``step * 64 + mel``. ``frame_size = 256``.

    ``render_logmel`` goes back to audio with Griffin-Lim (librosa; a slow, approximate
    path for listening only).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from harmonizer_cli.core.audio_io import MODEL_SAMPLE_RATE
from harmonizer_cli.core.framing import DEFAULT_FRAME_LENGTH, frame_audio
from harmonizer_cli.errors import ConfigError

__all__ = [
    "REPRESENTATIONS",
    "LogMelSpec",
    "mel_filterbank",
    "mel_weights",
    "hz_to_mel",
    "mel_to_hz",
    "logmel_frames",
    "frames_for",
    "frame_size_for",
    "render_logmel",
]

#: Names of the frame representations.
REPRESENTATIONS = ("logmel", "waveform")

# Frames analysed at once: the temporary [chunk, 40, 2048] array stays near 2.6 MB (in
# cache, and memory already the process's; at 64 frames, 21 MB a chunk, 3 minutes of
# frames took 0.45 s cold instead of 0.12 s). The result does not depend on it.
_CHUNK_FRAMES = 8


@dataclass(frozen=True)
class LogMelSpec:
    """Parameters of the ``logmel`` representation (see the module docstring).

    Attributes
    ----------
    sample_rate : int
        Hz of the audio analysed (22050).
    frame_length : int
        Samples per frame (22050 = 1 s).
    n_fft : int
        Analysis window and FFT length in samples.
    hop_length : int
        Samples between analysis windows inside a frame.
    n_mels : int
        Mel bands.
    n_steps : int
        Time steps per frame after pooling; must divide the number of windows.
    fmin, fmax : float
        Frequency range of the mel filters in Hz.
    log_floor : float
        Added to the mel power before the natural log.
    """

    sample_rate: int = MODEL_SAMPLE_RATE
    frame_length: int = DEFAULT_FRAME_LENGTH
    n_fft: int = 2048
    hop_length: int = 512
    n_mels: int = 64
    n_steps: int = 4
    fmin: float = 0.0
    fmax: float = 11025.0
    log_floor: float = 1e-10  # music mel power spans ~1e-3..1e-9 here: 1e-6 flattened the upper half of the bands

    @property
    def n_windows(self) -> int:
        """Analysis windows per frame: ``1 + (frame_length - n_fft) // hop_length`` (40)."""
        return 1 + (self.frame_length - self.n_fft) // self.hop_length

    @property
    def frame_size(self) -> int:
        """Numbers per frame: ``n_mels * n_steps`` (256)."""
        return self.n_mels * self.n_steps

    def validate(self) -> "LogMelSpec":
        """Return self, or raise ``ConfigError`` for inconsistent parameters."""
        if self.n_fft > self.frame_length or self.hop_length < 1 or self.n_mels < 1:
            raise ConfigError(f"invalid log-mel parameters {asdict(self)}")
        if self.n_steps < 1 or self.n_windows % self.n_steps:
            raise ConfigError(
                f"n_steps={self.n_steps} must divide the {self.n_windows} analysis windows per frame"
            )
        if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            raise ConfigError(f"need 0 <= fmin < fmax <= {self.sample_rate / 2} Hz")
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "LogMelSpec":
        known = {k: values[k] for k in cls.__dataclass_fields__ if k in values}
        return cls(**known).validate()


def hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """HTK mel scale: ``2595 * log10(1 + hz / 700)``."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel: np.ndarray) -> np.ndarray:
    """Inverse of ``hz_to_mel``."""
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_weights(*, sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Triangular mel filters (HTK scale), each normalised to unit area over Hz.

    The one filterbank of the project: the model's ``logmel`` frames and the
    extension's analysis both use it (as librosa's ``htk=True, norm="slaney"``).

    Returns
    -------
    np.ndarray [shape=(n_mels, n_fft // 2 + 1), dtype=float32]
        Weights applied to a power spectrum's bins.
    """
    bin_hz = np.arange(n_fft // 2 + 1) * sample_rate / n_fft
    edges_hz = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    lower, centre, upper = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
    rising = (bin_hz[None, :] - lower) / (centre - lower)
    falling = (upper - bin_hz[None, :]) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (upper - lower))  # unit area over Hz (librosa's norm="slaney")
    return weights.astype(np.float32)


def mel_filterbank(spec: LogMelSpec = LogMelSpec()) -> np.ndarray:
    """The ``logmel`` representation's filters (``mel_weights`` with ``spec``'s values).

    Returns
    -------
    np.ndarray [shape=(n_mels, n_fft // 2 + 1), dtype=float32]
    """
    spec.validate()
    return mel_weights(sample_rate=spec.sample_rate, n_fft=spec.n_fft, n_mels=spec.n_mels,
                       fmin=spec.fmin, fmax=spec.fmax)


def _hann(n_fft: int) -> np.ndarray:
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)


def logmel_frames(frames: np.ndarray, *, spec: LogMelSpec = LogMelSpec()) -> np.ndarray:
    """The ``logmel`` vector of each 1-second frame.

    Parameters
    ----------
    frames : np.ndarray [shape=(n_frames, frame_length)]
        Frames of 22050 Hz mono audio (``framing.frame_audio``).
    spec : LogMelSpec
        Analysis parameters.

    Returns
    -------
    np.ndarray [shape=(n_frames, n_mels * n_steps), dtype=float32]
        Natural log of mel power, step-major (``step * n_mels + mel``).

    Raises
    ------
    ConfigError
        If the frame length does not match ``spec.frame_length``.
    """
    spec.validate()
    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim != 2 or frames.shape[1] != spec.frame_length:
        raise ConfigError(f"expected frames of shape (n, {spec.frame_length}), got {frames.shape}")
    window = _hann(spec.n_fft)
    filters_t = np.ascontiguousarray(mel_filterbank(spec).T)  # (n_bins, n_mels)
    scale = np.float32(1.0 / float(window.sum()) ** 2)
    n_windows = spec.n_windows
    per_step = n_windows // spec.n_steps
    out = np.empty((frames.shape[0], spec.frame_size), dtype=np.float32)
    for start in range(0, frames.shape[0], _CHUNK_FRAMES):
        chunk = frames[start:start + _CHUNK_FRAMES]
        views = np.lib.stride_tricks.sliding_window_view(chunk, spec.n_fft, axis=1)
        views = views[:, ::spec.hop_length][:, :n_windows]  # (c, n_windows, n_fft)
        spectrum = np.fft.rfft(views * window, axis=-1)
        power = (spectrum.real ** 2 + spectrum.imag ** 2).astype(np.float32) * scale
        # one 2-D product (BLAS): a stacked 3-D matmul is 50x slower here
        mel = (power.reshape(-1, power.shape[-1]) @ filters_t).reshape(len(chunk), n_windows, -1)
        pooled = mel.reshape(len(chunk), spec.n_steps, per_step, spec.n_mels).mean(axis=2)
        out[start:start + len(chunk)] = np.log(spec.log_floor + pooled).reshape(len(chunk), -1)
    return out


def frame_size_for(representation: str, *, spec: LogMelSpec = LogMelSpec()) -> int:
    """Numbers per frame of a representation (256 for logmel, 22050 for waveform)."""
    if representation == "logmel":
        return spec.frame_size
    if representation == "waveform":
        return spec.frame_length
    raise ConfigError(f"unknown representation {representation!r} (choose from {', '.join(REPRESENTATIONS)})")


def frames_for(
    mono: np.ndarray, *, representation: str = "logmel", spec: LogMelSpec = LogMelSpec()
) -> np.ndarray:
    """Frame 22050 Hz mono audio and compute a representation.

    Parameters
    ----------
    mono : np.ndarray [shape=(n_samples,)]
        22050 Hz mono audio.
    representation : {"logmel", "waveform"}
    spec : LogMelSpec

    Returns
    -------
    np.ndarray [shape=(ceil(n_samples / 22050), frame_size), dtype=float32]

    Raises
    ------
    AudioError
        Empty or non-finite audio.
    ConfigError
        Unknown representation.
    """
    frame_size_for(representation, spec=spec)
    frames = frame_audio(mono, frame_length=spec.frame_length)
    if representation == "waveform":
        return frames
    return logmel_frames(frames, spec=spec)


def render_logmel(
    features: np.ndarray, *, spec: LogMelSpec = LogMelSpec(), n_iter: int = 32, seed: int = 0
) -> np.ndarray:
    """Audio whose log-mel frames approximate ``features`` (Griffin-Lim, slow).

    Mel power is mapped back to linear power with the filterbank's pseudo-inverse
    (clipped at 0), spread over a continuous STFT of hop ``hop_length`` and inverted
    with ``librosa.griffinlim``.

    Parameters
    ----------
    features : np.ndarray [shape=(n_frames, n_mels * n_steps)]
    n_iter : int
        Griffin-Lim iterations.

    Returns
    -------
    np.ndarray [shape=(n_frames * frame_length,), dtype=float32]
        22050 Hz mono audio.
    """
    import librosa

    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2 or features.shape[1] != spec.frame_size:
        raise ConfigError(f"expected features of shape (n, {spec.frame_size}), got {features.shape}")
    n_frames = features.shape[0]
    n_samples = n_frames * spec.frame_length
    mel_power = np.maximum(np.exp(features.reshape(n_frames, spec.n_steps, spec.n_mels)) - spec.log_floor, 0.0)
    inverse = np.linalg.pinv(mel_filterbank(spec).astype(np.float64))  # (n_bins, n_mels)
    centres = np.arange(1 + n_samples // spec.hop_length) * spec.hop_length
    frame_index = np.minimum(centres // spec.frame_length, n_frames - 1)
    step_index = np.minimum((centres % spec.frame_length) * spec.n_steps // spec.frame_length, spec.n_steps - 1)
    power = np.maximum(mel_power[frame_index, step_index] @ inverse.T, 0.0)  # (n_stft, n_bins)
    magnitude = np.sqrt(power) * float(_hann(spec.n_fft).sum())
    audio = librosa.griffinlim(
        magnitude.T.astype(np.float32), n_iter=n_iter, hop_length=spec.hop_length,
        n_fft=spec.n_fft, length=n_samples, random_state=seed,
    )
    return np.asarray(audio, dtype=np.float32)
