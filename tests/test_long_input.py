"""Long inputs: songs decoded to a temporary file and read by ranges, blocked jump costs, and
the target cost without a matrix, each forced on a short synthetic song by a lowered
threshold and held against the in-memory path."""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_extension import FakePredictor, make_song  # noqa: E402

from harmonizer_cli import jobs  # noqa: E402
from harmonizer_cli.core import decoded  # noqa: E402
from harmonizer_cli.core.audio_io import load_audio, to_mono, to_model_view  # noqa: E402
from harmonizer_cli.core.decoded import DecodedFile, SpoolWriter, is_on_disk  # noqa: E402
from harmonizer_cli.core.extend import analysis as analysis_module  # noqa: E402
from harmonizer_cli.core.extend import candidates, extend_audio, guidance  # noqa: E402
from harmonizer_cli.core.extend.plan import plan_path  # noqa: E402
from harmonizer_cli.errors import ConfigError, Interrupted  # noqa: E402


@pytest.fixture
def private_tmpdir(tmp_path, monkeypatch) -> Path:
    """A temporary folder of the test's own, so that what is left in it can be seen."""
    folder = tmp_path / "tmpdir"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture
def spooled_handles(monkeypatch) -> list:
    """Every temporary file a SpoolWriter opens (to check that each is closed, and so deleted)."""
    handles: list = []
    real = tempfile.TemporaryFile

    def recording(*args, **kwargs):
        handle = real(*args, **kwargs)
        handles.append(handle)
        return handle

    monkeypatch.setattr(decoded.tempfile, "TemporaryFile", recording)
    return handles


@pytest.fixture(scope="module")
def song_file(tmp_path_factory) -> Path:
    song = make_song(24.0)
    path = tmp_path_factory.mktemp("long") / "song.flac"
    sf.write(path, song.samples, song.sample_rate, subtype="PCM_24")
    return path


def _fingerprint(result) -> tuple:
    digest = hashlib.sha256()
    for block in result.output.blocks(1 << 15):
        digest.update(np.ascontiguousarray(block).tobytes())
    return digest.hexdigest(), result.segments, result.seams_seconds, result.stretch, result.n_samples


# ----------------------------------------------------------------------------- the decoded file


def test_a_decoded_file_slices_like_its_array(private_tmpdir):
    rng = np.random.default_rng(0)
    data = rng.standard_normal((100_003, 2)).astype(np.float32)
    writer = SpoolWriter(2)
    for start in range(0, data.shape[0], 7_919):
        writer.write(data[start:start + 7_919])
    with writer.finish() as samples:
        assert samples.shape == data.shape and samples.ndim == 2 and len(samples) == data.shape[0]
        assert samples.peak == float(np.max(np.abs(data)))
        for key in (slice(0, 10), slice(99_990, 200_000), slice(-5, None), slice(10, 5), slice(3, 3001, 7),
                    5, -1):
            assert np.array_equal(samples[key], data[key]), key
        far = np.array([[3, 4, 5], [90_000, 90_001, 90_002], [1, 2, 3]])  # spread out: read as clusters
        assert np.array_equal(samples[far], data[far])
        assert np.array_equal(samples[10:20, 1], data[10:20, 1])
        assert np.array_equal(samples.mono()[far], to_mono(data)[far])
        window = decoded.window_of(samples.mono(), 1000, 5000)
        assert window.size == 4000 and np.array_equal(window[100:200], to_mono(data)[1100:1200])
        assert np.array_equal(np.asarray(samples), data)
        out = samples[0:4]
        out[:] = 0.0  # a copy of its own, writable
        assert not np.array_equal(samples[0:4], out)
    assert samples.closed
    with pytest.raises(ValueError, match="closed"):
        samples.read(0, 1)
    assert list(private_tmpdir.iterdir()) == []  # unnamed: nothing was ever there to leave behind


def test_centred_windows_are_the_padded_framing():
    rng = np.random.default_rng(1)
    signal = rng.standard_normal(10_000).astype(np.float32)
    padded = np.pad(signal, (1024, 1024))
    whole = np.lib.stride_tricks.sliding_window_view(padded, 2048)[::512]
    writer = SpoolWriter(None)
    writer.write(signal)
    with writer.finish() as on_disk:
        for start, count in ((0, 3), (5, 7), (len(whole) - 4, 4)):
            assert np.array_equal(decoded.centred_windows(on_disk, 2048, 512, start, count),
                                  whole[start:start + count])


