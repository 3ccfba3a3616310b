#!/usr/bin/env bash
# Install a carla_rl offline bundle (made by scripts/bundle.sh) with no package registry:
#
#   install.sh [PREFIX]      (default PREFIX: the folder env/ beside this script)
#
# Creates PREFIX as a virtual environment of $PYTHON (default python3) that also sees that Python's own
# packages (torch and the rest preinstalled there), installs the bundle's wheels into it with
# `pip --no-index`, and writes PREFIX/setup.bash: `. PREFIX/setup.bash` puts carla-rl and every node on
# PATH and sets AMENT_PREFIX_PATH. An existing PREFIX made by this script is updated in place.
# Nothing outside the bundle folder is read except that Python; each failure is one line on stderr.
set -euo pipefail
# a sourced workspace or venv of the caller (PYTHONPATH) must not stand in for what the bundle installs
unset PYTHONPATH PYTHONHOME
BUNDLE=$(cd "$(dirname "$0")" && pwd)

die() { echo "install: error: $*" >&2; exit 1; }
say() { echo "install: $*"; }

case "${1:-}" in
  -h|--help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0;;
  -*) die "unknown option '$1' (usage: install.sh [PREFIX])";;
esac
[ "$#" -le 1 ] || die "too many arguments (usage: install.sh [PREFIX])"
PREFIX=${1:-$BUNDLE/env}
mkdir -p "$(dirname "$PREFIX")" 2>/dev/null || die "cannot create the parent folder of $PREFIX"
PREFIX=$(cd "$(dirname "$PREFIX")" && pwd)/$(basename "$PREFIX")

# --- the bundle itself --------------------------------------------------------------------------------
[ -f "$BUNDLE/bundle.env" ] || die "$BUNDLE/bundle.env is missing: this folder is not a complete bundle (copy it again)"
# shellcheck disable=SC1091
. "$BUNDLE/bundle.env"
for v in BUNDLE_PYTHON_VERSION BUNDLE_PYTHON_TAG BUNDLE_MACHINE BUNDLE_MIN_GLIBC; do
  [ -n "${!v:-}" ] || die "$BUNDLE/bundle.env does not set $v: the bundle is damaged (build it again)"
done
[ -f "$BUNDLE/requirements.txt" ] || die "$BUNDLE/requirements.txt is missing: the bundle is incomplete (copy it again)"
[ -f "$BUNDLE/SHA256SUMS" ] || die "$BUNDLE/SHA256SUMS is missing: the bundle is incomplete (copy it again)"
while read -r sum file; do
  [ -n "$file" ] || continue
  [ -f "$BUNDLE/$file" ] || die "wheel missing: $file is not in $BUNDLE (the bundle is incomplete; copy it again)"
done < "$BUNDLE/SHA256SUMS"
if ! bad=$(cd "$BUNDLE" && sha256sum --quiet -c SHA256SUMS 2>/dev/null); then
  die "damaged wheel: $(echo "$bad" | head -n1 | cut -d: -f1) does not match its checksum (copy the bundle again)"
fi
PIP_WHEEL=$(ls "$BUNDLE"/wheels/pip-*.whl 2>/dev/null | head -n1 || true)
[ -n "$PIP_WHEEL" ] || die "wheel missing: the bundle has no pip-*.whl in wheels/ (build it again)"

