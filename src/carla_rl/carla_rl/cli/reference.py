"""``carla-rl reference``: docs/REFERENCE.md generated from the code.

Nodes come from the graph declaration (``graph.build_graph``), launch arguments from
``graph.OPTION_FLAGS``, the command line from ``cli.build_parser``, topic and service names from
``topics.py`` (with their trailing comments), messages and services from the ``.msg`` / ``.srv``
files of carla_rl_interfaces (read as text), and
each node's parameters from its ``declare_config`` / ``declare_phases`` calls and the ``param(...)``
fields of the config dataclasses (read with ``ast``, so the node modules, which import rclpy, are
never imported). ``--check`` fails when docs/REFERENCE.md differs from what the code gives.
"""

from __future__ import annotations

import ast
import dataclasses
import io
import sys
import tokenize
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]
REFERENCE_PATH = Path("docs") / "REFERENCE.md"
INTERFACES_DIR = Path("src") / "carla_rl_interfaces"
EXAMPLE_ENVS = 2


# ----------------------------------------------------------------------------------------------- sources
def find_repo_root(start: Path | None = None) -> Path:
    """The checkout holding the sources: the first parent of ``start`` (default: the working directory,
    then this file) with ``src/carla_rl_interfaces``."""
    for base in ([start] if start else []) + [Path.cwd(), PACKAGE_DIR]:
        for candidate in [base.resolve(), *base.resolve().parents]:
            if (candidate / INTERFACES_DIR).is_dir() and (candidate / "src" / "carla_rl").is_dir():
                return candidate
    raise FileNotFoundError("no carla_rl checkout (with src/carla_rl_interfaces) found above "
                            f"{start or Path.cwd()}")


