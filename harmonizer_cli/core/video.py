"""The ``--video`` soundtrack: a clip written again with new music as its only audio.

``mux_soundtrack`` copies the clip's video stream packet for packet (never re-encoded)
and encodes the music in the audio codec the container plays everywhere (AAC in
mp4/mov, Opus in mkv/webm); ``check_can_mux`` refuses, before any work, a video codec
the chosen container cannot hold; ``mix_under`` mixes the clip's own sound under the
music. Probing, decoding and the shared encoder and muxing steps live in ``core.media``;
like it, this module imports PyAV only inside the functions that need it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np

from harmonizer_cli.core.media import (
    MediaInfo,
    add_audio_stream,
    encode_audio,
    encoded_sample_rate,
    mux_packet,
    open_input,
    output_container,
    probe_media,
    pyav,
    read_clip_audio,
    video_stream,
    write_failure,
)
from harmonizer_cli.errors import AudioError, ConfigError, OutputError

if TYPE_CHECKING:  # pragma: no cover - typing only
    from harmonizer_cli.core.audio_io import Audio

__all__ = ["VIDEO_OUTPUT_FORMATS", "check_can_mux", "mix_under", "mux_soundtrack"]

#: Video outputs: format name (the extension) -> (FFmpeg muxer, audio encoder).
VIDEO_OUTPUT_FORMATS = {
    "mp4": ("mp4", "aac"),
    "mov": ("mov", "aac"),
    "mkv": ("matroska", "libopus"),
    "webm": ("webm", "libopus"),
}


def _timed_packets(packets: Iterator[object]) -> Iterator[object]:
    """The demuxed video packets, each with a decoding time, in order; the flush packet left out.

    Matroska stores presentation times only: with B-frames FFmpeg cannot tell the first
    packets' decoding times (None), and they are the keyframe and its first references,
    so they are kept, not skipped: they get the times just before the first known one,
    one packet duration apart, as the encoder gave them (a decoding time never changes
    the picture). A packet with neither time (the demuxer's last, empty one) is dropped.
    """
    waiting: list[object] = []
    previous = None
    for packet in packets:
        if packet.dts is None and packet.pts is None:
            continue
        if packet.dts is None:
            if previous is None:
                waiting.append(packet)
                continue
            step = packet.duration or 1
            packet.dts = max(previous + 1, min(previous + step, packet.pts))
        if waiting:
            step = packet.duration or waiting[-1].duration or 1
            for index, early in enumerate(waiting):
                early.dts = min(packet.dts - step * (len(waiting) - index), early.pts)
                yield early
            waiting = []
        previous = packet.dts
        yield packet
    for early in waiting:  # no packet with a decoding time at all: presentation order it is
        early.dts = early.pts
        yield early


def _fit_rate(samples: np.ndarray, sample_rate: int, codec: str, n_samples: Optional[int] = None
              ) -> tuple[np.ndarray, int]:
    """Resample for ``codec`` if it needs another rate; cut or pad to ``n_samples`` at the new rate."""
    from harmonizer_cli.core.audio_io import resample

    rate = encoded_sample_rate(codec, sample_rate)
    if n_samples is None:
        n_samples = int(round(samples.shape[0] * rate / sample_rate))
    if rate != sample_rate:
        samples = resample(samples, from_rate=sample_rate, to_rate=rate)
    if samples.shape[0] > n_samples:
        samples = samples[:n_samples]
    elif samples.shape[0] < n_samples:
        samples = np.concatenate([samples, np.zeros((n_samples - samples.shape[0], samples.shape[1]), np.float32)])
    return np.ascontiguousarray(samples, dtype=np.float32), rate


def _output_format(path: Path, format: Optional[str]) -> str:
    name = (format or path.suffix.lstrip(".")).lower()
    if name not in VIDEO_OUTPUT_FORMATS:
        raise ConfigError(f"not a video output format: {name!r} (choose from {', '.join(VIDEO_OUTPUT_FORMATS)})",
                          path=path)
    return name


def check_can_mux(info: MediaInfo, format: str, *, path: Optional[str | os.PathLike] = None) -> None:
    """Refuse, before any work, a clip whose video a ``format`` file cannot hold without re-encoding.

    Raises
    ------
    ConfigError
        For example H.264 video into ``.webm`` (WebM holds VP8, VP9 and AV1 only).
    """
    if not info.has_video or info.video_codec is None:
        return
    av = pyav()
    muxer, _ = VIDEO_OUTPUT_FORMATS[format]
    import io

    with av.open(io.BytesIO(), "w", format=muxer) as probe:
        supported = probe.supported_codecs
    if info.video_codec not in supported:
        raise ConfigError(f"a .{format} file cannot hold the clip's {info.video_codec} video without re-encoding it "
                          "(harmonizer copies the video, never re-encodes it): use .mkv, which holds almost any codec",
                          path=path if path is not None else info.path)


def mux_soundtrack(video_path: str | os.PathLike, music: "Audio", out_path: str | os.PathLike, *,
                   format: Optional[str] = None, keep_original_audio_db: Optional[float] = None,
                   overwrite: bool = False, inputs: tuple[str | os.PathLike, ...] = ()) -> Path:
    """Write the clip at ``video_path`` with ``music`` as its only audio.

    The clip's (first) video stream is copied packet for packet: same bytes, same
    timestamps, never re-encoded. Its other streams (its own audio, subtitles, data)
    are left out. The music is encoded as AAC (mp4, mov) or Opus at 48 kHz (mkv, webm),
    starts with the first frame and is cut or padded with silence to the video's exact
    duration; the encoder's priming is recorded by the container, so the decoded music
    is as long as the video to within one audio frame (1024 samples for AAC).

    Parameters
    ----------
    video_path : path
        The clip; only read.
    music : Audio
        The soundtrack, float32 (n, channels) at its own rate.
    out_path : path
        ``.mp4``, ``.mov``, ``.mkv`` or ``.webm`` (or any name with ``format``).
    format : {"mp4", "mov", "mkv", "webm"}, optional
    keep_original_audio_db : float, optional
        Mix the clip's own sound under the music at this level (dB, e.g. -12).
    overwrite : bool
    inputs : tuple of paths
        Files that must never be written to (the song; the clip is added).

    Returns
    -------
    Path

    Raises
    ------
    AudioError
        The clip cannot be read.
    ConfigError
        The container cannot hold the clip's video codec; ``keep_original_audio_db``
        and a clip without sound.
    OutputError
        The output exists, is an input, or cannot be written. Nothing is left behind.
    """
    from harmonizer_cli.core.audio_out import atomic_output, check_output_path

    av = pyav()
    video_path, out_path = Path(video_path), Path(out_path)
    name = _output_format(out_path, format)
    check_output_path(out_path, overwrite=overwrite, inputs=(*inputs, video_path))
    info = probe_media(video_path)
    check_can_mux(info, name, path=out_path)
    muxer, codec = VIDEO_OUTPUT_FORMATS[name]
    samples = np.asarray(music.samples, dtype=np.float32)
    if samples.ndim == 1:
        samples = samples[:, None]
    if keep_original_audio_db is not None:
        clip = read_clip_audio(video_path, sample_rate=music.sample_rate, n_channels=samples.shape[1],
                               n_samples=samples.shape[0])
        samples = mix_under(samples, clip, level_db=keep_original_audio_db)
    rate = encoded_sample_rate(codec, music.sample_rate)
    n_samples = int(round(info.duration_seconds * rate))
    samples, rate = _fit_rate(samples, music.sample_rate, codec, n_samples)
    start_pts = int(round(info.start_seconds * rate))
    with atomic_output(out_path, overwrite=overwrite) as tmp:
        try:
            with open_input(video_path) as source, output_container(tmp, muxer) as out:
                out.metadata.update({k: v for k, v in source.metadata.items() if k != "encoder"})
                video_in = video_stream(source)
                video_out = None
                if video_in is not None:
                    video_out = out.add_stream_from_template(video_in, opaque=True)
                    video_out.metadata.update({k: v for k, v in video_in.metadata.items()
                                               if k not in ("encoder", "handler_name", "vendor_id")})
                audio_out = add_audio_stream(out, codec, sample_rate=rate, n_channels=samples.shape[1])
                audio_packets = encode_audio(audio_out, codec, samples, rate, start_pts=start_pts)
                pending = next(audio_packets, None)
                if video_in is not None:
                    for packet in _timed_packets(source.demux(video_in)):
                        now = packet.dts * packet.time_base
                        while pending is not None and pending.dts * pending.time_base <= now:
                            mux_packet(out, pending)
                            pending = next(audio_packets, None)
                        packet.stream = video_out
                        mux_packet(out, packet)
                while pending is not None:
                    mux_packet(out, pending)
                    pending = next(audio_packets, None)
        except (AudioError, ConfigError):
            raise
        except OutputError as exc:
            raise OutputError(exc.message, path=out_path) from exc
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise write_failure(exc, name, out_path) from exc
    return out_path


def mix_under(music: np.ndarray, other: np.ndarray, *, level_db: float) -> np.ndarray:
    """``music`` plus ``other`` at ``level_db`` (same shape), without new overs.

    Where the sum would peak above both full scale and the music's own peak, the
    whole mix is turned down by one gain just enough (no limiter, no pumping).

    Returns
    -------
    np.ndarray [shape=music.shape, dtype=float32]
    """
    music = np.asarray(music, dtype=np.float32)
    mixed = music + np.float32(10.0 ** (level_db / 20.0)) * np.asarray(other, dtype=np.float32)
    ceiling = max(1.0, float(np.max(np.abs(music))) if music.size else 1.0)
    peak = float(np.max(np.abs(mixed))) if mixed.size else 0.0
    if peak > ceiling:
        mixed *= np.float32(ceiling / peak)
    return mixed.astype(np.float32, copy=False)
