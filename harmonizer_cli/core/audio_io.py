"""Reading and writing audio files, and the model's view of audio.

``load_audio`` returns a file's samples as they are: its own sample rate and
channel count, float32, never resampled or downmixed. wav, flac, ogg, mp3 and aiff
go through libsndfile; m4a, aac, alac, mka, webm, mkv, mov, mp4 and the audio of
any video file through PyAV (``core.media``, FFmpeg inside its wheels); audioread
is the last fallback for what neither opens. ``to_model_view`` makes the 22050 Hz
mono signal that analysis and the model work on. ``save_audio`` writes wav, flac,
ogg, mp3 (libsndfile), m4a and opus (PyAV), chosen by the extension, in blocks,
through a temporary file in the destination folder that is renamed into place only
when complete.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf

from harmonizer_cli.core._typing import ProgressFn
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

#: Output formats: name -> (container, codec): the libsndfile major format and default
#: subtype, except m4a (AAC) and opus (Opus in Ogg), which PyAV writes (``_PYAV_OUTPUTS``).
OUTPUT_FORMATS = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
    "m4a": ("M4A", "AAC"),
    "opus": ("OGG", "OPUS"),
}
_PYAV_OUTPUTS = frozenset({"m4a", "opus"})

#: Subtype names accepted for ``bit_depth``-like choices.
WAV_SUBTYPES = {"16": "PCM_16", "24": "PCM_24", "float": "FLOAT"}

# Lossy formats libsndfile reads.
_LOSSY_SUFFIXES = {".mp3", ".ogg", ".oga", ".opus"}
# Containers libsndfile cannot read: decoded through PyAV first (then audioread).
_PYAV_SUFFIXES = frozenset({".m4a", ".m4b", ".aac", ".alac", ".mka", ".wma", ".ac3"}) | VIDEO_SUFFIXES
# Codecs whose samples have a bit depth worth keeping (read through PyAV).
_LOSSLESS_CODECS = frozenset({"alac", "flac", "wavpack", "tta", "truehd", "mlp"})

# Frames per block when reading or writing (a few minutes of Ogg Vorbis written in one
# libsndfile call crash it with a segmentation fault).
_BLOCK_FRAMES = 1 << 16

# Below this much free space, a failed write is reported as a full disk.
_LOW_DISK_BYTES = 1 << 20


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

    def add(self, block: np.ndarray) -> None:
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
        if self.writer is not None:
            writer, self.writer = self.writer, None
            return writer.finish()
        if not self.blocks:
            return np.zeros((0, 1), dtype=np.float32)
        return np.concatenate(self.blocks, axis=0)

    def abandon(self) -> None:
        self.blocks = []
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
            while True:
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
    file (libsndfile's formats block by block; PyAV's and audioread's once decoded).
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
        samples, sample_rate = read_audio_track(path, max_seconds=max_seconds)
        return _spooled(samples, sample_rate, spool_seconds), sample_rate
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
    mono = samples[:, 0].copy()
    for channel in range(1, samples.shape[1]):
        mono += samples[:, channel]
    return mono / np.float32(samples.shape[1]) if samples.shape[1] > 1 else mono


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


def output_format_for(path: str | os.PathLike, format: str | None = None) -> str:
    """The output format name (``wav``, ``flac``, ``ogg``, ``mp3``, ``m4a`` or ``opus``) for ``path``.

    ``format`` wins when given; otherwise the extension decides; unknown extensions
    raise ``ConfigError``-like ``OutputError``.
    """
    name = (format or Path(path).suffix.lstrip(".")).lower()
    if name == "oga":
        name = "ogg"
    if name not in OUTPUT_FORMATS:
        raise OutputError(
            f"unsupported output format {name!r} (choose from {', '.join(OUTPUT_FORMATS)})",
            path=path,
        )
    return name


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_output_path(
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    inputs: tuple[str | os.PathLike, ...] = (),
) -> Path:
    """Refuse outputs that would overwrite an input or an existing file.

    Raises
    ------
    OutputError
        The output is one of ``inputs``, exists and ``overwrite`` is false, is a
        directory, or its folder does not exist or is not writable.
    """
    path = Path(path)
    for source in inputs:
        source = Path(source)
        if _same_file(path, source) or path.resolve() == source.resolve():
            raise OutputError("output would overwrite the input file", path=path)
    if path.is_dir():
        raise OutputError("is a directory", path=path)
    if path.exists() and not overwrite:
        raise OutputError("already exists (use --force to overwrite)", path=path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError(f"folder {folder} does not exist", path=path)
    if not os.access(folder, os.W_OK):
        raise OutputError(f"folder {folder} is not writable", path=path)
    return path


def _default_permissions(tmp: Path) -> None:
    """Give a finished temporary file the mode a plainly created file would have.

    ``mkstemp`` creates files readable by their owner only (0600); unless the
    caller chose another mode, use 0666 less the umask, like ``open(path, "w")``.
    """
    with contextlib.suppress(OSError):
        if tmp.stat().st_mode & 0o777 == 0o600:
            tmp.chmod(0o666 & ~_current_umask())


def _current_umask() -> int:
    """The process umask, read without changing it where Linux allows (threads may be writing)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    umask = os.umask(0o077)  # elsewhere: briefly the strictest mask, never a looser one
    os.umask(umask)
    return umask


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place on success.

    On any exception, ``KeyboardInterrupt`` and signals included, the temporary file
    is removed and ``path`` is left as it was.

    Examples
    --------
    >>> with atomic_output("out.json") as tmp:  # doctest: +SKIP
    ...     tmp.write_text("{}")
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=folder)
    except OSError as exc:
        raise OutputError(f"cannot create a file in {folder} ({exc.strerror})", path=path) from exc
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if path.exists() and not overwrite:
            raise OutputError("already exists (use --force to overwrite)", path=path)
        _default_permissions(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"cannot write ({exc.strerror or exc})", path=path) from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


