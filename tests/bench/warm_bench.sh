#!/usr/bin/env bash
# Warm task starts (docs/ARCHITECTURE.md): a 200-split foreach with
# --max-workers 2 as a ratio to 200 bare Rscript processes run two at a time,
# measured in the same run (baselines first):
#   trivial steps vs `Rscript -e 'invisible(0)'`             target <= 0.5x
#   steps attaching WARM_BENCH_PKG (default dplyr, >= 0.3 s to load)
#     vs `Rscript -e 'library(<pkg>)'`                         target <= 0.25x
# WARM_BENCH_COLD=1 also runs both flows with METAFLOW_WARM_START=0.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
pkg=${WARM_BENCH_PKG_NAME:-dplyr}
Rscript -e "if (!requireNamespace('$pkg', quietly = TRUE)) quit(status = 1)" 2>/dev/null || {
  echo "warm_bench: R package $pkg is not installed (Debian: apt-get install r-cran-$pkg)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
now() { date +%s.%N; }
flow() { # name, env...
  local name=$1; shift
  local t0; t0=$(now)
  env "$@" Rscript "$here/warm200.R" run --max-workers 2 --max-num-splits 200 > "$name.log" 2>&1 || { cat "$name.log"; exit 1; }
  echo "$name $(echo "$(now) - $t0" | bc)" >> times
}
base() { # name, R expression
  local t0; t0=$(now)
  seq 200 | xargs -P 2 -I{} Rscript -e "$2"
  echo "$1 $(echo "$(now) - $t0" | bc)" >> times
}
base bare 'invisible(0)'
flow warm WARM_BENCH_PKG=
base bare_pkg "suppressPackageStartupMessages(library($pkg))"
flow warm_pkg WARM_BENCH_PKG="$pkg"
if [ "${WARM_BENCH_COLD:-0}" = 1 ]; then
  flow cold WARM_BENCH_PKG= METAFLOW_WARM_START=0
  flow cold_pkg WARM_BENCH_PKG="$pkg" METAFLOW_WARM_START=0
fi
awk -v pkg="$pkg" '{ t[$1] = $2 } END {
  printf "baseline 200 x Rscript -e invisible(0), 2 at a time: %.2f s\n", t["bare"]
  printf "warm flow, 200 trivial splits, --max-workers 2:     %.2f s  ratio %.2fx (target <= 0.5x)\n", t["warm"], t["warm"] / t["bare"]
  if ("cold" in t) printf "cold flow (METAFLOW_WARM_START=0):                   %.2f s  ratio %.2fx\n", t["cold"], t["cold"] / t["bare"]
  printf "baseline 200 x Rscript -e library(%s), 2 at a time: %.2f s\n", pkg, t["bare_pkg"]
  printf "warm flow, 200 splits attaching %s:                 %.2f s  ratio %.2fx (target <= 0.25x)\n", pkg, t["warm_pkg"], t["warm_pkg"] / t["bare_pkg"]
  if ("cold_pkg" in t) printf "cold flow attaching %s:                             %.2f s  ratio %.2fx\n", pkg, t["cold_pkg"], t["cold_pkg"] / t["bare_pkg"]
}' times
