# shellcheck shell=bash
# common.sh - shared settings and helpers for tests/services/{setup,stop,check}.sh.
# Sourced, never run. Everything here is about processes WE started: they are found by pid file
# (and the pid's /proc/PID/exe must be the expected binary), never by process name.

# ------------------------------------------------------------------ settings (all overridable)
SVC_DIR=${TAOBOT_SERVICES_DIR:-/tmp/taobot-services}          # state, keys, logs, sockets, env file
CACHE_DIR=${TAOBOT_TEST_CACHE_DIR:-/var/cache/taobot-test}    # survives reboots: kube binaries, weed
DATA_ROOT=${TAOBOT_TEST_DATA_ROOT:-/srv/taotest}               # "/lustre"-like data area owned by the SSH user
ENV_FILE=$SVC_DIR/services.env

SSH_USER=${TAOBOT_TEST_SSH_USER:-taouser}       # key-only login user (also submits the SLURM jobs)
SSH_LANE_USERS=${TAOBOT_TEST_SSH_LANE_USERS:-taouser2 taouser3}  # more key-only users: SLURM test lanes 2, 3, ... run as them
SSH_PW_USER=${TAOBOT_TEST_SSH_PW_USER:-taopw}   # user with a password, for the password-only sshd
SSH_PW_PASSWORD=taopw-Passw0rd                  # loopback-only throwaway password
SSH_PORT=${TAOBOT_TEST_SSH_PORT:-2222}          # sshd #1: publickey only
SSH_PW_PORT=${TAOBOT_TEST_SSH_PW_PORT:-2223}    # sshd #2: password only
SLURMCTLD_PORT=${TAOBOT_TEST_SLURMCTLD_PORT:-26817}
SLURMD_PORT=${TAOBOT_TEST_SLURMD_PORT:-26818}
SLURMDBD_PORT=${TAOBOT_TEST_SLURMDBD_PORT:-26819}
MARIADB_PORT=${TAOBOT_TEST_MARIADB_PORT:-23306}
SLURM_CLUSTER=taobot
SLURM_GPUS=8                                    # fake gres/gpu devices on the one node (DGX-like)
SLURM_GPU_MAXTIME=04:00:00
DB_PASS=taobot-slurmdb-pw                       # loopback-only throwaway DB password
ETCD_PORT=${TAOBOT_TEST_ETCD_PORT:-22379}
ETCD_PEER_PORT=${TAOBOT_TEST_ETCD_PEER_PORT:-22380}
KUBE_PORT=${TAOBOT_TEST_KUBE_PORT:-26443}
S3_PORT=${TAOBOT_TEST_S3_PORT:-28333}
S3_FILER_PORT=28888 S3_MASTER_PORT=29333 S3_VOLUME_PORT=29340 S3_ICEBERG_PORT=28181
# gRPC ports are set explicitly: weed's default (http port + 10000) would land in the ephemeral port range
S3_MASTER_GRPC=29334 S3_VOLUME_GRPC=29341 S3_FILER_GRPC=28889 S3_S3_GRPC=28334
# weed mini always starts an admin server (even with the UI off); its plugin worker dials admin http port + 10000
# whatever -admin.port.grpc says, so keep grpc = http + 10000
S3_ADMIN_PORT=18646 S3_ADMIN_GRPC=28646
S3_REGION=us-east-1
S3_BUCKET=tao-datasets
S3_ADMIN_KEY=taobotadminkey S3_ADMIN_SECRET=taobotadminsecret
S3_RO_KEY=taobotrokey       S3_RO_SECRET=taobotrosecret
DOCKER_IMAGE=taobot-test/busybox:latest
KUBE_BIN_DIR=$CACHE_DIR/kube-bin
WEED_DIR=$CACHE_DIR/seaweedfs                    # pip --target dir; the binary is $WEED_DIR/bin/weed
WEED_BIN=$WEED_DIR/bin/weed

ALL_SERVICES="ssh-slurm docker kube s3"

export DEBIAN_FRONTEND=noninteractive
export PATH=$PATH:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# ------------------------------------------------------------------ logging / timing
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
secs() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f", (b-a)/1000}'; }   # secs START_MS END_MS
T_SCRIPT_START=${T_SCRIPT_START:-$(now_ms)}
LOG_TAG=${LOG_TAG:-services}
log() { printf '[%s %6ss] %s\n' "$LOG_TAG" "$(secs "$T_SCRIPT_START" "$(now_ms)")" "$*" >&2; }
die() { # die MESSAGE [LOGFILE...]: print the message and the tail of each log file, exit 1
  local msg=$1 f; shift
  log "ERROR: $msg"
  for f in "$@"; do
    [ -f "$f" ] || continue
    printf -- '----- last 40 lines of %s -----\n' "$f" >&2; tail -n 40 "$f" >&2 || true
    printf -- '----- end of %s -----\n' "$f" >&2
  done
  exit 1
}

