"""Decoded audio kept on disk: songs too long to hold in memory, read by ranges.

A song of an hour is 1.3 GB of float32 samples at 44.1 kHz stereo. ``load_audio``
(``spool_over_seconds``) decodes such a song a block at a time into a ``DecodedFile``:
the raw float32 samples in an unnamed temporary file (``tempfile.TemporaryFile``: it
has no name from the start, so nothing is left behind however the process ends, even
killed), with the song's peak and its 22050 Hz mono view (``view``, a second
``DecodedFile``, made by the same resampler as ``audio_io.to_model_view``, in
blocks: the same samples). A ``DecodedFile`` slices like the array it stands for
(``samples[a:b]``, ``samples[indices]``, ``shape``): each read is a ``pread`` of the
range asked for, so only what is being worked on is in memory. (A memory map would do
the same, but every page it has read counts as the process's own memory until it is
unmapped.)
"""

from __future__ import annotations

import os
import tempfile
from typing import Iterator, Optional

import numpy as np

__all__ = ["DecodedFile", "MonoMix", "Window", "SpoolWriter", "spooled_view", "is_on_disk", "peak_of",
           "centred_windows", "window_of", "BLOCK_FRAMES"]

#: Frames per block when writing or scanning a decoded file.
BLOCK_FRAMES = 1 << 16
#: Indices closer than this are read in one range (``samples[indices]``).
_GATHER_GAP = 1 << 14
_ITEM = np.dtype(np.float32).itemsize


