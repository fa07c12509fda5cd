"""Audio I/O: round trips per format, atomic writes, refusals, and bad input."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import make_tone
from harmonizer_cli.core import audio_io
from harmonizer_cli.core.audio_io import load_audio, save_audio, to_model_view
from harmonizer_cli.errors import AudioError, OutputError


def _snr_db(reference: np.ndarray, test: np.ndarray) -> float:
    noise = reference - test
    return 10 * np.log10(np.sum(reference**2) / max(np.sum(noise**2), 1e-20))


def _best_aligned(reference: np.ndarray, decoded: np.ndarray, max_lag: int = 3000) -> np.ndarray:
    """Lossy decoders may add a small delay: align on the first channel."""
    ref, dec = reference[:, 0], decoded[:, 0]
    n = min(len(ref), len(dec)) - max_lag
    scores = [np.dot(ref[:n], dec[lag : lag + n]) for lag in range(max_lag)]
    lag = int(np.argmax(scores))
    return decoded[lag : lag + reference.shape[0]]


@pytest.mark.parametrize(
    ("suffix", "subtype", "min_snr_db"),
    [
        (".wav", "16", 80.0),
        (".wav", "24", 120.0),
        (".wav", "float", 200.0),
        (".flac", None, 80.0),
        (".ogg", None, 15.0),
        (".mp3", None, 15.0),
    ],
)
@pytest.mark.parametrize(("sample_rate", "n_channels"), [(44100, 2), (22050, 1), (48000, 6)])
def test_round_trip_keeps_rate_channels_length(
    tmp_path: Path, suffix: str, subtype: str | None, min_snr_db: float, sample_rate: int, n_channels: int
) -> None:
    if suffix == ".mp3" and n_channels > 2:
        pytest.skip("mp3 holds at most two channels")
    samples = make_tone(1.5, sample_rate=sample_rate, n_channels=n_channels, seed=1)
    path = save_audio(tmp_path / f"x{suffix}", samples, sample_rate, subtype=subtype)
    audio = load_audio(path)
    assert audio.sample_rate == sample_rate
    assert audio.n_channels == n_channels
    assert audio.samples.dtype == np.float32
    if suffix == ".mp3":  # mp3 frames pad the end; the decoder keeps the length within a frame
        assert abs(audio.n_samples - samples.shape[0]) <= 1152 * 2
        decoded = _best_aligned(samples, audio.samples)
        samples = samples[: decoded.shape[0]]
    else:
        assert audio.n_samples == samples.shape[0]
        decoded = audio.samples
    if suffix == ".ogg" and n_channels == 6:  # Vorbis low-passes the LFE channel of 5.1 (the 6th)
        samples, decoded = samples[:, :5], decoded[:, :5]
    assert _snr_db(samples, decoded) >= min_snr_db


@pytest.mark.parametrize(("fmt", "subtype", "sample_rate"), [("OGG", "OPUS", 48000), ("AIFF", "PCM_16", 44100)])
def test_reads_opus_and_aiff(tmp_path: Path, fmt: str, subtype: str, sample_rate: int) -> None:
    path = tmp_path / ("x.opus" if subtype == "OPUS" else "x.aiff")
    sf.write(path, make_tone(1.0, sample_rate=sample_rate), sample_rate, format=fmt, subtype=subtype)
    audio = load_audio(path)
    assert audio.sample_rate == sample_rate and audio.n_channels == 2
    assert abs(audio.duration_seconds - 1.0) < 0.05


def test_ten_minute_stereo_ogg_round_trip(tmp_path: Path) -> None:
    """libsndfile segfaults when minutes of Vorbis go in one call; save_audio writes in blocks."""
    sample_rate = 22050
    samples = make_tone(600.0, sample_rate=sample_rate, n_channels=2, seed=2)
    path = save_audio(tmp_path / "long.ogg", samples, sample_rate)
    audio = load_audio(path)
    assert (audio.sample_rate, audio.n_channels, audio.n_samples) == (sample_rate, 2, samples.shape[0])
    middle = slice(300 * sample_rate, 301 * sample_rate)
    assert _snr_db(samples[middle], audio.samples[middle]) > 15.0


def test_refuses_to_overwrite_without_force(tone_wav: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.wav"
    save_audio(out, make_tone(0.2), 44100)
    before = out.read_bytes()
    with pytest.raises(OutputError, match="already exists"):
        save_audio(out, make_tone(0.3), 44100)
    assert out.read_bytes() == before
    save_audio(out, make_tone(0.3), 44100, overwrite=True)
    assert sf.info(out).frames == make_tone(0.3).shape[0]


def test_never_writes_to_an_input(tone_wav: Path) -> None:
    before = tone_wav.read_bytes()
    with pytest.raises(OutputError, match="overwrite the input"):
        save_audio(tone_wav, make_tone(0.2), 44100, overwrite=True, inputs=(tone_wav,))
    assert tone_wav.read_bytes() == before


def test_failure_mid_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An error after some blocks are written (disk full) leaves no file and no temporary."""
    calls = {"n": 0}
    real_write = sf.SoundFile.write

    def failing_write(self: sf.SoundFile, data: np.ndarray) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        real_write(self, data)

    monkeypatch.setattr(sf.SoundFile, "write", failing_write)
    out = tmp_path / "out.flac"
    with pytest.raises(OutputError, match="No space left"):
        save_audio(out, make_tone(10.0), 44100)
    assert calls["n"] == 3
    assert list(tmp_path.iterdir()) == []


