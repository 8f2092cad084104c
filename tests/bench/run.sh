#!/usr/bin/env bash
# Benchmarks (not part of make test). Figures are ratios to a baseline run in
# the same invocation, since machines here are noisy.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
echo "== foreach scheduling overhead"
bash "$here/foreach_bench.sh"
echo "== warm task starts: 200-split foreach vs bare Rscript (plain, and attaching dplyr)"
bash "$here/warm_bench.sh"
echo "== artifact throughput and memory (MiB: ${ARTIFACT_MIB:-1024})"
Rscript "$here/artifact_bench.R" "${ARTIFACT_MIB:-1024}"
echo "== the 1 GiB flow (make a matrix in start, sum it in end) vs saveRDS/readRDS in 2 Rscripts (MiB: ${ARTIFACT_MIB:-1024})"
Rscript "$here/bigsum_bench.R" "${ARTIFACT_MIB:-1024}"
echo "== PutFile once a task has written a 256 MiB output: hashed whole vs followed while written"
(cd "$here/../.." && go test -run '^$' -bench PutFileAfterWrite -benchtime 3x ./engine/datastore/ )
echo "== verified artifact reads (stamps) against plain reads, small and ${VERIFY_BENCH_MIB:-1024} MiB"
Rscript "$here/verified_read_bench.R"
echo "== client API latency (one engine per R session)"
CLIENT_BENCH_RUNS=100 Rscript "$here/client_bench.R"
echo "== foreach split cost, 200 vs 2000 splits"
FOREACH_SPLITS=2000 Rscript "$here/foreach_scale.R"
echo "== Go benchmarks"
(cd "$here/../.." && go test -run '^$' -bench . -benchtime 3x ./engine/graph/ ./engine/rvalue/ ./engine/scheduler/ )
(cd "$here/../.." && go test -run '^$' -bench LocalFile ./engine/datastore/ )
echo "== S3 datastore against moto_server: requests and time per task record, local as baseline"
(cd "$here/../.." && go test -run '^$' -bench S3TaskRecord -benchtime 200x ./engine/datastore/ )
echo "== AWS Batch against moto_server: API calls per job for 200 jobs"
(cd "$here/../.." && go test -run '^$' -bench Emu -benchtime 200x ./batch/ )