_SFC_SET_ADD_PEAK_CHUNK = 0x1050  # libsndfile's sf_command code


def _without_peak_chunk(handle: "sf.SoundFile") -> None:
    """Keep libsndfile from writing a PEAK chunk into a float WAV/AIFF.

    The chunk holds the time of writing, so two runs of the same job would give
    different bytes. soundfile has no public switch: this uses its libsndfile
    binding and does nothing if that is not there.
    """
    try:
        sf._snd.sf_command(handle._file, _SFC_SET_ADD_PEAK_CHUNK, sf._ffi.NULL, 0)
    except AttributeError:
        pass


def _blocks_of(samples, block_frames: int = _BLOCK_FRAMES):
    """``(n_frames, n_channels, blocks)`` of an array or of a stream with ``blocks()``."""
    if hasattr(samples, "blocks"):
        return int(samples.n_samples), int(samples.n_channels), samples.blocks(block_frames)
    array = np.asarray(samples, dtype=np.float32)
    if array.ndim == 1:
        array = array[:, None]
    return array.shape[0], array.shape[1], (array[start:start + block_frames]
                                            for start in range(0, array.shape[0], block_frames))


#: Reach of the peak limiter (s): a gain dip starts this long before an over and ends
#: this long after it (four 2.5 ms stages: a moving minimum over +-2 stages, then two
#: moving means over +-1), smooth enough to splatter nothing above the codec's band.
LIMITER_STAGE_SECONDS = 0.0025


def _limiter_gain(samples: np.ndarray, stage: int) -> np.ndarray:
    """The limiter's gain for ``samples`` [shape=(n, channels)]: at most ``1 / |x|`` at
    every sample over full scale, 1 far from any, changing smoothly (never a step)."""
    from scipy.ndimage import minimum_filter1d, uniform_filter1d

    peak = np.max(np.abs(samples), axis=1).astype(np.float64)
    gain = 1.0 / np.maximum(peak, 1.0)
    gain = minimum_filter1d(gain, size=4 * stage + 1, mode="nearest")
    for _ in range(2):
        gain = uniform_filter1d(gain, size=2 * stage + 1, mode="nearest")
    return np.minimum(gain, 1.0 / np.maximum(peak, 1.0))  # rounding: never over full scale


def limited(blocks, *, sample_rate: int):
    """``blocks`` with every over full scale brought down by a smooth gain dip.

    Decoded mp3s of loud masters overshoot full scale (up to +1 dB here) and an
    extension is made of their samples: clipping them in an integer or lossy file
    would put a burst of distortion above the codec's band at every over. The gain
    is 1 wherever the audio is within [-1, 1] and no over is within 10 ms (those
    samples pass bit for bit); a block at a time, with 10 ms of look-ahead and history
    kept between blocks, so the result does not depend on the block size.
    """
    stage = max(1, int(round(LIMITER_STAGE_SECONDS * sample_rate)))
    reach = 4 * stage
    history = None  # the last ``reach`` frames passed on (context on the left)
    pending = None  # frames not yet passed on (the look-ahead)

    def emit(frames: np.ndarray, right: np.ndarray | None) -> np.ndarray:
        context = frames if history is None else np.concatenate([history, frames])
        whole = np.concatenate([context, right]) if right is not None else context
        if float(np.max(np.abs(whole), initial=0.0)) <= 1.0:
            return frames
        left = context.shape[0] - frames.shape[0]
        gain = _limiter_gain(whole, stage)[left:left + frames.shape[0]]
        return (frames * gain[:, None]).astype(np.float32)

    for block in blocks:
        block = np.asarray(block, dtype=np.float32)
        if block.ndim == 1:
            block = block[:, None]
        pending = block if pending is None else np.concatenate([pending, block])
        if pending.shape[0] <= reach:
            continue
        ready, pending = pending[:-reach], pending[-reach:]
        out = emit(ready, pending)
        history = (ready if history is None else np.concatenate([history, ready]))[-reach:]
        yield out
    if pending is not None and pending.shape[0]:
        yield emit(pending, None)