def test_interrupt_mid_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = sf.SoundFile.write
    calls = {"n": 0}

    def interrupted_write(self: sf.SoundFile, data: np.ndarray) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        real_write(self, data)

    monkeypatch.setattr(sf.SoundFile, "write", interrupted_write)
    with pytest.raises(KeyboardInterrupt):
        save_audio(tmp_path / "out.ogg", make_tone(5.0), 44100)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_folder_and_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="does not exist"):
        save_audio(tmp_path / "nope" / "out.wav", make_tone(0.2), 44100)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere (root)")
        with pytest.raises(OutputError, match="not writable"):
            save_audio(locked / "out.wav", make_tone(0.2), 44100)
    finally:
        locked.chmod(0o700)


def test_unknown_output_format(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="unsupported output format 'xyz'"):
        save_audio(tmp_path / "out.xyz", make_tone(0.2), 44100)


def test_clips_for_integer_formats(tmp_path: Path) -> None:
    loud = np.full((1000, 1), 1.7, dtype=np.float32)
    audio = load_audio(save_audio(tmp_path / "loud.wav", loud, 8000))
    assert audio.samples.max() <= 1.0 and audio.samples.max() > 0.99


def _loud_tone(seconds: float = 2.0, rate: int = 44100) -> np.ndarray:
    """A 440 Hz tone at 0.8 with 50 ms at 1.12 (an over of +1 dB, as decoded loud mp3s have)."""
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.8 * np.sin(2 * np.pi * 440.0 * t)
    tone[int(1.0 * rate):int(1.05 * rate)] *= 1.4
    return np.stack([tone, 0.5 * tone], axis=1).astype(np.float32)


def _energy_above(samples: np.ndarray, rate: int, hz: float) -> float:
    spectrum = np.abs(np.fft.rfft(samples[:, 0].astype(np.float64))) ** 2
    return float(spectrum[np.fft.rfftfreq(samples.shape[0], 1.0 / rate) > hz].sum())


