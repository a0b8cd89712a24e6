#!/usr/bin/env bash
# base-image.sh - a minimal Debian bookworm image with python3, python3-venv and pip, made from Debian's packages
# with debootstrap and `docker import`ed, for building deploy/Dockerfile where no container registry is reachable:
#
#   bash tests/services/lib/base-image.sh [--force]
#   docker build --network host --build-arg BASE_IMAGE=taobot-test/debian-python:bookworm -f deploy/Dockerfile .
#
# Cached: when the image already exists it prints its name and exits at once (--force makes it again).
# Standalone (not sourced by setup.sh). Needs root (debootstrap; installs the debootstrap package if missing).
#
#   DOCKER_HOST                  daemon to import into; default TAOBOT_TEST_DOCKER_HOST from the services env file
#   TAOBOT_TEST_BASE_IMAGE       image name (default taobot-test/debian-python:bookworm)
#   TAOBOT_TEST_DEBIAN_MIRROR    Debian mirror (default: the machine's own, from /etc/apt/sources.list{,.d/*})
#   TAOBOT_TEST_CACHE_DIR        keeps downloaded .debs for the next --force (default /var/cache/taobot-test)
#
# The machine's CA bundle replaces the image's: where egress goes through a TLS-inspecting proxy, pip in the
# build must trust what this machine trusts. Prints timings on stderr and the image name on stdout.
set -euo pipefail

SUITE=bookworm
IMAGE=${TAOBOT_TEST_BASE_IMAGE:-taobot-test/debian-python:$SUITE}
SVC_DIR=${TAOBOT_SERVICES_DIR:-/tmp/taobot-services}
CACHE_DIR=${TAOBOT_TEST_CACHE_DIR:-/var/cache/taobot-test}
PACKAGES=python3,python3-venv,python3-pip,ca-certificates
FORCE=0
[ "${1:-}" = --force ] && FORCE=1

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
T0=$(now_ms)
log() { awk -v a="$T0" -v b="$(now_ms)" -v m="$*" 'BEGIN{printf "[base-image %6.1fs] %s\n", (b-a)/1000, m}' >&2; }
die() { log "ERROR: $*"; exit 1; }

if [ -z "${DOCKER_HOST:-}" ] && [ -f "$SVC_DIR/services.env" ]; then
  DOCKER_HOST=$(sed -n 's/^export TAOBOT_TEST_DOCKER_HOST=//p' "$SVC_DIR/services.env" | tail -n1)
fi
[ -n "${DOCKER_HOST:-}" ] || die "no docker daemon: set DOCKER_HOST or start it with tests/services/setup.sh docker"
export DOCKER_HOST
command -v docker >/dev/null || die "the docker client is missing (apt-get install docker.io)"
docker version >/dev/null 2>&1 || die "docker daemon at $DOCKER_HOST does not answer"

have_image() { docker image inspect "$IMAGE" >/dev/null 2>&1; }
if [ "$FORCE" = 0 ] && have_image; then
  log "$IMAGE exists (cached)"; echo "$IMAGE"; exit 0
fi

# One maker at a time (parallel test runs); the second one finds the image made when it gets the lock.
if [ "${TAOBOT_BASE_IMAGE_LOCKED:-}" != 1 ]; then
  install -d -m 0755 "$SVC_DIR"
  export TAOBOT_BASE_IMAGE_LOCKED=1
  exec flock -w 900 "$SVC_DIR/.base-image.lock" bash "$0" "$@"
fi
if [ "$FORCE" = 0 ] && have_image; then
  log "$IMAGE exists (made meanwhile)"; echo "$IMAGE"; exit 0
fi
[ "$(id -u)" = 0 ] || die "debootstrap needs root"

if ! command -v debootstrap >/dev/null; then
  log "installing debootstrap"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q debootstrap >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q debootstrap >/dev/null; } \
    || die "apt-get install debootstrap failed"
fi

