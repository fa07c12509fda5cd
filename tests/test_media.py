"""Containers through PyAV: reading m4a/mkv/webm/mov/video audio, writing m4a and opus, and
`extend --video` (the clip with its new soundtrack: video copied packet for packet, music as
long as the video), on media the tests make themselves."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

av = pytest.importorskip("av")

from harmonizer_cli.cli import app  # noqa: E402
from harmonizer_cli.core import media, video  # noqa: E402
from harmonizer_cli.core.audio_io import Audio, load_audio, resample, save_audio  # noqa: E402
from harmonizer_cli.core.media import fade_out, probe_media  # noqa: E402
from harmonizer_cli.core.video import mix_under, mux_soundtrack  # noqa: E402
from harmonizer_cli.errors import AudioError, ConfigError, OutputError  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import make_tone, require_music  # noqa: E402
from test_extension import make_song  # noqa: E402

runner = CliRunner()
AAC_FRAME = 1024  # samples: one AAC frame, the tolerance on the music's length
CLIP_SECONDS = 30.0  # long enough for a 20 s song to be extended (its beginning and ending kept)


def _need(*codecs: str) -> None:
    for name in codecs:
        try:
            av.Codec(name, "w")
        except Exception:  # noqa: BLE001
            pytest.skip(f"this PyAV build has no {name} encoder")


# --------------------------------------------------------------------------- media the tests make

def _add_audio(container, codec: str, sample_rate: int, n_channels: int = 2):
    stream = container.add_stream(codec, rate=sample_rate)
    stream.layout = {1: "mono", 2: "stereo"}[n_channels]
    if codec == "vorbis":
        stream.codec_context.options = {"strict": "experimental"}
    return stream


def _encode_audio(container, stream, samples: np.ndarray, sample_rate: int) -> None:
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples.T, dtype=np.float32), format="fltp",
                                       layout=stream.layout.name)
    frame.sample_rate, frame.pts, frame.time_base = sample_rate, 0, Fraction(1, sample_rate)
    for packet in stream.encode(frame):
        container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)


def write_audio(path: Path, samples: np.ndarray, sample_rate: int, *, codec: str, container_format: str,
                options: dict | None = None) -> Path:
    """An audio-only container (m4a AAC/ALAC, mka Opus, mkv Vorbis, adts) encoded by PyAV."""
    _need(codec)
    with av.open(str(path), "w", format=container_format, options=options or {}) as container:
        stream = _add_audio(container, codec, sample_rate, samples.shape[1])
        _encode_audio(container, stream, samples, sample_rate)
    return path


def tone(seconds: float, hz: float, *, sample_rate: int = 48000, n_channels: int = 2,
         level: float = 0.3) -> np.ndarray:
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    return np.tile((level * np.sin(2 * np.pi * hz * t)).astype(np.float32)[:, None], (1, n_channels))


def make_clip(path: Path, seconds: float, *, fps: int = 10, video_codec: str = "libx264",
              audio_codec: str | None = "aac", sample_rate: int = 48000, tone_hz: float = 1000.0,
              container_format: str | None = None, b_frames: bool = False) -> Path:
    """A small generated video (64x48, a moving bar), with or without a tone as its audio."""
    _need(video_codec, *(() if audio_codec is None else (audio_codec,)))
    with av.open(str(path), "w", format=container_format) as container:
        video = container.add_stream(video_codec, rate=fps)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        if video_codec == "libx264":
            video.options = {"preset": "ultrafast", **({"x264-params": "bframes=2:b-adapt=0"} if b_frames else {})}
        audio = None if audio_codec is None else _add_audio(container, audio_codec, sample_rate)
        for index in range(int(round(seconds * fps))):
            image = np.full((48, 64, 3), 40, np.uint8)
            image[:, (index * 3) % 64] = 255
            image[(index * 2) % 48, :, 1] = (index * 11) % 256
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = index
            container.mux(video.encode(frame))
        container.mux(video.encode())
        if audio is not None:
            _encode_audio(container, audio, tone(seconds, tone_hz, sample_rate=sample_rate), sample_rate)
    return path


def video_packets(path: Path) -> list[tuple[bytes, float, float | None]]:
    """(bytes, pts, dts) of every video packet, times in seconds (Matroska has no dts for the
    first packets when there are B-frames: None); the demuxer's empty flush packet left out."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [(bytes(p), float(p.pts * p.time_base), None if p.dts is None else float(p.dts * p.time_base))
                for p in container.demux(stream) if p.pts is not None or p.dts is not None]


