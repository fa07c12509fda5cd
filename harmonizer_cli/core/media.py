"""Audio and video containers through PyAV (the FFmpeg libraries inside its wheels).

``read_audio_track`` decodes the audio of mp4/m4a/aac/alac, webm/mkv (Opus, Vorbis), mov
and the audio track of any video file, at the file's own sample rate and channels, so
no system ffmpeg is needed. ``write_audio_file`` encodes m4a (AAC) and opus (Opus in
Ogg). ``probe_media`` tells a clip's exact duration and streams; ``fade_out`` and
``FadedOut`` fade music out (an array, or a stream block by block). Writing a clip with
new music is ``core.video``'s; it shares the encoder and muxing steps here
(``add_audio_stream``, ``encode_audio``, ``output_container``, ``mux_packet``,
``write_failure``: public within the package, not in ``__all__``).

PyAV is imported inside the functions that need it (``pyav()``), never at module level:
the CLI imports this module at start-up and ``harmonizer --help`` must stay fast. Writers
get a temporary path (``audio_out.atomic_output``), so the FFmpeg muxer is always named
explicitly rather than guessed from the ``.part`` file name.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from harmonizer_cli.errors import AudioError, ConfigError, OutputError

__all__ = [
    "MediaInfo",
    "NoAudioStreamError",
    "UndecodableError",
    "AUDIO_OUTPUT_CODECS",
    "probe_media",
    "read_audio_track",
    "read_clip_audio",
    "write_audio_file",
    "encoded_sample_rate",
    "fade_out",
]

#: Audio outputs written through PyAV: format name -> (FFmpeg muxer, audio encoder).
AUDIO_OUTPUT_CODECS = {
    "m4a": ("ipod", "aac"),
    "opus": ("ogg", "libopus"),
}

#: Sample rates each encoder takes; other rates are resampled (soxr) to 48 kHz.
_ENCODER_RATES = {
    "aac": frozenset({96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000}),
    "libopus": frozenset({48000, 24000, 16000, 12000, 8000}),
}
_FALLBACK_RATE = 48000

#: Bit rate per channel: AAC 96 kbit/s (192 kbit/s stereo), Opus 64 kbit/s (128 kbit/s stereo).
_BIT_RATE_PER_CHANNEL = {"aac": 96_000, "libopus": 64_000}
#: Sample format each encoder is given (the best it takes).
_ENCODER_FORMATS = {"aac": "fltp", "libopus": "flt"}

#: Sample-entry codes of encrypted tracks in mp4/mov (FairPlay, Common Encryption).
_ENCRYPTED_TAGS = frozenset({"drms", "drmi", "enca", "encv", "encs", "enct"})

#: Encoded in blocks of this many frames (a multiple of both AAC's 1024 and Opus' 960).
_BLOCK_FRAMES = 61440

#: Below this much free space, a failed write is reported as a full disk.
_LOW_DISK_BYTES = 1 << 20

_UNDECODABLE = "cannot decode: not an audio file, or a corrupt or unsupported format"
_MAX_CHANNELS = 8


class NoAudioStreamError(AudioError):
    """A container PyAV opens, with no audio stream in it (exit 3)."""


class UndecodableError(AudioError):
    """A file PyAV cannot open or decode at all (exit 3); the caller may try another reader."""


@dataclass(frozen=True)
class MediaInfo:
    """What ``probe_media`` finds in a container.

    Attributes
    ----------
    path : Path
    format_name : str
        FFmpeg's demuxer name (``"mov,mp4,m4a,3gp,3g2,mj2"``, ``"matroska,webm"``, ...).
    duration_seconds : float
        The video stream's exact duration (first frame's start to last frame's end),
        or the container's when there is no video stream.
    start_seconds : float
        When the video stream starts (its first presentation time), 0 without video.
    has_video, has_audio : bool
        Cover art (an attached picture) is not a video stream.
    video_codec, audio_codec : str or None
        FFmpeg codec names (``"h264"``, ``"aac"``, ``"opus"``, ...).
    sample_rate, channels : int or None
        Of the first audio stream.
    """

    path: Path
    format_name: str
    duration_seconds: float
    start_seconds: float
    has_video: bool
    has_audio: bool
    video_codec: Optional[str]
    audio_codec: Optional[str]
    sample_rate: Optional[int]
    channels: Optional[int]


def pyav():
    """The ``av`` module, imported on first use."""
    import av  # noqa: PLC0415 - kept out of start-up (harmonizer --help)

    return av


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())


@contextlib.contextmanager
def open_input(path: Path) -> Iterator[object]:
    """The container at ``path`` opened for reading, closed after; ``UndecodableError`` if it cannot be."""
    av = pyav()
    try:
        container = av.open(str(path), "r", metadata_errors="ignore")
    except av.FFmpegError as exc:
        raise UndecodableError(_UNDECODABLE, path=path) from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise UndecodableError(_UNDECODABLE, path=path) from exc
    try:
        yield container
    finally:
        container.close()


def video_stream(container: object) -> object | None:
    """The first real video stream (cover art, an attached picture, is not one)."""
    av = pyav()
    for stream in container.streams.video:  # type: ignore[attr-defined]
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    return None


def _check_not_encrypted(stream: object, path: Path) -> None:
    tag = ""
    with contextlib.suppress(AttributeError, UnicodeDecodeError, ValueError):
        tag = (stream.codec_tag or "").strip("\x00 ").lower()  # type: ignore[attr-defined]
    if tag in _ENCRYPTED_TAGS:
        raise AudioError("is encrypted (DRM): cannot be read", path=path)


def _seconds(value: Optional[int], time_base: Optional[Fraction]) -> Optional[float]:
    if value is None or time_base is None:
        return None
    return float(value * time_base)


def _scan_stream_span(path: Path, stream_index: int) -> Optional[tuple[float, float]]:
    """(start, end) in seconds of one stream's packets, demuxed without decoding."""
    with open_input(path) as container:
        stream = container.streams[stream_index]  # type: ignore[attr-defined]
        start = end = None
        last_has_duration = True
        try:
            for packet in container.demux(stream):  # type: ignore[attr-defined]
                if packet.pts is None:
                    continue
                packet_end = packet.pts + (packet.duration or 0)
                start = packet.pts if start is None else min(start, packet.pts)
                if end is None or packet_end >= end:
                    end, last_has_duration = packet_end, bool(packet.duration)
        except pyav().FFmpegError:
            pass  # a truncated file: the packets read so far
        if start is None:
            return None
        span_end = float(end * stream.time_base)
        if not last_has_duration and stream.guessed_rate:  # the last frame lasts one frame period
            span_end += float(1 / stream.guessed_rate)
        return float(start * stream.time_base), span_end


