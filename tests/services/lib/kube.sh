# shellcheck shell=bash
# kube.sh - etcd (Debian etcd-server) + a real kube-apiserver (RBAC, static bearer tokens) + kube-controller-manager
# (job, garbagecollector, namespace, ttl-after-finished and the persistent volume controllers:
# persistentvolume-binder, pv-protection, pvc-protection; the TTLAfterFinished feature gate on).
# No kubelet/scheduler: Pods stay Pending unless a test plays kubelet.
# kube-apiserver / kube-controller-manager v1.20.2 are built once from Debian bookworm's `kubernetes` source
# package (vendored Go deps, no Go proxy; ~4-5 min on 2 cores) and cached in $KUBE_BIN_DIR.

KB_DIR=$SVC_DIR/kube
KB_PKI=$KB_DIR/pki
KB_URL=https://127.0.0.1:$KUBE_PORT
ETCD_URL=http://127.0.0.1:$ETCD_PORT

# bump KUBE_RECIPE when the build recipe changes: cached binaries from another recipe are rebuilt
KUBE_RECIPE="kubernetes-1.20.2 debian-bookworm-source reflect2-go118-patch"
kube_have_bins() {
  [ -x "$KUBE_BIN_DIR/kube-apiserver" ] && [ -x "$KUBE_BIN_DIR/kube-controller-manager" ] &&
    [ "$(cat "$KUBE_BIN_DIR/RECIPE" 2>/dev/null)" = "$KUBE_RECIPE" ]
}

kube_packages() {
  echo etcd-server openssl curl
  kube_have_bins || echo golang-go dpkg-dev make patch
}

# kube_build: build the two binaries into $KUBE_BIN_DIR unless they are there (serialised by a lock)
kube_build() {
  install -d -m 0755 "$CACHE_DIR"
  exec 8>"$CACHE_DIR/kube-build.lock"
  flock -w 1200 8 || die "could not lock $CACHE_DIR/kube-build.lock"
  if kube_have_bins; then exec 8>&-; return 0; fi
  local W=$CACHE_DIR/kube-build t0 blog=$CACHE_DIR/kube-build.log
  t0=$(now_ms)
  log "building kube-apiserver + kube-controller-manager from Debian's kubernetes source (one time, ~4-5 min; log: $blog)"
  rm -rf "$W"; mkdir -p "$W/aptsrc/lists/partial" "$W/src"
  : > "$blog"
  # deb-src entries derived from this machine's own apt sources, kept private to this build (-o options)
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources > "$W/aptsrc/debian-src.sources"
  elif [ -f /etc/apt/sources.list ]; then
    sed -n 's/^deb \(.*\)$/deb-src \1/p' /etc/apt/sources.list > "$W/aptsrc/debian-src.list"
  else
    die "no Debian apt sources found to derive deb-src entries from"
  fi
  local APTO=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$W/aptsrc" -o "Dir::State::Lists=$W/aptsrc/lists"
              -o DPkg::Lock::Timeout=600)
  apt-get "${APTO[@]}" update -qq >>"$blog" 2>&1 || die "apt-get update (deb-src) failed" "$blog"
  (cd "$W/src" && apt-get "${APTO[@]}" source --download-only kubernetes >>"$blog" 2>&1) || die "apt-get source kubernetes failed" "$blog"
  local dsc; dsc=$(ls "$W"/src/kubernetes_*.dsc 2>/dev/null | head -n1)
  [ -n "$dsc" ] || die "kubernetes .dsc not downloaded" "$blog"
  (cd "$W/src" && dpkg-source -x "$dsc" k8s >>"$blog" 2>&1) || die "dpkg-source -x failed" "$blog"
  # Go 1.18+ fix for the vendored modern-go/reflect2 v1.0.1 (see the patch header)
  (cd "$W/src/k8s" && patch -p1 --forward < "$SERVICES_HOME/lib/kube-reflect2-go118.patch" >>"$blog" 2>&1) \
    || die "applying kube-reflect2-go118.patch failed" "$blog"
  log "kube source unpacked and patched ($(basename "$dsc")) in $(secs "$t0" "$(now_ms)")s; compiling"
  # k8s 1.20 builds in GOPATH mode through its own make targets (module mode fails with Debian's go 1.19)
  (
    cd "$W/src/k8s"
    mkdir -p .go/src/k8s.io && ln -sfn ../../.. .go/src/k8s.io/kubernetes
    unset GOFLAGS GO111MODULE GOROOT
    export GOPATH=$PWD/.go CGO_ENABLED=0 GOPROXY=off GOCACHE=$W/gocache HOME=$W/gohome
    export KUBE_GIT_VERSION=v1.20.2 KUBE_GIT_TREE_STATE=clean KUBE_GIT_COMMIT=faecb196815e248d3ecfb03c680a4507229c2a56
    mkdir -p "$HOME"
    make WHAT="cmd/kube-apiserver cmd/kube-controller-manager" >>"$blog" 2>&1
  ) || die "kube build failed" "$blog"
  rm -rf "$KUBE_BIN_DIR.tmp"; mkdir -p "$KUBE_BIN_DIR.tmp"
  cp "$W/src/k8s/_output/bin/kube-apiserver" "$W/src/k8s/_output/bin/kube-controller-manager" "$KUBE_BIN_DIR.tmp/"
  "$KUBE_BIN_DIR.tmp/kube-apiserver" --version >>"$blog" 2>&1 || die "built kube-apiserver does not run" "$blog"
  echo "$KUBE_RECIPE" > "$KUBE_BIN_DIR.tmp/RECIPE"
  # daemons still running from older binaries are stopped before those are replaced
  stop_pidfile "$KB_DIR/kcm.pid" "$KUBE_BIN_DIR/kube-controller-manager" "kube-controller-manager (old binary)"
  stop_pidfile "$KB_DIR/apiserver.pid" "$KUBE_BIN_DIR/kube-apiserver" "kube-apiserver (old binary)"
  rm -rf "$KUBE_BIN_DIR"; mv "$KUBE_BIN_DIR.tmp" "$KUBE_BIN_DIR"
  rm -rf "$W"     # source tree + go cache are large; only the binaries are kept
  log "kube binaries built in $(secs "$t0" "$(now_ms)")s: $("$KUBE_BIN_DIR/kube-apiserver" --version)"
  exec 8>&-
}