# ------------------------------------------------------------------ processes
# pid_of PIDFILE EXE: print the pid if it is alive (not a zombie) and runs EXE
pid_of() {
  local p st; [ -s "$1" ] || return 1; p=$(head -n1 "$1" 2>/dev/null) || return 1
  [[ $p =~ ^[0-9]+$ ]] || return 1
  [ "$(readlink "/proc/$p/exe" 2>/dev/null)" = "$(readlink -f "$2")" ] || return 1
  st=$(ps -o stat= -p "$p" 2>/dev/null) && [[ $st != Z* ]] || return 1
  echo "$p"
}
running() { pid_of "$1" "$2" >/dev/null; }
alive() { local st; st=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $st != Z* ]]; }
descendants() { local c; for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do echo "$c"; descendants "$c"; done; }
# kill_wait PID NAME [SECONDS]: SIGTERM, wait, then SIGKILL
kill_wait() {
  local p=$1 name=$2 t=${3:-15} i
  kill -TERM "$p" 2>/dev/null || return 0
  for ((i = 0; i < t * 10; i++)); do alive "$p" || { log "stopped $name (pid $p)"; return 0; }; sleep 0.1; done
  kill -KILL "$p" 2>/dev/null || true; sleep 0.2; log "killed $name (pid $p) with SIGKILL"
}
# stop_pidfile PIDFILE EXE NAME [SECONDS]: stop the daemon recorded in PIDFILE (only if it really is EXE)
stop_pidfile() {
  local p; if p=$(pid_of "$1" "$2"); then kill_wait "$p" "$3" "${4:-15}"; fi
  rm -f "$1"
}
# tree_rss_kib PID: resident memory of PID and all its descendants, KiB
tree_rss_kib() {
  local total=0 p r
  for p in "$1" $(descendants "$1"); do
    r=$(awk '/^VmRSS/{print $2}' "/proc/$p/status" 2>/dev/null) || r=0; total=$((total + ${r:-0}))
  done
  echo "$total"
}

# ------------------------------------------------------------------ waiting
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# wait_for SECONDS DESCRIPTION LOGFILE COMMAND...: poll COMMAND every 0.1 s; on timeout die with the log tail.
# If the env var WAIT_PID is set and that process dies meanwhile, die at once.
wait_for() {
  local t=$1 what=$2 logf=$3; shift 3
  local end=$(( $(now_ms) + t * 1000 ))
  until "$@" >/dev/null 2>&1; do
    if [ -n "${WAIT_PID:-}" ] && ! alive "$WAIT_PID"; then die "$what: process $WAIT_PID exited" "$logf"; fi
    [ "$(now_ms)" -lt "$end" ] || die "timed out after ${t}s waiting for $what" "$logf"
    sleep 0.1
  done
}
# require_port_free PORT WHAT: die if something we did not start already listens on PORT
require_port_free() {
  port_open "$1" || return 0
  die "port 127.0.0.1:$1 (for $2) is already in use by another process: $(ss -ltnpH "sport = :$1" 2>/dev/null | head -3 | tr -s ' ')"
}

# ------------------------------------------------------------------ files
# write_if_changed FILE [MODE]: stdin -> FILE unless identical; returns 0 if FILE changed, 1 if not
write_if_changed() {
  local f=$1 mode=${2:-0644} tmp; tmp=$(mktemp "$f.XXXXXX")
  cat > "$tmp"; chmod "$mode" "$tmp"
  if [ -f "$f" ] && cmp -s "$tmp" "$f"; then rm -f "$tmp"; return 1; fi
  mv -f "$tmp" "$f"; return 0
}

