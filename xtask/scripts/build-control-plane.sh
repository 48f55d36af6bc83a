#!/usr/bin/env bash
# Builds the local control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kwok) from the Go module proxy and caches it by version outside the
# clone, so fresh clones and CI reuse it. Idempotent: finished components are skipped.
#
# Usage: build-control-plane.sh   (versions and cache root come from the environment)
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.35.4}
ETCD_VERSION=${ETCD_VERSION:-v3.6.14}
KWOK_VERSION=${KWOK_VERSION:-v0.8.0}
CACHE=${LMCACHE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lmcache-operator}
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false

log() { printf '[control-plane] %s\n' "$*" >&2; }

K8S_TOOLS="kube-apiserver kube-controller-manager kube-scheduler kubectl"

k8s_tool_pkg() {
  case "$1" in
    kubectl) echo "k8s.io/kubernetes/cmd/kubectl" ;;
    *) echo "k8s.io/kubernetes/cmd/$1" ;;
  esac
}

build_k8s() {
  local out="$CACHE/k8s-$K8S_VERSION"
  # Cache check per binary: a cache built before a tool was added only builds the new one.
  local missing="" t
  for t in $K8S_TOOLS; do [ -x "$out/bin/$t" ] || missing="$missing $t"; done
  [ -z "$missing" ] && return 0
  log "building Kubernetes $K8S_VERSION:$missing (first build: 8-40 min on 2 cores)"
  local minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  local sver="v0.${K8S_VERSION#v1.}"
  mkdir -p "$out/mod" "$out/bin"
  cd "$out/mod"
  # Regenerate the wrapper only when it lacks a tool (tidy is then cheap on a warm GOMODCACHE).
  local regen=0
  for t in $K8S_TOOLS; do grep -qF "	$(k8s_tool_pkg "$t")" go.mod 2>/dev/null || regen=1; done
  if [ "$regen" = 1 ]; then
    rm -f go.mod go.sum
    # Staging modules are `replace`d to ./staging in k8s.io/kubernetes' go.mod, which only
    # works in the main module; a wrapper module pins each to its published v0.Y.Z tag.
    local kgomod
    kgomod=$(cd "$(mktemp -d)" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" \
      | python3 -c 'import json,sys;print(json.load(sys.stdin)["GoMod"])')
    {
      echo "module local.invalid/k8sbins"; echo
      grep -m1 -E '^go ' "$kgomod"
      grep -m1 -E '^godebug ' "$kgomod" || true
      echo; echo "require k8s.io/kubernetes $K8S_VERSION"; echo
      echo "replace ("
      sed -nE 's/^[[:space:]]*(replace[[:space:]]+)?(k8s\.io\/[A-Za-z0-9._-]+)[[:space:]]+=>[[:space:]]+\.\/staging\/.*/\2/p' "$kgomod" \
        | sort -u | while read -r m; do echo "	$m => $m $sver"; done
      echo ")"; echo
      echo "tool ("
      for t in $K8S_TOOLS; do echo "	$(k8s_tool_pkg "$t")"; done
      echo ")"
    } > go.mod
    log "go mod tidy (downloads about 1 GB of modules on a cold cache)"
    go mod tidy
  fi
  local v=k8s.io/component-base/version cv=k8s.io/client-go/pkg/version
  local ldf="-s -w -X $v.gitVersion=$K8S_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean"
  ldf="$ldf -X $v.buildDate=1970-01-01T00:00:00Z -X $cv.gitVersion=$K8S_VERSION -X $cv.gitMajor=1 -X $cv.gitMinor=$minor"
  local pkgs=""
  for t in $missing; do pkgs="$pkgs $(k8s_tool_pkg "$t")"; done
  log "go build$missing"
  # shellcheck disable=SC2086
  go build -trimpath -ldflags "$ldf" -o "$out/bin/" $pkgs
  "$out/bin/kube-apiserver" --version >&2
}

build_etcd() {
  local out="$CACHE/etcd-$ETCD_VERSION"
  [ -x "$out/etcd" ] && return 0
  log "building etcd $ETCD_VERSION"
  mkdir -p "$out"; cd "$out"; rm -f go.mod go.sum
  # Separate wrapper: sharing one with Kubernetes would let MVS mix dependency versions.
  printf 'module local.invalid/etcdbin\n\ngo 1.25.0\n\nrequire go.etcd.io/etcd/server/v3 %s\n\ntool go.etcd.io/etcd/server/v3\n' "$ETCD_VERSION" > go.mod
  go mod tidy
  go build -trimpath -ldflags "-s -w" -o ./etcd go.etcd.io/etcd/server/v3
  ./etcd --version >&2
}

build_kwok() {
  local out="$CACHE/kwok-$KWOK_VERSION"
  if [ ! -x "$out/bin/kwok" ]; then
    log "building kwok $KWOK_VERSION"
    mkdir -p "$out/bin"
    GOBIN="$out/bin" go install "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  fi
  if [ ! -s "$out/stages.yaml" ]; then
    # Standalone kwok needs Stage objects; they ship inside the kwok module.
    local dir
    dir=$(cd "$(mktemp -d)" && go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" \
      | python3 -c 'import json,sys;print(json.load(sys.stdin)["Dir"])')
    local f
    for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
             pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
      cat "$dir/kustomize/stage/$f"; echo "---"
    done > "$out/stages.yaml.tmp"
    mv "$out/stages.yaml.tmp" "$out/stages.yaml"
  fi
}

build_etcd
build_kwok
build_k8s
log "ready in $CACHE"
