#!/usr/bin/env bash
# Extend every song of a folder to the length of a video clip, in parallel, with a
# machine-readable report. Usage: examples/batch_extend.sh MUSIC_DIR OUT_DIR [DURATION]
#   examples/batch_extend.sh ~/Music/for-clips ./extended 3:45
# Exit status: 0 if every song was extended, 7 if some failed (each printed an
# `error: <file>: ...` line on stderr and the others were still written).
set -euo pipefail

music_dir=${1:?usage: $0 MUSIC_DIR OUT_DIR [DURATION]}
out_dir=${2:?usage: $0 MUSIC_DIR OUT_DIR [DURATION]}
duration=${3:-5:00}

mkdir -p "$out_dir"
status=0
harmonizer extend "$music_dir" --duration "$duration" --out-dir "$out_dir" \
    --format flac --jobs 2 --json > "$out_dir/report.jsonl" || status=$?

# One line per song: input -> output, its length and how many seams were made.
python3 - "$out_dir/report.jsonl" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    print(f"{r['input']} -> {r['output']}: {r['output_seconds']:.2f} s, {len(r['seams'])} seams")
PY
exit "$status"
