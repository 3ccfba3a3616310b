"""The offline bundle (scripts/bundle.sh, scripts/bundle-install.sh, scripts/bundle_tool.py) without a network:
argument handling of the builder, the wheel selection and packing, and the installer against a tiny fake
bundle (its happy path and every one-line refusal)."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUNDLE_SH = ROOT / "scripts" / "bundle.sh"
INSTALL_SH = ROOT / "scripts" / "bundle-install.sh"
sys.path.insert(0, str(ROOT / "scripts"))
import bundle_tool  # noqa: E402

PYVER = "%d.%d" % sys.version_info[:2]
# no registry, no user pip configuration: the installer must not need either; and no workspace of this
# checkout on PYTHONPATH (make test sources one): the target has only the bundle
OFFLINE_ENV = {k: v for k, v in os.environ.items()
               if not k.startswith(("PIP_", "VIRTUAL_ENV", "AMENT_", "_ROS_", "PYTHONPATH"))}
OFFLINE_ENV.update(PIP_NO_INDEX="1", PIP_CONFIG_FILE=os.devnull, https_proxy="http://127.0.0.1:9",
                   http_proxy="http://127.0.0.1:9")


def make_wheel(directory: Path, name: str, version: str = "1.0", files: dict[str, str] | None = None,
               requires: list[str] = (), entry_points: str = "", tag: str = "py3-none-any") -> Path:
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    contents = dict(files or {})
    meta = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    contents[f"{info}/METADATA"] = "\n".join(meta + [f"Requires-Dist: {r}" for r in requires]) + "\n"
    contents[f"{info}/WHEEL"] = ("Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                 f"Tag: {tag}\n")
    if entry_points:
        contents[f"{info}/entry_points.txt"] = entry_points
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    path = directory / f"{dist}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for arcname, text in contents.items():
            data = text.encode()
            zf.writestr(arcname, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            writer.writerow([arcname, f"sha256={digest}", len(data)])
        writer.writerow([f"{info}/RECORD", "", ""])
        zf.writestr(f"{info}/RECORD", record.getvalue())
    return path


# --- bundle_tool ------------------------------------------------------------------------------------------
def test_select_follows_dependencies_and_honours_skip_and_without(tmp_path):
    make_wheel(tmp_path, "ros-rclpy", requires=["ros-rcl~=1.0", "numpy", "pyyaml",
                                                "ros-extra-thing; extra == 'fastrtps'"])
    make_wheel(tmp_path, "ros-rcl", requires=["ros-rcutils", "old-thing; python_version < '3.8'"])
    make_wheel(tmp_path, "ros-rcutils")
    make_wheel(tmp_path, "numpy")
    make_wheel(tmp_path, "pyyaml")
    make_wheel(tmp_path, "gymnasium", requires=["numpy>=1.21", "cloudpickle", "Farama_Notifications"])
    make_wheel(tmp_path, "cloudpickle")
    make_wheel(tmp_path, "farama-notifications")
    make_wheel(tmp_path, "pygame")
    make_wheel(tmp_path, "unrelated")
    result = bundle_tool.select(tmp_path, ["ros-rclpy", "gymnasium", "pygame", "NumPy"], skip={"numpy", "pyyaml"},
                                without={"pygame"}, python_version="3.12")
    included = {bundle_tool.wheel_name(n) for n in result["include"]}
    assert included == {"ros-rclpy", "ros-rcl", "ros-rcutils", "gymnasium", "cloudpickle", "farama-notifications"}
    assert result["required_present"] == ["numpy", "pyyaml"]
    assert result["missing"] == []

    result = bundle_tool.select(tmp_path, ["ros-rclpy", "ghost"], skip=set(), without=set(), python_version="3.12")
    assert result["missing"] == ["ghost (needed by the roots)"]
    (tmp_path / "ros_rcutils-1.0-py3-none-any.whl").unlink()
    result = bundle_tool.select(tmp_path, ["ros-rclpy"], skip=set(), without=set(), python_version="3.12")
    assert result["missing"] == ["ros-rcutils (needed by ros-rcl)"]


def test_names_reads_pip_list_freeze_and_plain_lists(tmp_path):
    (tmp_path / "list.txt").write_text("Package    Version\n---------- -------\nNumPy 2.5.2\n"
                                       "opencv_python_headless 5.0\n")
    (tmp_path / "freeze.txt").write_text("# comment\ntorch==2.11.0\nPyYAML==6.0\n"
                                         "-e git+https://x#egg=y\n")
    (tmp_path / "plain.txt").write_text("tqdm\nscipy  # the solver\n\n")
    names = bundle_tool.read_names([str(tmp_path / n) for n in ("list.txt", "freeze.txt", "plain.txt")])
    assert names == ["numpy", "opencv-python-headless", "torch", "pyyaml", "tqdm", "scipy"]


def test_pack_puts_libraries_in_the_prefix_and_leaves_build_paths_behind(tmp_path):
    install = tmp_path / "install"
    site = install / "lib" / "python3.12" / "site-packages" / "demo_interfaces"
    (site / "msg").mkdir(parents=True)
    (site / "__init__.py").write_text("")
    (site / "msg" / "__init__.py").write_text("from ._a import A\n")
    (site / "__pycache__").mkdir()
    (site / "__pycache__" / "x.pyc").write_bytes(b"\0")
    (site.parent / "demo_interfaces-0.1.0-py3.12.egg-info").mkdir()
    (site.parent / "demo_interfaces-0.1.0-py3.12.egg-info" / "PKG-INFO").write_text("x")
    (install / "lib" / "libdemo_interfaces__rosidl_generator_c.so").write_bytes(b"\x7fELF")
    for rel, text in {"share/demo_interfaces/package.xml": "<package/>", "share/demo_interfaces/msg/A.msg": "int32 a",
                      "share/demo_interfaces/cmake/demoConfig.cmake": "/build/path",
                      "share/demo_interfaces/local_setup.bash": "/build/path",
                      "share/ament_index/resource_index/packages/demo_interfaces": "",
                      "share/ament_index/resource_index/parent_prefix_path/demo_interfaces": "/build/path",
                      "share/colcon-core/packages/demo_interfaces": "", "setup.bash": "/build/path",
                      "include/demo_interfaces/a.h": ""}.items():
        (install / rel).parent.mkdir(parents=True, exist_ok=True)
        (install / rel).write_text(text)
    wheel = bundle_tool.pack(install, tmp_path / "out", "demo_interfaces", "0.1.0", "cp312", ["ros-std-msgs"], "demo")
    assert wheel.name == "demo_interfaces-0.1.0-cp312-cp312-linux_x86_64.whl"
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        record = zf.read("demo_interfaces-0.1.0.dist-info/RECORD").decode()
        meta = zf.read("demo_interfaces-0.1.0.dist-info/METADATA").decode()
    data = "demo_interfaces-0.1.0.data/data/"
    assert names == {
        "demo_interfaces/__init__.py", "demo_interfaces/msg/__init__.py",
        data + "lib/libdemo_interfaces__rosidl_generator_c.so", data + "share/demo_interfaces/package.xml",
        data + "share/demo_interfaces/msg/A.msg", data + "share/ament_index/resource_index/packages/demo_interfaces",
        "demo_interfaces-0.1.0.dist-info/METADATA", "demo_interfaces-0.1.0.dist-info/WHEEL",
        "demo_interfaces-0.1.0.dist-info/RECORD"}
    assert len(record.splitlines()) == len(names)
    assert "Requires-Python: ==3.12.*" in meta and "Requires-Dist: ros-std-msgs" in meta


# --- bundle.sh: its arguments are checked before anything is downloaded or built ---------------------------
def run_bundle(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(BUNDLE_SH), *args], capture_output=True, text=True, timeout=60,
                          env={**OFFLINE_ENV, **env}, cwd=ROOT, stdin=subprocess.DEVNULL)


def test_bundle_help():
    proc = run_bundle("--help")
    assert proc.returncode == 0
    assert "--skip-present FILE" in proc.stdout and "install.sh" in proc.stdout


@pytest.mark.parametrize("args, env, message", [
    (["--frobnicate"], {}, "unknown argument '--frobnicate'"),
    (["--python"], {}, "--python needs a value"),
    (["--without", "numpy"], {}, "--without numpy: only optional features can be left out"),
    (["--skip-present", "/no/such/list.txt"], {}, "--skip-present /no/such/list.txt: no such file"),
    (["--max-mib", "lots"], {}, "--max-mib expects a whole number of MiB, got 'lots'"),
    (["--python", "/no/such/python3.12"], {}, "Python '/no/such/python3.12' not found"),
    ([], {"PYTHON": "/no/such/python3"}, "Python '/no/such/python3' not found"),
    ([], {"BUNDLE_SKIP_PRESENT": "/no/such/present.txt"}, "--skip-present /no/such/present.txt: no such file"),
])
def test_bundle_refuses_bad_arguments_in_one_line(args, env, message):
    proc = run_bundle(*args, **env)
    assert proc.returncode != 0
    assert proc.stderr.startswith(f"bundle: error: {message}")
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_bundle_refuses_an_unsupported_python(tmp_path):
    fake = tmp_path / "python3.9"
    fake.write_text("#!/bin/sh\necho 3.9\n")
    fake.chmod(0o755)
    proc = run_bundle("--python", str(fake))
    assert proc.returncode != 0
    assert proc.stderr.strip() == (f"bundle: error: Python 3.9 at {fake} is not supported: the ROS 2 Kilted wheels "
                                   "exist for CPython 3.10-3.14")


# --- install.sh against a tiny fake bundle ------------------------------------------------------------------
def pip_wheel() -> Path:
    import ensurepip

    found = sorted((Path(ensurepip.__file__).parent / "_bundled").glob("pip-*.whl"))
    found += sorted(Path("/usr/share/python-wheels").glob("pip-*.whl"))
    if not found:
        pytest.skip("no pip wheel on this machine (ensurepip's bundled one is missing)")
    return found[-1]


FAKE_ROS = {
    "rclpy/__init__.py": "",
    "rclpy/serialization.py": "def serialize_message(msg):\n    return b'fake'\n",
    "carla_rl_interfaces/__init__.py": "",
    "carla_rl_interfaces/msg/__init__.py": "class Observation:\n    pass\n",
}
FAKE_PROJECT = {
    "carla_rl/__init__.py": "",
    "carla_rl/cli/__init__.py": "",
    "carla_rl/cli/main.py": "def main():\n    print('fake carla-rl')\n    return 0\n",
    "carla_rl-0.1.0.data/data/share/ament_index/resource_index/packages/carla_rl": "",
}
NODES = ["embedded_simulator", "sensor_preprocessor", "dqn_policy"]


def make_bundle(root: Path, **env_overrides: str) -> Path:
    bundle = root / "bundle"
    (bundle / "wheels").mkdir(parents=True)
    shutil.copy(pip_wheel(), bundle / "wheels")
    make_wheel(bundle / "wheels", "fake-ros", files=FAKE_ROS)
    eps = ("[console_scripts]\ncarla-rl = carla_rl.cli.main:main\n"
           + "".join(f"{n} = carla_rl.cli.main:main\n" for n in NODES))
    make_wheel(bundle / "wheels", "carla_rl", version="0.1.0", files=FAKE_PROJECT, requires=["fake-ros"],
               entry_points=eps)
    (bundle / "requirements.txt").write_text("fake-ros\ncarla-rl\npip\n")
    settings = {"BUNDLE_PYTHON_VERSION": PYVER, "BUNDLE_PYTHON_TAG": "cp" + PYVER.replace(".", ""),
                "BUNDLE_MACHINE": "x86_64", "BUNDLE_MIN_GLIBC": "2.17", "BUNDLE_REQUIRED_PRESENT": "pytest",
                "BUNDLE_WITHOUT": "carla pygame", "BUNDLE_SOURCE": "test"}
    settings.update(env_overrides)
    (bundle / "bundle.env").write_text("".join(f"{k}='{v}'\n" for k, v in settings.items()))
    shutil.copy(INSTALL_SH, bundle / "install.sh")
    subprocess.run("sha256sum wheels/*.whl > SHA256SUMS", shell=True, check=True, cwd=bundle)
    return bundle


def run_install(bundle: Path, *args: str, python: str = sys.executable) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(bundle / "install.sh"), *args], capture_output=True, text=True, timeout=120,
                          env={**OFFLINE_ENV, "PYTHON": python}, cwd=bundle.parent, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    if os.uname().machine != "x86_64":
        pytest.skip("the fake bundle is tagged x86_64")
    root = tmp_path_factory.mktemp("bundle")
    bundle = make_bundle(root)
    prefix = root / "prefix"
    proc = run_install(bundle, str(prefix))
    return bundle, prefix, proc


def test_install_creates_an_environment_with_setup_bash(installed):
    bundle, prefix, proc = installed
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"install: done: {prefix}" in proc.stdout
    # setup.bash finds its own folder, through a link too; PATH and AMENT_PREFIX_PATH point there
    link = prefix.parent / "link-to-prefix"
    link.symlink_to(prefix)
    script = ('. "$1/setup.bash" && command -v carla-rl && command -v embedded_simulator && carla-rl '
              '&& echo "AMENT=$AMENT_PREFIX_PATH" && echo "RANGE=$ROS_AUTOMATIC_DISCOVERY_RANGE"')
    out = subprocess.run(["bash", "-c", script, "-", str(link)], capture_output=True, text=True, timeout=30,
                         env={**OFFLINE_ENV, "AMENT_PREFIX_PATH": "/opt/other"}, check=True).stdout.splitlines()
    assert out[0] == f"{link}/bin/carla-rl" and out[1] == f"{link}/bin/embedded_simulator"
    assert out[2] == "fake carla-rl"
    assert out[3] == f"AMENT={link}:/opt/other" and out[4] == "RANGE=LOCALHOST"
    assert (prefix / "share/ament_index/resource_index/packages/carla_rl").is_file()
    # the Python's own packages (pytest here, torch on a GPU machine) are visible in the environment
    subprocess.run([str(prefix / "bin/python"), "-c", "import pytest"], check=True, env=OFFLINE_ENV, timeout=30)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode != 0, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("install: error: ")
    return lines[0][len("install: error: "):]


def test_install_refuses_another_python_version(tmp_path):
    bundle = make_bundle(tmp_path, BUNDLE_PYTHON_VERSION="3.99", BUNDLE_PYTHON_TAG="cp399")
    message = one_line_error(run_install(bundle, str(tmp_path / "prefix")))
    assert message.startswith(f"the bundle is for Python 3.99 (cp399) but {sys.executable} is Python {PYVER}; ")
    assert not (tmp_path / "prefix").exists()


def test_install_refuses_a_missing_python(tmp_path):
    bundle = make_bundle(tmp_path)
    message = one_line_error(run_install(bundle, str(tmp_path / "prefix"), python="/no/such/python3"))
    assert message == f"Python '/no/such/python3' not found; set PYTHON=/path/to/python{PYVER}"


def test_install_refuses_a_missing_wheel(tmp_path):
    bundle = make_bundle(tmp_path)
    (bundle / "wheels" / "fake_ros-1.0-py3-none-any.whl").unlink()
    message = one_line_error(run_install(bundle, str(tmp_path / "prefix")))
    assert message.startswith("wheel missing: wheels/fake_ros-1.0-py3-none-any.whl is not in ")


def test_install_refuses_a_damaged_wheel(tmp_path):
    bundle = make_bundle(tmp_path)
    with open(bundle / "wheels" / "fake_ros-1.0-py3-none-any.whl", "ab") as f:
        f.write(b"junk")
    message = one_line_error(run_install(bundle, str(tmp_path / "prefix")))
    assert message.startswith("damaged wheel: wheels/fake_ros-1.0-py3-none-any.whl does not match its checksum")


def test_install_refuses_when_a_skipped_package_is_absent(tmp_path):
    bundle = make_bundle(tmp_path, BUNDLE_REQUIRED_PRESENT="pytest no-such-package-xyz")
    message = one_line_error(run_install(bundle, str(tmp_path / "prefix")))
    assert "lacks no-such-package-xyz, which the bundle leaves out (built with --skip)" in message


def test_install_names_a_requirement_without_wheel(tmp_path):
    bundle = make_bundle(tmp_path)
    (bundle / "requirements.txt").write_text("fake-ros\nno-such-dependency\n")
    message = one_line_error(run_install(bundle, str(tmp_path / "prefix")))
    assert message.startswith("wheel missing: no wheel for no-such-dependency in ")


def test_install_refuses_a_foreign_folder(tmp_path):
    bundle = make_bundle(tmp_path)
    (tmp_path / "prefix").mkdir()
    (tmp_path / "prefix" / "precious.txt").write_text("keep")
    message = one_line_error(run_install(bundle, str(tmp_path / "prefix")))
    assert message == f"{tmp_path / 'prefix'} exists and was not made by this script; give a new or empty folder"
    assert (tmp_path / "prefix" / "precious.txt").read_text() == "keep"


def test_install_refuses_an_incomplete_bundle(tmp_path):
    bundle = make_bundle(tmp_path)
    (bundle / "bundle.env").unlink()
    message = one_line_error(run_install(bundle, str(tmp_path / "prefix")))
    assert message == f"{bundle}/bundle.env is missing: this folder is not a complete bundle (copy it again)"


def test_slim_drops_headers_and_duplicate_library_copies(tmp_path):
    compiler = shutil.which("g++") or shutil.which("cc")
    if not compiler or not shutil.which("readelf"):
        pytest.skip("needs a C compiler and readelf")
    src = tmp_path / "demo.c"
    src.write_text("int demo(void) { return 1; }\n")
    lib = tmp_path / "libdemo.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-Wl,-soname,libdemo.so.3", "-o", str(lib), str(src)], check=True)
    data = lib.read_bytes()
    base = "ros_demo-1.0.data/data/"
    files = {base + "lib/libdemo.so": data, base + "lib/libdemo.so.3": data, base + "lib/libdemo.so.3.1.4": data,
             base + "lib/libother.so": b"not elf", base + "include/demo/demo.h": b"int demo(void);",
             base + "share/demo/package.xml": b"<package/>", "demo/__init__.py": b""}
    wheel = make_wheel(tmp_path, "ros-demo")
    with zipfile.ZipFile(wheel, "a") as zf:
        for name, content in files.items():
            zf.writestr(name, content)
    before, after = bundle_tool.slim(wheel)
    assert after < before
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        record = zf.read("ros_demo-1.0.dist-info/RECORD").decode()
        assert zf.read(base + "lib/libdemo.so.3") == data
    assert names == {base + "lib/libdemo.so.3", base + "lib/libother.so", base + "share/demo/package.xml",
                     "demo/__init__.py", "ros_demo-1.0.dist-info/METADATA", "ros_demo-1.0.dist-info/WHEEL",
                     "ros_demo-1.0.dist-info/RECORD"}
    assert {line.split(",")[0] for line in record.splitlines()} == names