def test_load_audio_spools_a_long_song_with_the_same_samples_and_view(song_file, private_tmpdir,
                                                                     spooled_handles):
    in_memory = load_audio(song_file)
    assert isinstance(in_memory.samples, np.ndarray)
    assert isinstance(load_audio(song_file, spool_over_seconds=60.0).samples, np.ndarray)  # short enough
    with load_audio(song_file, spool_over_seconds=1.0) as spooled:
        assert isinstance(spooled.samples, DecodedFile) and is_on_disk(spooled.samples)
        assert spooled.sample_rate == in_memory.sample_rate and spooled.n_samples == in_memory.n_samples
        assert np.array_equal(np.asarray(spooled.samples), in_memory.samples)
        assert np.array_equal(np.asarray(spooled.samples.view), to_model_view(in_memory))
        assert spooled.samples.peak == float(np.max(np.abs(in_memory.samples)))
        assert len(spooled_handles) == 2  # the samples and the view
    assert all(handle.closed for handle in spooled_handles)
    assert list(private_tmpdir.iterdir()) == []


def test_a_long_song_with_nan_is_refused_and_its_file_closed(tmp_path, spooled_handles):
    data = make_song(8.0).samples.copy()
    data[100_000, 0] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(path, data, 48000, subtype="FLOAT")
    from harmonizer_cli.errors import AudioError

    with pytest.raises(AudioError, match="NaN or infinite"):
        load_audio(path, spool_over_seconds=1.0)
    assert spooled_handles and all(handle.closed for handle in spooled_handles)


# ----------------------------------------------------------------------------- the same output


@pytest.mark.parametrize("target", [41.3, 15.0])
def test_a_spooled_song_extends_to_the_same_output(song_file, target):
    with load_audio(song_file) as in_memory, load_audio(song_file, spool_over_seconds=1.0) as spooled:
        assert is_on_disk(spooled.samples)
        want = _fingerprint(extend_audio(in_memory, target_seconds=target, seed=0))
        got = _fingerprint(extend_audio(spooled, target_seconds=target, seed=0))
    assert got == want


def test_a_spooled_song_guided_by_the_shipped_model_gives_the_same_output(song_file):
    from harmonizer_cli.core.model import load_predictor

    predictor = load_predictor()
    with load_audio(song_file) as in_memory, load_audio(song_file, spool_over_seconds=1.0) as spooled:
        want = _fingerprint(extend_audio(in_memory, target_seconds=50.0, seed=2, predictor=predictor))
        got = _fingerprint(extend_audio(spooled, target_seconds=50.0, seed=2, predictor=predictor))
    assert got == want


def test_the_neural_engine_refuses_a_spooled_song(song_file):
    with load_audio(song_file, spool_over_seconds=1.0) as spooled:
        with pytest.raises(ConfigError, match="at most 20 minutes"):
            extend_audio(spooled, target_seconds=40.0, engine="neural", predictor=FakePredictor())


# ----------------------------------------------------------------------------- jobs: the file is always deleted


def _job(song_file: Path, output: Path, target: float = 40.0) -> jobs.ExtendJob:
    return jobs.ExtendJob(input=song_file, output=output, target_seconds=target, use_model=False)


def test_run_job_on_a_spooled_song_writes_the_same_file_and_leaves_nothing(song_file, tmp_path, private_tmpdir,
                                                                          spooled_handles, monkeypatch):
    jobs.run_job(_job(song_file, tmp_path / "memory.wav"))
    assert not spooled_handles
    monkeypatch.setattr(jobs, "SPOOL_OVER_SECONDS", 1.0)
    record = jobs.run_job(_job(song_file, tmp_path / "disk.wav"))
    assert len(spooled_handles) == 2 and all(handle.closed for handle in spooled_handles)
    assert (tmp_path / "disk.wav").read_bytes() == (tmp_path / "memory.wav").read_bytes()
    assert abs(record.output_seconds - 40.0) <= 0.01
    assert list(private_tmpdir.iterdir()) == []


