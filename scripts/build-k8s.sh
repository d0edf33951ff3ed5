#!/usr/bin/env bash
# Builds the dev-cluster binaries (kube-apiserver, kube-controller-manager, kube-scheduler,
# kubectl, kubelet, kube-proxy, etcd, kwok, helm, coredns, netprobe) from the pinned tools
# modules in tools/*/ with the machine's Go,
# into $ANSFLOW_CACHE_DIR/k8s-bin/<version-key>/. Skips the work when that directory is
# complete. Prints per-component timings and peak memory to stderr, the directory to stdout.
#
#   scripts/build-k8s.sh            build if missing, print the binaries' directory
#   scripts/build-k8s.sh --dir      only print the directory the current pins build into
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${ANSFLOW_CACHE_DIR:-$HOME/.cache/ansflow}"
TOOLS="$ROOT/tools"

if ! command -v go >/dev/null 2>&1; then
  for cand in /usr/local/go/bin "$HOME/go/bin/go-dist/bin" "$HOME/sdk/go/bin"; do
    if [ -x "$cand/go" ]; then PATH="$cand:$PATH"; break; fi
  done
fi
if ! command -v go >/dev/null 2>&1; then
  echo "build-k8s: no 'go' command found (need Go >= 1.26 on PATH, e.g. in /usr/local/go/bin)" >&2
  exit 2
fi

export GOWORK=off CGO_ENABLED=0 GOFLAGS="-trimpath -buildvcs=false"

modver() {  # modver DIR MODULE: the version of MODULE required in tools/DIR/go.mod
  sed -n "s#^[[:space:]]*\(require[[:space:]]\+\)\?$2 \(v[^ ]*\).*#\2#p" "$TOOLS/$1/go.mod" | head -1
}
K8S_VERSION=$(modver k8s k8s.io/kubernetes)
ETCD_VERSION=$(modver etcd go.etcd.io/etcd/server/v3)
KWOK_VERSION=$(modver kwok sigs.k8s.io/kwok)
HELM_VERSION=$(modver helm helm.sh/helm/v3)
COREDNS_VERSION=$(modver coredns github.com/coredns/coredns)
GO_VERSION=$(go env GOVERSION)
PINS_SUM=$(cat "$TOOLS"/{k8s,etcd,kwok,helm,coredns}/go.{mod,sum} "$TOOLS"/netprobe/go.mod \
  "$TOOLS"/{coredns,netprobe}/main.go | sha256sum | cut -c1-10)
KEY="k8s-$K8S_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION-helm-$HELM_VERSION"
KEY+="-coredns-$COREDNS_VERSION-$GO_VERSION-$PINS_SUM"
DEST="$CACHE/k8s-bin/$KEY"
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy etcd
  kwok helm coredns netprobe)

if [ "${1:-}" = "--dir" ]; then echo "$DEST"; exit 0; fi

complete() {
  [ -f "$DEST/.complete" ] || return 1
  for b in "${BINARIES[@]}"; do [ -x "$DEST/$b" ] || return 1; done
}
if complete; then
  echo "build-k8s: binaries present in $DEST" >&2
  echo "$DEST"
  exit 0
fi

mkdir -p "$CACHE/k8s-bin"
WORK="$DEST.partial.$$"
rm -rf "$WORK"
mkdir -p "$WORK"
trap 'rm -rf "$WORK"' EXIT
TIMES="$WORK/.build-times"

step() {  # step NAME DIR OUT LDFLAGS PACKAGE...: go build -o OUT, recording time and peak RSS
  local name=$1 dir=$2 out=$3 ldflags=$4
  shift 4
  echo "build-k8s: building $name ..." >&2
  local start=$SECONDS
  local timer=()
  [ -x /usr/bin/time ] && timer=(/usr/bin/time -f "%M" -o "$WORK/.rss-$name")
  (cd "$TOOLS/$dir" && nice -n 10 "${timer[@]}" go build -p 2 -ldflags "$ldflags" -o "$out" "$@")
  local rss="?"
  [ -f "$WORK/.rss-$name" ] && rss="$(( $(tail -1 "$WORK/.rss-$name") / 1024 )) MiB"
  echo "$name: $((SECONDS - start)) s, peak RSS of one process $rss" | tee -a "$TIMES" >&2
}

total_start=$SECONDS
kmaj=${K8S_VERSION#v}; kmaj=${kmaj%%.*}
kmin=${K8S_VERSION#v*.}; kmin=${kmin%%.*}
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
V="-X k8s.io/component-base/version"
C="-X k8s.io/client-go/pkg/version"
K8S_LDFLAGS="-s -w $V.gitVersion=$K8S_VERSION $V.gitMajor=$kmaj $V.gitMinor=$kmin"
K8S_LDFLAGS+=" $V.gitTreeState=clean $V.buildDate=$now"
K8S_LDFLAGS+=" $C.gitVersion=$K8S_VERSION $C.gitMajor=$kmaj $C.gitMinor=$kmin"
K8S_LDFLAGS+=" $C.gitTreeState=clean $C.buildDate=$now"
step kubernetes k8s "$WORK/" "$K8S_LDFLAGS" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl k8s.io/kubernetes/cmd/kubelet \
  k8s.io/kubernetes/cmd/kube-proxy
step etcd etcd "$WORK/etcd" "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$ETCD_VERSION" \
  go.etcd.io/etcd/server/v3
step kwok kwok "$WORK/kwok" "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v}" sigs.k8s.io/kwok/cmd/kwok
step helm helm "$WORK/helm" "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" helm.sh/helm/v3/cmd/helm
# CoreDNS with only the plugins the real node's cluster DNS uses (tools/coredns/main.go).
step coredns coredns "$WORK/coredns" "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION" .
step netprobe netprobe "$WORK/netprobe" "-s -w" .
echo "total: $((SECONDS - total_start)) s" | tee -a "$TIMES" >&2

for b in "${BINARIES[@]}"; do
  [ -x "$WORK/$b" ] || { echo "build-k8s: $b was not produced" >&2; exit 1; }
done
rm -f "$WORK"/.rss-*
printf 'kubernetes=%s\netcd=%s\nkwok=%s\nhelm=%s\ncoredns=%s\ngo=%s\n' "$K8S_VERSION" \
  "$ETCD_VERSION" "$KWOK_VERSION" "$HELM_VERSION" "$COREDNS_VERSION" "$GO_VERSION" > "$WORK/VERSIONS"
touch "$WORK/.complete"
rm -rf "$DEST"
mv "$WORK" "$DEST"
trap - EXIT
echo "build-k8s: built into $DEST ($(du -sh "$DEST" | cut -f1))" >&2
echo "$DEST"
