#!/usr/bin/env bash
# Builds helm from the Go module proxy and caches it by version outside the clone (like the
# control plane), for `cargo xtask chart`. Idempotent: returns at once when cached.
#
# Usage: build-helm.sh   (HELM_VERSION, K8S_VERSION and the cache root come from the environment)
set -euo pipefail

HELM_VERSION=${HELM_VERSION:-v3.22.0}
K8S_VERSION=${K8S_VERSION:-v1.35.4}
CACHE=${LMCACHE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lmcache-operator}
out="$CACHE/helm-$HELM_VERSION"
[ -x "$out/helm" ] && exit 0

export CGO_ENABLED=0 GOFLAGS=-buildvcs=false
minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
v=helm.sh/helm/v3
# Helm's default Kubernetes version (what `helm template` assumes without a cluster) is the
# local control plane's, as in helm's own Makefile.
ldf="-s -w -X $v/internal/version.version=$HELM_VERSION"
ldf="$ldf -X $v/pkg/chartutil.k8sVersionMajor=1 -X $v/pkg/chartutil.k8sVersionMinor=$minor"
ldf="$ldf -X $v/pkg/lint/rules.k8sVersionMajor=1 -X $v/pkg/lint/rules.k8sVersionMinor=$minor"
printf '[helm] building helm %s (about 3 min on 2 cores)\n' "$HELM_VERSION" >&2
mkdir -p "$out"
GOBIN="$out" go install -trimpath -ldflags "$ldf" "$v/cmd/helm@$HELM_VERSION"
"$out/helm" version >&2
