"""The learner package's modules import each other at module level only, without cycles, and import
nothing of ROS, the simulator or the nodes (parsed, not imported)."""

import ast
from pathlib import Path

import pytest

LEARNER = Path(__file__).resolve().parents[2] / "src" / "carla_rl" / "carla_rl" / "learner"
FORBIDDEN = ("rclpy", "carla_rl_interfaces", "carla_rl.nodes", "carla_rl.sim", "carla_rl.nodes.support.ros_conversions")


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _imports(tree: ast.Module) -> list[tuple[str, bool]]:
    """(imported module, at module level?) of every import, those under ``if TYPE_CHECKING`` left out
    (annotations only: never executed)."""
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                continue
            if isinstance(child, ast.Import):
                found.extend((alias.name, top) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                found.append((child.module, top))
            visit(child, top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                          ast.ClassDef)))

    visit(tree, True)
    return found


def _graph() -> dict[str, list[tuple[str, bool]]]:
    return {path.stem: _imports(ast.parse(path.read_text())) for path in sorted(LEARNER.glob("*.py"))}


def test_learner_modules_import_each_other_at_module_level_without_cycles():
    graph = _graph()
    edges: dict[str, set[str]] = {}
    for module, imports in graph.items():
        for name, top in imports:
            if name.startswith("carla_rl.learner."):
                target = name.split(".")[2]
                assert top, f"learner/{module}.py imports {name} inside a function: import at module level"
                edges.setdefault(module, set()).add(target)

    def cycle_from(start: str, path: list[str]) -> list[str] | None:
        for nxt in sorted(edges.get(path[-1], ())):
            if nxt == start:
                return path + [nxt]
            if nxt not in path:
                found = cycle_from(start, path + [nxt])
                if found:
                    return found
        return None

    for module in graph:
        cycle = cycle_from(module, [module])
        assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("module", sorted(p.stem for p in LEARNER.glob("*.py")))
def test_learner_modules_import_no_ros_or_simulator(module):
    for name, _ in _graph()[module]:
        assert not name.startswith(FORBIDDEN), f"learner/{module}.py imports {name}"
