#!/usr/bin/env bash
# Issue 4, part (b): the no-attention baseline and the four attention variants on Tatoeba, one shared
# budget of 10 training minutes each (2 CPU cores), one after the other, then the length experiment.
#   ATTNMT_DATA=../shared/data bash experiments/tatoeba_variants.sh [MINUTES]
set -euo pipefail
minutes=${1:-10}
for attention in none dot general additive scaled_dot; do
  dir=runs/tatoeba-${minutes}min-$attention
  compgen -G "$dir/model-*.safetensors" >/dev/null && continue  # already trained: a rerun only finishes what is missing
  attnmt train configs/tatoeba-gru-attention.yaml --model-dir "$dir" \
    --set model.attention=$attention --set train.max_minutes=$minutes $([ -d "$dir" ] && echo --resume)
done
python experiments/attention_and_length.py tatoeba --name tatoeba-${minutes}min runs/tatoeba-${minutes}min-{none,dot,general,additive,scaled_dot}