def _module_name(path: Path, package_dir: Path) -> str:
    parts = path.relative_to(package_dir.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


class SourceIndex:
    """The package's modules parsed with ast: dataclasses by (module, name) and each module's imports."""

    def __init__(self, package_dir: Path) -> None:
        self.package_dir = package_dir
        self.trees: dict[str, ast.Module] = {}
        self.paths: dict[str, Path] = {}
        for path in sorted(package_dir.rglob("*.py")):
            module = _module_name(path, package_dir)
            self.trees[module] = ast.parse(path.read_text(), str(path))
            self.paths[module] = path
        self.classes: dict[tuple[str, str], ast.ClassDef] = {
            (module, node.name): node
            for module, tree in self.trees.items() for node in tree.body if isinstance(node, ast.ClassDef)}
        self._imports: dict[str, dict[str, tuple[str, str]]] = {}

    def imported_names(self, module: str) -> dict[str, tuple[str, str]]:
        """name bound in ``module`` -> (module it comes from, name there), for ``from x import y`` lines."""
        if module in self._imports:
            return self._imports[module]
        out = self._imports[module] = {}
        for node in ast.walk(self.trees[module]):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    out[alias.asname or alias.name] = (node.module, alias.name)
        return out

    def resolve_class(self, module: str, name: str) -> tuple[str, ast.ClassDef] | None:
        """The class ``name`` as seen from ``module`` (defined there or imported, through re-exports)."""
        seen = set()
        while (module, name) not in seen:
            seen.add((module, name))
            if (module, name) in self.classes:
                return module, self.classes[(module, name)]
            if module not in self.trees:
                return None
            origin = self.imported_names(module).get(name)
            if origin is None:
                return None
            module, name = origin
        return None


# --------------------------------------------------------------------------------------------- parameters
@dataclasses.dataclass(frozen=True)
class ParameterDoc:
    name: str
    type: str
    default: str
    description: str
    range: str
    read_only: bool


def _is_dataclass(node: ast.ClassDef) -> bool:
    for deco in node.decorator_list:
        target = deco.func if isinstance(deco, ast.Call) else deco
        if (isinstance(target, ast.Name) and target.id == "dataclass") or (
                isinstance(target, ast.Attribute) and target.attr == "dataclass"):
            return True
    return False


def _literal(node: ast.AST | None) -> object:
    try:
        return ast.literal_eval(node) if node is not None else None
    except ValueError:
        return None


def _annotation_class(annotation: ast.AST) -> str | None:
    """The bare class name of an annotation that may be a nested config dataclass."""
    if isinstance(annotation, ast.Name):
        return annotation.id
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        return annotation.value if annotation.value.isidentifier() else None
    return None


def _nested_overrides(stmt: ast.AnnAssign, class_name: str) -> tuple[dict[str, str], str]:
    """(leaf defaults set by the field's factory, the field's description) of a nested dataclass field:
    ``param(default_factory=lambda: Cls(x=1.0), description=...)`` gives ``{"x": "1.0"}``."""
    value = stmt.value
    if not (isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "param"):
        return {}, ""
    kwargs = {k.arg: k.value for k in value.keywords if k.arg}
    desc_node = value.args[1] if len(value.args) > 1 else kwargs.get("description")
    factory = kwargs.get("default_factory")
    overrides: dict[str, str] = {}
    if isinstance(factory, ast.Lambda) and isinstance(factory.body, ast.Call):
        call = factory.body
        if isinstance(call.func, ast.Name) and call.func.id == class_name and not call.args:
            overrides = {k.arg: ast.unparse(k.value) for k in call.keywords if k.arg}
    return overrides, str(_literal(desc_node) or "")


def dataclass_parameters(index: SourceIndex, module: str, cls: ast.ClassDef, prefix: str = "",
                         overrides: dict[str, str] | None = None, parent: str = "") -> list[ParameterDoc]:
    """The leaves of a config dataclass under ``prefix``, nested dataclasses flattened with dots.
    ``overrides``: defaults given by the enclosing field's factory; ``parent``: its description."""
    overrides = overrides or {}
    out: list[ParameterDoc] = []
    for stmt in cls.body:
        if not isinstance(stmt, ast.AnnAssign) or not isinstance(stmt.target, ast.Name):
            continue
        name = stmt.target.id
        if name.isupper() or "ClassVar" in ast.unparse(stmt.annotation):
            continue
        nested_name = _annotation_class(stmt.annotation)
        nested = index.resolve_class(module, nested_name) if nested_name else None
        if nested is not None and _is_dataclass(nested[1]):
            leaf_defaults, description = _nested_overrides(stmt, nested_name)
            out += dataclass_parameters(index, nested[0], nested[1], f"{prefix}{name}.", leaf_defaults,
                                        description)
            continue
        default, description, low, high, choices, read_only = "", "", None, None, None, True
        value = stmt.value
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "param":
            kwargs = {k.arg: k.value for k in value.keywords if k.arg}
            if value.args:
                default = ast.unparse(value.args[0])
            elif "default" in kwargs:
                default = ast.unparse(kwargs["default"])
            elif "default_factory" in kwargs:
                default = f"{ast.unparse(kwargs['default_factory'])}()"
            desc_node = value.args[1] if len(value.args) > 1 else kwargs.get("description")
            description = str(_literal(desc_node) or "")
            low, high = kwargs.get("low"), kwargs.get("high")
            choices = kwargs.get("choices")
            read_only = not _literal(kwargs.get("runtime"))  # param(): read-only unless runtime=True
        elif value is not None:
            default = ast.unparse(value)
        default = overrides.get(name, default)
        if parent:
            description = f"{parent}: {description}" if description else parent
        bounds = ""
        if low is not None or high is not None:
            bounds = f"{ast.unparse(low) if low is not None else ''} … {ast.unparse(high) if high is not None else ''}"
        if choices is not None:
            bounds = (bounds + "; " if bounds else "") + f"one of {ast.unparse(choices)}"
        out.append(ParameterDoc(prefix + name, ast.unparse(stmt.annotation), default, description, bounds,
                                read_only))
    return out


def node_parameters(index: SourceIndex, node_module: str) -> list[tuple[str, list[ParameterDoc]]]:
    """(section title, parameters) for each ``declare_config(self, Cls[, "prefix."])`` and
    ``declare_phases(self)`` call in a node module, in source order."""
    sections: list[tuple[str, list[ParameterDoc]]] = []
    calls = [n for n in ast.walk(index.trees[node_module]) if isinstance(n, ast.Call)
             and isinstance(n.func, ast.Name) and n.func.id in ("declare_config", "declare_phases")]
    for call in sorted(calls, key=lambda n: (n.lineno, n.col_offset)):
        if call.func.id == "declare_phases":
            sections.append((PHASE_TABLE_TITLE, []))
            continue
        if len(call.args) < 2 or not isinstance(call.args[1], ast.Name):
            continue
        cls_name = call.args[1].id
        prefix = _literal(call.args[2]) if len(call.args) > 2 else ""
        found = index.resolve_class(node_module, cls_name)
        if found is None:
            raise LookupError(f"{node_module}: declare_config class {cls_name} not found")
        module, cls = found
        title = f"`{module}.{cls_name}`" + (f" under `{prefix}`" if prefix else "")
        sections.append((title, dataclass_parameters(index, module, cls, str(prefix or ""))))
    return sections


PHASE_TABLE_TITLE = "`num_phases` and `phases.phase_<i>.*`: the phase table (see [Phase table](#phase-table))"


def phase_table_parameters(index: SourceIndex) -> list[ParameterDoc]:
    """What ``nodes.ros_parameters.declare_phases`` declares: ``num_phases`` and a PhaseConfig per phase."""
    found = index.resolve_class("carla_rl.contract.scenario", "PhaseConfig")
    if found is None:
        raise LookupError("carla_rl.contract.scenario.PhaseConfig not found")
    params = [ParameterDoc("num_phases", "int", "0", "Number of curriculum phases (config/curriculum.yaml)",
                           "0 … 100", True)]
    return params + dataclass_parameters(index, found[0], found[1], "phases.phase_<i>.")


# ------------------------------------------------------------------------------------------------ topics
@dataclasses.dataclass(frozen=True)
class NameDoc:
    constant: str
    value: str
    note: str
    block: str
    used_by: tuple[str, ...]


def topic_names(index: SourceIndex) -> list[NameDoc]:
    """The string constants of topics.py with their trailing comment, the comment block above them and
    the modules that refer to them (``topics.NAME`` or ``from carla_rl.contract.topics import NAME``)."""
    path = index.paths["carla_rl.contract.topics"]
    source = path.read_text()
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    lines = source.splitlines()
    users: dict[str, set[str]] = {}
    for module, tree in index.trees.items():
        if module == "carla_rl.contract.topics":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "topics":
                users.setdefault(node.attr, set()).add(module)
            elif isinstance(node, ast.ImportFrom) and node.module == "carla_rl.contract.topics":
                for alias in node.names:
                    users.setdefault(alias.name, set()).add(module)
    out: list[NameDoc] = []
    block = ""
    for stmt in index.trees["carla_rl.contract.topics"].body:
        # the last full-line comment above the statement names its block
        for line_no in range(stmt.lineno - 1, 0, -1):
            text = lines[line_no - 1].strip()
            if text.startswith("#"):
                block = comments.get(line_no, block)
                # a block comment may run over several lines: take its first line
                while line_no > 1 and lines[line_no - 2].strip().startswith("#"):
                    line_no -= 1
                    block = comments[line_no]
                break
            if text:
                break
        if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)
                and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)):
            continue
        name = stmt.targets[0].id
        note_lines = [comments[n] for n in range(stmt.lineno, stmt.end_lineno + 1) if n in comments]
        n = stmt.end_lineno + 1  # continuation comments indented under the first
        while n <= len(lines) and lines[n - 1].strip().startswith("#") and lines[n - 1].startswith(" "):
            note_lines.append(comments[n])
            n += 1
        out.append(NameDoc(name, stmt.value.value, " ".join(note_lines), block,
                           tuple(sorted(m.rsplit(".", 1)[-1] for m in users.get(name, ())))))
    return out


