#!/usr/bin/env bash
# Installs the R package in rpkg/ together with a copy of the engine's base-R
# msgpack codec (shim/runtime/msgpack.R, canonical there), so the codec has one
# source of truth. The copy is made in a staging tree; rpkg/ itself is never
# modified. Installs into R's default library, or into the
# first folder of R_LIBS when that is set.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
die() { echo "install-rpkg: $*" >&2; exit 1; }

command -v R >/dev/null || die "R is not installed (run: make deps)"
[ -f "$ROOT/rpkg/DESCRIPTION" ] || die "no R package at $ROOT/rpkg"
[ -f "$ROOT/shim/runtime/msgpack.R" ] || die "missing $ROOT/shim/runtime/msgpack.R (the R-value codec)"

STAGE="$(mktemp -d "${TMPDIR:-/tmp}/metaflow-rpkg.XXXXXX")"
trap 'rm -rf "$STAGE"' EXIT
PKG="$STAGE/metaflow"
cp -R "$ROOT/rpkg" "$PKG"
# The codec becomes package code, so R CMD INSTALL byte-compiles it (sourcing
# it at load time would pay R's JIT on first use in every session).
cp "$ROOT/shim/runtime/msgpack.R" "$PKG/R/msgpack.R"

LIB_ARGS=()
if [ -n "${R_LIBS:-}" ]; then
  LIB="${R_LIBS%%:*}"
  mkdir -p "$LIB"
  LIB_ARGS=(--library="$LIB")
fi
R CMD INSTALL --no-multiarch "${LIB_ARGS[@]}" "$PKG"