def video_frames(path: Path) -> list[bytes]:
    """Every decoded picture, in presentation order, as raw YUV bytes."""
    with av.open(str(path)) as container:
        return [frame.to_ndarray().tobytes() for frame in container.decode(video=0)]


def audio_streams(path: Path) -> list[tuple[str, int, float | None]]:
    """(codec, sample rate, declared duration in s) of every audio stream."""
    with av.open(str(path)) as container:
        return [(s.codec_context.name, s.codec_context.sample_rate,
                 None if s.duration is None else float(s.duration * s.time_base)) for s in container.streams.audio]


def decoded_audio(path: Path) -> tuple[np.ndarray, int]:
    """Everything the first audio stream decodes to, as a player gets it (no trimming of ours)."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        frames = [f.to_ndarray() for f in container.decode(stream)]
        return np.concatenate(frames, axis=1).T, stream.codec_context.sample_rate


def assert_same_video(source: Path, output: Path, *, tolerance_seconds: float = 0.0) -> None:
    """The output's video is the source's, packet for packet: same bytes, same times."""
    a, b = video_packets(source), video_packets(output)
    assert len(a) == len(b) and len(a) > 0
    assert all(x[0] == y[0] for x, y in zip(a, b)), "video packets differ"
    shift = b[0][1] - a[0][1]  # Matroska may shift every stream alike to keep times non-negative
    assert abs(shift) <= 0.2
    assert max(abs((y[1] - shift) - x[1]) for x, y in zip(a, b)) <= tolerance_seconds + 1e-9
    both = [(x[2], y[2]) for x, y in zip(a, b) if x[2] is not None and y[2] is not None]
    assert len(both) >= len(a) - 3
    assert max(abs((y - shift) - x) for x, y in both) <= tolerance_seconds + 1e-9
    assert video_frames(source) == video_frames(output)  # and so the same pictures


def best_lag(reference: np.ndarray, test: np.ndarray, max_lag: int = 3000) -> int:
    ref, dec = reference[:, 0], test[:, 0]
    n = min(len(ref), len(dec)) - 2 * max_lag
    lags = range(-max_lag, max_lag)
    scores = [np.dot(ref[max_lag:max_lag + n], dec[max_lag + lag: max_lag + lag + n]) for lag in lags]
    return lags[int(np.argmax(scores))]


def tone_level(samples: np.ndarray, sample_rate: int, hz: float) -> float:
    """Amplitude of a sine at ``hz`` in the first channel (projection on sin and cos)."""
    t = np.arange(samples.shape[0]) / sample_rate
    x = samples[:, 0].astype(np.float64)
    return float(2 * np.hypot(np.mean(x * np.sin(2 * np.pi * hz * t)), np.mean(x * np.cos(2 * np.pi * hz * t))))


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
def song_m4a(media_dir) -> Path:
    """A 20 s synthesized song as AAC in .m4a (44.1 kHz stereo), written by PyAV."""
    song = make_song(20.0, sample_rate=44100)
    return write_audio(media_dir / "song.m4a", song.samples, 44100, codec="aac", container_format="ipod")


@pytest.fixture(scope="module")
def clip_mp4(media_dir) -> Path:
    """A 30 s H.264 clip at 10 frames/s with an AAC tone (1 kHz) as its sound."""
    return make_clip(media_dir / "clip.mp4", CLIP_SECONDS)


@pytest.fixture(scope="module")
def silent_clip(media_dir) -> Path:
    """A 30 s H.264 clip without any audio stream."""
    return make_clip(media_dir / "silent.mp4", CLIP_SECONDS, audio_codec=None)


def invoke(*args: str):
    return runner.invoke(app, ["extend", *args])


# --------------------------------------------------------------------------- probing

@pytest.mark.parametrize(("name", "kwargs", "video", "audio"), [
    ("h264_aac.mp4", {}, "h264", "aac"),
    ("h264_opus.mkv", {"audio_codec": "libopus"}, "h264", "opus"),
    ("vp9_opus.webm", {"video_codec": "libvpx-vp9", "audio_codec": "libopus"}, "vp9", "opus"),
    ("mpeg4_aac.mov", {"video_codec": "mpeg4"}, "mpeg4", "aac"),
    ("no_audio.mp4", {"audio_codec": None}, "h264", None),
    ("b_frames.mp4", {"b_frames": True}, "h264", "aac"),
])
def test_probe_gives_the_video_streams_duration(tmp_path, name, kwargs, video, audio):
    path = make_clip(tmp_path / name, 3.7, **kwargs)
    info = probe_media(path)
    assert info.has_video and info.video_codec == video
    assert info.has_audio == (audio is not None) and info.audio_codec == audio
    assert abs(info.duration_seconds - 3.7) < 1e-6  # 37 frames at 10/s, Matroska's packet span included
    assert info.start_seconds == pytest.approx(0.0, abs=1e-3)


def test_probe_without_video_uses_the_container(tmp_path):
    path = write_audio(tmp_path / "a.m4a", tone(2.5, 440, sample_rate=44100), 44100, codec="aac",
                       container_format="ipod")
    info = probe_media(path)
    assert not info.has_video and info.has_audio and info.sample_rate == 44100 and info.channels == 2
    assert info.duration_seconds == pytest.approx(2.5, abs=1e-3)


# --------------------------------------------------------------------------- reading

@pytest.mark.parametrize(("name", "codec", "container_format", "sample_rate"), [
    ("aac.m4a", "aac", "ipod", 44100),
    ("alac.m4a", "alac", "ipod", 44100),
    ("alac.mov", "alac", "mov", 48000),
    ("opus.mka", "libopus", "matroska", 48000),
    ("opus.webm", "libopus", "webm", 48000),
    ("vorbis.mkv", "vorbis", "matroska", 44100),
    ("mono.m4a", "aac", "ipod", 22050),
    ("adts.aac", "aac", "adts", 44100),
])
def test_reads_containers_through_pyav_at_their_own_rate(tmp_path, name, codec, container_format, sample_rate):
    channels = 1 if name.startswith("mono") else 2
    samples = make_tone(3.0, sample_rate=sample_rate, n_channels=channels, seed=3)
    path = write_audio(tmp_path / name, samples, sample_rate, codec=codec, container_format=container_format)
    audio = load_audio(path)
    assert audio.sample_rate == sample_rate and audio.n_channels == channels
    assert audio.samples.dtype == np.float32
    if codec == "vorbis":  # Matroska records no end trimming for Vorbis: the last block's padding stays
        assert 0 <= audio.n_samples - samples.shape[0] <= 2048
        assert best_lag(samples, audio.samples) == 0
    elif container_format in ("ipod", "mov", "matroska", "webm"):
        # the container records the encoder's priming and the exact length: sample for sample
        assert audio.n_samples == samples.shape[0]
        assert best_lag(samples, audio.samples) == 0
    else:  # raw ADTS records neither: the priming frame and the last frame's padding stay
        assert 0 <= audio.n_samples - samples.shape[0] <= 3 * AAC_FRAME
    if codec == "alac":  # lossless
        assert np.max(np.abs(audio.samples - samples)) < 1e-4


def test_reads_the_audio_track_of_a_video(clip_mp4):
    audio = load_audio(clip_mp4)
    assert audio.sample_rate == 48000 and audio.n_channels == 2
    assert audio.n_samples == int(CLIP_SECONDS * 48000)
    assert tone_level(audio.samples, 48000, 1000.0) == pytest.approx(0.3, rel=0.05)


def test_m4a_needs_no_system_ffmpeg(song_m4a, monkeypatch):
    """The issue's check: an AAC .m4a decodes without audioread (no ffmpeg on the machine)."""
    import audioread

    def no_backend(*args, **kwargs):
        raise audioread.NoBackendError()

    monkeypatch.setattr(audioread, "audio_open", no_backend)
    monkeypatch.setenv("PATH", "/nonexistent")
    audio = load_audio(song_m4a)
    assert (audio.sample_rate, audio.n_channels, audio.n_samples) == (44100, 2, 20 * 44100)