def probe_media(path: str | os.PathLike) -> MediaInfo:
    """A container's streams and exact duration, without decoding.

    The duration is the video stream's (its declared duration, or, where the container
    declares none, as Matroska/WebM do, the span of its packets), else the container's.

    Raises
    ------
    AudioError
        Missing or unreadable file, not a media container, an encrypted (DRM) stream,
        or no duration to be found.
    """
    from harmonizer_cli.core.audio_io import _check_input_path

    path = Path(path)
    _check_input_path(path)
    stat = path.stat()
    return _probe(path, stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=8)
def _probe(path: Path, mtime_ns: int, size: int) -> MediaInfo:
    """``probe_media`` for one version of a file (a clip is probed once per command, not once per song)."""
    with open_input(path) as container:
        video = video_stream(container)
        audio = container.streams.audio[0] if container.streams.audio else None  # type: ignore[attr-defined]
        for stream in (video, audio):
            if stream is not None:
                _check_not_encrypted(stream, path)
        start = 0.0
        duration = None
        if video is not None:
            start = _seconds(video.start_time, video.time_base) or 0.0
            duration = _seconds(video.duration, video.time_base)
        elif container.duration is not None:  # type: ignore[attr-defined]
            duration = container.duration / 1_000_000  # type: ignore[attr-defined]  # AV_TIME_BASE
        elif audio is not None:
            duration = _seconds(audio.duration, audio.time_base)
        format_name = container.format.name  # type: ignore[attr-defined]
        video_codec = video.codec_context.name if video is not None and video.codec_context else None
        audio_codec = audio.codec_context.name if audio is not None and audio.codec_context else None
        sample_rate = audio.codec_context.sample_rate if audio is not None and audio.codec_context else None
        channels = audio.codec_context.channels if audio is not None and audio.codec_context else None
        scan_index = (video if video is not None else audio).index if (video or audio) is not None else None
    if not duration or duration <= 0:
        span = _scan_stream_span(path, scan_index) if scan_index is not None else None
        if span is None or span[1] <= span[0]:
            raise AudioError("cannot tell its duration (no timestamps)", path=path)
        if video is not None:
            start = span[0]
        duration = span[1] - span[0]
    return MediaInfo(path=path, format_name=format_name, duration_seconds=float(duration),
                     start_seconds=float(start), has_video=video is not None, has_audio=audio is not None,
                     video_codec=video_codec, audio_codec=audio_codec, sample_rate=sample_rate, channels=channels)