# ---------------------------------------------------------------------------------------------- messages
@dataclasses.dataclass(frozen=True)
class FieldDoc:
    type: str
    name: str
    value: str
    comment: str


def parse_interface(text: str) -> tuple[str, list[list[FieldDoc]]]:
    """(leading comment, fields per section) of a .msg / .srv / .action text; sections split at ``---``."""
    header: list[str] = []
    sections: list[list[FieldDoc]] = [[]]
    started = False
    for raw in text.splitlines():
        line, _, comment = raw.partition("#")
        line, comment = line.strip(), comment.strip()
        if line == "---":
            sections.append([])
            started = True
            continue
        if not line:
            if comment and not started:
                header.append(comment)
            continue
        started = True
        type_name, _, rest = line.partition(" ")
        rest = rest.strip()
        if "=" in rest and rest.split("=", 1)[0].strip().isupper():
            name, value = (s.strip() for s in rest.split("=", 1))
            sections[-1].append(FieldDoc(type_name, name, f"= {value}", comment))
        else:
            name, _, default = rest.partition(" ")
            sections[-1].append(FieldDoc(type_name, name, default.strip(), comment))
    return " ".join(header), sections


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _field_table(fields: list[FieldDoc]) -> list[str]:
    if not fields:
        return ["(empty)", ""]
    rows = ["| field | type | default / value | note |", "|---|---|---|---|"]
    rows += [f"| `{f.name}` | `{f.type}` | {_cell(f.value)} | {_cell(f.comment)} |" for f in fields]
    return rows + [""]