#: WAV data over this many bytes is written as RF64 (plain WAV holds at most 4 GiB).
WAV_LIMIT_BYTES = (1 << 32) - (1 << 20)
_SUBTYPE_BYTES = {"PCM_16": 2, "PCM_24": 3, "PCM_32": 4, "FLOAT": 4, "DOUBLE": 8}


def save_audio(
    path: str | os.PathLike,
    samples,
    sample_rate: int,
    *,
    format: str | None = None,
    subtype: str | None = None,
    overwrite: bool = False,
    inputs: tuple[str | os.PathLike, ...] = (),
    on_progress: ProgressFn = None,
) -> Path:
    """Write audio atomically, in blocks.

    Parameters
    ----------
    path : str or os.PathLike
        Destination. Its extension picks the format unless ``format`` is given.
    samples : np.ndarray [shape=(n_samples, n_channels) or (n_samples,)], or a stream
        Float samples, or an object with ``n_samples``, ``n_channels`` and
        ``blocks(block_frames)`` (an extension's output, rendered as it is written:
        an output of hours is never whole in memory). Overs of full scale are brought
        down by a smooth gain dip (``limited``) for every format but float WAV.
    sample_rate : int
        Samples per second.
    format : {"wav", "flac", "ogg", "mp3", "m4a", "opus"}, optional
        m4a is AAC (96 kbit/s per channel) and opus is Opus in Ogg (64 kbit/s per
        channel, at 48 kHz unless the audio is at 8, 12, 16 or 24 kHz: other rates
        are resampled), both written through PyAV. A WAV of more than 4 GiB is
        written as RF64 (its 64-bit successor, which players of long files read).
    subtype : str, optional
        A libsndfile subtype (``"PCM_16"``, ``"PCM_24"``, ``"FLOAT"``, …) or one of
        ``"16"``, ``"24"``, ``"float"``; default 16-bit PCM for wav and flac. Ignored
        for m4a and opus.
    overwrite : bool
        Replace an existing file (``--force``).
    inputs : tuple of paths
        Files that must never be written to (the command's inputs).
    on_progress : callable(done, total), optional
        Frames written so far, after each block.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    OutputError
        The output exists (without ``overwrite``), is an input, or cannot be written
        (unwritable folder, disk full). Nothing is left behind.
    """
    path = check_output_path(path, overwrite=overwrite, inputs=inputs)
    name = output_format_for(path, format)
    major, default_subtype = OUTPUT_FORMATS[name]
    subtype = WAV_SUBTYPES.get(str(subtype), subtype) or default_subtype
    n_frames, n_channels, blocks = _blocks_of(samples)
    if n_frames == 0:
        raise OutputError("refusing to write an empty file (no samples)", path=path)
    if on_progress is not None:
        blocks = _reporting(blocks, n_frames, on_progress)
    if subtype not in ("FLOAT", "DOUBLE"):
        blocks = limited(blocks, sample_rate=int(sample_rate))  # integer and lossy files hold [-1, 1]
    if name in _PYAV_OUTPUTS:
        from harmonizer_cli.core.media import write_audio_file

        with atomic_output(path, overwrite=overwrite) as tmp:
            write_audio_file(tmp, blocks, sample_rate, format=name, path=path, n_frames=n_frames,
                             n_channels=n_channels)
        return path
    if major == "WAV" and n_frames * n_channels * _SUBTYPE_BYTES.get(subtype, 4) > WAV_LIMIT_BYTES:
        major = "RF64"
    if not sf.check_format(major, subtype):
        raise OutputError(f"{name} files cannot hold subtype {subtype}", path=path)
    clip = subtype not in ("FLOAT", "DOUBLE")
    with atomic_output(path, overwrite=overwrite) as tmp:
        try:
            with sf.SoundFile(
                str(tmp), mode="w", samplerate=int(sample_rate), channels=n_channels,
                format=major, subtype=subtype,
            ) as handle:
                if subtype in ("FLOAT", "DOUBLE"):
                    _without_peak_chunk(handle)
                for block in blocks:
                    block = np.asarray(block, dtype=np.float32)
                    handle.write(np.clip(block, -1.0, 1.0) if clip else block)
        except (sf.LibsndfileError, RuntimeError, AssertionError) as exc:
            # libsndfile reports a full disk as "System error."; soundfile asserts on a
            # short write: name the likely cause when the folder has no space left
            reason = str(exc) or "short write"
            with contextlib.suppress(OSError):
                if shutil.disk_usage(path.parent if str(path.parent) else ".").free < _LOW_DISK_BYTES:
                    reason = "no space left on device"
            raise OutputError(f"cannot write {name} ({reason})", path=path) from exc
    return path


def _reporting(blocks, total: int, on_progress):
    """``blocks``, reporting the frames passed on after each."""
    done = 0
    for block in blocks:
        yield block
        done += block.shape[0]
        on_progress(min(done, total), total)
