"""Writing audio files: the output side of ``audio_io``.

``save_audio`` writes wav, flac, ogg, mp3 (libsndfile), m4a and opus (PyAV, through
``core.media``), chosen by the extension, in blocks, through a temporary file in the
destination folder that is renamed into place only when complete (``atomic_output``,
which every writer of a result file in the package uses; ``check_output_path`` refuses
outputs that would overwrite an input or an existing file). Overs of full scale are
brought down by a smooth gain dip (``limited``); a WAV of more than 4 GiB is written as
RF64. Reading audio is ``audio_io``'s, which re-exports the public names here.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf

from harmonizer_cli.core._typing import ProgressFn
from harmonizer_cli.errors import OutputError

__all__ = [
    "OUTPUT_FORMATS",
    "WAV_SUBTYPES",
    "WAV_LIMIT_BYTES",
    "save_audio",
    "limited",
    "output_format_for",
    "check_output_path",
    "atomic_output",
]

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

# Frames per block when reading or writing (a few minutes of Ogg Vorbis written in one
# libsndfile call crash it with a segmentation fault).
_BLOCK_FRAMES = 1 << 16

# Below this much free space, a failed write is reported as a full disk.
_LOW_DISK_BYTES = 1 << 20


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


def _moving(values: np.ndarray, half: int, how: str) -> np.ndarray:
    """The minimum or mean of ``values`` within ``half`` samples either side (edges repeated)."""
    padded = np.pad(values, half, mode="edge")
    if how == "min":  # van Herk / Gil-Werman: running minima within blocks of the window's width
        width = 2 * half + 1
        n = padded.size
        blocks = np.pad(padded, (0, -n % width), constant_values=np.inf).reshape(-1, width)
        ahead = np.minimum.accumulate(blocks, axis=1).ravel()
        behind = np.minimum.accumulate(blocks[:, ::-1], axis=1)[:, ::-1].ravel()
        return np.minimum(behind[:n - width + 1], ahead[width - 1:n])
    cum = np.concatenate([[0.0], np.cumsum(padded)])
    return (cum[2 * half + 1:] - cum[:-2 * half - 1]) / (2 * half + 1)


def _frame_peaks(samples: np.ndarray) -> np.ndarray:
    """The largest ``|x|`` over the channels of each frame [shape=(n,)] (channel by channel:
    ``max(axis=1)`` over two channels is several times slower)."""
    peak = np.abs(samples[:, 0])
    for channel in range(1, samples.shape[1]):
        peak = np.maximum(peak, np.abs(samples[:, channel]))
    return peak


def _limiter_gain(samples: np.ndarray, stage: int) -> np.ndarray:
    """The limiter's gain for ``samples`` [shape=(n, channels)]: at most ``1 / |x|`` at
    every sample over full scale, 1 far from any, changing smoothly (never a step).

    A moving minimum over +-2 stages, then two moving means over +-1: each value depends
    only on the samples within 4 stages, so only the stretches around overs are computed
    (the rest is 1), in numpy."""
    peak = _frame_peaks(samples).astype(np.float64)
    ceiling = 1.0 / np.maximum(peak, 1.0)
    gain = np.ones(peak.size)
    over = np.flatnonzero(peak > 1.0)
    if over.size == 0:
        return gain
    reach = 4 * stage
    breaks = np.flatnonzero(np.diff(over) > 2 * reach)
    for first, last in zip(np.r_[over[0], over[breaks + 1]], np.r_[over[breaks], over[-1]]):
        lo, hi = max(0, first - 2 * reach), min(peak.size, last + 2 * reach + 1)
        part = _moving(ceiling[lo:hi], 2 * stage, "min")
        for _ in range(2):
            part = _moving(part, stage, "mean")
        gain[lo:hi] = np.minimum(gain[lo:hi], part)
    return np.minimum(gain, ceiling)  # rounding: never over full scale


def _last_frames(parts: list, n: int) -> np.ndarray:
    """A copy of the last ``n`` frames of the arrays ``parts`` taken in order (all, if fewer)."""
    tail, count = [], 0
    for part in reversed(parts):
        if count >= n:
            break
        tail.append(part[max(0, part.shape[0] - (n - count)):])
        count += tail[-1].shape[0]
    return np.concatenate(tail[::-1]) if len(tail) > 1 else tail[0].copy()


def limited(blocks, *, sample_rate: int):
    """``blocks`` with every over full scale brought down by a smooth gain dip.

    Decoded mp3s of loud masters overshoot full scale (up to +1 dB here) and an
    extension is made of their samples: clipping them in an integer or lossy file
    would put a burst of distortion above the codec's band at every over. The gain
    is 1 wherever the audio is within [-1, 1] and no over is within 10 ms (those
    samples pass bit for bit); a block at a time, with 10 ms of look-ahead and history
    kept between blocks, so the result does not depend on the block size (the blocks
    passed on need not be those given: frames far from any over pass as they came,
    uncopied, in pieces).
    """
    stage = max(1, int(round(LIMITER_STAGE_SECONDS * sample_rate)))
    reach = 4 * stage
    overs: list = []     # frames over full scale (absolute indices, in order)
    held: list = []      # frames not yet passed on (the last ``reach`` are the look-ahead)
    first = 0            # absolute index of the first frame held
    n_held = 0
    history = None       # the last ``reach`` frames passed on (context on the left)

    def near_over(lo: int, hi: int) -> bool:
        k = bisect.bisect_left(overs, lo)
        return k < len(overs) and overs[k] < hi

    def pass_on(n: int, final: bool):
        """The first ``n`` frames held, limited, as a list of arrays; drops them from ``held``."""
        nonlocal held, first, n_held, history
        taken, rest, count = [], [], 0
        for part in held:
            if count >= n:
                rest.append(part)
            elif count + part.shape[0] <= n:
                taken.append(part)
            else:
                taken.append(part[:n - count])
                rest.append(part[n - count:])
            count += part.shape[0]
        before = [] if history is None else [history]
        history = _last_frames(before + taken, reach)  # (the frames as they came: the gain's context)
        if near_over(first - reach, first + n + (0 if final else reach)):
            whole = np.concatenate(before + held)
            left = whole.shape[0] - n_held
            gain = _limiter_gain(whole, stage)[left:left + n]
            taken = [(np.concatenate(taken) * gain[:, None]).astype(np.float32)]
        held, first, n_held = rest, first + n, n_held - n
        del overs[:bisect.bisect_left(overs, first - reach)]  # (those behind every context to come)
        return taken

    for block in blocks:
        block = np.asarray(block, dtype=np.float32)
        if block.ndim == 1:
            block = block[:, None]
        if block.size and (float(block.max()) > 1.0 or float(block.min()) < -1.0):
            overs.extend((first + n_held + np.flatnonzero(_frame_peaks(block) > 1.0)).tolist())
        held.append(block)
        n_held += block.shape[0]
        if n_held > reach:
            yield from pass_on(n_held - reach, final=False)
    if n_held:
        yield from pass_on(n_held, final=True)


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
    with atomic_output(path, overwrite=overwrite) as tmp:
        try:
            with sf.SoundFile(
                str(tmp), mode="w", samplerate=int(sample_rate), channels=n_channels,
                format=major, subtype=subtype,
            ) as handle:
                if subtype in ("FLOAT", "DOUBLE"):
                    _without_peak_chunk(handle)
                # (integer files: the limiter has brought every frame within [-1, 1] already)
                convert = (_pcm16 if subtype == "PCM_16" and major in ("WAV", "RF64")
                           else (lambda block: np.asarray(block, dtype=np.float32)))
                for block in blocks:
                    handle.write(convert(block))
        except (sf.LibsndfileError, RuntimeError, AssertionError) as exc:
            # libsndfile reports a full disk as "System error."; soundfile asserts on a
            # short write: name the likely cause when the folder has no space left
            reason = str(exc) or "short write"
            with contextlib.suppress(OSError):
                if shutil.disk_usage(path.parent if str(path.parent) else ".").free < _LOW_DISK_BYTES:
                    reason = "no space left on device"
            raise OutputError(f"cannot write {name} ({reason})", path=path) from exc
    return path


_PCM16_SCALE = np.float32(0x8000)


def _pcm16(block) -> np.ndarray:
    """Float samples as the 16-bit integers libsndfile makes of them in a WAV file: ``x *
    0x8000`` in single precision, rounded down, held within the 16-bit range (the same
    samples, but for values closer to 0 than about 1e-9, -180 dBFS, which libsndfile makes
    0 and this -1). Converted here, libsndfile only copies: 5 minutes of 16-bit WAV are
    written in 0.15 s, not 0.4 s (its own conversion is the slow part)."""
    scaled = np.floor(np.asarray(block, dtype=np.float32) * _PCM16_SCALE)
    return np.clip(scaled, -32768.0, 32767.0, out=scaled).astype(np.int16)


def _reporting(blocks, total: int, on_progress):
    """``blocks``, reporting the frames passed on after each."""
    done = 0
    for block in blocks:
        yield block
        done += block.shape[0]
        on_progress(min(done, total), total)