_kube_pki() {
  install -d -m 0755 "$KB_PKI"
  [ -f "$KB_PKI/ca.crt" ] && [ -f "$KB_PKI/sa.pub" ] && [ -f "$KB_PKI/apiserver.crt" ] || (
    cd "$KB_PKI"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 -subj "/CN=taobot-test-ca" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj "/CN=kube-apiserver" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n' > ext.cnf
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out apiserver.crt -days 3650 -extfile ext.cnf 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null; openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  ) || die "kube PKI generation failed"
  # static bearer tokens: token,user,uid,"groups"
  printf 'admin-token,admin,1,"system:masters"\nbot-token,tao-bot,2,"tao-bots"\n' | write_if_changed "$KB_PKI/tokens.csv" 0600 || true
  local u
  for u in admin bot; do
    write_if_changed "$KB_DIR/$u.kubeconfig" 0644 <<EOF || true
apiVersion: v1
kind: Config
clusters:
- name: taobot-test
  cluster:
    server: "$KB_URL"
    certificate-authority: "$KB_PKI/ca.crt"
users:
- name: $u
  user:
    token: "$u-token"
contexts:
- name: $u@taobot-test
  context:
    cluster: taobot-test
    user: $u
    namespace: default
current-context: $u@taobot-test
EOF
  done
}

_kube_ready() { [ "$(curl -s --max-time 2 --cacert "$KB_PKI/ca.crt" -H 'Authorization: Bearer admin-token' "$KB_URL/readyz")" = ok ]; }

