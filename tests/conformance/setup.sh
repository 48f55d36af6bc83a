#!/usr/bin/env bash
# Creates, or reuses, the conformance venv for one (lmcache, vllm) pair and prints its python
# on the last line of stdout:
#
#   tests/conformance/setup.sh [--lmcache 0.5.6] [--vllm 0.33.0]
#
# Wheels and venvs live outside the repository, in
# ${LMCACHE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lmcache-operator}/conformance/.
# Every package is installed from requirements.txt (plus lmcache/vllm) with --no-deps, so
# torch, CUDA and nvidia-* never arrive. A venv is reused while its stamp (versions,
# requirements.txt, this script, interpreter) matches; otherwise it is rebuilt from the
# cached wheels, downloading from PyPI only what the cache lacks. Interpreter: $PYTHON,
# default python3.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
lmcache=0.5.6
vllm=0.33.0
while [ $# -gt 0 ]; do
  case $1 in
    --lmcache) lmcache=$2; shift 2 ;;
    --vllm) vllm=$2; shift 2 ;;
    -h | --help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

python=${PYTHON:-python3}
cache=${LMCACHE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lmcache-operator}/conformance
venv=$cache/venv-lmcache-$lmcache-vllm-$vllm
wheels=$cache/wheels
stamp=$({ echo "lmcache==$lmcache vllm==$vllm"; "$python" -c 'import sys; print(sys.version)'; cat "$here/requirements.txt" "$here/setup.sh"; } | sha256sum | cut -d' ' -f1)

current() { [ -f "$venv/.stamp" ] && [ "$(cat "$venv/.stamp")" = "$stamp" ]; }

if current; then
  echo "$venv/bin/python"
  exit 0
fi

mkdir -p "$cache" "$wheels"
exec 9>"$cache/.lock"
flock 9 # another setup.sh may be building the same venv
if current; then
  echo "$venv/bin/python"
  exit 0
fi

export PIP_DISABLE_PIP_VERSION_CHECK=1
pins=$(mktemp)
trap 'rm -f "$pins"' EXIT
{ grep -v '^\s*#' "$here/requirements.txt"; echo "lmcache==$lmcache"; echo "vllm==$vllm"; } >"$pins"

echo "setup.sh: building $venv" >&2
rm -rf "$venv"
"$python" -m venv "$venv"
# --no-compile: byte-compiling all of vLLM at install time costs a minute; Python compiles
# (and caches) only what the suite imports, on its first run.
pip=("$venv/bin/python" -m pip --quiet)
if ! "${pip[@]}" install --no-compile --no-deps --no-index --find-links "$wheels" -r "$pins" 2>/dev/null; then
  echo "setup.sh: downloading missing wheels into $wheels" >&2
  "${pip[@]}" download --no-deps --only-binary=:all: --dest "$wheels" -r "$pins" >&2
  "${pip[@]}" install --no-compile --no-deps --no-index --find-links "$wheels" -r "$pins" >&2
fi

forbidden=$("${pip[@]}" list --format=freeze | grep -iE '^(torch|triton|nvidia-|cuda-)' || true)
if [ -n "$forbidden" ]; then
  echo "setup.sh: refusing a venv with $forbidden" >&2
  exit 1
fi
# Import everything once with bytecode writing on (even under PYTHONDONTWRITEBYTECODE):
# later runs then load cached bytecode, and a venv that cannot import is never stamped.
env -u PYTHONDONTWRITEBYTECODE "$venv/bin/python" "$here/check.py" --warm-up >&2
echo "$stamp" >"$venv/.stamp"
echo "$venv/bin/python"
