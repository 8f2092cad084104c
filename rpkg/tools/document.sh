#!/usr/bin/env bash
# Regenerates rpkg/man/ and rpkg/NAMESPACE with roxygen2 (Debian:
# r-cran-roxygen2). roxygen2 loads the package, which needs the msgpack codec
# from shim/runtime, so it works on a staging copy like scripts/install-rpkg.sh.
set -euo pipefail
RPKG="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROOT="$(dirname "$RPKG")"
[ -f "$ROOT/shim/runtime/msgpack.R" ] || { echo "document: missing shim/runtime/msgpack.R" >&2; exit 1; }
STAGE="$(mktemp -d)"
trap 'rm -rf "$STAGE"' EXIT
cp -R "$RPKG" "$STAGE/metaflow"
cp "$ROOT/shim/runtime/msgpack.R" "$STAGE/metaflow/R/msgpack.R"
Rscript -e 'roxygen2::roxygenise(commandArgs(TRUE)[1])' "$STAGE/metaflow"
rm -rf "$RPKG/man"
cp -R "$STAGE/metaflow/man" "$RPKG/man"
cp "$STAGE/metaflow/NAMESPACE" "$RPKG/NAMESPACE"
