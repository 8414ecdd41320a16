#!/usr/bin/env bash
# Compare objective/backbone choices for the CPU defaults on a real labelled folder:
# pretrain each for MINUTES, embed every item, and report the 10-shot linear-probe accuracy.
#   bench/defaults_sweep.sh DATA_DIR OUT_DIR MINUTES "objective:backbone[:key=value,...]" ...
set -euo pipefail
data=$1 out=$2 minutes=$3
shift 3
mkdir -p "$out"
for spec in "$@"; do
  IFS=: read -r objective backbone sets <<<"$spec"
  name="${objective}_${backbone}${sets:+_${sets//[=,]/-}}"
  run="$out/$name"
  rm -rf "$run"
  args=()
  if [ -n "$sets" ]; then
    IFS=, read -ra kvs <<<"$sets"
    for kv in "${kvs[@]}"; do args+=(--set "$kv"); done
  fi
  start=$(date +%s)
  sslstudio train --data "$data" --out "$run" --objective "$objective" --backbone "$backbone" \
    --minutes "$minutes" --labels-from-folders --quiet "${args[@]}" >"$run.log" 2>&1
  sslstudio embed "$run" --data "$data" --out "$run/feats.npy" >>"$run.log" 2>&1
  steps=$(tail -1 "$run/metrics.csv" | cut -d, -f1)
  knn=$(awk -F, 'NR>1 && $12!="" {k=$12} END {print k}' "$run/metrics.csv")
  probe=$(python "$(dirname "$0")/fewshot.py" "$run/feats.npy" --shots 10 --no-raw | tail -1)
  echo "$name | steps $steps | final kNN $knn | $probe | $(( $(date +%s) - start ))s total" | tee -a "$out/summary.txt"
done
