#!/usr/bin/env bash
# check.sh - exercise each running test service once; exit non-zero on any failure.
#
#   tests/services/check.sh [ssh-slurm] [docker] [kube] [s3]   (default: the services listed in the env file)
#
# Reads only the env file written by setup.sh ($TAOBOT_SERVICES_DIR/services.env), like the tests do.
set -euo pipefail
SVC_DIR=${TAOBOT_SERVICES_DIR:-/tmp/taobot-services}
ENV_FILE=$SVC_DIR/services.env
[ -f "$ENV_FILE" ] || { echo "check: no env file $ENV_FILE; run tests/services/setup.sh first" >&2; exit 1; }
# shellcheck disable=SC1090
. "$ENV_FILE"
SELECTED=${*:-${TAOBOT_TEST_SERVICES//,/ }}

PASS=0 FAIL=0
ok()   { PASS=$((PASS + 1)); printf 'check: ok   %s\n' "$1"; }
bad()  { FAIL=$((FAIL + 1)); printf 'check: FAIL %s\n' "$1"; [ -z "${2:-}" ] || printf '%s\n' "$2" | sed 's/^/      /' | tail -n 20; }
# run NAME COMMAND...: ok if COMMAND succeeds (its output is shown on failure)
run() { local n=$1 out; shift; if out=$("$@" 2>&1); then ok "$n"; else bad "$n" "$out"; fi; }
has() { case " $SELECTED " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
need_env() { # need_env SERVICE: the env file must have that service
  case ",$TAOBOT_TEST_SERVICES," in *",$1,"*) return 0 ;; esac
  bad "$1: not in $ENV_FILE (TAOBOT_TEST_SERVICES=$TAOBOT_TEST_SERVICES)"; return 1
}

if has ssh-slurm && need_env ssh-slurm; then
  SSH_BASE=(ssh -o BatchMode=yes -o IdentitiesOnly=yes -o ConnectTimeout=10 -o GlobalKnownHostsFile=/dev/null
            -o StrictHostKeyChecking=yes -p "$TAOBOT_TEST_SSH_PORT")
  SSH=("${SSH_BASE[@]}" -o UserKnownHostsFile="$TAOBOT_TEST_SSH_KNOWN_HOSTS" -i "$TAOBOT_TEST_SSH_KEY"
       "$TAOBOT_TEST_SSH_USER@$TAOBOT_TEST_SSH_HOST")
  run "ssh: key login, hostname" bash -c '[ "$("$@" hostname)" = "$(hostname)" ]' _ "${SSH[@]}"
  expect_fail() { # expect_fail NAME PATTERN COMMAND...: COMMAND must fail and print PATTERN
    local n=$1 pat=$2 out; shift 2
    if out=$("$@" 2>&1); then bad "$n" "unexpectedly succeeded: $out"
    else case $out in *$pat*) ok "$n" ;; *) bad "$n" "$out" ;; esac; fi
  }
  expect_fail "ssh: password-only server rejects the key" "Permission denied (password)" \
    ssh -o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes -o GlobalKnownHostsFile=/dev/null \
      -o UserKnownHostsFile="$TAOBOT_TEST_SSH_KNOWN_HOSTS" -i "$TAOBOT_TEST_SSH_KEY" -p "$TAOBOT_TEST_SSH_PASSWORD_PORT" \
      "$TAOBOT_TEST_SSH_USER@$TAOBOT_TEST_SSH_HOST" true
  expect_fail "ssh: wrong key rejected" "Permission denied (publickey)" \
    "${SSH_BASE[@]}" -o UserKnownHostsFile="$TAOBOT_TEST_SSH_KNOWN_HOSTS" -i "$TAOBOT_TEST_SSH_WRONG_KEY" \
      "$TAOBOT_TEST_SSH_USER@$TAOBOT_TEST_SSH_HOST" true
  expect_fail "ssh: unknown host key rejected" "Host key verification failed" \
    "${SSH_BASE[@]}" -o UserKnownHostsFile="$TAOBOT_TEST_SSH_EMPTY_KNOWN_HOSTS" -i "$TAOBOT_TEST_SSH_KEY" \
      "$TAOBOT_TEST_SSH_USER@$TAOBOT_TEST_SSH_HOST" true
  # sbatch over ssh, wait for it, then sacct must report it COMPLETED (accounting reaches slurmdbd asynchronously)
  slurm_job() {
    "${SSH[@]}" 'set -e; cd ~
      j=$(sbatch --parsable -J taobot-check -p '"$TAOBOT_TEST_SLURM_PARTITION"' -o check-%j.out --wrap hostname)
      for i in $(seq 300); do
        s=$(sacct -n -X -P -j "$j" -o State 2>/dev/null | head -n1)
        [ "$s" = COMPLETED ] && break; case $s in FAILED*|CANCELLED*|TIMEOUT*|NODE_FAIL*|OUT_OF_ME*) break ;; esac
        sleep 0.2
      done
      echo "job $j: $(sacct -n -X -P -j "$j" -o JobID,State,ExitCode)"; echo "output: $(cat check-$j.out)"
      good=0; [ "$s" = COMPLETED ] && [ "$(cat check-$j.out)" = "$(hostname)" ] && good=1
      rm -f check-$j.out; [ $good = 1 ]'
  }
  run "slurm: sbatch --wrap hostname over ssh, sacct COMPLETED" slurm_job
  run "slurm: squeue over ssh" "${SSH[@]}" squeue -h -t all
  standin() {
    local out
    out=$("${SSH[@]}" "TAO_STANDIN_SLEEP=0 cosmos-rl --config $TAOBOT_TEST_SPEC results_dir=\$HOME/check-standin >/dev/null && cat \$HOME/check-standin/status.json && rm -rf \$HOME/check-standin")
    case $out in *'"status": "SUCCESS"'*) ;; *) echo "$out"; return 1 ;; esac
    [ -s "$TAOBOT_TEST_ANNOTATIONS" ] && grep -q video_fps "$TAOBOT_TEST_ANNOTATIONS" && [ -s "$TAOBOT_TEST_MEDIA_TARBALL" ]
  }
  run "stand-in: cosmos-rl over ssh writes status.json; data area present" standin