# ------------------------------------------------------------------------------------------- command line
def cli_commands() -> list[tuple[str, str, list[tuple[str, str, str]]]]:
    """(command, help, [(argument, default, help)]) for ``carla-rl`` and each of its (sub)commands, from
    cli_parser.build_parser() (the parser the CLI runs)."""
    import argparse

    from carla_rl.cli.parser import build_parser

    out: list[tuple[str, str, list[tuple[str, str, str]]]] = []

    def walk(parser: argparse.ArgumentParser, command: str, help_text: str) -> None:
        rows: list[tuple[str, str, str]] = []
        children: list[tuple[str, argparse.ArgumentParser, str]] = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
                children += [(name, sub, helps.get(name, "")) for name, sub in action.choices.items()]
                continue
            if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
                continue
            name = ", ".join(action.option_strings) or action.dest
            if action.choices and not isinstance(action.choices, dict):
                name += " {" + ",".join(map(str, action.choices)) + "}"
            elif action.option_strings and action.nargs != 0:
                name += f" {action.metavar or action.dest.upper()}"
            unset = action.default is None or action.default is False or action.default == argparse.SUPPRESS
            default = "" if unset or action.required else repr(action.default)
            rows.append((name, default, action.help or ""))
        out.append((command, help_text, rows))
        for name, sub, sub_help in children:
            walk(sub, f"{command} {name}", sub_help)

    walk(build_parser(), "carla-rl", "")
    return out