# The machine's Debian mirror: the first deb source of the main archive (not -security/-updates/-backports).
mirror() {
  local f
  [ -n "${TAOBOT_TEST_DEBIAN_MIRROR:-}" ] && { echo "$TAOBOT_TEST_DEBIAN_MIRROR"; return; }
  for f in /etc/apt/sources.list.d/*.sources; do   # deb822 stanzas
    [ -f "$f" ] || continue
    awk 'function flush() { if (types ~ /(^| )deb( |$)/ && uri ~ /^https?:/ && uri !~ /security/ && suites ~ /(^| )[a-z]+( |$)/ && !done) { print uri; done = 1 }
                            types = uri = suites = "" }
         /^[ \t]*$/ { flush(); next }
         tolower($1) == "types:"  { $1 = ""; types = $0 }
         tolower($1) == "uris:"   { uri = $2 }
         tolower($1) == "suites:" { $1 = ""; suites = $0 }
         END { flush() }' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do   # one-line format
    [ -f "$f" ] || continue
    sed -E 's/\[[^]]*\]//' "$f" | awk '$1 == "deb" && $2 ~ /^https?:/ && $2 !~ /security/ && $3 ~ /^[a-z]+$/ { print $2 }'
  done
  echo http://deb.debian.org/debian
}
MIRRORS=$(mirror)
MIRROR=${MIRRORS%%$'\n'*}
[ -f /etc/ssl/certs/ca-certificates.crt ] || die "no /etc/ssl/certs/ca-certificates.crt on this machine"

WORK=$(mktemp -d /var/tmp/taobot-base-image.XXXXXX)
ROOT=$WORK/rootfs
# Nothing is deleted below a mount point (debootstrap mounts /proc, /sys and, in LXC, binds /dev in the target):
# unmount what is left, and rm never crosses into another filesystem.
unmount_below() {
  local m
  awk -v d="${1:?}/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r | while IFS= read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" || true
  done
  ! awk -v d="$1/" 'index($2, d) == 1 {found = 1} END {exit !found}' /proc/mounts
}
cleanup() { if unmount_below "$WORK"; then rm -rf --one-file-system "${WORK:?}"; else log "left $WORK: still mounted"; fi; }
trap cleanup EXIT
install -d -m 0755 "$CACHE_DIR/debootstrap-$SUITE"
log "debootstrap $SUITE from $MIRROR (minbase + $PACKAGES)"
if ! debootstrap --variant=minbase --include="$PACKAGES" --cache-dir="$CACHE_DIR/debootstrap-$SUITE" \
      "$SUITE" "$ROOT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1; then
  tail -n 30 "$WORK/debootstrap.log" >&2
  [ -f "$ROOT/debootstrap/debootstrap.log" ] && tail -n 30 "$ROOT/debootstrap/debootstrap.log" >&2
  die "debootstrap failed"
fi
log "debootstrap done"

# Trim what an image never uses; keep dpkg's status so the image is still a Debian system.
unmount_below "$ROOT" || die "$ROOT still has mounts below it"
rm -rf --one-file-system "${ROOT:?}"/var/cache/apt/* "${ROOT:?}"/var/lib/apt/lists/* "${ROOT:?}"/var/log/* "${ROOT:?}"/debootstrap \
       "${ROOT:?}"/usr/share/doc/* "${ROOT:?}"/usr/share/man/* "${ROOT:?}"/usr/share/info/* "${ROOT:?}"/usr/share/locale/* \
       "${ROOT:?}"/dev/* "${ROOT:?}"/proc/* "${ROOT:?}"/sys/* "${ROOT:?}"/run/* "${ROOT:?}"/tmp/*
# (the stdlib's __pycache__ stays: on a read-only root filesystem Python could not write it again)
cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/ca-certificates.crt"
chmod 1777 "$ROOT/tmp"
printf 'deb %s %s main\n' "$MIRROR" "$SUITE" > "$ROOT/etc/apt/sources.list"
chroot "$ROOT" python3 -c 'import ensurepip, venv' || die "python3 with venv does not run in the new root filesystem"

log "docker import as $IMAGE"
tar -C "$ROOT" --numeric-owner -c . | docker import \
  -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  -c 'ENV LANG=C.UTF-8' \
  -c 'CMD ["python3"]' \
  -m "debootstrap --variant=minbase --include=$PACKAGES $SUITE ($MIRROR)" - "$IMAGE" >/dev/null \
  || die "docker import failed"
log "made $IMAGE ($(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}'))"
echo "$IMAGE"
