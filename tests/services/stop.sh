#!/usr/bin/env bash
# stop.sh - stop what tests/services/setup.sh started, by pid file only (never by process name).
#
#   tests/services/stop.sh [--purge] [--purge-cache] [ssh-slurm] [docker] [kube] [s3]   (no service = all)
#
#   --purge        also delete generated state of those services (keys, databases, images, logs, the test users
#                  and /srv/taotest if setup.sh created them, the stand-ins in /usr/local/bin, the
#                  /etc/slurm/slurm.conf symlink); with all services, the whole $TAOBOT_SERVICES_DIR. Packages stay.
#   --purge-cache  also delete the persistent cache (/var/cache/taobot-test: built kube binaries, weed)
set -euo pipefail
SERVICES_HOME=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LOG_TAG=stop
. "$SERVICES_HOME/lib/common.sh"
. "$SERVICES_HOME/lib/ssh-slurm.sh"
. "$SERVICES_HOME/lib/docker.sh"
. "$SERVICES_HOME/lib/kube.sh"
. "$SERVICES_HOME/lib/s3.sh"

PURGE=0 PURGE_CACHE=0 args=()
for a in "$@"; do
  case $a in
    --purge) PURGE=1 ;;
    --purge-cache) PURGE_CACHE=1 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) args+=("$a") ;;
  esac
done
[ "$(id -u)" = 0 ] || die "must run as root"
SELECTED=$(parse_services ${args[@]+"${args[@]}"})
if [ ! -d "$SVC_DIR" ]; then
  log "nothing to stop ($SVC_DIR does not exist)"
else
  take_lock "$@"
  for s in kube s3 docker ssh-slurm; do      # reverse of the start order
    case " $SELECTED " in *" $s "*) ;; *) continue ;; esac
    "${s//-/_}_stop"
    if [ $PURGE = 1 ]; then "${s//-/_}_purge"; log "purged $s state"; fi
  done
  write_env_file
  if [ $PURGE = 1 ] && [ "$(echo $SELECTED)" = "$(echo $ALL_SERVICES)" ]; then
    rm -rf "$SVC_DIR"; log "removed $SVC_DIR"
  fi
fi
if [ $PURGE_CACHE = 1 ]; then rm -rf "$CACHE_DIR"; log "removed $CACHE_DIR"; fi
log "done"
