"""Extension quality: does an extended song sound like the song itself, only longer?

Every measure compares an ``extended`` file with its ``original``; they serve the
extension benchmark (``benchmarks/extension_quality.py``) and ``harmonizer evaluate
--extension ORIGINAL EXTENDED``. Nothing here is on the fast path of ``extend``, so
librosa, scipy and pyloudnorm are used freely (imported inside the functions).

Measures (see ``extension_report`` for the JSON layout and ``targets_met`` for the
per-file targets, ``TARGETS``):

duration
    Output length, error against the requested length, sample rate and channels kept.
seams
    How detectable each seam (splice point) is, compared with the original's own
    ordinary beats, by three local measures at a point ``t``:

    * ``crest``: the largest absolute first difference of the samples within +-5 ms of
      ``t`` over their RMS (largest over channels). A hard splice at a non-zero
      crossing is a step: a large sample-to-sample jump for the local level.
    * ``novelty``: mean absolute difference (dB) between the 40-band mel spectra of the
      50 ms before and the 50 ms after ``t`` (mono). A splice between unrelated places
      changes the spectrum abruptly.
    * ``broadband``: for lossy sources only, the energy above the codec's cut-off
      frequency (estimated from the original's long-term spectrum; measured from 1 kHz
      above it) in +-2.5 ms around
      ``t``, over its median in the 250 ms around. mp3 content has almost nothing
      above the cut-off; the step of a splice is broadband.

    Each is reported as the 95th percentile over the seams, the 95th percentile over
    the original's beats (``librosa.beat.beat_track``) and their ratio (target <= 1.1).
    An output has a handful of seams and a song a few hundred beats, and the 95th
    percentile of 7 values is nearly their maximum: 7 beats drawn at random exceed the
    beats' own 95th percentile about a third of the time. So beside the ratio,
    ``p_value`` is the share of 1000 random draws of as many beats as there are seams
    whose 95th percentile reaches the seams' (small, say < 0.05: the seams stand out
    beyond chance; large: a ratio above 1.1 may be the luck of a few seams).
    Without seam times (another tool's output), seams are detected blindly:
    ``detect_seams`` aligns the output to the original (log-mel frames, a dynamic
    programme that pays a penalty for every jump), takes the jumps of the alignment
    path, and refines each to the sample where the output stops matching the original
    at the old offset and starts matching it at the new one. Jumps between identical
    material (the output still matches the old place afterwards) are dropped. This
    works for outputs assembled from the original's own samples (loopers, beat-graph
    extenders; ``matched_share`` near 1); for a resynthesis (``matched_share`` low) the
    detected seams mean little.
clicks
    Over the WHOLE output, not only at seams (``clicks``): energy above a lossy
    source's codec cut-off in 5 ms windows over its running median (dB), and the
    sample-step crest of 10 ms windows; the output's worst against the original's
    worst (targets: out-of-band <= 1 dB over it, crest ratio <= 1.05), with the
    times of the places beyond.
groove
    Whether the song's pulse carries on across each seam (``groove``): the phase of
    the pulse (from the original's onset envelope, no beat tracker) in the 3 s before
    and after, against the same jump at random points of the original (target: no
    seam stumbles).
dips
    The deepest drop of the 1 s level (dB, 0.25 s hop) below its running median over
    +-10 s, away from the first and last 5 s, for output and original (target: output
    <= original + 1 dB). A running median, not the global one: an extension that plays
    the loud sections more often raises the global median and would show a deeper
    "dip" where nothing changed.
repetition
    Chroma + MFCC frames (0.5 s windows every 0.1 s) compared over an 8 s context
    (frame cosine averaged along the diagonal): each frame's best earlier match (at
    least 4 s back) and every match within 0.02 of it; the frame "repeats" when the
    best similarity is at least 0.95 (near-exact repetition). The share of frames at
    the single most common lag (+-0.3 s): ``past_original`` over every frame past the
    original's length (a plain loop ~1) and ``repeating`` over every repeating frame
    of the output (compared with the original's own ``repeating``). Calibrated on the
    12 songs of ../shared/music/songs: a naive tile to 300 s scores a median 1.00 on
    ``past_original`` (lowest 0.83), the songs' second halves (as if past their first
    half) 0.13, the songs themselves 0.62 on ``repeating``. A song that never
    repeats itself (under 5 % of its frames repeat) has no ``repeating`` share of its
    own; its outputs are held to the corpus median, 0.62, instead.
    For outputs of hours (the frames' n x n matrices do not scale), ``segment_repetition``
    counts the same single-lag shares from the extension's segment list, for exact
    copies (interval arithmetic; a plain loop scores 1 past the song's length), and
    whether the sequence of segments settles into a cycle.
ending
    Correlation of the last 10 s of output and original at the best offset within
    +-50 ms, that offset, and the trailing silence of each (padding or a cut tail).
mood
    Tempo (BPM), key (Krumhansl-Schmuckler on chroma), integrated loudness (LUFS,
    ITU-R BS.1770 via pyloudnorm) and energy-weighted spectral centroid of each, and
    their differences.
"""

from __future__ import annotations

from harmonizer_cli.core.quality.clicks import CLICK_TARGETS, click_report
from harmonizer_cli.core.quality.detection import SeamDetection, detect_seams
from harmonizer_cli.core.quality.dips import level_dip_db
from harmonizer_cli.core.quality.ending import ending_match, trailing_silence_seconds
from harmonizer_cli.core.quality.groove import Pulse, find_pulse, groove_report, onset_envelope, phase_jumps
from harmonizer_cli.core.quality.mood import estimate_key, librosa_beats, mood_descriptors
from harmonizer_cli.core.quality.repetition import (
    MIN_REPEATING_FRACTION, REPEATING_REFERENCE, REPETITION_FRAME_SECONDS, repetition_features,
    repetition_shares, segment_repetition,
)
from harmonizer_cli.core.quality.report import (
    TARGETS, OriginalAnalysis, analyse_original, extension_report, summary_rows, targets_met,
)
from harmonizer_cli.core.quality.seams import estimate_codec_cutoff, seam_broadband, seam_crest, seam_novelty

__all__ = [
    "TARGETS", "CLICK_TARGETS", "click_report", "Pulse", "find_pulse", "groove_report", "onset_envelope",
    "phase_jumps", "OriginalAnalysis", "SeamDetection", "estimate_codec_cutoff", "seam_crest", "seam_novelty",
    "seam_broadband", "detect_seams", "level_dip_db", "repetition_features", "repetition_shares", "ending_match",
    "trailing_silence_seconds", "estimate_key", "librosa_beats", "mood_descriptors", "analyse_original",
    "extension_report", "targets_met", "summary_rows", "REPETITION_FRAME_SECONDS", "MIN_REPEATING_FRACTION",
    "REPEATING_REFERENCE", "segment_repetition",
]
