"""The layout and the dependency rules of the design, read from src/carla_rl/carla_rl with ast.

- The package top holds only ``__init__.py`` and sub-packages: the cores (sim, learner, preprocess, reward,
  curriculum, carla), contract/, nodes/, graph/, cli/, bench/, training/. nodes/ holds only the
  ``<name>_node.py`` executables; their helpers live in nodes/support/.
- The cores (sim, learner, preprocess, reward, curriculum) import no rclpy, no message package and not
  carla_rl.nodes; they take and return numpy arrays and plain dataclasses. Like carla/, they import only
  contract/ and other cores (never graph/, cli/, bench/ or training/).
- contract/ (what every layer shares) imports nothing of carla_rl outside itself, and no ROS.
- learner knows nothing of sim, and sim nothing of learner.
- Only carla/ imports the CARLA Python client (`carla`); carla_msgs only carla/ and the bridge adapter's
  node shell.
- Only nodes/ imports rclpy and message packages (the CLI and the benchmarks reach ROS through
  nodes/support/).
- cli/ is the top: nothing imports it; bench/ and training/ are imported only by cli/.
- No import cycles among carla_rl's modules.

Every import counts, also one inside a function or under ``if TYPE_CHECKING`` (a lazy import is still a
dependency, and one that only dodges a cycle at import time keeps the cycle); a second cycle test looks at
the imports that run when a module is imported (those make a circular-import error).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[2] / "src" / "carla_rl" / "carla_rl"
CORES = ("sim", "learner", "preprocess", "reward", "curriculum")
PACKAGES = CORES + ("carla", "contract", "nodes", "graph", "cli", "bench", "training")


@dataclass(frozen=True)
class Import:
    module: str       # the importing module
    target: str       # the imported module (dotted; for `from x import y`: x.y when that is a module, else x)
    line: int
    module_level: bool


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py"))}


MODULES = _modules()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports_of(module: str, path: Path) -> list[Import]:
    is_package = path.name == "__init__.py"
    out: list[Import] = []

    def visit(node: ast.AST, module_level: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                visit(child, False)
                continue
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.body:  # not run at import time; still a dependency
                    visit(ast.Module(body=[stmt], type_ignores=[]), False)
                for stmt in child.orelse:
                    visit(ast.Module(body=[stmt], type_ignores=[]), module_level)
                continue
            if isinstance(child, ast.Import):
                out.extend(Import(module, a.name, child.lineno, module_level) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = module.split(".") if is_package else module.split(".")[:-1]
                    base = base[:len(base) - (child.level - 1)]
                    source = ".".join(base + ([child.module] if child.module else []))
                else:
                    source = child.module or ""
                for alias in child.names:
                    candidate = f"{source}.{alias.name}"
                    target = candidate if candidate in MODULES else source
                    out.append(Import(module, target, child.lineno, module_level))
            visit(child, module_level)

    visit(ast.parse(path.read_text(), str(path)), True)
    return out


IMPORTS = [imp for module, path in MODULES.items() for imp in _imports_of(module, path)]


def _top(name: str) -> str:
    return name.split(".")[0]


def _is_ros(target: str) -> bool:
    """rclpy or a ROS interface (message / service) package."""
    top = _top(target)
    return top in ("rclpy", "rosidl_runtime_py") or top.endswith(("_msgs", "_srvs", "_interfaces"))


def _in(module: str, package: str) -> bool:
    return module == f"carla_rl.{package}" or module.startswith(f"carla_rl.{package}.")


def _report(found: list[Import]) -> str:
    return "\n".join(f"  {i.module} (line {i.line}) imports {i.target}" for i in found)


def test_the_import_table_is_read():
    """The rules below look at something: known imports are found (a broken reader would pass them all)."""
    targets = {(i.module, i.target) for i in IMPORTS}
    assert any(m == "carla_rl.nodes.support.node_runner" and _top(t) == "rclpy" for m, t in targets)
    assert ("carla_rl.nodes.dqn_policy_node", "std_srvs.srv") in targets
    assert ("carla_rl.nodes.dqn_policy_node", "carla_rl.learner.dqn_agent") in targets
    assert ("carla_rl.learner.dqn_agent", "torch") in targets
    assert any(i.module == "carla_rl.carla.carla_world" and i.target == "carla" for i in IMPORTS)
    assert any(i.module.startswith("carla_rl.sim.") and i.target.startswith("carla_rl.sim.") for i in IMPORTS)


def test_cores_import_no_ros_and_no_nodes():
    found = [i for i in IMPORTS if any(_in(i.module, core) for core in CORES)
             and (_is_ros(i.target) or _in(i.target, "nodes"))]
    assert not found, "a core imports ROS or carla_rl.nodes:\n" + _report(found)


def test_learner_and_sim_do_not_know_each_other():
    found = [i for i in IMPORTS if (_in(i.module, "learner") and _in(i.target, "sim"))
             or (_in(i.module, "sim") and _in(i.target, "learner"))]
    assert not found, "learner and sim must stay apart:\n" + _report(found)


def test_only_carla_imports_the_carla_client_and_messages():
    client = [i for i in IMPORTS if _top(i.target) == "carla" and not _in(i.module, "carla")]
    assert not client, "only carla_rl.carla may import the CARLA client:\n" + _report(client)
    messages = [i for i in IMPORTS if _top(i.target) == "carla_msgs" and not _in(i.module, "carla")
                and i.module != "carla_rl.nodes.carla_bridge_adapter_node"]
    assert not messages, ("only carla_rl.carla and the bridge adapter node import carla_msgs:\n"
                          + _report(messages))


def test_only_nodes_import_rclpy_and_messages():
    found = [i for i in IMPORTS if _is_ros(i.target) and not _in(i.module, "nodes")
             and not (_in(i.module, "carla") and _top(i.target) == "carla_msgs")]
    assert not found, "rclpy / messages outside nodes/:\n" + _report(found)


def test_the_package_top_holds_only_sub_packages():
    loose = sorted(p.name for p in PACKAGE_DIR.glob("*.py") if p.name != "__init__.py")
    assert not loose, f"modules loose at the top of carla_rl (each belongs in a sub-package): {loose}"
    packages = sorted(p.name for p in PACKAGE_DIR.iterdir() if (p / "__init__.py").is_file())
    assert packages == sorted(PACKAGES), f"carla_rl's sub-packages: {packages}"
    without_init = sorted(str(d.relative_to(PACKAGE_DIR)) for d in [PACKAGE_DIR, *PACKAGE_DIR.rglob("*")]
                          if d.is_dir() and d.name != "__pycache__" and any(d.glob("*.py"))
                          and not (d / "__init__.py").is_file())
    assert not without_init, f"folders of modules without __init__.py: {without_init}"


def test_nodes_holds_only_the_executables():
    helpers = sorted(p.name for p in (PACKAGE_DIR / "nodes").glob("*.py")
                     if p.name != "__init__.py" and not p.name.endswith("_node.py"))
    assert not helpers, f"helpers beside the node executables (they belong in nodes/support/): {helpers}"
    executables = [p for p in PACKAGE_DIR.rglob("*_node.py") if p.parent != PACKAGE_DIR / "nodes"]
    assert not executables, f"node executables outside nodes/: {executables}"


def test_contract_stands_alone():
    found = [i for i in IMPORTS if _in(i.module, "contract")
             and ((_top(i.target) == "carla_rl" and not _in(i.target, "contract")) or _is_ros(i.target))]
    assert not found, "contract/ imports another carla_rl layer or ROS:\n" + _report(found)


def test_cores_import_only_contract_and_cores():
    allowed = CORES + ("carla", "contract")
    found = [i for i in IMPORTS if any(_in(i.module, core) for core in ("carla",) + CORES)
             and _top(i.target) == "carla_rl" and i.target != "carla_rl"
             and not any(_in(i.target, p) for p in allowed)]
    assert not found, "a core imports graph/, cli/, bench/, training/ or nodes/:\n" + _report(found)


def test_cli_is_the_top_and_bench_and_training_serve_it():
    found = [i for i in IMPORTS if not _in(i.module, "cli")
             and (_in(i.target, "cli") or ((_in(i.target, "bench") or _in(i.target, "training"))
                                           and not (_in(i.module, "bench") or _in(i.module, "training"))))]
    assert not found, "cli/ imported from below, or bench/ / training/ outside cli/:\n" + _report(found)


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def _module_edges(module_level_only: bool) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    for i in IMPORTS:
        if (i.module_level or not module_level_only) and i.target in MODULES and i.target != i.module:
            edges[i.module].add(i.target)
    return edges


def test_cycle_finder_finds_a_cycle():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(edges) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_at_import_time():
    cycles = _cycles(_module_edges(module_level_only=True))
    assert not cycles, "import cycles among carla_rl modules (imports run at import time):\n" + "\n".join(
        "  " + " <-> ".join(c) for c in cycles)


def test_no_import_cycles():
    cycles = _cycles(_module_edges(module_level_only=False))
    assert not cycles, "import cycles among carla_rl modules (every import, lazy ones too):\n" + "\n".join(
        "  " + " <-> ".join(c) for c in cycles)
