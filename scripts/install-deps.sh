#!/usr/bin/env bash
# Installs the Debian packages the project needs on a fresh machine: R (the
# task runtime), the R package's imports, testthat, protoc (proto tests) and a
# C compiler (Go's race detector in the tests, the R package's warm-start
# helper in rpkg/src).
set -euo pipefail
pkgs=(r-base-core r-cran-curl r-cran-r6 r-cran-magrittr r-cran-testthat r-cran-jsonlite r-cran-knitr protobuf-compiler gcc libc6-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "Installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v go >/dev/null || { echo "Go is required (https://go.dev/dl); put it on PATH" >&2; exit 1; }
