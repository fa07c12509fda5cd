#!/usr/bin/env bash
# Reproduce the seed paper's pipeline end to end: fetch its dataset, preprocess,
# train for 200 epochs, evaluate against the trivial baselines the paper never ran.
# Usage: examples/paper_pipeline.sh [WORK_DIR]   (parameters: examples/params.yaml)
# Needs network for fetch-data only. With DATA_SOURCE=/path/to/folder it uses local
# music instead (for example ../shared/music/train).
set -euo pipefail

work=${1:-work}
source=${DATA_SOURCE:-github:Gourav052003/Mix-Music-Splitter-Dataset/Mix Music}
epochs=${EPOCHS:-200}

harmonizer fetch-data --source "$source" --dest "$work/raw"
harmonizer preprocess --input "$work/raw" --output "$work/processed" --hop 2 --seed 0
harmonizer train --data "$work/processed" --output "$work/model" --epochs "$epochs" --seed 0
harmonizer evaluate --model "$work/model" --data "$work/processed" --split test \
    --plots "$work/plots" --json > "$work/evaluation.json"
echo "model: $work/model  evaluation: $work/evaluation.json  plots: $work/plots/"