# ------------------------------------------------------------------ env file
# Each service writes $SVC_DIR/env.d/<service>.env when it is up; services.env is their concatenation.
env_fragment() { # env_fragment SERVICE < lines "NAME=VALUE"
  install -d -m 0755 "$SVC_DIR/env.d"
  local line name value tmp; tmp=$(mktemp "$SVC_DIR/env.d/.$1.XXXXXX")
  while IFS= read -r line; do
    [ -n "$line" ] || continue
    name=${line%%=*}; value=${line#*=}
    [[ $value =~ ^[A-Za-z0-9_./:@,+=%-]*$ ]] || die "env value of $name needs quoting: $value"
    printf 'export %s=%s\n' "$name" "$value"
  done > "$tmp"
  chmod 0644 "$tmp"; mv -f "$tmp" "$SVC_DIR/env.d/$1.env"
}
write_env_file() {
  local s have="" tmp
  [ -d "$SVC_DIR" ] || return 0
  for s in $ALL_SERVICES; do [ -f "$SVC_DIR/env.d/$s.env" ] && have="$have,$s"; done
  have=${have#,}
  if [ -z "$have" ]; then rm -f "$ENV_FILE"; return 0; fi
  tmp=$(mktemp "$ENV_FILE.XXXXXX")
  {
    echo "# written by tests/services/setup.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ); source it or parse 'export NAME=VALUE' lines"
    echo "export TAOBOT_SERVICES_DIR=$SVC_DIR"
    echo "export TAOBOT_TEST_SERVICES=$have"
    for s in $ALL_SERVICES; do [ -f "$SVC_DIR/env.d/$s.env" ] && { echo "# --- $s"; cat "$SVC_DIR/env.d/$s.env"; }; done
  } > "$tmp"
  chmod 0644 "$tmp"; mv -f "$tmp" "$ENV_FILE"
}

# ------------------------------------------------------------------ locking
# one setup/stop at a time (tests, CI and people may call them concurrently).
# take_lock "$@" re-executes the calling script under `flock -o`: flock(1) itself holds the lock and the script
# (and so every daemon it starts) does not inherit the lock's file descriptor, which would keep it locked forever.
take_lock() {
  [ "${TAOBOT_SERVICES_LOCKED:-}" = "$SVC_DIR" ] && return 0
  install -d -m 0755 "$SVC_DIR"
  export TAOBOT_SERVICES_LOCKED=$SVC_DIR T_SCRIPT_START
  local rc=0
  flock -o -w 1200 -E 75 "$SVC_DIR/.lock" bash "$0" "$@" || rc=$?
  [ "$rc" != 75 ] || die "another setup.sh/stop.sh held $SVC_DIR/.lock for 1200s"
  exit "$rc"
}

# parse_services ARGS...: validate names, print the selected services (default: all)
parse_services() {
  local a out=""
  for a in "$@"; do
    case " $ALL_SERVICES " in *" $a "*) out="$out $a" ;; *) die "unknown service '$a' (known: $ALL_SERVICES)" ;; esac
  done
  [ -n "$out" ] || out=$ALL_SERVICES
  echo "$out"
}

# ------------------------------------------------------------------ sample data
# make_sample_tree DIR: DIR/train/{annotations.json,annotations_nofps.json,media/videos.tar.gz} and
# DIR/specs/{train.toml,train_fail.toml}; existing files are kept.
make_sample_tree() {
  local d=$1 i n=3
  install -d -m 0755 "$d/train/media" "$d/specs"
  if [ ! -f "$d/train/annotations.json" ]; then
    { echo '['; for ((i = 0; i < n; i++)); do
        printf '  {"id": %d, "video": "videos/clip_%03d.mp4", "caption": "a robot arm picks up object %d", "video_fps": %s, "num_frames": %d}%s\n' \
          "$i" "$i" "$i" "$([ $i = 1 ] && echo 24.0 || echo 30.0)" $((90 + i)) "$([ $i -lt $((n - 1)) ] && echo ,)"
      done; echo ']'; } > "$d/train/annotations.json"
  fi
  if [ ! -f "$d/train/annotations_nofps.json" ]; then
    { echo '['; for ((i = 0; i < n; i++)); do
        printf '  {"id": %d, "video": "videos/clip_%03d.mp4", "caption": "a robot arm picks up object %d", "num_frames": %d}%s\n' \
          "$i" "$i" "$i" $((90 + i)) "$([ $i -lt $((n - 1)) ] && echo ,)"
      done; echo ']'; } > "$d/train/annotations_nofps.json"
  fi
  if [ ! -f "$d/train/media/videos.tar.gz" ]; then
    local t; t=$(mktemp -d); mkdir -p "$t/videos"
    for ((i = 0; i < n; i++)); do   # tiny fake MP4s: an ftyp box and some padding
      { printf '\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom'; head -c 2048 /dev/zero; } > "$t/videos/clip_$(printf %03d $i).mp4"
    done
    tar -C "$t" --owner=0 --group=0 --mtime=2024-01-01 -czf "$d/train/media/videos.tar.gz" videos
    rm -rf "$t"
  fi
  [ -f "$d/specs/train.toml" ] || printf '# stand-in TAO spec (see /usr/local/bin/tao-standin)\n[train]\nepochs = 3\nstandin_exit = 0\n' > "$d/specs/train.toml"
  [ -f "$d/specs/train_fail.toml" ] || printf '# stand-in TAO spec that fails with exit code 3\n[train]\nepochs = 3\nstandin_exit = 3\n' > "$d/specs/train_fail.toml"
  chmod 0644 "$d"/train/*.json "$d/train/media/videos.tar.gz" "$d"/specs/*.toml
}

# spawn PIDFILE LOGFILE CMD...: start CMD in the background in its own session (so that a Ctrl-C or the end of
# the calling shell's process group does not take it down), stdout+stderr to LOGFILE, its pid to PIDFILE.
# (A background job of a non-interactive shell is not a process-group leader, so setsid execs in place: $! is CMD.)
spawn() {
  local pidf=$1 logf=$2; shift 2
  setsid "$@" </dev/null >"$logf" 2>&1 &
  echo $! > "$pidf"
}
