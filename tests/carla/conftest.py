"""Fixtures of the real-CARLA tests.

``carla_msgs``: builds the test-only interfaces package ``tests/carla_msgs_ws/src/carla_msgs`` (the
carla_msgs field definitions the adapter uses) with colcon, once, into pytest's cache directory
(``.pytest_cache/d/carla_msgs_ws``, rebuilt when its sources change), then makes the generated Python
package importable in this process. Skipped with a reason when colcon / cmake / the rosidl generators
are unavailable. It is never installed into the workspace.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PKG_SRC = REPO / "tests" / "carla_msgs_ws" / "src" / "carla_msgs"
BUILD_TIMEOUT_S = 600

# carla_rl importable from the source tree when the workspace is not sourced
if str(REPO / "src" / "carla_rl") not in sys.path:
    try:
        import carla_rl  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(REPO / "src" / "carla_rl"))


def _sources_hash() -> str:
    digest = hashlib.sha256()
    for path in sorted(PKG_SRC.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(PKG_SRC)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _prefix_path() -> str:
    venv = os.environ.get("VIRTUAL_ENV") or sys.prefix
    parts = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    if venv not in parts:
        parts.append(venv)
    return os.pathsep.join(parts)


def _build(cache: Path) -> Path:
    colcon = shutil.which("colcon")
    if colcon is None:
        pytest.skip("colcon is not installed: cannot build the test-only carla_msgs package")
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed: cannot build the test-only carla_msgs package")
    stamp = cache / "sources.sha"
    install = cache / "install"
    wanted = _sources_hash()
    if stamp.is_file() and stamp.read_text() == wanted and (install / "share" / "carla_msgs").is_dir():
        return install
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True)
    env = dict(os.environ)
    env["AMENT_PREFIX_PATH"] = _prefix_path()
    env["CMAKE_PREFIX_PATH"] = env["AMENT_PREFIX_PATH"]
    cmd = [colcon, "--log-base", str(cache / "log"), "build", "--merge-install",
           "--base-paths", str(PKG_SRC.parent), "--build-base", str(cache / "build"),
           "--install-base", str(install), "--event-handlers", "console_cohesion-",
           "--cmake-args", "-DBUILD_TESTING=OFF"]  # no build type: no -O3, compiles faster
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"building the test carla_msgs package took more than {BUILD_TIMEOUT_S} s")
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-3000:]
        if "rosidl_default_generators" in tail and "Could not find" in tail:
            pytest.skip("rosidl generators are not installed: cannot build the test carla_msgs package")
        pytest.fail(f"colcon build of the test carla_msgs package failed:\n{tail}")
    stamp.write_text(wanted)
    return install


def _activate(install: Path) -> None:
    """Make the built package importable here: sys.path, AMENT_PREFIX_PATH, and its shared libraries
    preloaded (LD_LIBRARY_PATH cannot change for a running process)."""
    site = next(iter(sorted(install.glob("lib/python3*/site-packages"))), None)
    if site is None:
        pytest.fail(f"no site-packages under {install}")
    if str(site) not in sys.path:
        sys.path.insert(0, str(site))
    os.environ["AMENT_PREFIX_PATH"] = os.pathsep.join([str(install), os.environ.get("AMENT_PREFIX_PATH", "")])
    lib = install / "lib"
    order = ["rosidl_generator_c", "rosidl_typesupport_c", "rosidl_typesupport_cpp",
             "rosidl_typesupport_introspection_c", "rosidl_typesupport_introspection_cpp",
             "rosidl_typesupport_fastrtps_c", "rosidl_typesupport_fastrtps_cpp", "rosidl_generator_py"]
    for suffix in order:
        so = lib / f"libcarla_msgs__{suffix}.so"
        if so.is_file():
            ctypes.CDLL(str(so), mode=ctypes.RTLD_GLOBAL)


@pytest.fixture(scope="session")
def carla_msgs(request):
    """The generated ``carla_msgs.msg`` / ``carla_msgs.srv`` modules (real rosidl classes)."""
    pytest.importorskip("rosidl_generator_py", reason="ROS 2 Python message runtime is not installed")
    cache = Path(request.config.cache.mkdir("carla_msgs_ws"))
    install = _build(cache)
    _activate(install)
    import importlib

    msg = importlib.import_module("carla_msgs.msg")
    srv = importlib.import_module("carla_msgs.srv")
    return msg, srv
