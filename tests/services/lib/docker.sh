# shellcheck shell=bash
# docker.sh - a private dockerd (Debian docker.io) on a unix socket in $SVC_DIR/docker, no iptables, no bridge,
# vfs storage, and a busybox image made locally with `docker import` (no registry).

DK_DIR=$SVC_DIR/docker
DK_SOCK=$DK_DIR/docker.sock
DK_HOST=unix://$DK_SOCK

docker_packages() { echo docker.io busybox-static debootstrap; }

_dk() { docker -H "$DK_HOST" "$@"; }

docker_start() {
  local t0
  install -d -m 0755 "$DK_DIR" "$DK_DIR/data" "$DK_DIR/exec"
  echo '{}' | write_if_changed "$DK_DIR/daemon.json" 0644 || true   # ignore /etc/docker/daemon.json
  if ! running "$DK_DIR/dockerd.pid" /usr/sbin/dockerd; then
    rm -f "$DK_SOCK" "$DK_DIR/dockerd.pid"
    t0=$(now_ms)
    setsid -f /usr/sbin/dockerd --config-file "$DK_DIR/daemon.json" --host "$DK_HOST" \
      --data-root "$DK_DIR/data" --exec-root "$DK_DIR/exec" --pidfile "$DK_DIR/dockerd.pid" \
      --iptables=false --ip6tables=false --ip-masq=false --bridge=none --storage-driver=vfs \
      --log-level=warn </dev/null >"$DK_DIR/dockerd.log" 2>&1
    wait_for 60 "dockerd on $DK_HOST" "$DK_DIR/dockerd.log" _dk version
    wait_for 10 "dockerd pid file" "$DK_DIR/dockerd.log" running "$DK_DIR/dockerd.pid" /usr/sbin/dockerd
    log "dockerd started on $DK_HOST (pid $(cat "$DK_DIR/dockerd.pid")) in $(secs "$t0" "$(now_ms)")s"
  fi
  _dk version >/dev/null 2>&1 || die "dockerd not answering on $DK_HOST" "$DK_DIR/dockerd.log"
  if ! _dk image inspect "$DOCKER_IMAGE" >/dev/null 2>&1; then
    t0=$(now_ms)
    local r=$DK_DIR/rootfs a
    rm -rf "$r"; mkdir -p "$r/bin" "$r/tmp" "$r/etc" "$r/proc" "$r/sys" "$r/dev" "$r/root"
    chmod 1777 "$r/tmp"
    cp /bin/busybox "$r/bin/busybox"
    for a in $("$r/bin/busybox" --list); do [ "$a" = busybox ] || ln -sf busybox "$r/bin/$a"; done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$r/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' > "$r/etc/group"
    tar -C "$r" --numeric-owner -c . | _dk import -c 'ENV PATH=/bin' -c 'CMD ["/bin/sh"]' - "$DOCKER_IMAGE" >/dev/null \
      || die "docker import of $DOCKER_IMAGE failed" "$DK_DIR/dockerd.log"
    rm -rf "$r"
    log "image $DOCKER_IMAGE imported in $(secs "$t0" "$(now_ms)")s"
  fi
  env_fragment docker <<EOF
TAOBOT_TEST_DOCKER_HOST=$DK_HOST
TAOBOT_TEST_DOCKER_IMAGE=$DOCKER_IMAGE
EOF
}

docker_pids() { echo "dockerd $DK_DIR/dockerd.pid /usr/sbin/dockerd"; }

docker_stop() {
  rm -f "$SVC_DIR/env.d/docker.env"
  local p ids
  if p=$(pid_of "$DK_DIR/dockerd.pid" /usr/sbin/dockerd); then
    ids=$(_dk ps -q 2>/dev/null | xargs || true)
    [ -n "$ids" ] && { log "killing containers: $ids"; _dk kill $ids >/dev/null 2>&1 || true; }
    kill_wait "$p" dockerd 30     # dockerd stops the containerd it started
  fi
  rm -f "$DK_DIR/dockerd.pid"
  local n=$DK_DIR/exec/netns/default
  if mountpoint -q "$n" 2>/dev/null; then umount "$n" || true; fi
  return 0
}

docker_purge() {
  # vfs layers and container state; unmount anything still mounted below the dir first
  local m
  for m in $(awk -v d="$DK_DIR/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r); do umount "$m" 2>/dev/null || umount -l "$m" || true; done
  rm -rf "$DK_DIR"
}
