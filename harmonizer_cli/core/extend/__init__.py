"""The guided extension engine: extend (or shorten) a song to an exact duration.

``extend_audio`` keeps the song's real beginning and real ending and recomposes the
middle from the song's own beats, like unit-selection synthesis. One concern a module:

* ``analysis``: beats, bars and per-beat features from the 22050 Hz mono view;
* ``candidates``: which beats may be jumped between, and the seam cost of each jump;
* ``guidance``: the model's target cost of each jump (optional);
* ``levels``: loudness, brightness and level dips of a path, predicted from frames;
* ``plan``: the path search (``plan_path``) that reaches the target length;
* ``render``: pieces, seam alignment and crossfades from the original samples;
* ``stretch``: the local, pitch-preserving WSOLA stretch that makes the length exact;
* ``audit``: every rendered seam measured, exposed seams re-planned;
* ``engine``: ``extend_audio`` and ``ExtensionResult``, and the paper's neural engine.
"""

from __future__ import annotations

from harmonizer_cli.core.extend.analysis import MIN_ANALYSIS_SECONDS, MIN_BEATS, SongAnalysis, analyze_song
from harmonizer_cli.core.extend.engine import ENGINES, Engine, ExtensionResult, extend_audio
from harmonizer_cli.core.extend.plan import PlannedPath, plan_path

__all__ = ["ENGINES", "Engine", "ExtensionResult", "extend_audio", "PlannedPath", "plan_path", "SongAnalysis",
           "analyze_song", "MIN_ANALYSIS_SECONDS", "MIN_BEATS"]
