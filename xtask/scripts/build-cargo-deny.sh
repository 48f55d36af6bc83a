#!/usr/bin/env bash
# Builds cargo-deny from crates.io and caches it by version outside the clone (like helm), for
# `cargo xtask deps`. Idempotent: returns at once when cached.
#
# Usage: build-cargo-deny.sh   (CARGO_DENY_VERSION and the cache root come from the environment)
set -euo pipefail

CARGO_DENY_VERSION=${CARGO_DENY_VERSION:-0.20.2}
CACHE=${LMCACHE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lmcache-operator}
out="$CACHE/cargo-deny-$CARGO_DENY_VERSION"
[ -x "$out/bin/cargo-deny" ] && exit 0

printf '[deps] building cargo-deny %s (about 6 min on 2 cores)\n' "$CARGO_DENY_VERSION" >&2
# Its own target dir, removed afterwards: only the binary is kept.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
CARGO_TARGET_DIR="$work" cargo install --locked --quiet --root "$out.partial" \
    cargo-deny --version "$CARGO_DENY_VERSION"
rm -rf "$out"
mv "$out.partial" "$out"
"$out/bin/cargo-deny" --version >&2
