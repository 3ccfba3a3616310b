#!/usr/bin/env bash
# Bootstrap the carla_rl workspace: .venv with ROS 2 Kilted wheels + colcon + torch + the rest
# (requirements.txt, pinned by requirements-lock.txt), the CMake path fix, then colcon build.
# Idempotent and incremental: pip runs only when the requirements changed; colcon rebuilds only what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=$ROOT/.venv
STAMPS=$VENV/.carla_rl_stamps
MIN_FREE_GB=${CARLA_RL_MIN_FREE_GB:-6}

die() { echo "bootstrap: error: $*" >&2; exit 1; }
say() { echo "bootstrap: $*"; }

# --- the machine ------------------------------------------------------------------------------
PYTHON=${PYTHON:-}
if [ -z "$PYTHON" ]; then
  for candidate in python3.11 python3.12 python3.13 python3.10 python3.14 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then PYTHON=$(command -v "$candidate"); break; fi
  done
fi
[ -n "$PYTHON" ] || die "no python3 found; install Python 3.10-3.14 (Debian: apt-get install python3 python3-venv)"
PYVER=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
case "$PYVER" in
  3.10|3.11|3.12|3.13|3.14) ;;
  *) die "Python $PYVER at $PYTHON is not supported: the ROS 2 Kilted wheels exist for CPython 3.10-3.14 (set PYTHON=/path/to/python3.11)";;
esac
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || die "Python $PYVER lacks venv/ensurepip (Debian: apt-get install python3-venv)"
for tool in cmake:cmake g++:g++ make:make; do
  cmd=${tool%%:*}; pkg=${tool##*:}
  command -v "$cmd" >/dev/null 2>&1 || die "'$cmd' is missing; it builds the interfaces package (Debian: apt-get install $pkg)"
done

# pip can hide a refused connection behind "ResolutionImpossible": ask the index directly.
# Prints "<url>: <reason>" when the package index cannot be reached, nothing otherwise.
registry_unreachable() {
  "$VENV/bin/python" - <<'PY' 2>/dev/null
import os, subprocess, sys, urllib.request
url = os.environ.get("PIP_INDEX_URL")
if not url:
    out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
    urls = [line.split("=", 1)[1].strip("'\"") for line in out.splitlines() if line.split("=", 1)[0].rsplit(".", 1)[-1] == "index-url"]
    url = urls[0] if urls else "https://pypi.org/simple"
try:
    urllib.request.urlopen(url.rstrip("/") + "/ros-rclpy/", timeout=15).read(1)
except Exception as exc:
    print(f"{url}: {getattr(exc, 'reason', exc)}")
PY
}

free_gb() { df -Pk "$ROOT" | awk 'NR==2 {print int($4 / 1048576)}'; }

# --- the venv -----------------------------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  [ "$(free_gb)" -ge "$MIN_FREE_GB" ] || die "only $(free_gb) GB free on $(df -P "$ROOT" | awk 'NR==2 {print $6}'); the venv needs about $MIN_FREE_GB GB"
  say "creating $VENV with $PYTHON ($PYVER)"
  "$PYTHON" -m venv "$VENV" || die "could not create the venv (disk full? Debian: apt-get install python3-venv)"
fi
mkdir -p "$STAMPS"
REQ_HASH=$(cat requirements.txt requirements-lock.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$STAMPS/requirements" 2>/dev/null)" != "$REQ_HASH" ]; then
  [ "$(free_gb)" -ge 2 ] || die "only $(free_gb) GB free; installing the requirements needs a few GB (disk full?)"
  say "installing requirements (first time: about 2 minutes)"
  log=$VENV/pip-install.log
  if ! "$VENV/bin/python" -m pip install --upgrade pip >"$log" 2>&1 \
     || ! "$VENV/bin/python" -m pip install -r requirements.txt -c requirements-lock.txt >>"$log" 2>&1; then
    unreachable=$(registry_unreachable)
    if grep -qiE "No space left on device" "$log"; then
      die "the disk is full (No space left on device); free space and run again. Log: $log"
    elif [ -n "$unreachable" ] || grep -qiE "Failed to establish a new connection|Temporary failure in name resolution|Network is unreachable|ConnectTimeout" "$log"; then
      die "a package registry could not be reached (${unreachable:-see log}); check the network or proxy settings. Log: $log"
    elif grep -qiE "No matching distribution found|Could not find a version" "$log"; then
      die "$(grep -iE 'No matching distribution found|Could not find a version' "$log" | head -n1) (ROS wheels exist for x86_64/aarch64 manylinux_2_28, CPython 3.10-3.14). Log: $log"
    fi
    tail -n 20 "$log" >&2
    die "pip install failed; full log: $log"
  fi
  echo "$REQ_HASH" > "$STAMPS/requirements"
  rm -f "$STAMPS/cmake-fix"
fi

# --- the CMake path fix (ROS_FROM_PIP.md section 2): wheels carry /opt/python/cp311-cp311 paths -------
if [ ! -f "$STAMPS/cmake-fix" ]; then
  PY_INC=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
  NP_INC=$("$VENV/bin/python" -c "import numpy; print(numpy.get_include())")
  PYTAG=$("$VENV/bin/python" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')
  PYDOT=$PYVER
  files=$(grep -rl "/opt/python/$PYTAG-$PYTAG" "$VENV/share" --include='*.cmake' 2>/dev/null || true)
  if [ -n "$files" ]; then
    echo "$files" | xargs sed -i \
      -e "s#/opt/python/$PYTAG-$PYTAG/include/python$PYDOT#$PY_INC#g" \
      -e "s#/opt/python/$PYTAG-$PYTAG/lib/python$PYDOT/site-packages/numpy/_core/include#$NP_INC#g"
  fi
  touch "$STAMPS/cmake-fix"
fi

# --- colcon build ----------------------------------------------------------------------------------
# shellcheck disable=SC1091
. "$VENV/bin/activate"
export AMENT_PREFIX_PATH=$VIRTUAL_ENV CMAKE_PREFIX_PATH=$VIRTUAL_ENV
[ "$(free_gb)" -ge 1 ] || die "less than 1 GB free; colcon build needs room (disk full?)"
mkdir -p "$ROOT/log"
say "colcon build"
if ! colcon build --merge-install --symlink-install --base-paths src --event-handlers console_cohesion- summary+ \
     >"$ROOT/log/colcon-build.log" 2>&1 </dev/null; then
  tail -n 40 "$ROOT/log/colcon-build.log" >&2
  grep -q "No space left on device" "$ROOT/log/colcon-build.log" && die "the disk is full during colcon build"
  die "colcon build failed; full log: log/colcon-build.log"
fi
say "ready. Use it with: . .venv/bin/activate && . install/setup.bash"
