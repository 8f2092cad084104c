#!/usr/bin/env bash
# Builds metaflow-r-test:bookworm, a local image with base R only, for the
# AWS Batch emulator tests. Nothing can be pulled on the test machines, so the
# root filesystem comes from the machine's own Debian mirror via debootstrap
# and is loaded with `docker import`. Does nothing if the image exists.
#
# Usage: tests/batch/build-image.sh [--force]
# Env:   IMAGE (default metaflow-r-test:bookworm), MIRROR (default: first
#        bookworm mirror in /etc/apt/sources.list*), EXTRA_PACKAGES (comma list).
set -euo pipefail

IMAGE=${IMAGE:-metaflow-r-test:bookworm}
SUITE=bookworm
FORCE=0
[[ "${1:-}" == "--force" ]] && FORCE=1

if [[ $FORCE == 0 ]] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "build-image: $IMAGE already exists (use --force to rebuild)"
  exit 0
fi

if [[ $(id -u) != 0 ]]; then
  echo "build-image: debootstrap needs root" >&2
  exit 1
fi

# The mirror the machine already uses: only it is reachable here.
find_mirror() {
  local f uri
  for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/debian.sources; do
    [[ -f $f ]] || continue
    # deb822: the first stanza whose Suites contain "bookworm" (not -security).
    uri=$(awk -v s="$SUITE" '
      /^[[:space:]]*$/ { if (u != "" && ok) { print u; exit } u=""; ok=0; next }
      /^URIs:/   { u=$2 }
      /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == s) ok=1 }
      END { if (u != "" && ok) print u }' "$f" | head -n1)
    [[ -n $uri ]] && { echo "$uri"; return; }
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f $f ]] || continue
    uri=$(awk -v s="$SUITE" '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { if ($(i+1) == s) { print $i; exit } } }' "$f")
    [[ -n $uri ]] && { echo "$uri"; return; }
  done
  echo "http://deb.debian.org/debian"
}
MIRROR=${MIRROR:-$(find_mirror)}

if ! command -v debootstrap >/dev/null; then
  echo "build-image: installing debootstrap"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi

start=$(date +%s)
root=$(mktemp -d /tmp/metaflow-r-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT

pkgs=r-base-core${EXTRA_PACKAGES:+,$EXTRA_PACKAGES}
echo "build-image: debootstrap $SUITE from $MIRROR with $pkgs"
# minbase + Depends only (debootstrap ignores Recommends): no compilers, no recommended R packages.
debootstrap --variant=minbase --include="$pkgs" "$SUITE" "$root" "$MIRROR" \
  >"$root.log" 2>&1 || { tail -n 30 "$root.log" >&2; rm -f "$root.log"; exit 1; }
rm -f "$root.log"

# Keep the image small: docs, man pages, translations, apt caches are never used by a task.
rm -rf "$root"/usr/share/{doc,man,info,groff,lintian,linda}/* \
       "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* "$root"/var/log/* \
       "$root"/usr/lib/R/library/*/{doc,help,html} "$root"/usr/share/R/doc/*
find "$root"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} +
# Keep later apt runs inside the image from bringing docs back.
mkdir -p "$root"/etc/dpkg/dpkg.cfg.d
printf 'path-exclude /usr/share/doc/*\npath-exclude /usr/share/man/*\npath-exclude /usr/share/info/*\n' \
  >"$root"/etc/dpkg/dpkg.cfg.d/01-nodoc

old_id=$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)
tar -C "$root" -c . | docker import \
  -c 'ENV LANG=C.UTF-8' -c 'CMD ["R", "--version"]' - "$IMAGE" >/dev/null
# --force: drop the image this one replaces instead of leaving it dangling.
if [[ -n $old_id && $old_id != $(docker image inspect -f '{{.Id}}' "$IMAGE") ]]; then
  docker rmi "$old_id" >/dev/null 2>&1 || true
fi

echo "build-image: built $IMAGE in $(( $(date +%s) - start ))s ($(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}'))"
docker run --rm "$IMAGE" Rscript -e 'cat(R.version.string, "\n")'