# ------------------------------------------------------------------------------------------------ output
def generate(repo_root: Path) -> str:
    """The text of docs/REFERENCE.md for the checkout at ``repo_root``."""
    from carla_rl.graph import OPTION_FLAGS, GraphOptions, build_graph, group_processes

    index = SourceIndex(repo_root / "src" / "carla_rl" / "carla_rl")
    out = ["# Reference", "",
           "Generated by `carla-rl reference` (`src/carla_rl/carla_rl/cli/reference.py`) from the graph declaration,",
           "`topics.py`, the interface files and the config dataclasses; `tests/foundation/test_reference.py`",
           "fails when this file is stale. Do not edit by hand.", ""]

    # nodes
    options = GraphOptions(num_envs=EXAMPLE_ENVS)
    specs = build_graph(options)
    out += ["## Nodes", "",
            f"`carla-rl train --parallel-envs {EXAMPLE_ENVS}` (composition `{options.composition}`); other "
            "compositions host the same nodes in other processes.", "",
            "| node | executable | parameter files | process |", "|---|---|---|---|"]
    for process in group_processes(specs):
        for spec in process.components:
            files = ", ".join(f"`{f}`" for f in spec.params_files)
            out.append(f"| `{spec.fqn}` | `{spec.executable}` | {files} | `{process.fqn}` |")
    out.append("")

    # launch arguments
    defaults = GraphOptions()
    out += ["## Launch arguments and `carla-rl train` flags", "",
            "| launch argument | flag | default | description |", "|---|---|---|---|"]
    for field in dataclasses.fields(GraphOptions):
        flag, description = OPTION_FLAGS[field.name]
        flag_cell = f"`{flag}`" if flag else "—"
        out.append(f"| `{field.name}` | {flag_cell} | `{getattr(defaults, field.name)!r}` | {_cell(description)} |")
    out.append("")

    # command line
    out += ["## Command line (`carla-rl`)", ""]
    for command, help_text, rows in cli_commands():
        if not rows and command != "carla-rl":
            out += [f"### `{command}`", "", _cell(help_text) or "(no arguments)", ""]
            continue
        out += [f"### `{command}`", ""] + ([_cell(help_text), ""] if help_text else [])
        if rows:
            out += ["| argument | default | description |", "|---|---|---|"]
            out += [f"| `{_cell(name)}` | {f'`{_cell(default)}`' if default else ''} | {_cell(text)} |"
                    for name, default, text in rows]
            out.append("")

    # topics and services
    names = topic_names(index)
    for title, services in (("Topics", False), ("Services", True)):
        out += [f"## {title}", "",
                "Relative names resolve in the env's namespace (`/env_<i>`); the simulators publish the "
                "bridge-contract sensor topics under `carla/<role_name>/` (role `ego_vehicle`)." if not services else
                "Relative names resolve in the env's namespace (`/env_<i>`).", ""]
        block = None
        for doc in names:
            if doc.constant.endswith("_SERVICE") != services or doc.constant in ("DEFAULT_ROLE_NAME",
                                                                                 "LINK_PREFIX"):
                continue
            if doc.block != block:
                if block is not None:
                    out.append("")
                block = doc.block
                out += [f"**{_cell(block)}**", "", "| name | constant | type and note | used by |",
                        "|---|---|---|---|"]
            used = ", ".join(f"`{m}`" for m in doc.used_by) or "—"
            out.append(f"| `{doc.value}` | `topics.{doc.constant}` | {_cell(doc.note)} | {used} |")
        out.append("")

    # interfaces
    interfaces = repo_root / INTERFACES_DIR
    for kind, title in (("msg", "Messages"), ("srv", "Services (types)")):
        out += [f"## {title} (`carla_rl_interfaces/{kind}`)", ""]
        for path in sorted((interfaces / kind).glob(f"*.{kind}")):
            header, sections = parse_interface(path.read_text())
            out += [f"### {path.stem}", ""]
            if header:
                out += [_cell(header), ""]
            for i, fields in enumerate(sections):
                if kind == "srv":
                    out += [f"{'Request' if i == 0 else 'Response'}:", ""]
                out += _field_table(fields)

    # parameters
    out += ["## Parameters", "",
            "Per executable, from its `declare_config` / `declare_phases` calls. Parameters marked *yes* "
            "under *run time* may be set on the running node (`ros2 param set`): the value is checked "
            "against the range (a refusal says why) and takes effect at once. Every other parameter is "
            "read once at start and is read-only, so setting it is refused. Values come from "
            "`config/*.yaml`; the defaults below apply where a file gives none.", ""]
    def parameter_table(params: list[ParameterDoc]) -> list[str]:
        rows = ["| parameter | type | default | range | run time | description |", "|---|---|---|---|---|---|"]
        rows += [f"| `{p.name}` | `{_cell(p.type)}` | `{_cell(p.default)}` | {_cell(p.range)} | "
                 f"{'' if p.read_only else 'yes'} | {_cell(p.description)} |" for p in params]
        return rows + [""]

    for path in sorted((index.package_dir / "nodes").glob("*_node.py")):
        module = _module_name(path, index.package_dir)
        sections = node_parameters(index, module)
        if not sections:
            continue
        out += [f"### `{path.stem[:-len('_node')]}`", ""]
        for title, params in sections:
            out += [f"{title}" + (":" if params else ""), ""] + (parameter_table(params) if params else [])
    out += ["### Phase table", "",
            "Declared by every node that reads the curriculum's phases (the `/**` block of "
            "`config/curriculum.yaml`), one `PhaseConfig` per phase:", ""]
    out += parameter_table(phase_table_parameters(index))
    return "\n".join(out).rstrip() + "\n"


def run(check: bool = False, repo_root: Path | None = None, stream=sys.stdout) -> int:
    """Write docs/REFERENCE.md, or with ``check`` return 1 when it differs from the generated text."""
    root = find_repo_root(repo_root)
    text = generate(root)
    target = root / REFERENCE_PATH
    if check:
        if not target.is_file() or target.read_text() != text:
            print(f"{target} is stale: run `carla-rl reference` (or python -m carla_rl.cli.reference)", file=stream)
            return 1
        print(f"{target} is up to date", file=stream)
        return 0
    target.write_text(text)
    print(f"wrote {target}", file=stream)
    return 0


if __name__ == "__main__":
    sys.exit(run(check="--check" in sys.argv[1:]))