def test_overs_are_limited_smoothly_not_clipped(tmp_path: Path) -> None:
    rate = 44100
    loud = _loud_tone(rate=rate)
    written = load_audio(save_audio(tmp_path / "loud.wav", loud, rate)).samples
    assert np.abs(written).max() <= 1.0
    # a hard clip of the same over splatters energy far above the tone; the limiter does not
    clipped = np.clip(loud, -1.0, 1.0)
    assert _energy_above(written, rate, 5000.0) < 0.01 * _energy_above(clipped, rate, 5000.0)
    far = np.ones(loud.shape[0], dtype=bool)
    far[int(0.985 * rate):int(1.065 * rate)] = False
    assert np.abs(written[far] - loud[far]).max() < 1e-4  # 16-bit rounding only
    # float WAV keeps the overs as they are
    kept = load_audio(save_audio(tmp_path / "loud-float.wav", loud, rate, subtype="float")).samples
    assert np.array_equal(kept, loud)


@pytest.mark.parametrize("block", [7, 1000, 61440])
def test_limiter_does_not_depend_on_the_block_size(block: int) -> None:
    loud = _loud_tone(rate=8000)
    whole = np.concatenate(list(audio_io.limited([loud], sample_rate=8000)))
    blocks = (loud[i:i + block] for i in range(0, loud.shape[0], block))
    assert np.array_equal(np.concatenate(list(audio_io.limited(blocks, sample_rate=8000))), whole)
    quiet = 0.5 * loud
    assert np.array_equal(np.concatenate(list(audio_io.limited([quiet], sample_rate=8000))), quiet)


def test_limiter_passes_frames_far_from_overs_uncopied_and_limits_the_rest() -> None:
    rate = 8000
    loud = _loud_tone(rate=rate)
    quiet = (0.5 * loud).astype(np.float32)
    blocks = [quiet, loud, quiet]
    out = list(audio_io.limited(iter(blocks), sample_rate=rate))
    joined = np.concatenate(out)
    assert np.array_equal(joined, np.concatenate(list(audio_io.limited([np.concatenate(blocks)], sample_rate=rate))))
    assert np.abs(joined).max() <= 1.0
    assert any(np.shares_memory(part, quiet) for part in out)  # the first quiet block passed as it came


def test_16_bit_wav_holds_what_libsndfile_would_write(tmp_path: Path) -> None:
    """The conversion moved out of libsndfile (for speed) writes the same samples it did."""
    from harmonizer_cli.core.audio_out import _pcm16

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-1.0, 1.0, 50_000), np.arange(-70_000, 70_000) / 65536.0,
                        [1.0, -1.0, 0.5 / 32768, -0.5 / 32768, 1.5 / 32768]]).astype(np.float32)[:, None]
    sf.write(tmp_path / "libsndfile.wav", x, 8000, subtype="PCM_16")
    theirs, _ = sf.read(tmp_path / "libsndfile.wav", dtype="int16")
    assert np.array_equal(_pcm16(x)[:, 0], theirs)


def _bad_inputs(tmp_path: Path, tone_wav: Path) -> dict[str, tuple[Path, str]]:
    empty = tmp_path / "empty.mp3"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp3"
    text.write_text("these are my notes, not audio\n" * 20)
    mp3 = save_audio(tmp_path / "real.mp3", make_tone(2.0), 44100)
    truncated = tmp_path / "truncated.mp3"
    truncated.write_bytes(mp3.read_bytes()[:300])
    folder = tmp_path / "folder.wav"
    folder.mkdir()
    return {
        "missing": (tmp_path / "missing.wav", "no such file"),
        "empty": (empty, "empty file"),
        "text": (text, "cannot decode"),
        "truncated": (truncated, "cannot decode"),
        "directory": (folder, "is a directory"),
    }


@pytest.mark.parametrize("case", ["missing", "empty", "text", "truncated", "directory"])
def test_bad_input_raises_audio_error_naming_the_file(tmp_path: Path, tone_wav: Path, case: str) -> None:
    path, message = _bad_inputs(tmp_path, tone_wav)[case]
    with pytest.raises(AudioError, match=message) as info:
        load_audio(path)
    assert str(info.value).startswith(str(path))
    assert "\n" not in str(info.value)
    assert info.value.exit_code == 3


