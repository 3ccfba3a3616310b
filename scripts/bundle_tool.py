#!/usr/bin/env python3
"""Helpers of scripts/bundle.sh (the offline bundle), standard library only.

  select   which downloaded wheels go into the bundle: the dependency closure of the roots, without the
           packages the target already has (--skip: they must be there; the bundle's install.sh checks)
           and without optional ones (--without: left out, not checked)
  pack     turn a colcon install tree of an interfaces package into a wheel whose libraries and share/
           files land in the environment's prefix (as the ROS 2 wheels do), so it works wherever it is
           installed: no setup script with a build path in it
  slim     rewrite wheels without what only a build needs: C/C++ headers, and the extra copies of a shared
           library that a wheel stores under its link names (libX.so, libX.so.1.2.3 beside the libX.so.1.2
           that programs load), since wheels hold no symbolic links
  names    normalized package names from files (`pip list`/`pip freeze` output or one name a line)
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import io
import json
import os
import platform
import re
import subprocess
import sys
import zipfile
from pathlib import Path


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# --- select --------------------------------------------------------------------------------------
_REQ = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(\(?[^;]*\)?)?\s*(?:;\s*(.*))?$")


def _marker_env(python_version: str) -> dict[str, str]:
    return {"python_version": python_version, "python_full_version": python_version + ".0",
            "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
            "platform_machine": "x86_64", "implementation_name": "cpython",
            "platform_python_implementation": "CPython", "extra": ""}


def _marker_true(marker: str, env: dict[str, str]) -> bool:
    if not marker:
        return True
    try:
        from packaging.markers import Marker
    except ImportError:  # pip's own copy
        from pip._vendor.packaging.markers import Marker
    return Marker(marker).evaluate(env)


def wheel_name(filename: str) -> str:
    return canonical(Path(filename).name.split("-")[0])


def wheel_requires(path: Path, env: dict[str, str]) -> list[str]:
    with zipfile.ZipFile(path) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
        text = zf.read(meta).decode("utf-8", "replace")
    deps = []
    for line in text.split("\n\n", 1)[0].splitlines():
        if not line.startswith("Requires-Dist:"):
            continue
        m = _REQ.match(line.split(":", 1)[1])
        if m and _marker_true((m.group(4) or "").strip(), env):
            deps.append(canonical(m.group(1)))
    return deps


def select(wheels_dir: Path, roots: list[str], skip: set[str], without: set[str], python_version: str) -> dict:
    env = _marker_env(python_version)
    by_name: dict[str, Path] = {}
    for path in sorted(wheels_dir.glob("*.whl")):
        by_name.setdefault(wheel_name(path.name), path)
    include: dict[str, Path] = {}
    required_present: set[str] = set()
    missing: set[str] = set()
    needed_by: dict[str, str] = {}
    todo = [canonical(r) for r in roots]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in without:
            continue
        if name in skip:
            required_present.add(name)
            continue
        path = by_name.get(name)
        if path is None:
            missing.add(name)
            continue
        include[name] = path
        for dep in wheel_requires(path, env):
            needed_by.setdefault(dep, name)
            todo.append(dep)
    return {"include": sorted(p.name for p in include.values()),
            "required_present": sorted(required_present),
            "missing": sorted(f"{m} (needed by {needed_by.get(m, 'the roots')})" for m in missing)}


# --- pack --------------------------------------------------------------------------------------------
# What the installed package needs at run time; the rest of a colcon install tree (setup scripts with the
# build's paths, CMake exports, headers, colcon's own index, byte code) stays behind.
_RUNTIME = (re.compile(r"^lib/[^/]+\.so(\.[0-9.]+)?$"),
            re.compile(r"^lib/python3\.[0-9]+/site-packages/.+"),
            re.compile(r"^share/ament_index/resource_index/(packages|package_run_dependencies|rosidl_interfaces)/"),
            re.compile(r"^share/[^/]+/(package\.xml|msg/.+|srv/.+|action/.+)$"))


def _record_line(arcname: str, data: bytes) -> list[str]:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return [arcname, f"sha256={digest}", str(len(data))]


def pack(install: Path, out_dir: Path, name: str, version: str, python_tag: str, requires: list[str],
         summary: str) -> Path:
    dist = re.sub(r"[-.]+", "_", name)
    data_dir = f"{dist}-{version}.data/data"
    info_dir = f"{dist}-{version}.dist-info"
    files: list[tuple[str, bytes, int]] = []
    for path in sorted(install.rglob("*")):
        rel = path.relative_to(install).as_posix()
        if path.is_dir() or "__pycache__" in rel or ".egg-info/" in rel or not any(p.match(rel) for p in _RUNTIME):
            continue
        m = re.match(r"^lib/python3\.[0-9]+/site-packages/(.+)$", rel)
        arcname = m.group(1) if m else f"{data_dir}/{rel}"
        files.append((arcname, path.read_bytes(), 0o755 if os.access(path, os.X_OK) else 0o644))
    if not any(a.startswith(f"{dist}/") or a.startswith(f"{name}/") for a, _, _ in files):
        raise SystemExit(f"bundle_tool pack: no Python package {name}/ under {install}/lib/python3.*/site-packages")
    abi = python_tag
    meta = [f"Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}", f"Summary: {summary}",
            f"Requires-Python: =={python_tag[2]}.{python_tag[3:]}.*"]
    meta += [f"Requires-Dist: {r}" for r in requires]
    wheel_tag = f"{python_tag}-{abi}-linux_{platform.machine()}"
    wheel_meta = f"Wheel-Version: 1.0\nGenerator: bundle_tool\nRoot-Is-Purelib: false\nTag: {wheel_tag}\n"
    files.append((f"{info_dir}/METADATA", ("\n".join(meta) + "\n").encode(), 0o644))
    files.append((f"{info_dir}/WHEEL", wheel_meta.encode(), 0o644))
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{dist}-{version}-{wheel_tag}.whl"
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for arcname, data, mode in files:
            info = zipfile.ZipInfo(arcname, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
            writer.writerow(_record_line(arcname, data))
        writer.writerow([f"{info_dir}/RECORD", "", ""])
        zf.writestr(f"{info_dir}/RECORD", record.getvalue())
    return target


# --- slim --------------------------------------------------------------------------------------------
_SHARED = re.compile(r"^(.*/)?(lib[^/]+\.so)(\.[0-9.]+)?$")


def _soname(data: bytes) -> str | None:
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".so") as tmp:
        tmp.write(data)
        tmp.flush()
        try:
            out = subprocess.run(["readelf", "-d", tmp.name], capture_output=True, text=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError):
            return None
    m = re.search(r"\(SONAME\)\s+Library soname: \[([^\]]+)\]", out)
    return m.group(1) if m else None


def slim(wheel: Path) -> tuple[int, int]:
    """Rewrite `wheel` in place; returns (bytes before, bytes after)."""
    before = wheel.stat().st_size
    with zipfile.ZipFile(wheel) as zf:
        infos = [i for i in zf.infolist() if not i.filename.endswith("/")]
        drop = {i.filename for i in infos if re.search(r"\.data/data/include/", i.filename)}
        groups: dict[tuple, list[zipfile.ZipInfo]] = {}
        for i in infos:
            m = _SHARED.match(i.filename)
            if m and i.filename not in drop:
                groups.setdefault((m.group(1), m.group(2), i.CRC, i.file_size), []).append(i)
        for members in groups.values():
            if len(members) < 2:
                continue
            soname = _soname(zf.read(members[0]))
            keep = [i for i in members if i.filename.rsplit("/", 1)[-1] == soname]
            if keep:  # the others are byte-identical copies under link names
                drop.update(i.filename for i in members if i is not keep[0])
        if not drop:
            return before, before
        record_name = next(i.filename for i in infos if i.filename.endswith(".dist-info/RECORD"))
        kept = [(i, zf.read(i)) for i in infos if i.filename not in drop and i.filename != record_name]
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    tmp = wheel.with_suffix(".slim")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as out:
        for info, data in kept:
            info.compress_type = zipfile.ZIP_DEFLATED
            out.writestr(info, data)
            writer.writerow(_record_line(info.filename, data))
        writer.writerow([record_name, "", ""])
        out.writestr(record_name, record.getvalue())
    tmp.replace(wheel)
    return before, wheel.stat().st_size


# --- names -------------------------------------------------------------------------------------------
def read_names(paths: list[str]) -> list[str]:
    """Package names from `pip freeze` / `pip list` output, comma/space lists or one name a line."""
    names = []
    for p in paths:
        try:
            text = Path(p).read_text()
        except OSError as exc:
            raise SystemExit(f"bundle: cannot read the package list {p}: {exc.strerror}")
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            if not line or line.startswith(("Package ", "---", "-e ")):
                continue
            for token in re.split(r"[,\s]+", line):
                m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)", token)
                if m and not re.fullmatch(r"[0-9.]+\S*", token):
                    names.append(canonical(m.group(1)))
                break  # one name a line (the rest is a version column)
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bundle_tool")
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("select")
    s.add_argument("--wheels", required=True, type=Path)
    s.add_argument("--python-version", required=True)
    s.add_argument("--skip", default="")
    s.add_argument("--without", default="")
    s.add_argument("roots", nargs="+")
    p = sub.add_parser("pack")
    p.add_argument("--install", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--name", required=True)
    p.add_argument("--version", required=True)
    p.add_argument("--python-tag", required=True)
    p.add_argument("--summary", default="")
    p.add_argument("--requires", default="")
    w = sub.add_parser("slim")
    w.add_argument("wheels", nargs="+", type=Path)
    n = sub.add_parser("names")
    n.add_argument("files", nargs="+")
    args = parser.parse_args(argv)
    if args.cmd == "select":
        split = lambda text: {canonical(t) for t in re.split(r"[,\s]+", text) if t}  # noqa: E731
        result = select(args.wheels, args.roots, split(args.skip), split(args.without), args.python_version)
        print(json.dumps(result, indent=1))
    elif args.cmd == "pack":
        requires = [r for r in re.split(r"[,\s]+", args.requires) if r]
        print(pack(args.install, args.out, args.name, args.version, args.python_tag, requires, args.summary))
    elif args.cmd == "slim":
        before = after = 0
        for wheel in args.wheels:
            b, a = slim(wheel)
            before, after = before + b, after + a
        print(before - after)
    else:
        print(" ".join(dict.fromkeys(read_names(args.files))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