fi

if has docker && need_env docker; then
  run "docker: run $TAOBOT_TEST_DOCKER_IMAGE" bash -c \
    '[ "$(docker -H "$TAOBOT_TEST_DOCKER_HOST" run --rm "$TAOBOT_TEST_DOCKER_IMAGE" echo hello-from-busybox)" = hello-from-busybox ]'
fi

if has kube && need_env kube; then
  run "kube: /readyz with the admin token" bash -c \
    '[ "$(curl -sS --max-time 10 --cacert "$TAOBOT_TEST_KUBE_CA" -H "Authorization: Bearer $TAOBOT_TEST_KUBE_ADMIN_TOKEN" "$TAOBOT_TEST_KUBE_API/readyz")" = ok ]'
  run "kube: bot token is authenticated (namespaces forbidden to tao-bot, not 401)" bash -c \
    '[ "$(curl -s -o /dev/null -w "%{http_code}" --max-time 10 --cacert "$TAOBOT_TEST_KUBE_CA" -H "Authorization: Bearer $TAOBOT_TEST_KUBE_BOT_TOKEN" "$TAOBOT_TEST_KUBE_API/api/v1/namespaces")" = 403 ]'
fi

if has s3 && need_env s3; then
  s3get() { # s3get KEY SECRET URL (curl 7.88 signs the query as written: sorted, %-encoded)
    curl -sS --fail-with-body --max-time 20 --aws-sigv4 "aws:amz:$TAOBOT_TEST_S3_REGION:s3" --user "$1:$2" \
      -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "$3"
  }
  s3_list() {
    local out; out=$(s3get "$TAOBOT_TEST_S3_ACCESS_KEY" "$TAOBOT_TEST_S3_SECRET_KEY" \
      "$TAOBOT_TEST_S3_ENDPOINT/$TAOBOT_TEST_S3_BUCKET?list-type=2&prefix=${TAOBOT_TEST_S3_PREFIX//\//%2F}") || { echo "$out"; return 1; }
    case $out in *"<Key>$TAOBOT_TEST_S3_ANNOTATIONS_KEY</Key>"*) ;; *) echo "$out"; return 1 ;; esac
  }
  run "s3: list $TAOBOT_TEST_S3_BUCKET with the admin key" s3_list
  s3_ro_write() { # the read-only identity must get AccessDenied on PUT
    local out
    if out=$(echo x | curl -sS --fail-with-body --max-time 20 --aws-sigv4 "aws:amz:$TAOBOT_TEST_S3_REGION:s3" \
        --user "$TAOBOT_TEST_S3_RO_ACCESS_KEY:$TAOBOT_TEST_S3_RO_SECRET_KEY" -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' \
        -T - "$TAOBOT_TEST_S3_ENDPOINT/$TAOBOT_TEST_S3_BUCKET/check-ro-write.txt" 2>&1); then echo "PUT succeeded: $out"; return 1; fi
    case $out in *AccessDenied*) return 0 ;; *) echo "$out"; return 1 ;; esac
  }
  run "s3: read-only key cannot write (AccessDenied)" s3_ro_write
fi

echo "check: $PASS ok, $FAIL failed"
[ "$FAIL" = 0 ]