# --- the Python -----------------------------------------------------------------------------------------
PY=${PYTHON:-python3}
PY_PATH=$(command -v "$PY" 2>/dev/null || true)
[ -n "$PY_PATH" ] || die "Python '$PY' not found; set PYTHON=/path/to/python$BUNDLE_PYTHON_VERSION"
read -r pyver impl machine libc libc_ver in_venv < <("$PY_PATH" -c '
import platform, sys
lib, ver = platform.libc_ver()
print("%d.%d" % sys.version_info[:2], sys.implementation.name, platform.machine(), lib or "none", ver or "0",
      int(sys.prefix != sys.base_prefix))' 2>/dev/null) || die "'$PY_PATH' does not run"
[ "$impl" = cpython ] || die "$PY_PATH is $impl; the bundle is for CPython $BUNDLE_PYTHON_VERSION"
[ "$pyver" = "$BUNDLE_PYTHON_VERSION" ] \
  || die "the bundle is for Python $BUNDLE_PYTHON_VERSION ($BUNDLE_PYTHON_TAG) but $PY_PATH is Python $pyver; set PYTHON=/path/to/python$BUNDLE_PYTHON_VERSION or build a bundle for $pyver (make bundle PYTHON=python$pyver)"
[ "$machine" = "$BUNDLE_MACHINE" ] || die "the bundle is for $BUNDLE_MACHINE but this machine is $machine"
if [ "$libc" != glibc ]; then
  die "the bundle needs glibc >= $BUNDLE_MIN_GLIBC but $PY_PATH does not run on glibc"
elif [ "$(printf '%s\n%s\n' "$BUNDLE_MIN_GLIBC" "$libc_ver" | sort -V | head -n1)" != "$BUNDLE_MIN_GLIBC" ]; then
  die "the bundle needs glibc >= $BUNDLE_MIN_GLIBC but this machine has glibc $libc_ver"
fi
# packages left out of the bundle because the target has them: they must be there
if [ -n "${BUNDLE_REQUIRED_PRESENT:-}" ]; then
  absent=$("$PY_PATH" -c '
import sys
from importlib import metadata
missing = []
for name in sys.argv[1:]:
    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        missing.append(name)
print(" ".join(missing))' $BUNDLE_REQUIRED_PRESENT)
  [ -z "$absent" ] || die "$PY_PATH lacks $absent, which the bundle leaves out (built with --skip); install $( [ "$(echo "$absent" | wc -w)" -gt 1 ] && echo them || echo it) there or build the bundle without skipping $absent"
fi

# --- the environment --------------------------------------------------------------------------------------
if [ -e "$PREFIX" ] && [ ! -f "$PREFIX/.carla_rl_bundle" ]; then
  [ -d "$PREFIX" ] || die "$PREFIX exists and is not a folder"
  [ -z "$(ls -A "$PREFIX")" ] || die "$PREFIX exists and was not made by this script; give a new or empty folder"
fi
if [ ! -x "$PREFIX/bin/python" ]; then
  say "creating $PREFIX (Python $pyver from $PY_PATH, with its packages visible)"
  "$PY_PATH" -m venv --system-site-packages --without-pip "$PREFIX" 2>"$BUNDLE/.venv-error" \
    || die "could not create a virtual environment in $PREFIX: $(tail -n1 "$BUNDLE/.venv-error")"
  rm -f "$BUNDLE/.venv-error"
fi
[ "$("$PREFIX/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$pyver" ] \
  || die "$PREFIX/bin/python is not Python $pyver; remove $PREFIX or give another PREFIX"
touch "$PREFIX/.carla_rl_bundle"
SITE=$("$PREFIX/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
# A Python that is itself a virtual environment (e.g. one holding torch): its packages are not the "system"
# ones of a new venv, so add its site-packages (with their .pth files) after the new environment's own.
if [ "$in_venv" = 1 ]; then
  "$PY_PATH" -c '
import site, sys
for p in dict.fromkeys(site.getsitepackages()):
    if p.startswith(sys.prefix):
        print("import site; site.addsitedir(%r)" % p)' > "$SITE/zz_carla_rl_base_python.pth"
fi

# --- the wheels -----------------------------------------------------------------------------------------
log=$PREFIX/bundle-install.log
say "installing $(ls "$BUNDLE"/wheels/*.whl | wc -l) wheels into $PREFIX (no package index)"
# --isolated: no pip configuration of this machine (an index, find-links, constraints) applies
if ! PIP_NO_INDEX=1 _ROS_WHEELS_BOOTSTRAP_COMPLETE=1 "$PREFIX/bin/python" "$PIP_WHEEL/pip" install --isolated \
     --no-index --find-links "$BUNDLE/wheels" --no-cache-dir --disable-pip-version-check --no-warn-script-location \
     -r "$BUNDLE/requirements.txt" >"$log" 2>&1; then
  what=$(grep -oE "No matching distribution found for [^ ]+" "$log" | head -n1 | awk '{print $NF}')
  if [ -n "$what" ]; then
    die "wheel missing: no wheel for $what in $BUNDLE/wheels and $PY_PATH does not have it (build the bundle without skipping it); log: $log"
  fi
  what=$(grep -E "is not a supported wheel on this platform|ResolutionImpossible|conflict" "$log" | head -n1)
  die "pip could not install the bundle: ${what:-$(grep -E '^ERROR' "$log" | tail -n1)}; log: $log"
fi

# --- setup.bash: computes its own folder, so PREFIX can be reached through any path -------------------------
cat > "$PREFIX/setup.bash" <<'SH'
# carla_rl: `. setup.bash` (bash or zsh) puts carla-rl and the node executables on PATH and sets up ROS 2.
_carla_rl_prefix=$(cd "$(dirname "${BASH_SOURCE[0]:-${(%):-%x}}")" && pwd)
export VIRTUAL_ENV=$_carla_rl_prefix
case ":$PATH:" in *":$_carla_rl_prefix/bin:"*) ;; *) export PATH=$_carla_rl_prefix/bin:$PATH;; esac
case ":${AMENT_PREFIX_PATH:-}:" in
  *":$_carla_rl_prefix:"*) ;;
  *) export AMENT_PREFIX_PATH=$_carla_rl_prefix${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH};;
esac
export RMW_IMPLEMENTATION=${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}
export FASTDDS_BUILTIN_TRANSPORTS=${FASTDDS_BUILTIN_TRANSPORTS:-LARGE_DATA}
export ROS_AUTOMATIC_DISCOVERY_RANGE=${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}
unset _carla_rl_prefix
SH
cp "$PREFIX/setup.bash" "$PREFIX/setup.zsh"

# --- check: ROS, the interfaces and the project import in the new environment ---------------------------------
if ! out=$(cd / && . "$PREFIX/setup.bash" && "$PREFIX/bin/python" -c '
import rclpy
from rclpy.serialization import serialize_message
from carla_rl_interfaces.msg import Observation
import carla_rl.cli.main
serialize_message(Observation())' 2>&1); then
  die "installed, but the check import failed: $(echo "$out" | tail -n1); log: $log"
fi
for exe in carla-rl embedded_simulator sensor_preprocessor dqn_policy; do
  [ -x "$PREFIX/bin/$exe" ] || die "installed, but $PREFIX/bin/$exe is missing"
done
torch=$(cd / && "$PREFIX/bin/python" -c 'import torch; print(torch.__version__, "CUDA" if torch.cuda.is_available() else "no CUDA device")' 2>/dev/null \
  || echo "not importable (needed for carla-rl train)")
say "done: $PREFIX (torch: $torch)"
say "use it with: . $PREFIX/setup.bash && carla-rl --help"
