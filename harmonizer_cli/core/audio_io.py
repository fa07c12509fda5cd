"""Reading audio files, and the model's view of audio.

``load_audio`` returns a file's samples as they are: its own sample rate and
channel count, float32, never resampled or downmixed. wav, flac, ogg, mp3 and aiff
go through libsndfile; m4a, aac, alac, mka, webm, mkv, mov, mp4 and the audio of
any video file through PyAV (``core.media``, FFmpeg inside its wheels); audioread
is the last fallback for what neither opens. ``to_model_view`` makes the 22050 Hz
mono signal that analysis and the model work on; ``output_subtype_for`` reads the
bit depth an output should keep from its source.

Writing (``save_audio``, ``atomic_output``, ``check_output_path``, ``limited``, the
output formats) is ``core.audio_out``'s; its public names are re-exported here, so
``from harmonizer_cli.core.audio_io import save_audio`` goes on working.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf

from harmonizer_cli.core.audio_out import (  # noqa: F401 - re-exported: the output side's home is audio_out
    LIMITER_STAGE_SECONDS,
    OUTPUT_FORMATS,
    WAV_LIMIT_BYTES,
    WAV_SUBTYPES,
    _BLOCK_FRAMES,
    atomic_output,
    check_output_path,
    limited,
    output_format_for,
    save_audio,
)
from harmonizer_cli.errors import AudioError, OutputError

__all__ = [
    "Audio",
    "MODEL_SAMPLE_RATE",
    "AUDIO_SUFFIXES",
    "VIDEO_SUFFIXES",
    "OUTPUT_FORMATS",
    "load_audio",
    "output_subtype_for",
    "to_mono",
    "resample",
    "to_model_view",
    "save_audio",
    "output_format_for",
    "check_output_path",
    "atomic_output",
]

#: Sample rate of the model's view of audio (the seed paper's): the one definition.
MODEL_SAMPLE_RATE = 22050

#: File extensions taken as audio wherever a folder is read (extend, preprocess,
#: fetch-data): the audio formats ``load_audio`` decodes. Video files are not in it
#: (a folder of songs may hold the clip they are for); named one by one, their audio
#: track is read all the same.
AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac", ".alac", ".mka",
                            ".aiff", ".aif", ".wma"})

#: File extensions of video containers: ``--video`` clips, and songs whose audio track
#: ``load_audio`` reads through PyAV.
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".wmv", ".flv", ".mpg", ".mpeg",
                            ".ts", ".m2ts", ".mts", ".3gp", ".ogv"})

# Lossy formats libsndfile reads.
_LOSSY_SUFFIXES = {".mp3", ".ogg", ".oga", ".opus"}
# Containers libsndfile cannot read: decoded through PyAV first (then audioread).
_PYAV_SUFFIXES = frozenset({".m4a", ".m4b", ".aac", ".alac", ".mka", ".wma", ".ac3"}) | VIDEO_SUFFIXES
# Codecs whose samples have a bit depth worth keeping (read through PyAV).
_LOSSLESS_CODECS = frozenset({"alac", "flac", "wavpack", "tta", "truehd", "mlp"})


@dataclass(frozen=True)
class Audio:
    """Decoded audio.

    Attributes
    ----------
    samples : np.ndarray [shape=(n_samples, n_channels), dtype=float32], or a DecodedFile
        Samples in [-1, 1] (a float file may exceed it), one column per channel. A song
        longer than ``load_audio``'s ``spool_over_seconds`` is a ``decoded.DecodedFile``
        instead: the same samples in a temporary file, read by ranges (it slices like
        the array, and holds the song's peak and its 22050 Hz mono ``view``); ``close``
        deletes it.
    sample_rate : int
        Samples per second per channel, the file's own.
    """

    samples: np.ndarray
    sample_rate: int

    def close(self) -> None:
        """Delete the temporary file of samples kept on disk (nothing to do for an array)."""
        close = getattr(self.samples, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> "Audio":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def n_samples(self) -> int:
        return int(self.samples.shape[0])

    @property
    def n_channels(self) -> int:
        return int(self.samples.shape[1])

    @property
    def duration_seconds(self) -> float:
        return self.n_samples / float(self.sample_rate)


def _check_input_path(path: Path) -> None:
    if not path.exists():
        raise AudioError("no such file", path=path)
    if path.is_dir():
        raise AudioError("is a directory, not an audio file", path=path)
    if not os.access(path, os.R_OK):
        raise AudioError("permission denied", path=path)
    if path.stat().st_size == 0:
        raise AudioError("empty file (0 bytes)", path=path)


def _validate_samples(samples: np.ndarray, sample_rate: int, path: Path) -> Audio:
    if samples.ndim == 1:
        samples = samples[:, None]
    if samples.shape[0] == 0:
        raise AudioError("contains no audio samples", path=path)
    if sample_rate <= 0:
        raise AudioError(f"invalid sample rate {sample_rate}", path=path)
    if not np.isfinite(samples).all():
        raise AudioError("contains NaN or infinite samples", path=path)
    return Audio(np.ascontiguousarray(samples, dtype=np.float32), int(sample_rate))


@contextlib.contextmanager
def _c_stderr_silenced() -> Iterator[None]:
    """Silence C libraries writing to file descriptor 2 (libmpg123 prints decoder notes
    such as "Illegal Audio-MPEG-Header" there), so a user sees one clear error line."""
    try:
        saved = os.dup(2)
    except OSError:  # no usable fd 2 (embedded interpreters): nothing to silence
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _check_duration(path: Path, n_frames: int, sample_rate: int, max_seconds: float | None) -> None:
    if max_seconds is not None and sample_rate > 0 and n_frames / sample_rate > max_seconds:
        raise AudioError(f"too long ({n_frames / sample_rate / 60:.1f} minutes; at most "
                         f"{max_seconds / 60:g} minutes are accepted)", path=path)


class _Blocks:
    """Decoded blocks: kept in memory and concatenated, or, once there are more than
    ``spool_frames``, written to a temporary file (``decoded.SpoolWriter``)."""

    def __init__(self, spool_frames: float | None) -> None:
        self.spool_frames = spool_frames
        self.blocks: list = []
        self.n_frames = 0
        self.writer = None
        self.reserved = None  # one array decoded into in place, while the song fits it

    def reserve(self, n_frames: int, n_channels: int) -> None:
        """Decode into one array of ``n_frames`` (the length the file announces; an mp3's is
        estimated): no blocks to concatenate at the end (at 3 minutes, 63 MB of fresh memory
        and a copy). Only where the song is not to be spooled."""
        if self.spool_frames is None or n_frames <= self.spool_frames:
            self.reserved = np.empty((int(n_frames), int(n_channels)), dtype=np.float32)

    def room(self, n_frames: int) -> np.ndarray | None:
        """Where the next block may be decoded to: a view of the reserved array (None when it
        is full, or there is none: then blocks are ``add``-ed)."""
        if self.reserved is None or self.n_frames >= self.reserved.shape[0]:
            return None
        return self.reserved[self.n_frames:self.n_frames + n_frames]

    def filled(self, n_frames: int) -> None:
        """``n_frames`` were decoded into ``room``'s view."""
        self.n_frames += n_frames

    def _release(self) -> None:
        """Longer than announced: what the reserved array holds becomes the first block."""
        if self.reserved is not None:
            reserved, self.reserved, self.n_frames = self.reserved[:self.n_frames], None, 0
            if reserved.shape[0]:
                self.add(reserved)

    def add(self, block: np.ndarray) -> None:
        self._release()
        if self.writer is not None:
            self.writer.write(block)
            return
        self.blocks.append(block)
        self.n_frames += block.shape[0]
        if self.spool_frames is not None and self.n_frames > self.spool_frames:
            from harmonizer_cli.core.decoded import SpoolWriter

            self.writer = SpoolWriter(block.shape[1])
            blocks, self.blocks = self.blocks, []
            for kept in blocks:
                self.writer.write(kept)

    def result(self):
        """The samples: an array, or a ``DecodedFile``."""
        if self.reserved is not None:  # (the announced length was right, or too long)
            return self.reserved[:self.n_frames] if self.n_frames < self.reserved.shape[0] else self.reserved
        if self.writer is not None:
            writer, self.writer = self.writer, None
            return writer.finish()
        if not self.blocks:
            return np.zeros((0, 1), dtype=np.float32)
        return np.concatenate(self.blocks, axis=0)

    def abandon(self) -> None:
        self.blocks, self.reserved = [], None
        if self.writer is not None:
            self.writer.abandon()
            self.writer = None


def _spool_frames(sample_rate: int, spool_seconds: float | None) -> float | None:
    return None if spool_seconds is None else spool_seconds * sample_rate


def _read_soundfile(path: Path, max_seconds: float | None = None,
                    spool_seconds: float | None = None) -> tuple[np.ndarray, int]:
    quiet = _c_stderr_silenced() if path.suffix.lower() == ".mp3" else contextlib.nullcontext()
    blocks = None
    try:
        with quiet, sf.SoundFile(str(path)) as handle:
            sample_rate = handle.samplerate
            if handle.frames > 0:  # known before decoding (mp3: estimated from the bit rate)
                _check_duration(path, handle.frames, sample_rate, max_seconds)
            blocks = _Blocks(_spool_frames(sample_rate, spool_seconds))
            if handle.frames > 0:
                blocks.reserve(handle.frames, handle.channels)
            while True:
                room = blocks.room(_BLOCK_FRAMES)
                if room is not None:
                    read = handle.read(out=room, always_2d=True).shape[0]
                    blocks.filled(read)
                    if read < room.shape[0]:
                        break
                    continue
                block = handle.read(_BLOCK_FRAMES, dtype="float32", always_2d=True)
                if block.shape[0] == 0:
                    break
                blocks.add(block)
        return blocks.result(), sample_rate
    except BaseException:
        if blocks is not None:
            blocks.abandon()
        raise


def _spooled(samples: np.ndarray, sample_rate: int, spool_seconds: float | None):
    """A whole decoded array, moved to a temporary file if it is longer than ``spool_seconds``."""
    if spool_seconds is None or samples.ndim != 2 or samples.shape[0] <= spool_seconds * sample_rate:
        return samples
    blocks = _Blocks(0)
    try:
        for start in range(0, samples.shape[0], _BLOCK_FRAMES):
            blocks.add(np.asarray(samples[start:start + _BLOCK_FRAMES], dtype=np.float32))
        return blocks.result()
    except BaseException:
        blocks.abandon()
        raise


def _read_audioread(path: Path) -> tuple[np.ndarray, int]:
    import audioread

    try:
        with audioread.audio_open(str(path)) as handle:
            sample_rate, n_channels = handle.samplerate, handle.channels
            chunks = [np.frombuffer(buf, dtype="<i2") for buf in handle]
    except audioread.NoBackendError as exc:
        raise AudioError(
            f"cannot decode {path.suffix or 'this'} files: no decoder backend "
            "(install ffmpeg) and libsndfile does not read this format",
            path=path,
        ) from exc
    data = np.concatenate(chunks) if chunks else np.zeros(0, dtype="<i2")
    data = data[: len(data) - len(data) % n_channels].reshape(-1, n_channels)
    return data.astype(np.float32) / 32768.0, sample_rate


_UNDECODABLE = "cannot decode: not an audio file, or a corrupt or unsupported format"
_SNDFILE_ERRORS = (sf.LibsndfileError, RuntimeError, ValueError, EOFError)


def _decode_any(path: Path, max_seconds: float | None, spool_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """Try the readers in the suffix's order; definitive errors (too long, DRM) stop at once.

    Container suffixes (m4a, mp4, mkv, ...): PyAV, then audioread. Others: libsndfile,
    then PyAV, then audioread. A file PyAV opens but finds no audio in is an error of
    its own when PyAV is the first reader (a video without sound), and otherwise a file
    that is not what its name says. Past ``spool_seconds`` the samples go to a temporary
    file (libsndfile's and PyAV's formats block by block; audioread's once decoded).
    """
    from harmonizer_cli.core.media import NoAudioStreamError, UndecodableError, read_audio_track

    pyav_first = path.suffix.lower() in _PYAV_SUFFIXES
    failure: Exception | None = None
    if not pyav_first:
        try:
            return _read_soundfile(path, max_seconds, spool_seconds)
        except _SNDFILE_ERRORS as exc:
            failure = exc
    try:
        return read_audio_track(path, max_seconds=max_seconds, spool_seconds=spool_seconds)
    except NoAudioStreamError as exc:
        if pyav_first:
            raise
        failure = failure or exc
    except UndecodableError as exc:
        failure = exc if pyav_first else failure or exc
    try:
        samples, sample_rate = _read_audioread(path)
        return _spooled(samples, sample_rate, spool_seconds), sample_rate
    except OutputError:
        raise
    except Exception as exc:  # audioread's own errors, or no backend (no system ffmpeg): the first failure wins
        if isinstance(failure, UndecodableError) and pyav_first:
            raise AudioError(failure.message, path=path) from exc
        raise AudioError(_UNDECODABLE, path=path) from failure


def load_audio(path: str | os.PathLike, *, max_seconds: float | None = None,
               spool_over_seconds: float | None = None) -> Audio:
    """Read an audio file at its own sample rate and channel count.

    mp3, wav, flac, ogg (Vorbis, Opus) and aiff are read by libsndfile; m4a, aac, alac,
    mka, webm, mkv, mov, mp4 and the audio track of any video file through PyAV; what
    neither opens, through audioread (when a backend such as ffmpeg is installed). No
    system ffmpeg is needed for any of the formats named here.

    Parameters
    ----------
    path : str or os.PathLike
        The file to read. It is only ever opened for reading.
    max_seconds : float, optional
        Refuse longer files, before decoding them where the format tells the
        length (decoded audio takes 8 bytes per stereo frame: about 1.3 GB an hour
        at 44.1 kHz).
    spool_over_seconds : float, optional
        Songs longer than this are not held in memory: their samples are decoded into
        an unnamed temporary file (``decoded.DecodedFile``, in ``TMPDIR``: 1.3 GB an
        hour at 44.1 kHz stereo, plus 0.3 GB for the 22050 Hz mono view made beside it)
        and read by ranges. The samples are the same; ``Audio.close`` deletes the file
        (it is deleted anyway when the process ends). mp3, wav, flac, ogg and aiff are
        decoded block by block; the formats PyAV or audioread read are decoded whole
        first, then moved to the file.

    Returns
    -------
    Audio
        ``samples`` of shape (n_samples, n_channels), float32, and ``sample_rate``.

    Raises
    ------
    AudioError
        Missing file, a directory, an empty or undecodable file, no audio stream (a
        video without sound), an encrypted (DRM) file, no samples, NaN/infinite
        samples, or longer than ``max_seconds``. The message names the file.
    OutputError
        The temporary file for a long song cannot be written (disk full).

    Examples
    --------
    >>> audio = load_audio("examples/demo.wav")  # doctest: +SKIP
    >>> audio.samples.shape, audio.sample_rate  # doctest: +SKIP
    ((529200, 2), 44100)
    """
    path = Path(path)
    _check_input_path(path)
    try:
        samples, sample_rate = _decode_any(path, max_seconds, spool_over_seconds)
    except MemoryError as exc:
        raise AudioError("too large to decode in memory", path=path) from exc
    except OSError as exc:  # the temporary file of a long song (a full disk)
        raise OutputError(f"cannot write the decoded song to a temporary file in {tempfile.gettempdir()} "
                          f"({(exc.strerror or str(exc)).lower()}; an hour at 44.1 kHz stereo takes 1.6 GB)",
                          path=path) from exc
    if not isinstance(samples, np.ndarray):
        return _validate_spooled(samples, sample_rate, path, max_seconds)
    _check_duration(path, samples.shape[0], sample_rate, max_seconds)
    return _validate_samples(samples, sample_rate, path)


def _validate_spooled(samples, sample_rate: int, path: Path, max_seconds: float | None) -> Audio:
    """``_validate_samples`` for samples in a temporary file, and their 22050 Hz mono view beside them."""
    from harmonizer_cli.core.decoded import spooled_view

    try:
        _check_duration(path, samples.n_frames, sample_rate, max_seconds)
        if sample_rate <= 0:
            raise AudioError(f"invalid sample rate {sample_rate}", path=path)
        if not np.isfinite(samples.peak):  # (a writer that met NaN or infinity keeps a NaN peak)
            raise AudioError("contains NaN or infinite samples", path=path)
        try:
            samples.view = spooled_view(samples, int(sample_rate), MODEL_SAMPLE_RATE)
        except OSError as exc:
            raise OutputError(f"cannot write the decoded song to a temporary file in {tempfile.gettempdir()} "
                              f"({(exc.strerror or str(exc)).lower()})", path=path) from exc
    except BaseException:
        samples.close()
        raise
    return Audio(samples, int(sample_rate))


def output_subtype_for(source: str | os.PathLike, format: str) -> str | None:
    """The subtype that keeps ``source``'s resolution in a ``format`` ("wav", "flac", ...) file.

    24-bit and 32-bit PCM stay 24/32-bit, float stays float (FLAC, which holds
    neither 32-bit nor float, gets 24-bit); everything else, lossy sources
    included, gets the format's default (16-bit for WAV and FLAC). None where the
    format has no choice (Ogg Vorbis, mp3) or the source's header cannot be read.
    """
    if format not in ("wav", "flac") or Path(source).suffix.lower() in _LOSSY_SUFFIXES:
        return None  # lossy sources have no bit depth to keep (and mp3 headers make libmpg123 talk)
    if Path(source).suffix.lower() in _PYAV_SUFFIXES:
        return _pyav_subtype_for(Path(source), format)
    try:
        with _c_stderr_silenced():
            subtype = sf.info(str(source)).subtype
    except (sf.LibsndfileError, RuntimeError, OSError):
        return None
    if subtype in ("PCM_24", "PCM_32", "FLOAT", "DOUBLE"):
        if format == "flac":
            return "PCM_24"
        return {"DOUBLE": "FLOAT"}.get(subtype, subtype)
    return None


def _pyav_subtype_for(source: Path, format: str) -> str | None:
    """24-bit for a 24/32-bit lossless track in a container (ALAC in m4a); None for lossy codecs."""
    try:
        import av

        with av.open(str(source), "r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                return None
            context = container.streams.audio[0].codec_context
            if context is None or context.name not in _LOSSLESS_CODECS:
                return None
            bits = int(getattr(context, "bits_per_raw_sample", 0) or 0) or 8 * context.format.bytes
    except Exception:  # noqa: BLE001 - only a hint: the default subtype is fine
        return None
    if bits > 16:
        return "PCM_24"
    return None


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Average the channels.

    Parameters
    ----------
    samples : np.ndarray [shape=(n_samples, n_channels) or (n_samples,)]

    Returns
    -------
    np.ndarray [shape=(n_samples,), dtype=float32]
    """
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 1:
        return samples
    # channel by channel: much faster than ``mean(axis=1)`` on (n, 2) arrays, same result
    if samples.shape[1] == 1:
        return samples[:, 0].copy()
    mono = np.add(samples[:, 0], samples[:, 1])
    for channel in range(2, samples.shape[1]):
        mono += samples[:, channel]
    mono /= np.float32(samples.shape[1])  # (in place: a song's mono mix is tens of MB)
    return mono


def resample(samples: np.ndarray, *, from_rate: int, to_rate: int) -> np.ndarray:
    """High-quality resampling (soxr, "HQ"); returns the input when the rates match.

    Parameters
    ----------
    samples : np.ndarray [shape=(n_samples,) or (n_samples, n_channels)]
    from_rate, to_rate : int
        Sample rates in Hz.
    """
    if from_rate == to_rate:
        return np.asarray(samples, dtype=np.float32)
    import soxr

    out = soxr.resample(np.asarray(samples, dtype=np.float32), from_rate, to_rate, quality="HQ")
    return np.asarray(out, dtype=np.float32)


def to_model_view(audio: Audio, *, sample_rate: int = MODEL_SAMPLE_RATE) -> np.ndarray:
    """The model's and the analysis' view: mono at ``sample_rate`` (22050 Hz).

    Returns
    -------
    np.ndarray [shape=(n_samples_at_rate,), dtype=float32]
    """
    return resample(to_mono(audio.samples), from_rate=audio.sample_rate, to_rate=sample_rate)