@pytest.mark.parametrize("failure", [Interrupted(15), KeyboardInterrupt(), RuntimeError("a bug")])
def test_run_job_deletes_the_decoded_file_when_it_fails(song_file, tmp_path, spooled_handles, monkeypatch, failure):
    from harmonizer_cli.core import audio_out

    monkeypatch.setattr(jobs, "SPOOL_OVER_SECONDS", 1.0)

    def failing(*args, **kwargs):
        raise failure

    monkeypatch.setattr(audio_out, "save_audio", failing)  # fails after extending, while writing
    with pytest.raises(type(failure)):
        jobs.run_job(_job(song_file, tmp_path / "out.wav"))
    assert len(spooled_handles) == 2 and all(handle.closed for handle in spooled_handles)
    assert not (tmp_path / "out.wav").exists()


def test_inputs_over_the_cap_are_refused_with_the_cap(song_file, tmp_path, monkeypatch):
    from harmonizer_cli.errors import AudioError

    monkeypatch.setattr(jobs, "MAX_INPUT_SECONDS", 12.0)
    with pytest.raises(AudioError, match=r"too long \(0\.4 minutes; at most 0\.2 minutes are accepted\)"):
        jobs.run_job(_job(song_file, tmp_path / "out.wav"))
    assert jobs.MAX_INPUT_SECONDS == 12.0 and not (tmp_path / "out.wav").exists()


def test_the_caps():
    assert jobs.MAX_INPUT_SECONDS == 2 * 3600 and jobs.MAX_NEURAL_INPUT_SECONDS == 20 * 60
    assert jobs.SPOOL_OVER_SECONDS <= 20 * 60


# ----------------------------------------------------------------------------- blocked jump costs


@pytest.fixture(scope="module")
def song_analysis():
    return analysis_module.analyze_song(to_model_view(make_song(40.0, bpm=150.0)))


def test_blocked_jump_costs_match_the_matrices(song_analysis, monkeypatch):
    dense = candidates.jump_candidates(song_analysis, min_lag_beats=8)
    monkeypatch.setattr(candidates, "DENSE_MAX_BEATS", 10)
    monkeypatch.setattr(candidates, "_BLOCK_ROWS", 7)  # several blocks, the last one short
    blocked = candidates.jump_candidates(song_analysis, min_lag_beats=8)
    assert blocked.blocked and not dense.blocked
    n = song_analysis.n_beats
    a, b = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    costs = blocked.full[a, b]
    finite = np.isfinite(dense.full)
    assert np.array_equal(np.isfinite(costs), finite)
    assert np.allclose(costs[finite], dense.full[finite], rtol=1e-3)
    assert np.allclose(blocked.full_shift[a, b], dense.full_shift, atol=1e-12)
    grid = np.concatenate([block for _, _, block, _ in blocked.full.blocks()])
    assert np.allclose(grid[finite], dense.full[finite], rtol=1e-3)
    assert set(zip(blocked.a.tolist(), blocked.b.tolist())) == set(zip(dense.a.tolist(), dense.b.tolist()))
    # banned jumps: gone from the lists and from the costs; the cached candidates are untouched
    a0, b0 = int(blocked.a[0]), int(blocked.b[0])
    without = blocked.without(frozenset({(a0, b0)}))
    assert (a0, b0) not in set(zip(without.a.tolist(), without.b.tolist()))
    assert np.isinf(without.full[np.array([a0]), np.array([b0])][0])
    again = candidates.jump_candidates(song_analysis, min_lag_beats=8)
    assert np.isfinite(again.full[np.array([a0]), np.array([b0])][0]) and again.a.size == blocked.a.size


@pytest.mark.parametrize("target", [70.0, 25.0])
def test_blocked_plans_reach_the_length(song_analysis, monkeypatch, target):
    dense = plan_path(song_analysis, target, seed=0)
    monkeypatch.setattr(candidates, "DENSE_MAX_BEATS", 10)
    blocked = plan_path(song_analysis, target, seed=0)
    assert blocked.jumps and np.isfinite(blocked.score)
    assert abs(blocked.residual_seconds) <= abs(dense.residual_seconds) + 0.05
    assert abs(blocked.score - dense.score) <= 0.05 * abs(dense.score) + 0.5


def test_extend_with_every_long_song_path_forced(song_file, monkeypatch):
    from harmonizer_cli.core.model import load_predictor

    monkeypatch.setattr(candidates, "DENSE_MAX_BEATS", 10)
    monkeypatch.setattr(guidance, "DENSE_TARGET_FRAMES", 5)
    with load_audio(song_file, spool_over_seconds=1.0) as spooled:
        result = extend_audio(spooled, target_seconds=61.0, seed=0, predictor=load_predictor())
        assert abs(result.duration_seconds - 61.0) <= 0.010
        tail = 5 * spooled.sample_rate
        assert np.array_equal(result.output.read(result.n_samples - tail, result.n_samples),
                              spooled.samples[spooled.n_samples - tail:])