def test_alac_24_bit_stays_24_bit_in_wav_and_flac(tmp_path):
    from harmonizer_cli.core.audio_io import output_subtype_for

    path = write_audio(tmp_path / "hi.m4a", make_tone(1.0), 44100, codec="alac", container_format="ipod")
    assert output_subtype_for(path, "wav") == "PCM_24" and output_subtype_for(path, "flac") == "PCM_24"
    assert output_subtype_for(write_audio(tmp_path / "lossy.m4a", make_tone(1.0), 44100, codec="aac",
                                          container_format="ipod"), "wav") is None


@pytest.mark.parametrize(("case", "says"), [
    ("random_bytes.mp4", "cannot decode"),
    ("truncated.mp4", "cannot decode"),  # FFmpeg writes the index (moov) last: half a file has none
    ("video_without_audio.mp4", "has no audio stream"),
    ("encrypted.m4a", r"is encrypted \(DRM\): cannot be read"),
    ("text.mkv", "cannot decode"),
])
def test_bad_containers_are_one_line_audio_errors(tmp_path, case, says):
    path = tmp_path / case
    if case == "random_bytes.mp4":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, np.uint8).tobytes())
    elif case == "truncated.mp4":
        whole = make_clip(tmp_path / "whole.mp4", 3.0).read_bytes()
        path.write_bytes(whole[: len(whole) // 2])
    elif case == "video_without_audio.mp4":
        make_clip(path, 2.0, audio_codec=None)
    elif case == "encrypted.m4a":  # the sample entry of an encrypted track (Common Encryption) says enca
        data = write_audio(tmp_path / "clear.m4a", make_tone(1.0), 44100, codec="aac",
                           container_format="ipod").read_bytes()
        path.write_bytes(data.replace(b"mp4a", b"enca", 1))
    else:
        path.write_text("this is not a video\n" * 200)
    with pytest.raises(AudioError, match=says) as info:
        load_audio(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)
    assert info.value.exit_code == 3


def test_truncated_streamable_m4a_keeps_the_decodable_part(tmp_path):
    """With the index first (faststart), half a file is half the song, as with a truncated mp3."""
    whole = write_audio(tmp_path / "whole.m4a", make_tone(10.0), 44100, codec="aac", container_format="ipod",
                        options={"movflags": "faststart"}).read_bytes()
    path = tmp_path / "half.m4a"
    path.write_bytes(whole[: len(whole) // 2])
    audio = load_audio(path)
    assert 3.0 < audio.duration_seconds < 7.0


def test_too_long_is_refused_from_the_header(tmp_path):
    path = write_audio(tmp_path / "a.m4a", make_tone(8.0), 44100, codec="aac", container_format="ipod")
    with pytest.raises(AudioError, match=r"too long \(0\.1 minutes; at most 0\.1 minutes"):
        load_audio(path, max_seconds=6)


# --------------------------------------------------------------------------- writing m4a and opus

@pytest.mark.parametrize(("suffix", "sample_rate", "written_rate", "codec"), [
    (".m4a", 44100, 44100, "aac"),
    (".m4a", 48000, 48000, "aac"),
    (".opus", 48000, 48000, "opus"),
    (".opus", 44100, 48000, "opus"),  # Opus takes 8/12/16/24/48 kHz: resampled
])
def test_writes_m4a_and_opus(tmp_path, suffix, sample_rate, written_rate, codec):
    samples = make_tone(2.0, sample_rate=sample_rate, seed=4)
    path = save_audio(tmp_path / f"x{suffix}", samples, sample_rate)
    assert audio_streams(path)[0][:2] == (codec, written_rate)
    audio = load_audio(path)
    assert audio.sample_rate == written_rate and audio.n_channels == 2
    assert audio.n_samples == int(round(samples.shape[0] * written_rate / sample_rate))
    reference = resample(samples, from_rate=sample_rate, to_rate=written_rate)
    assert best_lag(reference, audio.samples) == 0  # priming (AAC 1024, Opus 312 samples) is skipped
    error = audio.samples[2000:-2000, 0] - reference[2000:-2000, 0]
    if written_rate == sample_rate:
        assert 10 * np.log10(np.sum(reference[2000:-2000, 0] ** 2) / np.sum(error ** 2)) > 15


def test_writing_m4a_leaves_nothing_on_failure(tmp_path, monkeypatch):
    calls = {"n": 0}
    real_mux = media.mux_packet

    def full_disk(container, packet):
        calls["n"] += 1
        if calls["n"] == 20:
            raise av.error.OSError(errno.ENOSPC, "No space left on device")
        real_mux(container, packet)

    monkeypatch.setattr(media, "mux_packet", full_disk)
    with pytest.raises(OutputError, match=r"cannot write m4a \(No space left on device\)"):
        save_audio(tmp_path / "out.m4a", make_tone(5.0), 44100)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- the soundtrack

@pytest.mark.parametrize(("source", "source_kwargs", "out", "codec", "tolerance"), [
    ("clip.mp4", {}, "scored.mp4", "aac", 0.0),
    ("clip.mp4", {}, "scored.mov", "aac", 0.0),
    ("clip.mp4", {}, "scored.mkv", "opus", 0.0005),  # Matroska keeps times in whole milliseconds
    ("clip.webm", {"video_codec": "libvpx-vp9", "audio_codec": "libopus"}, "scored.webm", "opus", 0.0005),
    ("clip.mkv", {"audio_codec": "libopus"}, "scored.mp4", "aac", 0.0005),
    ("bframes.mp4", {"b_frames": True}, "scored.mp4", "aac", 0.0),
    ("bframes.mp4", {"b_frames": True}, "scored.mkv", "opus", 0.0005),
    ("bframes.mkv", {"b_frames": True, "audio_codec": "libopus"}, "scored.mp4", "aac", 0.0005),
    ("bframes.mkv", {"b_frames": True, "audio_codec": "libopus"}, "scored.mkv", "opus", 0.0005),
    ("silent.mp4", {"audio_codec": None}, "scored.mp4", "aac", 0.0),
])
def test_mux_copies_the_video_and_fits_the_music(tmp_path, source, source_kwargs, out, codec, tolerance):
    clip = make_clip(tmp_path / source, 4.3, **source_kwargs)
    music = Audio(make_tone(4.3, sample_rate=44100, seed=5), 44100)  # 220 Hz at 0.3, and noise to align on
    output = mux_soundtrack(clip, music, tmp_path / out)
    assert_same_video(clip, output, tolerance_seconds=tolerance)
    streams = audio_streams(output)
    assert len(streams) == 1 and streams[0][0] == codec  # the music only: the clip's own sound is gone
    decoded, rate = decoded_audio(output)
    assert rate == (44100 if codec == "aac" else 48000)
    video_seconds = probe_media(output).duration_seconds
    assert video_seconds == pytest.approx(4.3, abs=1e-3)
    # the music is as long as the video to within one audio frame, as a player decodes it
    assert abs(decoded.shape[0] - video_seconds * rate) <= AAC_FRAME
    if streams[0][2] is not None:  # mp4/mov declare the exact length (priming and padding excluded)
        assert streams[0][2] == pytest.approx(video_seconds, abs=1 / rate)
    reference = resample(music.samples, from_rate=44100, to_rate=rate)
    assert best_lag(reference, decoded) == 0  # the music starts with the first frame: priming skipped
    assert tone_level(decoded[2000:-2000], rate, 220.0) == pytest.approx(0.3, rel=0.05)
    assert tone_level(decoded[2000:-2000], rate, 1000.0) < 0.01  # the clip's own sound is gone


def test_keep_original_audio_mixes_the_clip_under_the_music(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", 4.0)  # its sound: 1 kHz at 0.3
    music = Audio(make_tone(4.0, sample_rate=44100, seed=6), 44100)
    output = mux_soundtrack(clip, music, tmp_path / "mixed.mp4", keep_original_audio_db=-12.0)
    decoded, rate = decoded_audio(output)
    middle = decoded[4000:-4000]
    assert tone_level(middle, rate, 220.0) == pytest.approx(0.3, rel=0.05)
    assert tone_level(middle, rate, 1000.0) == pytest.approx(0.3 * 10 ** (-12 / 20), rel=0.08)
    assert_same_video(clip, output)


def test_keep_original_audio_needs_a_clip_with_sound(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", 2.0, audio_codec=None)
    with pytest.raises(ConfigError, match="the clip has no audio to keep"):
        mux_soundtrack(clip, Audio(tone(2.0, 330.0), 48000), tmp_path / "x.mp4", keep_original_audio_db=-12)
    assert not (tmp_path / "x.mp4").exists()


def test_mux_refuses_a_codec_the_container_cannot_hold(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", 2.0)
    with pytest.raises(ConfigError, match="cannot hold the clip's h264 video"):
        mux_soundtrack(clip, Audio(tone(2.0, 330.0), 48000), tmp_path / "x.webm")


@pytest.mark.parametrize("failure", ["full_disk", "interrupt"])
def test_mux_failure_leaves_nothing(tmp_path, monkeypatch, failure):
    clip = make_clip(tmp_path / "clip.mp4", 4.0)
    calls = {"n": 0}
    real_mux = video.mux_packet

    def failing(container, packet):
        calls["n"] += 1
        if calls["n"] == 30:
            if failure == "interrupt":
                raise KeyboardInterrupt
            raise av.error.OSError(errno.ENOSPC, "No space left on device")
        real_mux(container, packet)

    monkeypatch.setattr(video, "mux_packet", failing)
    expected = KeyboardInterrupt if failure == "interrupt" else OutputError
    with pytest.raises(expected):
        mux_soundtrack(clip, Audio(tone(4.0, 330.0), 48000), tmp_path / "out.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


def test_fade_out_is_smooth_and_ends_silent():
    samples = np.ones((48000, 2), np.float32)
    faded = fade_out(samples, 48000, 0.5)
    assert np.array_equal(faded[:24000], samples[:24000]) and np.all(faded[-1] == 0)
    ramp = faded[24000:, 0]
    assert np.all(np.diff(ramp) <= 0) and np.max(np.abs(np.diff(ramp))) < 1e-3
    assert np.array_equal(samples, np.ones((48000, 2), np.float32))  # the input is untouched


def test_mix_under_adds_no_overs():
    music = np.full((1000, 2), 0.9, np.float32)
    mixed = mix_under(music, np.full((1000, 2), 0.9, np.float32), level_db=-6.0)
    assert np.max(np.abs(mixed)) == pytest.approx(1.0, abs=1e-6)
    quiet = mix_under(music * 0.1, np.full((1000, 2), 0.1, np.float32), level_db=-12.0)
    assert quiet[0, 0] == pytest.approx(0.09 + 0.1 * 10 ** (-12 / 20), abs=1e-6)


# --------------------------------------------------------------------------- harmonizer extend --video

def test_extend_video_scores_the_clip(song_m4a, clip_mp4, tmp_path):
    out = tmp_path / "scored.mp4"
    result = invoke(str(song_m4a), "--video", str(clip_mp4), "-o", str(out), "--no-model", "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert record["video"] == str(clip_mp4) and record["video_seconds"] == pytest.approx(CLIP_SECONDS)
    assert record["target_seconds"] == pytest.approx(CLIP_SECONDS) and record["output"] == str(out)
    assert record["sample_rate"] == 44100 and record["channels"] == 2
    assert list(record)[-2:] == ["video", "video_seconds"]  # appended: no key renamed or dropped
    assert_same_video(clip_mp4, out)
    decoded, rate = decoded_audio(out)
    assert rate == 44100 and abs(decoded.shape[0] - CLIP_SECONDS * rate) <= AAC_FRAME
    assert audio_streams(out)[0][2] == pytest.approx(CLIP_SECONDS, abs=1 / rate)
    # the real ending: the music's last seconds are the song's last seconds
    song = load_audio(song_m4a).samples
    music = load_audio(out).samples
    tail = 3 * rate
    assert np.corrcoef(music[-tail:, 0], song[-tail:, 0])[0, 1] > 0.95
    assert tone_level(music[rate:-rate], rate, 1000.0) < 0.01  # the clip's own sound is not there


def test_extend_video_to_an_audio_file_writes_only_the_music(song_m4a, clip_mp4, tmp_path):
    out = tmp_path / "music.wav"
    result = invoke(str(song_m4a), "--video", str(clip_mp4), "-o", str(out), "--no-model")
    assert result.exit_code == 0, result.output
    info = sf.info(out)
    assert info.frames == int(CLIP_SECONDS * 44100) and info.channels == 2


def test_extend_video_keep_original_audio_and_fade_out(song_m4a, clip_mp4, tmp_path):
    plain, mixed = tmp_path / "plain.wav", tmp_path / "mixed.wav"
    assert invoke(str(song_m4a), "--video", str(clip_mp4), "-o", str(plain), "--no-model").exit_code == 0
    result = invoke(str(song_m4a), "--video", str(clip_mp4), "-o", str(mixed), "--no-model", "--fade-out", "4",
                    "--keep-original-audio", "-20")
    assert result.exit_code == 0, result.output
    a, rate = sf.read(plain, dtype="float32")
    b, _ = sf.read(mixed, dtype="float32")
    assert a.shape == b.shape
    level = 0.3 * 10 ** (-20 / 20)
    before_fade = slice(rate, len(a) - 5 * rate)
    # the clip's 1 kHz tone (0.3) is there at -20 dB; the music is unchanged before the fade
    assert tone_level(b[before_fade] - a[before_fade], rate, 1000.0) == pytest.approx(level, rel=0.1)
    assert np.max(np.abs(b[before_fade] - a[before_fade])) < level * 1.2
    # over the last 4 s the music fades to silence; the clip's own sound goes on
    last = b[-200:] - tone(CLIP_SECONDS, 1000.0, sample_rate=rate, level=level)[-200:]
    assert np.max(np.abs(last)) < 0.01
    # 1 s before the end the raised-cosine gain is 0.15 (0.5 * (1 + cos(0.75 pi)))
    window = slice(len(a) - int(1.2 * rate), len(a) - int(0.8 * rate))
    clip_sound = tone(CLIP_SECONDS, 1000.0, sample_rate=rate, level=level)[window]
    ratio = np.sqrt(np.mean((b[window] - clip_sound) ** 2) / np.mean(a[window] ** 2))
    assert 0.1 < ratio < 0.2


def test_extend_video_over_a_folder_of_songs(clip_mp4, tmp_path):
    folder = tmp_path / "songs"
    folder.mkdir()
    for seed in (0, 1):
        sf.write(folder / f"song{seed}.flac", make_song(20.0, sample_rate=48000, seed=seed).samples, 48000)
    (folder / "clip.mp4").write_bytes(clip_mp4.read_bytes())  # a video beside the songs is not a song
    out_dir = tmp_path / "scored"
    result = invoke(str(folder), "--video", str(clip_mp4), "--format", "mkv", "--out-dir", str(out_dir),
                    "--no-model", "--json")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert [Path(r["input"]).name for r in records] == ["song0.flac", "song1.flac"]
    assert all(r["video"] == str(clip_mp4) and r["video_seconds"] == pytest.approx(CLIP_SECONDS) for r in records)
    assert sorted(p.name for p in out_dir.iterdir()) == ["song0.extended.mkv", "song1.extended.mkv"]
    for record in records:
        assert_same_video(clip_mp4, Path(record["output"]), tolerance_seconds=0.0005)
        decoded, rate = decoded_audio(Path(record["output"]))
        assert rate == 48000 and abs(decoded.shape[0] - CLIP_SECONDS * rate) <= AAC_FRAME


@pytest.mark.parametrize(("args", "code", "says"), [
    (["--seconds", "30"], 2, "--video sets the target length"),
    (["--keep-original-audio", "-12"], 2, "the clip has no audio to keep"),
    (["--fade-out", "0"], 2, "--fade-out must be more than 0"),
    (["--fade-out", "31"], 2, "--fade-out must be more than 0"),
    (["-o", "{tmp}/x.webm"], 2, "cannot hold the clip's h264 video"),
])
def test_extend_video_option_errors(song_m4a, silent_clip, tmp_path, args, code, says):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = invoke(str(song_m4a), "--video", str(silent_clip), "--no-model", *args)
    assert result.exit_code == code, result.output
    assert says in result.stderr and result.stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_video_output_without_video_is_a_usage_error(song_m4a, tmp_path):
    result = invoke(str(song_m4a), "--seconds", "30", "-o", str(tmp_path / "x.mp4"), "--no-model")
    assert result.exit_code == 2 and "needs --video CLIP" in result.stderr
    result = invoke(str(song_m4a), "--seconds", "30", "--keep-original-audio", "-6", "--no-model")
    assert result.exit_code == 2 and "needs --video" in result.stderr


def test_a_clip_over_the_target_limit_is_a_usage_error(tmp_path, song_m4a):
    """Three frames an hour apart: a 61.7-minute clip, made in milliseconds."""
    _need("libx264")
    clip = tmp_path / "long.mp4"
    with av.open(str(clip), "w") as container:
        video = container.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        for pts in (0, 25 * 1800, 25 * 3700):
            frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
            frame.pts = pts
            container.mux(video.encode(frame))
        container.mux(video.encode())
    result = invoke(str(song_m4a), "--video", str(clip), "--no-model")
    assert result.exit_code == 2, result.output
    assert "the clip is 61.7 minutes long; clips of at most 60 minutes" in result.stderr


@pytest.mark.parametrize(("clip_case", "code", "says"), [
    ("random.mp4", 3, "cannot decode"),
    ("missing.mp4", 3, "no such file"),
])
def test_extend_video_with_a_bad_clip(song_m4a, tmp_path, clip_case, code, says):
    clip = tmp_path / clip_case
    if clip_case == "random.mp4":
        clip.write_bytes(os.urandom(30_000))
    result = invoke(str(song_m4a), "--video", str(clip), "--no-model", "-o", str(tmp_path / "o.mp4"))
    assert result.exit_code == code and says in result.stderr and clip_case in result.stderr


def test_extend_a_video_without_sound_as_the_song(silent_clip, tmp_path):
    result = invoke(str(silent_clip), "--seconds", "40", "-o", str(tmp_path / "o.wav"), "--no-model")
    assert result.exit_code == 3 and "has no audio stream" in result.stderr


def test_extend_video_refuses_to_overwrite_the_clip(song_m4a, clip_mp4):
    before = clip_mp4.read_bytes()
    result = invoke(str(song_m4a), "--video", str(clip_mp4), "-o", str(clip_mp4), "--no-model", "--force")
    assert result.exit_code == 6 and "overwrite the input" in result.stderr
    assert clip_mp4.read_bytes() == before


def test_the_independent_check_in_a_subprocess(tmp_path):
    """The issue's check, as a user runs it: an AAC .m4a song and a generated 37.5 s H.264 clip;
    one report line on stderr and nothing else (no FFmpeg noise)."""
    song = write_audio(tmp_path / "song.m4a", make_song(20.0, sample_rate=44100).samples, 44100, codec="aac",
                       container_format="ipod")
    clip = make_clip(tmp_path / "clip.mp4", 37.5, fps=24)
    out = tmp_path / "scored.mp4"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-m", "harmonizer_cli", "extend", str(song), "--video", str(clip),
                             "-o", str(out), "--no-model"], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"{song} -> {out} (37.50 s"), result.stderr
    assert_same_video(clip, out)
    decoded, rate = decoded_audio(out)
    assert abs(decoded.shape[0] / rate - 37.5) <= 0.05
    assert abs(decoded.shape[0] - 37.5 * rate) <= AAC_FRAME


@pytest.mark.music
def test_real_song_scores_a_clip(tmp_path):
    songs = require_music()
    source = next((p for p in songs if "summer" in p.name), songs[0])
    audio = load_audio(source)
    song = save_audio(tmp_path / "song.m4a", audio.samples, audio.sample_rate)  # the song as AAC
    clip = make_clip(tmp_path / "clip.mp4", 75.0, fps=10)
    out = tmp_path / "scored.mp4"
    result = invoke(str(song), "--video", str(clip), "-o", str(out), "--no-model", "--json", "--fade-out", "2")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert record["video_seconds"] == pytest.approx(75.0) and record["output_seconds"] == pytest.approx(75.0, abs=0.01)
    assert_same_video(clip, out)
    decoded, rate = decoded_audio(out)
    assert rate == audio.sample_rate and abs(decoded.shape[0] - 75.0 * rate) <= AAC_FRAME
    assert np.sqrt(np.mean(decoded[-rate // 20:] ** 2)) < 0.01  # faded out at the very end