def _layout_name(n_channels: int) -> str:
    """FFmpeg's default layout for a channel count (``"stereo"``, ``"5.1"``, ...)."""
    return pyav().AudioLayout(f"{int(n_channels)}c").name


#: Decoded frames gathered before they go to the sink as one (n, channels) block.
_SINK_FRAMES = 1 << 16


def _decode_audio(path: Path, *, max_seconds: Optional[float], sample_rate: Optional[int] = None,
                  n_channels: Optional[int] = None, sink=None) -> tuple[np.ndarray, int, float]:
    """Decode the first audio stream to float32 (n, channels).

    At the stream's own rate and layout unless ``sample_rate`` / ``n_channels`` are
    given. Returns the samples, their rate and when they start (seconds, in the
    container's time). The samples go to ``sink(rate, channels)`` (an object with
    ``add(block)``, ``result()`` and ``abandon()``: ``audio_io``'s blocks, spooling or not)
    ``_SINK_FRAMES`` at a time as they are decoded; by default they are joined in memory.
    """
    from harmonizer_cli.core.audio_io import _Blocks

    av = pyav()
    with open_input(path) as container:
        if not container.streams.audio:  # type: ignore[attr-defined]
            raise NoAudioStreamError("has no audio stream", path=path)
        stream = container.streams.audio[0]  # type: ignore[attr-defined]
        _check_not_encrypted(stream, path)
        context = stream.codec_context
        if context is None or not context.sample_rate or not context.channels:
            raise UndecodableError(f"cannot decode: no decoder for its {stream.codec_tag or 'audio'} stream",
                                   path=path)
        own_rate = int(context.sample_rate)
        declared = _seconds(stream.duration, stream.time_base)
        # mp4/mov (FFmpeg's "mov" demuxer) declare the exact length, without the encoder's priming
        # and padding; elsewhere a declared length may be an estimate (ADTS .aac: from the bit rate)
        exact_seconds = declared if container.format.name.startswith("mov,") else None  # type: ignore[attr-defined]
        if declared is None and container.duration is not None:  # type: ignore[attr-defined]
            declared = container.duration / 1_000_000  # type: ignore[attr-defined]
        if max_seconds is not None and declared is not None and declared > max_seconds:
            raise AudioError(f"too long ({declared / 60:.1f} minutes; at most {max_seconds / 60:g} minutes "
                             "are accepted)", path=path)
        rate = int(sample_rate or own_rate)
        channels = int(n_channels or context.channels)
        if n_channels is None and context.layout.nb_channels == channels and context.layout.name:
            layout = context.layout.name
        else:
            layout = _layout_name(channels)
        try:
            resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
        except (av.FFmpegError, ValueError):  # a layout FFmpeg names but cannot convert from
            resampler = av.AudioResampler(format="fltp", layout=_layout_name(channels), rate=rate)
        # mp4/mov declare the exact length (the edit list skips the encoder's priming);
        # the decoder still returns the padding of the last AAC frame: it is dropped
        exact = int(round(exact_seconds * rate)) if exact_seconds is not None else 0
        out_sink = (sink or (lambda _rate, _channels: _Blocks(None)))(rate, channels)  # (in memory)
        pending: list[np.ndarray] = []  # planar frames not yet passed on
        counts = {"pending": 0, "passed": 0, "decoded": 0}

        def pass_on() -> None:
            if pending:
                block = np.ascontiguousarray(np.concatenate(pending, axis=1).T, dtype=np.float32)
                pending.clear()
                counts["pending"] = 0
                if exact > 0:
                    block = block[:max(0, exact - counts["passed"])]
                if block.shape[0]:
                    out_sink.add(block)
                    counts["passed"] += block.shape[0]

        def take(out) -> None:
            pending.append(out.to_ndarray())
            counts["pending"] += out.samples
            counts["decoded"] += out.samples
            if counts["pending"] >= _SINK_FRAMES:
                pass_on()

        start_seconds: Optional[float] = None
        limit = None if max_seconds is None else int(max_seconds * rate) + 1
        try:
            try:
                for frame in container.decode(stream):  # type: ignore[attr-defined]
                    if start_seconds is None and frame.pts is not None and frame.time_base is not None:
                        start_seconds = float(frame.pts * frame.time_base)
                    for out in resampler.resample(frame):
                        take(out)
                    if limit is not None and counts["decoded"] > limit:
                        raise AudioError(f"too long (more than {max_seconds / 60:g} minutes, the most accepted)",
                                         path=path)
                for out in resampler.resample(None):
                    take(out)
            except av.FFmpegError as exc:
                if not counts["decoded"]:  # nothing decodable; a truncated file keeps what came before the damage
                    raise UndecodableError(f"cannot decode: {_reason(exc)}", path=path) from exc
            pass_on()
        except BaseException:
            out_sink.abandon()
            raise
    if not counts["passed"]:
        out_sink.abandon()
        return np.zeros((0, channels), dtype=np.float32), rate, start_seconds or 0.0
    return out_sink.result(), rate, start_seconds or 0.0