def test_nan_samples_rejected(tmp_path: Path) -> None:
    path = tmp_path / "nan.wav"
    data = make_tone(0.5)
    data[100, 0] = np.nan
    sf.write(path, data, 44100, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN"):
        load_audio(path)


def test_corrupt_m4a_without_ffmpeg_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PyAV cannot read it and audioread has no backend (no system ffmpeg): one clear error."""
    import audioread

    def no_backend(*args: object, **kwargs: object) -> None:
        raise audioread.NoBackendError()

    monkeypatch.setattr(audioread, "audio_open", no_backend)
    path = tmp_path / "song.m4a"
    path.write_bytes(b"\x00\x00\x00\x18ftypM4A " + b"\x00" * 100)
    with pytest.raises(AudioError, match="cannot decode") as info:
        load_audio(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def test_model_view_is_22050_mono(tone_wav: Path) -> None:
    audio = load_audio(tone_wav)
    view = to_model_view(audio)
    assert view.ndim == 1 and view.dtype == np.float32
    assert abs(view.size - round(audio.n_samples * 22050 / 44100)) <= 1
    # the input is untouched: same rate and channels
    assert audio.sample_rate == 44100 and audio.n_channels == 2


def test_atomic_output_for_other_files(tmp_path: Path) -> None:
    target = tmp_path / "result.json"
    with pytest.raises(RuntimeError):
        with audio_io.atomic_output(target) as tmp:
            tmp.write_text("{partial")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with audio_io.atomic_output(target) as tmp:
        tmp.write_text("{}")
    assert target.read_text() == "{}"


def test_float_wav_bytes_do_not_depend_on_the_time_of_writing(tmp_path):
    # libsndfile's PEAK chunk holds a timestamp: the same job must give the same bytes
    import time

    samples = make_tone(0.5)
    save_audio(tmp_path / "a.wav", samples, 44100, subtype="FLOAT")
    time.sleep(1.1)
    save_audio(tmp_path / "b.wav", samples, 44100, subtype="FLOAT")
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()


@pytest.mark.parametrize("n, half", [(1, 1), (7, 3), (441, 220), (442, 220), (10_001, 110)])
def test_the_limiters_moving_minimum_is_exact(n: int, half: int) -> None:
    """The moving minimum (blocks of running minima, linear in the length) equals the
    minimum over every window, edges repeated."""
    from harmonizer_cli.core.audio_out import _moving

    values = np.random.default_rng(n).standard_normal(n)
    padded = np.pad(values, half, mode="edge")
    expected = np.array([padded[i:i + 2 * half + 1].min() for i in range(n)])
    assert np.array_equal(_moving(values, half, "min"), expected)


@pytest.mark.parametrize("spool_frames", [None, 15])
def test_decoding_into_the_announced_length_survives_a_longer_song(spool_frames) -> None:
    """An mp3 announces an estimated length: decoded into one array of it, a song that turns
    out longer goes on in blocks (and is spooled when it grows past the limit)."""
    from harmonizer_cli.core.audio_io import _Blocks

    song = np.arange(2 * 23, dtype=np.float32).reshape(23, 2)
    blocks = _Blocks(spool_frames)
    blocks.reserve(10, 2)
    done = 0
    while (room := blocks.room(4)) is not None:
        room[:] = song[done:done + room.shape[0]]
        blocks.filled(room.shape[0])
        done += room.shape[0]
    assert done == 10
    for start in range(10, 23, 4):
        blocks.add(song[start:start + 4])
    result = blocks.result()
    assert np.array_equal(np.asarray(result[0:23]), song)
    assert (spool_frames is not None) == (not isinstance(result, np.ndarray))
    exact = _Blocks(None)
    exact.reserve(23, 2)
    exact.room(23)[:] = song
    exact.filled(23)
    assert exact.result() is exact.reserved  # no copy when the announced length was right
