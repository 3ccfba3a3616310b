"""scripts/bootstrap.sh stops with a clear one-line reason (not a traceback) when Python is too
old, a build tool is missing, the disk is too full, or the package registry cannot be reached.
Each case runs a copy of the script in a temporary workspace, so the real .venv is never touched."""

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def workspace(tmp_path):
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "bootstrap.sh", tmp_path / "scripts")
    for name in ("requirements.txt", "requirements-lock.txt"):
        shutil.copy(ROOT / name, tmp_path)
    return tmp_path


def run(workspace: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    full.update(env)
    return subprocess.run(["bash", str(workspace / "scripts" / "bootstrap.sh")], capture_output=True, text=True,
                          env=full, timeout=300)


def error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("bootstrap: error:")]
    assert len(errors) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return errors[0]


def test_python_too_old(workspace, tmp_path):
    fake = tmp_path / "python3.9"
    fake.write_text("#!/bin/sh\necho 3.9\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    line = error_line(run(workspace, {"PYTHON": str(fake)}))
    assert "Python 3.9" in line and "3.10-3.14" in line


def test_missing_build_tool_names_the_debian_package(workspace, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for directory in ("/usr/local/bin", "/usr/bin", "/bin"):
        for entry in Path(directory).iterdir():
            target = bin_dir / entry.name
            if entry.name != "cmake" and not target.exists():
                target.symlink_to(entry)
    line = error_line(run(workspace, {"PATH": str(bin_dir)}))
    assert "'cmake' is missing" in line and "apt-get install cmake" in line


def test_disk_too_full(workspace):
    line = error_line(run(workspace, {"CARLA_RL_MIN_FREE_GB": "1000000000"}))
    assert "GB free" in line


def test_registry_unreachable(workspace):
    line = error_line(run(workspace, {"PIP_CONFIG_FILE": os.devnull, "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
                                      "PIP_FIND_LINKS": "", "PIP_EXTRA_INDEX_URL": "", "PIP_RETRIES": "0",
                                      "PIP_TIMEOUT": "2", "PIP_NO_INDEX": ""}))
    assert "registry could not be reached" in line