# ----------------------------------------------------------------------------- the target cost without a matrix


@pytest.mark.parametrize("model", ["shipped", "predictor"])
def test_target_cost_without_a_matrix_is_the_same(model, monkeypatch):
    if model == "shipped":
        from harmonizer_cli.core.model import load_predictor

        predictor = load_predictor()
    else:
        predictor = FakePredictor()
    mono = to_model_view(make_song(30.0))
    dense = guidance.TargetCost(predictor, mono)
    monkeypatch.setattr(guidance, "DENSE_TARGET_FRAMES", 5)
    monkeypatch.setattr(guidance, "_BATCH", 7)
    lazy = guidance.TargetCost(predictor, mono)
    assert dense.matrix is not None and lazy.matrix is None and lazy.scored == dense.scored
    rng = np.random.default_rng(3)
    leave, land = rng.uniform(0, 31, 500), rng.uniform(0, 31, 500)
    # (the shipped model's float32 products differ in the last bits with the batch size)
    atol = (1e-5 if model == "shipped" else 1e-9) * (float(np.max(np.abs(dense.matrix))) + 1e-12)
    assert np.allclose(lazy.for_jumps(leave, land), dense.for_jumps(leave, land), rtol=0, atol=atol)
    assert np.allclose(lazy.grid(leave[:20], land[:30]), dense.grid(leave[:20], land[:30]), rtol=0, atol=atol)
    assert np.allclose(dense.grid(leave[:4], land[:5]), dense.for_jumps(leave[:4, None], land[None, :5]))


def test_target_cost_reads_a_spooled_view_in_chunks(song_file, monkeypatch):
    monkeypatch.setattr(guidance, "_FEATURE_CHUNK_FRAMES", 3)
    with load_audio(song_file) as in_memory, load_audio(song_file, spool_over_seconds=1.0) as spooled:
        want = guidance.TargetCost(FakePredictor(), to_model_view(in_memory)).matrix
        got = guidance.TargetCost(FakePredictor(), spooled.samples.view).matrix
    assert np.array_equal(got, want)


def test_spooled_analysis_is_the_same(song_file):
    with load_audio(song_file) as in_memory, load_audio(song_file, spool_over_seconds=1.0) as spooled:
        want = analysis_module.analyze_song(to_model_view(in_memory))
        got = analysis_module.analyze_song(spooled.samples.view)
    for name in ("beat_seconds", "chroma", "timbre", "loudness_db", "mel_before_db", "mel_after_db", "rhythm"):
        assert np.array_equal(getattr(got, name), getattr(want, name)), name
    assert got.tempo_bpm == want.tempo_bpm and os.path.exists(song_file)


def test_a_long_m4a_is_spooled_as_it_is_decoded(tmp_path, private_tmpdir, spooled_handles):
    """PyAV's formats spool block by block as libsndfile's do: the same samples as in memory."""
    pytest.importorskip("av")
    from harmonizer_cli.core.audio_io import save_audio

    song = make_song(6.0)
    path = save_audio(tmp_path / "song.m4a", song.samples, song.sample_rate)
    in_memory = load_audio(path)
    with load_audio(path, spool_over_seconds=1.0) as spooled:
        assert isinstance(spooled.samples, DecodedFile) and is_on_disk(spooled.samples)
        assert spooled.n_samples == in_memory.n_samples
        assert np.array_equal(np.asarray(spooled.samples), in_memory.samples)
    assert all(handle.closed for handle in spooled_handles)
    assert list(private_tmpdir.iterdir()) == []
    # (and the decoder hands over blocks as it goes, never the whole song at once)
    from harmonizer_cli.core import media
    from harmonizer_cli.core.audio_io import _Blocks

    class Recording(_Blocks):
        def add(self, block):
            sizes.append(block.shape[0])
            super().add(block)

    sizes: list = []
    samples, _, _ = media._decode_audio(path, max_seconds=None, sink=lambda rate, channels: Recording(None))
    assert len(sizes) > 1 and max(sizes) < media._SINK_FRAMES + 4096
    assert np.array_equal(samples, in_memory.samples)
