#!/usr/bin/env bash
# 200-split foreach with --max-workers 2, as a ratio to 200 bare
# `Rscript -e 'invisible(0)'` run two at a time, measured in the same run.
# Target: <= 1.5x.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
now() { date +%s.%N; }

t0=$(now)
seq 200 | xargs -P 2 -I{} Rscript -e 'invisible(0)'
t1=$(now)
Rscript "$here/foreach200.R" run --max-workers 2 --max-num-splits 200 > flow.log 2>&1 || { cat flow.log; exit 1; }
t2=$(now)

awk -v t0="$t0" -v t1="$t1" -v t2="$t2" 'BEGIN {
  b = t1 - t0; f = t2 - t1
  printf "baseline 200 x Rscript -e invisible(0), 2 at a time: %.2f s\n", b
  printf "flow: 200-split foreach (+start, join, end), --max-workers 2: %.2f s\n", f
  printf "ratio flow/baseline: %.2fx (target <= 1.5x)\n", f / b
}'
