#!/usr/bin/env bash
# setup.sh - install (if missing) and start the real test services on 127.0.0.1, then write the env file.
#
#   tests/services/setup.sh [ssh-slurm] [docker] [kube] [s3]      (no argument = all four)
#
# Idempotent: services already running are only re-verified; the env file is rewritten every time.
# Env file: $TAOBOT_SERVICES_DIR/services.env (default /tmp/taobot-services/services.env), "export NAME=VALUE" lines
# for every service that is up. Run as root (Debian 12). Stop with tests/services/stop.sh. See README.md here.
set -euo pipefail
SERVICES_HOME=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LOG_TAG=setup
# shellcheck source=lib/common.sh
. "$SERVICES_HOME/lib/common.sh"
. "$SERVICES_HOME/lib/ssh-slurm.sh"
. "$SERVICES_HOME/lib/docker.sh"
. "$SERVICES_HOME/lib/kube.sh"
. "$SERVICES_HOME/lib/s3.sh"

case ${1:-} in -h|--help) sed -n '2,9p' "$0"; exit 0 ;; esac
[ "$(id -u)" = 0 ] || die "must run as root"
SELECTED=$(parse_services "$@")
take_lock "$@"

# ------------------------------------------------------------------ packages (one apt-get for all)
install_packages() {
  local p missing="" t0 made_policy=0 saved_policy=""
  for p in "$@"; do
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" = installed ] || missing="$missing $p"
  done
  [ -n "$missing" ] || { log "packages: all present"; return 0; }
  t0=$(now_ms)
  log "installing:$missing"
  # keep package scripts from starting sshd/munge/slurm/mariadb/docker/etcd on their default ports
  if [ -e /usr/sbin/policy-rc.d ]; then
    if ! grep -qx 'exit 101' /usr/sbin/policy-rc.d; then
      saved_policy=$(mktemp /usr/sbin/.policy-rc.d.taobot.XXXXXX); cp -p /usr/sbin/policy-rc.d "$saved_policy"
      made_policy=1
    fi
  else
    made_policy=1
  fi
  restore_policy() {
    [ "$made_policy" = 1 ] || return 0
    if [ -n "$saved_policy" ]; then mv -f "$saved_policy" /usr/sbin/policy-rc.d; else rm -f /usr/sbin/policy-rc.d; fi
  }
  [ "$made_policy" = 1 ] && { printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 0755 /usr/sbin/policy-rc.d; }
  local alog=$SVC_DIR/apt.log
  if ! apt-get -o DPkg::Lock::Timeout=600 update -qq >"$alog" 2>&1; then restore_policy; die "apt-get update failed" "$alog"; fi
  # shellcheck disable=SC2086
  if ! apt-get -o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        install -y -qq --no-install-recommends $missing >>"$alog" 2>&1; then
    restore_policy; die "apt-get install failed" "$alog"
  fi
  restore_policy
  log "packages installed in $(secs "$t0" "$(now_ms)")s"
}

T0=$(now_ms)
pkgs=""
for s in $SELECTED; do pkgs="$pkgs $("${s//-/_}_packages" | xargs)"; done
# shellcheck disable=SC2086
install_packages $pkgs
T_PKG=$(secs "$T0" "$(now_ms)")

# ------------------------------------------------------------------ services (kube last: it may need a build)
declare -A TOOK
for s in ssh-slurm docker s3 kube; do
  case " $SELECTED " in *" $s "*) ;; *) continue ;; esac
  t=$(now_ms)
  log "=== $s"
  "${s//-/_}_start"
  TOOK[$s]=$(secs "$t" "$(now_ms)")
  write_env_file
  log "=== $s ready in ${TOOK[$s]}s"
done
write_env_file

# ------------------------------------------------------------------ summary: timings and memory
{
  echo "timings (s): packages $T_PKG$(for s in ssh-slurm docker s3 kube; do [ -n "${TOOK[$s]:-}" ] && printf ', %s %s' "$s" "${TOOK[$s]}"; done), total $(secs "$T0" "$(now_ms)")"
  total=0
  for s in ssh-slurm docker s3 kube; do
    [ -n "${TOOK[$s]:-}" ] || continue
    while read -r name pidf exe; do
      p=$(pid_of "$pidf" "$exe") || continue
      r=$(tree_rss_kib "$p"); total=$((total + r))
      printf '  %-10s %-24s pid %-7s RSS %5d MiB\n' "$s" "$name" "$p" $((r / 1024))
    done < <("${s//-/_}_pids")
  done
  printf '  total RSS of the started daemons: %d MiB\n' $((total / 1024))
} | tee "$SVC_DIR/summary.txt" >&2
log "env file: $ENV_FILE"
