"""Beat, bar and per-beat feature analysis (harmonizer_cli.core.extend.analysis)."""

from __future__ import annotations

import numpy as np
import pytest

from harmonizer_cli.core.extend.analysis import analyze_song
from harmonizer_cli.errors import AudioError

RATE = 22050


def make_song(seconds: float = 24.0, *, bpm: float = 120.0, sample_rate: int = RATE, seed: int = 0) -> np.ndarray:
    """Clicks on every beat (accented downbeats) over a four-chord sequence, mono."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    beat = 60.0 / bpm
    chords = [(261.63, 329.63, 392.0), (220.0, 261.63, 329.63), (174.61, 220.0, 261.63), (196.0, 246.94, 293.66)]
    bar_index = (t // (4 * beat)).astype(int) % len(chords)
    signal = np.zeros_like(t)
    for k, chord in enumerate(chords):
        mask = bar_index == k
        signal[mask] = sum(np.sin(2 * np.pi * f * t[mask]) for f in chord) / 3
    signal *= 0.25
    phase = t % beat
    accent = np.where((t // beat) % 4 == 0, 1.0, 0.6)
    click = accent * np.exp(-phase * 60.0) * rng.standard_normal(t.size) * 0.5
    return (signal + click).astype(np.float32)


def test_click_track_tempo_and_beats():
    analysis = analyze_song(make_song())
    assert analysis.fallback is None
    assert abs(analysis.tempo_bpm - 120.0) < 2.0
    intervals = np.diff(analysis.beat_seconds)
    assert np.all(np.abs(intervals - 0.5) < 0.03)
    # beats sit on the clicks, up to ~2 analysis hops early (the flux rises as the
    # attack enters the analysis window): seams are cut just before the attack
    error = ((analysis.beat_seconds + 0.25) % 0.5) - 0.25
    assert np.all(np.abs(error) < 0.05)
    assert analysis.beats_per_bar == 4
    assert analysis.chroma.shape == (analysis.n_beats, 12)
    assert analysis.timbre.shape == (analysis.n_beats, 20)
    assert np.allclose(np.linalg.norm(analysis.chroma, axis=1), 1.0, atol=1e-3)


def test_downbeat_phase_finds_the_chord_changes():
    analysis = analyze_song(make_song())
    downbeats = analysis.beat_seconds[analysis.downbeat_phase::analysis.beats_per_bar]
    assert np.median(np.abs(((downbeats + 1.0) % 2.0) - 1.0)) < 0.05


def test_chroma_follows_the_harmony():
    analysis = analyze_song(make_song())
    first_bar = analysis.chroma[(analysis.beat_seconds >= 0.1) & (analysis.beat_seconds < 1.9)].mean(axis=0)
    # C major: C (0), E (4), G (7) dominate
    assert set(np.argsort(first_bar)[-3:]) == {0, 4, 7}


def test_too_short_is_an_audio_error():
    with pytest.raises(AudioError, match=r"too short to extend \(1\.5 s; at least 2 s needed\)"):
        analyze_song(make_song(1.5), path="short.wav")


def test_a_short_clip_is_cut_on_a_fine_grid():
    analysis = analyze_song(make_song(3.0))
    assert analysis.duration_seconds == pytest.approx(3.0)
    assert analysis.n_beats >= 8


def test_silence_is_an_audio_error():
    with pytest.raises(AudioError, match="silence"):
        analyze_song(np.zeros(RATE * 10, np.float32))


def test_no_pulse_falls_back_to_a_grid():
    rng = np.random.default_rng(1)
    t = np.arange(RATE * 12) / RATE
    drone = 0.2 * np.sin(2 * np.pi * 220 * t) + 0.01 * rng.standard_normal(t.size)
    analysis = analyze_song(drone.astype(np.float32))
    assert analysis.fallback == "no-pulse"
    assert np.allclose(np.diff(analysis.beat_seconds), 0.5)


def test_k_weighting_matches_the_standard():
    from harmonizer_cli.core.extend.analysis import k_weighting_gain

    gain_db = 10.0 * np.log10(k_weighting_gain(np.array([20.0, 997.0, 10000.0])))
    assert gain_db[0] < -10.0                   # the RLB high-pass
    assert abs(gain_db[1] - 0.691) < 0.01       # why LUFS subtracts 0.691 dB
    assert abs(gain_db[2] - 4.0) < 0.1          # the high shelf


def test_frame_levels_cover_the_song_and_follow_its_spectrum():
    t = np.arange(12 * RATE) / RATE
    low = 0.3 * np.sin(2 * np.pi * 200.0 * t)
    high = 0.3 * np.sin(2 * np.pi * 4000.0 * t)
    mono = np.where(t < 6.0, low, high).astype(np.float32)
    levels = analyze_song(mono, force_grid=True).levels
    assert levels.power.size == levels.energy.size == 1 + mono.size // 512
    centroid = levels.centroid_num / np.maximum(levels.energy, 1e-20)
    rate = levels.frame_rate
    assert abs(np.median(centroid[int(1 * rate):int(5 * rate)]) - 200.0) < 20.0
    assert abs(np.median(centroid[int(7 * rate):int(11 * rate)]) - 4000.0) < 50.0
    # the same power, but K-weighting counts 4 kHz about 4.2 dB louder than 200 Hz
    ratio = np.median(levels.k_power[int(7 * rate):int(11 * rate)]) / np.median(levels.k_power[int(1 * rate):int(5 * rate)])
    assert 2.4 < ratio < 2.9


@pytest.mark.parametrize("bpm, odd_allowed", [(200.0, False), (120.0, True)])
def test_fast_beats_jump_by_even_numbers_only(bpm: float, odd_allowed: bool) -> None:
    """Above 150 BPM the counted beat may be the felt beat's half (2:1): an odd jump would
    put the music half a felt beat off, so no candidate jumps by an odd number of beats."""
    from harmonizer_cli.core.extend.candidates import jump_candidates

    analysis = analyze_song(make_song(40.0, bpm=bpm))
    assert analysis.fallback is None and abs(analysis.tempo_bpm - bpm) < 0.05 * bpm
    candidates = jump_candidates(analysis, min_lag_beats=4)
    lags = candidates.b - candidates.a
    assert lags.size > 0
    assert bool(np.any(lags % 2 == 1)) is odd_allowed
