#!/usr/bin/env bash
# End-to-end tests: real flows run as `Rscript flow.R ...` against the
# installed engine (metaflow-engine on PATH) and R package (make install).
#   bash tests/e2e/run.sh                 # everything
#   E2E_FILTER=foreach bash tests/e2e/run.sh   # only test-foreach.R
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

die() { echo "tests/e2e: $*" >&2; exit 1; }
command -v Rscript >/dev/null || die "Rscript is not installed (make deps)"
command -v metaflow-engine >/dev/null || die "metaflow-engine is not on PATH (make install)"
Rscript -e 'if (!requireNamespace("metaflow", quietly = TRUE)) quit(status = 1)' >/dev/null 2>&1 \
  || die "the R package metaflow is not installed or does not load (make install)"
Rscript -e 'for (p in c("testthat", "jsonlite")) if (!requireNamespace(p, quietly = TRUE)) quit(status = 1)' \
  || die "testthat and jsonlite are needed (make deps)"

export E2E_DIR="$HERE"
# Flows must not reach an engine or datastore of the caller's environment.
unset METAFLOW_ENGINE_ADDRESS METAFLOW_ENGINE_TOKEN METAFLOW_DATASTORE_SYSROOT_LOCAL METAFLOW_ENGINE_BIN

start=$(date +%s)
status=0
Rscript -e '
  filter <- Sys.getenv("E2E_FILTER")
  testthat::test_dir(
    file.path(Sys.getenv("E2E_DIR"), "testthat"),
    filter = if (nzchar(filter)) filter else NULL,
    reporter = testthat::ProgressReporter$new(show_praise = FALSE, max_failures = 1000,
                                               update_interval = Inf),
    stop_on_failure = TRUE
  )
' || status=$?
echo "tests/e2e: finished in $(( $(date +%s) - start )) s (exit status $status)"
exit $status