def read_audio_track(path: str | os.PathLike, *, max_seconds: Optional[float] = None,
                     spool_seconds: Optional[float] = None) -> tuple[np.ndarray, int]:
    """Decode a container's first audio stream at its own sample rate and channels.

    Parameters
    ----------
    path : str or os.PathLike
    max_seconds : float, optional
        Refuse longer audio: from the container's declared duration before decoding,
        else while decoding.
    spool_seconds : float, optional
        Past this length the samples go to a temporary file as they are decoded
        (``audio_io``'s spooling: an hour-long video's sound is never whole in memory).

    Returns
    -------
    samples : np.ndarray [shape=(n_samples, n_channels), dtype=float32], or a DecodedFile
    sample_rate : int

    Raises
    ------
    NoAudioStreamError
        The container has no audio stream (a video without sound).
    UndecodableError
        Not a container PyAV opens, or nothing in it decodes.
    AudioError
        Encrypted (DRM), or longer than ``max_seconds``.
    """
    if spool_seconds is None:
        samples, sample_rate, _ = _decode_audio(Path(path), max_seconds=max_seconds)
        return samples, sample_rate
    from harmonizer_cli.core.audio_io import _Blocks  # (decoding goes to a temporary file past spool_seconds)

    samples, sample_rate, _ = _decode_audio(Path(path), max_seconds=max_seconds,
                                            sink=lambda rate, _channels: _Blocks(spool_seconds * rate))
    return samples, sample_rate


def read_clip_audio(path: str | os.PathLike, *, sample_rate: int, n_channels: int,
                    n_samples: int) -> np.ndarray:
    """A clip's own sound, aligned with its video and fitted to music of ``n_samples``.

    Resampled to ``sample_rate`` and ``n_channels`` (FFmpeg's channel mixing), placed
    where it starts relative to the video, then cut or padded with silence.

    Returns
    -------
    np.ndarray [shape=(n_samples, n_channels), dtype=float32]

    Raises
    ------
    ConfigError
        The clip has no audio to keep.
    """
    path = Path(path)
    try:
        samples, _, start = _decode_audio(path, max_seconds=None, sample_rate=sample_rate, n_channels=n_channels)
    except NoAudioStreamError as exc:
        raise ConfigError("the clip has no audio to keep (--keep-original-audio)", path=path) from exc
    offset = int(round((start - probe_media(path).start_seconds) * sample_rate))
    if offset > 0:  # the clip's sound starts after its first frame
        samples = np.concatenate([np.zeros((offset, n_channels), np.float32), samples])
    elif offset < 0:
        samples = samples[-offset:]
    fitted = np.zeros((n_samples, n_channels), dtype=np.float32)
    n = min(n_samples, samples.shape[0])
    fitted[:n] = samples[:n]
    return fitted


def encoded_sample_rate(codec: str, sample_rate: int) -> int:
    """The rate ``codec`` ("aac", "libopus") is written at: the music's own where the codec takes it, else 48 kHz."""
    rates = _ENCODER_RATES.get(codec)
    return int(sample_rate) if rates is None or int(sample_rate) in rates else _FALLBACK_RATE