kube_start() {
  local t0 apiserver=$KUBE_BIN_DIR/kube-apiserver kcm=$KUBE_BIN_DIR/kube-controller-manager etcd_bin
  kube_build
  etcd_bin=$(command -v etcd) || die "etcd not installed"
  install -d -m 0755 "$KB_DIR" "$KB_DIR/etcd"
  _kube_pki
  if ! running "$KB_DIR/etcd/etcd.pid" "$etcd_bin"; then
    require_port_free "$ETCD_PORT" etcd; require_port_free "$ETCD_PEER_PORT" "etcd peer"
    # a fresh, empty cluster state on every (re)start of etcd; the apiserver must follow it
    stop_pidfile "$KB_DIR/kcm.pid" "$kcm" kube-controller-manager
    stop_pidfile "$KB_DIR/apiserver.pid" "$apiserver" kube-apiserver
    rm -rf "$KB_DIR/etcd/data"
    t0=$(now_ms)
    spawn "$KB_DIR/etcd/etcd.pid" "$KB_DIR/etcd/etcd.log" "$etcd_bin" --name taobot-test --data-dir "$KB_DIR/etcd/data" \
      --listen-client-urls "$ETCD_URL" --advertise-client-urls "$ETCD_URL" \
      --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
      --initial-cluster "taobot-test=http://127.0.0.1:$ETCD_PEER_PORT" --unsafe-no-fsync --quota-backend-bytes=536870912
    WAIT_PID=$(cat "$KB_DIR/etcd/etcd.pid") wait_for 30 "etcd on $ETCD_URL" "$KB_DIR/etcd/etcd.log" curl -sf --max-time 2 "$ETCD_URL/health"
    local p; p=$(cat "$KB_DIR/etcd/etcd.pid")
    log "etcd started on $ETCD_URL (pid $p) in $(secs "$t0" "$(now_ms)")s"
  fi
  if ! running "$KB_DIR/apiserver.pid" "$apiserver"; then
    require_port_free "$KUBE_PORT" kube-apiserver
    t0=$(now_ms)
    spawn "$KB_DIR/apiserver.pid" "$KB_DIR/apiserver.log" "$apiserver" \
      --etcd-servers="$ETCD_URL" \
      --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$KUBE_PORT" --insecure-port=0 \
      --tls-cert-file="$KB_PKI/apiserver.crt" --tls-private-key-file="$KB_PKI/apiserver.key" --client-ca-file="$KB_PKI/ca.crt" \
      --token-auth-file="$KB_PKI/tokens.csv" --authorization-mode=RBAC \
      --service-account-issuer=https://kubernetes.default.svc --service-account-key-file="$KB_PKI/sa.pub" \
      --service-account-signing-key-file="$KB_PKI/sa.key" --api-audiences=https://kubernetes.default.svc \
      --service-cluster-ip-range=10.96.0.0/16 --allow-privileged=true \
      --disable-admission-plugins=ServiceAccount --feature-gates=TTLAfterFinished=true \
      --cert-dir="$KB_DIR/certdir" --v=1
    WAIT_PID=$(cat "$KB_DIR/apiserver.pid") wait_for 120 "kube-apiserver /readyz on $KB_URL" "$KB_DIR/apiserver.log" _kube_ready
    log "kube-apiserver started on $KB_URL (pid $(cat "$KB_DIR/apiserver.pid")) in $(secs "$t0" "$(now_ms)")s"
  fi
  _kube_ready || die "kube-apiserver not ready on $KB_URL" "$KB_DIR/apiserver.log"
  if ! running "$KB_DIR/kcm.pid" "$kcm"; then
    t0=$(now_ms)
    spawn "$KB_DIR/kcm.pid" "$KB_DIR/kcm.log" "$kcm" --kubeconfig="$KB_DIR/admin.kubeconfig" --leader-elect=false \
      --controllers=job,garbagecollector,namespace,ttl-after-finished,persistentvolume-binder,pv-protection,pvc-protection --feature-gates=TTLAfterFinished=true \
      --use-service-account-credentials=false \
      --secure-port=0 --port=0 --v=1
    WAIT_PID=$(cat "$KB_DIR/kcm.pid") wait_for 60 "kube-controller-manager job controller" "$KB_DIR/kcm.log" grep -q 'Started "job"' "$KB_DIR/kcm.log"
    log "kube-controller-manager started (pid $(cat "$KB_DIR/kcm.pid")) in $(secs "$t0" "$(now_ms)")s"
  fi
  env_fragment kube <<EOF
TAOBOT_TEST_KUBE_API=$KB_URL
TAOBOT_TEST_KUBE_CA=$KB_PKI/ca.crt
TAOBOT_TEST_KUBECONFIG_ADMIN=$KB_DIR/admin.kubeconfig
TAOBOT_TEST_KUBECONFIG_BOT=$KB_DIR/bot.kubeconfig
TAOBOT_TEST_KUBE_ADMIN_TOKEN=admin-token
TAOBOT_TEST_KUBE_BOT_TOKEN=bot-token
TAOBOT_TEST_KUBE_BOT_USER=tao-bot
TAOBOT_TEST_KUBE_CONTROLLERS=job,garbagecollector,namespace,ttl-after-finished,persistentvolume-binder,pv-protection,pvc-protection
TAOBOT_TEST_ETCD_URL=$ETCD_URL
EOF
}

kube_pids() {
  cat <<EOF
etcd $KB_DIR/etcd/etcd.pid $(command -v etcd || echo /usr/bin/etcd)
kube-apiserver $KB_DIR/apiserver.pid $KUBE_BIN_DIR/kube-apiserver
kube-controller-manager $KB_DIR/kcm.pid $KUBE_BIN_DIR/kube-controller-manager
EOF
}

kube_stop() {
  rm -f "$SVC_DIR/env.d/kube.env"
  stop_pidfile "$KB_DIR/kcm.pid" "$KUBE_BIN_DIR/kube-controller-manager" kube-controller-manager
  stop_pidfile "$KB_DIR/apiserver.pid" "$KUBE_BIN_DIR/kube-apiserver" kube-apiserver
  stop_pidfile "$KB_DIR/etcd/etcd.pid" "$(command -v etcd || echo /usr/bin/etcd)" etcd
}

kube_purge() { rm -rf "$KB_DIR"; }