class _Ranged:
    """Array-like of float32 samples, read by ranges: subclasses define ``read(start, stop)``."""

    n_frames: int
    n_channels: Optional[int]  # None: one-dimensional

    @property
    def shape(self) -> tuple:
        return (self.n_frames,) if self.n_channels is None else (self.n_frames, self.n_channels)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return self.n_frames * (self.n_channels or 1)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.float32)

    def __len__(self) -> int:
        return self.n_frames

    def read(self, start: int, stop: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def __array__(self, dtype=None, copy=None):
        """The whole signal (what ``np.asarray`` makes of it: avoided on long songs)."""
        whole = self.read(0, self.n_frames)
        return whole if dtype is None else whole.astype(dtype, copy=False)

    def __getitem__(self, key):
        rest = ()
        if isinstance(key, tuple):
            key, rest = key[0], key[1:]
        if isinstance(key, slice):
            start, stop, step = key.indices(self.n_frames)
            if step < 1:
                raise IndexError("negative steps are not supported")
            out = self.read(start, max(start, stop))
            out, lead = (out[::step] if step != 1 else out), 1
        elif isinstance(key, (int, np.integer)):
            index = int(key) + (self.n_frames if key < 0 else 0)
            if not 0 <= index < self.n_frames:
                raise IndexError(f"index {key} is out of bounds for {self.n_frames} frames")
            out, lead = self.read(index, index + 1)[0], 0
        else:
            indices = np.asarray(key)
            out, lead = self._gather(indices), indices.ndim
        return out[(slice(None),) * lead + rest] if rest else out

    def _gather(self, indices: np.ndarray) -> np.ndarray:
        """``signal[indices]`` for integer indices of any shape: each cluster of nearby
        indices is read as one range (points spread over the song are never read whole)."""
        if indices.dtype == bool:
            raise IndexError("boolean indexing is not supported")
        flat = indices.astype(np.int64).reshape(-1)
        flat = np.where(flat < 0, flat + self.n_frames, flat)
        if flat.size and (flat.min() < 0 or flat.max() >= self.n_frames):
            raise IndexError(f"index out of bounds for {self.n_frames} frames")
        tail = () if self.n_channels is None else (self.n_channels,)
        out = np.empty((flat.size,) + tail, dtype=np.float32)
        if flat.size == 0:
            return out.reshape(indices.shape + tail)
        order = np.argsort(flat, kind="stable")
        ranked = flat[order]
        breaks = np.flatnonzero(np.diff(ranked) > _GATHER_GAP) + 1
        for lo, hi in zip(np.concatenate([[0], breaks]), np.concatenate([breaks, [ranked.size]])):
            first, last = int(ranked[lo]), int(ranked[hi - 1])
            chunk = self.read(first, last + 1)
            out[order[lo:hi]] = chunk[ranked[lo:hi] - first]
        return out.reshape(indices.shape + tail)

    def blocks(self, block_frames: int = BLOCK_FRAMES) -> Iterator[np.ndarray]:
        for start in range(0, self.n_frames, block_frames):
            yield self.read(start, start + block_frames)


class DecodedFile(_Ranged):
    """Decoded samples in an unnamed temporary file (``SpoolWriter.finish`` makes one).

    Attributes
    ----------
    n_frames : int
    n_channels : int or None
        None for a one-dimensional signal (the mono ``view``).
    peak : float
        The largest absolute sample value (NaN if a sample is NaN or infinite).
    view : DecodedFile or None
        The 22050 Hz mono view of the song (``spooled_view``), once made.
    """

    def __init__(self, handle, n_frames: int, n_channels: Optional[int], *, peak: float,
                 directory: Optional[str] = None) -> None:
        self._handle = handle
        self.directory = directory
        self.n_frames = int(n_frames)
        self.n_channels = n_channels
        self.peak = float(peak)
        self.view: Optional[DecodedFile] = None

    @property
    def closed(self) -> bool:
        return self._handle is None

    def read(self, start: int, stop: int) -> np.ndarray:
        """Frames ``[start, stop)`` (clipped to the signal), a new writable float32 array."""
        if self._handle is None:
            raise ValueError("the decoded file is closed")
        start, stop = max(0, int(start)), min(self.n_frames, int(stop))
        width = self.n_channels or 1
        n = max(0, stop - start)
        out = np.empty(n * width, dtype=np.float32)
        view, offset, fd = memoryview(out).cast("B"), start * width * _ITEM, self._handle.fileno()
        done = 0
        while done < view.nbytes:
            got = os.preadv(fd, [view[done:]], offset + done)
            if got <= 0:
                raise OSError("the temporary decoded file is shorter than expected")
            done += got
        return out if self.n_channels is None else out.reshape(n, self.n_channels)

    def mono(self) -> "MonoMix":
        """The mono mix, computed range by range (``audio_io.to_mono`` of what is read)."""
        return MonoMix(self)

    def close(self) -> None:
        """Close (and so delete) the temporary file, and the view's."""
        if self.view is not None:
            self.view.close()
        if self._handle is not None:
            handle, self._handle = self._handle, None
            handle.close()

    def __enter__(self) -> "DecodedFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{self.n_frames * (self.n_channels or 1) * _ITEM / 1e6:.0f} MB"
        return f"DecodedFile(shape={self.shape}, {state})"


class MonoMix(_Ranged):
    """The mono mix of a multichannel ``DecodedFile``, read by ranges (a 1-D array-like)."""

    def __init__(self, samples: DecodedFile) -> None:
        self.samples = samples
        self.n_frames = samples.n_frames
        self.n_channels = None

    def read(self, start: int, stop: int) -> np.ndarray:
        from harmonizer_cli.core.audio_io import to_mono

        return to_mono(self.samples.read(start, stop))


class Window(_Ranged):
    """``signal[lo:hi]`` of a signal read by ranges, itself read by ranges (nothing is read
    until asked for: a source segment of minutes whose seams need milliseconds)."""

    def __init__(self, signal: _Ranged, lo: int, hi: int) -> None:
        self.signal = signal
        self.lo = max(0, int(lo))
        self.n_frames = max(0, min(int(hi), signal.n_frames) - self.lo)
        self.n_channels = signal.n_channels

    def read(self, start: int, stop: int) -> np.ndarray:
        start, stop = max(0, int(start)), min(self.n_frames, int(stop))
        return self.signal.read(self.lo + start, self.lo + max(start, stop))


def window_of(signal, lo: int, hi: int):
    """``signal[lo:hi]``: a view of an array, a ``Window`` of a signal read by ranges."""
    return Window(signal, lo, hi) if isinstance(signal, _Ranged) else signal[lo:hi]


def centred_windows(signal, n_fft: int, hop: int, start: int, count: int) -> np.ndarray:
    """Frames ``start .. start + count - 1`` of the centred framing of a 1-D signal [shape=(count, n_fft)].

    Frame ``k`` is ``padded[k * hop: k * hop + n_fft]`` of the signal zero-padded by
    ``n_fft // 2`` on both sides (``np.pad`` then ``sliding_window_view``), read from
    ``signal`` for these frames only.
    """
    half = n_fft // 2
    lo = start * hop - half
    length = (count - 1) * hop + n_fft if count > 0 else 0
    segment = np.zeros(length, dtype=np.float32)
    a, b = max(0, lo), min(len(signal), lo + length)
    if b > a:
        segment[a - lo:b - lo] = signal[a:b]
    if count <= 0:
        return np.zeros((0, n_fft), dtype=np.float32)
    return np.lib.stride_tricks.sliding_window_view(segment, n_fft)[::hop][:count]


class SpoolWriter:
    """Writes decoded blocks to an unnamed temporary file; ``finish`` gives the ``DecodedFile``.

    ``directory`` defaults to the system's temporary folder (``TMPDIR``). Blocks are
    float32 ``(n, n_channels)`` (or 1-D with ``n_channels=None``); the peak and whether
    every sample is finite are kept as they are written.
    """

    def __init__(self, n_channels: Optional[int], *, directory: Optional[str] = None) -> None:
        self.n_channels = n_channels
        self.directory = directory or tempfile.gettempdir()
        self._handle = tempfile.TemporaryFile(prefix="harmonizer-decoded-", dir=self.directory)
        self.n_frames = 0
        self.peak = 0.0
        self.finite = True

    def write(self, block: np.ndarray) -> None:
        block = np.ascontiguousarray(block, dtype=np.float32)
        if block.shape[0] == 0:
            return
        if self.n_channels is not None and (block.ndim != 2 or block.shape[1] != self.n_channels):
            raise ValueError(f"expected blocks of {self.n_channels} channels, got shape {block.shape}")
        if self.finite and not np.isfinite(block).all():
            self.finite = False
        if self.finite:
            self.peak = max(self.peak, float(np.max(np.abs(block))))
        self._handle.write(memoryview(block).cast("B"))
        self.n_frames += int(block.shape[0])

    def finish(self) -> DecodedFile:
        self._handle.flush()
        handle, self._handle = self._handle, None
        return DecodedFile(handle, self.n_frames, self.n_channels, peak=self.peak if self.finite else float("nan"),
                           directory=self.directory)

    def abandon(self) -> None:
        """Close (and so delete) the file without making a ``DecodedFile`` of it."""
        if self._handle is not None:
            handle, self._handle = self._handle, None
            handle.close()


def spooled_view(samples: DecodedFile, sample_rate: int, view_rate: int) -> DecodedFile:
    """The ``view_rate`` mono view of ``samples``, written block by block to its own file.

    The mono mix of each block, resampled by one streaming soxr resampler ("HQ"): the
    same samples as ``resample(to_mono(whole), ...)`` (``audio_io.to_model_view``).
    """
    from harmonizer_cli.core.audio_io import to_mono

    writer = SpoolWriter(None, directory=samples.directory)
    try:
        stream = None
        if sample_rate != view_rate:
            import soxr

            stream = soxr.ResampleStream(sample_rate, view_rate, 1, dtype="float32", quality="HQ")
        for start in range(0, samples.n_frames, BLOCK_FRAMES):
            mono = to_mono(samples.read(start, start + BLOCK_FRAMES))
            last = start + BLOCK_FRAMES >= samples.n_frames
            writer.write(mono if stream is None else stream.resample_chunk(mono, last=last))
    except BaseException:
        writer.abandon()
        raise
    return writer.finish()


def is_on_disk(samples) -> bool:
    """Whether ``samples`` is read from disk by ranges (a ``DecodedFile`` or its mono mix)."""
    return isinstance(samples, _Ranged)


def peak_of(samples) -> float:
    """The largest absolute value of an array, or the kept peak of a ``DecodedFile``."""
    if isinstance(samples, DecodedFile):
        return samples.peak
    if isinstance(samples, _Ranged):
        return max((float(np.max(np.abs(block))) for block in samples.blocks() if block.size), default=0.0)
    return float(np.max(np.abs(samples)))