def add_audio_stream(container: object, codec: str, *, sample_rate: int, n_channels: int) -> object:
    """A new ``codec`` stream in ``container``: its layout, sample format, bit rate and time base set."""
    if n_channels > _MAX_CHANNELS:
        raise OutputError(f"{n_channels} channels cannot be encoded (at most {_MAX_CHANNELS})")
    stream = container.add_stream(codec, rate=sample_rate)  # type: ignore[attr-defined]
    stream.layout = _layout_name(n_channels)
    stream.codec_context.format = _ENCODER_FORMATS[codec]
    stream.codec_context.bit_rate = _BIT_RATE_PER_CHANNEL[codec] * n_channels
    stream.time_base = Fraction(1, sample_rate)
    return stream


def _array_blocks(samples):
    """Blocks of an array (``_BLOCK_FRAMES`` frames each), or the blocks given."""
    if not isinstance(samples, np.ndarray):
        return samples
    array = np.asarray(samples, dtype=np.float32)
    return (array[at:at + _BLOCK_FRAMES] for at in range(0, array.shape[0], _BLOCK_FRAMES))


def encode_audio(stream: object, codec: str, samples, sample_rate: int, *,
            start_pts: int = 0) -> Iterator[object]:
    """Encoded packets of ``samples`` (an array, or its blocks in order), then the encoder's last ones.

    The first presentation time is ``start_pts`` (in 1/sample_rate); the encoder's
    priming comes before it (negative times), which the muxers record (mp4's edit
    list, Ogg's pre-skip, Matroska's codec delay) so that players and decoders skip it.
    """
    av = pyav()
    fmt = _ENCODER_FORMATS[codec]
    layout = stream.layout.name  # type: ignore[attr-defined]
    planar = fmt.endswith("p")
    time_base = Fraction(1, sample_rate)
    start = 0
    for block in _array_blocks(samples):
        block = np.asarray(block, dtype=np.float32)
        if block.shape[0] == 0:
            continue
        array = np.ascontiguousarray(block.T) if planar else np.ascontiguousarray(block).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(array, format=fmt, layout=layout)
        frame.sample_rate = sample_rate
        frame.time_base = time_base
        frame.pts = start_pts + start
        start += block.shape[0]
        yield from stream.encode(frame)  # type: ignore[attr-defined]
    yield from stream.encode(None)  # type: ignore[attr-defined]


@contextlib.contextmanager
def output_container(tmp: str | os.PathLike, muxer: str) -> Iterator[object]:
    """An output container with its muxer named (the temporary file's name tells FFmpeg
    nothing); closed, trailer written, on success. On failure it is closed quietly, so the
    first error (a full disk, Ctrl-C) is the one that propagates, never the trailer's."""
    container = pyav().open(str(tmp), "w", format=muxer)
    try:
        yield container
    except BaseException:
        with contextlib.suppress(Exception):
            container.close()
        raise
    container.close()


def mux_packet(container: object, packet: object) -> None:
    """Write one packet (one place, so tests can inject a full disk: ``media.mux_packet`` for
    audio files, ``video.mux_packet`` for a soundtrack, where each is called)."""
    container.mux(packet)  # type: ignore[attr-defined]


def write_failure(exc: BaseException, name: str, path: Path) -> OutputError:
    """The ``OutputError`` for a failed write of ``name`` (a full disk named as such)."""
    reason = _reason(exc)
    with contextlib.suppress(OSError):
        if shutil.disk_usage(path.parent if str(path.parent) else ".").free < _LOW_DISK_BYTES:
            reason = "no space left on device"
    return OutputError(f"cannot write {name} ({reason})", path=path)


def _blocks_at_rate(blocks, n_frames: int, n_channels: int, sample_rate: int, rate: int):
    """``blocks`` resampled (soxr, as they come) from ``sample_rate`` to ``rate``, cut or padded
    to exactly the length the whole would have there."""
    wanted = int(round(n_frames * rate / sample_rate))
    if rate != sample_rate:
        import soxr

        resampler = soxr.ResampleStream(sample_rate, rate, n_channels, dtype="float32", quality="HQ")
        blocks = _resampled(blocks, resampler, n_channels)
    written = 0
    for block in blocks:
        block = np.asarray(block, dtype=np.float32)[:max(0, wanted - written)]
        written += block.shape[0]
        if block.shape[0]:
            yield block
    if written < wanted:
        yield np.zeros((wanted - written, n_channels), dtype=np.float32)


def _resampled(blocks, resampler, n_channels: int):
    """Each block through a soxr stream, then what the stream still holds."""
    for block in blocks:
        out = resampler.resample_chunk(np.ascontiguousarray(block, dtype=np.float32))
        if out.shape[0]:
            yield out
    yield resampler.resample_chunk(np.zeros((0, n_channels), dtype=np.float32), last=True)


