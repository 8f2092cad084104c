#!/usr/bin/env bash
# Installs the R package in rpkg/ into R's default library, or into the first
# folder of R_LIBS when that is set. (The package carries a copy of the task
# runtime's msgpack codec, rpkg/R/msgpack.R; a Go test keeps it identical to
# shim/runtime/msgpack.R.)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
die() { echo "install-rpkg: $*" >&2; exit 1; }

command -v R >/dev/null || die "R is not installed (run: make deps)"
[ -f "$ROOT/rpkg/DESCRIPTION" ] || die "no R package at $ROOT/rpkg"

LIB_ARGS=()
if [ -n "${R_LIBS:-}" ]; then
  LIB="${R_LIBS%%:*}"
  mkdir -p "$LIB"
  LIB_ARGS=(--library="$LIB")
fi
R CMD INSTALL --no-multiarch "${LIB_ARGS[@]}" "$ROOT/rpkg"