def write_audio_file(tmp: str | os.PathLike, samples, sample_rate: int, *, format: str,
                     path: Optional[str | os.PathLike] = None, n_frames: Optional[int] = None,
                     n_channels: Optional[int] = None) -> int:
    """Encode ``samples`` as m4a (AAC) or opus (Opus in Ogg) into ``tmp``.

    Opus takes 8, 12, 16, 24 or 48 kHz: other rates are resampled (soxr) to 48 kHz;
    AAC takes the usual rates from 8 to 96 kHz. Meant to run inside
    ``audio_out.atomic_output``, which owns the temporary file.

    Parameters
    ----------
    tmp : path
        Where to write (any name: the container format is given to FFmpeg explicitly).
    samples : np.ndarray [shape=(n_samples, n_channels), dtype=float32], or its blocks
        The audio; blocks (in order) need ``n_frames`` and ``n_channels``.
    sample_rate : int
    format : {"m4a", "opus"}
    path : path, optional
        The final output, named in error messages.
    n_frames, n_channels : int, optional
        The length and channels of ``samples`` given as blocks.

    Returns
    -------
    int
        The sample rate written.

    Raises
    ------
    OutputError
        The file cannot be written (disk full, too many channels).
    """
    av = pyav()
    muxer, codec = AUDIO_OUTPUT_CODECS[format]
    named = Path(path if path is not None else tmp)
    if isinstance(samples, np.ndarray):
        n_frames, n_channels = samples.shape[0], samples.shape[1]
    samples = _array_blocks(samples)
    rate = encoded_sample_rate(codec, int(sample_rate))
    blocks = _blocks_at_rate(samples, int(n_frames), int(n_channels), int(sample_rate), rate)
    try:
        with output_container(tmp, muxer) as container:
            stream = add_audio_stream(container, codec, sample_rate=rate, n_channels=int(n_channels))
            for packet in encode_audio(stream, codec, blocks, rate):
                mux_packet(container, packet)
    except OutputError as exc:
        raise OutputError(exc.message, path=named) from exc
    except (av.FFmpegError, OSError) as exc:
        raise write_failure(exc, format, named) from exc
    return rate


def fade_out(samples: np.ndarray, sample_rate: int, seconds: float) -> np.ndarray:
    """A smooth (raised-cosine) fade to silence over the last ``seconds``.

    Parameters
    ----------
    samples : np.ndarray [shape=(n_samples, n_channels)]
    sample_rate : int
    seconds : float
        Fade length; longer than the audio fades all of it.

    Returns
    -------
    np.ndarray [shape=(n_samples, n_channels), dtype=float32]
        A new array; the last sample is silent.

    Examples
    --------
    >>> faded = fade_out(np.ones((48000, 2), np.float32), 48000, 0.5)
    >>> float(faded[0, 0]), float(faded[-1, 0])
    (1.0, 0.0)
    """
    out = np.array(samples, dtype=np.float32, copy=True)
    n = min(out.shape[0], int(round(seconds * sample_rate)))
    if n <= 0:
        return out
    ramp = 0.5 * (1.0 + np.cos(np.pi * np.linspace(0.0, 1.0, n)))
    out[-n:] *= ramp.astype(np.float32)[:, None] if out.ndim == 2 else ramp.astype(np.float32)
    return out


class FadedOut:
    """A stream (``n_samples``, ``n_channels``, ``blocks``) faded out like ``fade_out``, block by block."""

    def __init__(self, stream, sample_rate: int, seconds: float) -> None:
        self.stream, self.n_samples, self.n_channels = stream, int(stream.n_samples), int(stream.n_channels)
        self.length = min(self.n_samples, int(round(seconds * sample_rate)))

    def blocks(self, block_frames: int = _BLOCK_FRAMES):
        start = 0
        first = self.n_samples - self.length
        ramp = 0.5 * (1.0 + np.cos(np.pi * np.linspace(0.0, 1.0, self.length))) if self.length > 0 else None
        for block in self.stream.blocks(block_frames):
            stop = start + block.shape[0]
            if ramp is not None and stop > first:
                block = np.array(block, dtype=np.float32, copy=True)
                lo = max(start, first)
                block[lo - start:] *= ramp[lo - first:stop - first].astype(np.float32)[:, None]
            yield block
            start = stop
