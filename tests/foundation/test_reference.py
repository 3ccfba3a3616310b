"""docs/REFERENCE.md is generated from the code (carla_rl.cli.reference) and must match it."""

import dataclasses
import shutil
import subprocess
import sys
import typing
from pathlib import Path

import ast

from carla_rl.cli import reference
from carla_rl.contract import topics
from carla_rl.contract.actions import ActionTable
from carla_rl.contract.config import to_mapping
from carla_rl.reward import RewardConfig

ROOT = Path(__file__).resolve().parents[2]


def test_reference_md_is_up_to_date():
    committed = (ROOT / reference.REFERENCE_PATH).read_text()
    assert committed == reference.generate(ROOT), (
        "docs/REFERENCE.md is stale: run `carla-rl reference` (or python -m carla_rl.cli.reference) and commit it")


def test_generation_does_not_need_rclpy():
    code = ("import sys; sys.modules['rclpy'] = None\n"  # any import of rclpy now raises ImportError
            "from pathlib import Path\nfrom carla_rl.cli import reference\n"
            f"text = reference.generate(Path({str(ROOT)!r}))\n"
            "assert 'rclpy' not in sys.modules or sys.modules['rclpy'] is None\nprint(len(text))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) > 1000


def _leaf_names(cls: type, prefix: str = "") -> list[str]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            out += _leaf_names(tp, f"{prefix}{f.name}.")
        else:
            out.append(prefix + f.name)
    return out


def test_parameters_match_the_dataclasses():
    """The ast reading of a config dataclass gives the same leaves as the imported dataclass."""
    index = reference.SourceIndex(ROOT / "src" / "carla_rl" / "carla_rl")
    sections = dict(reference.node_parameters(index, "carla_rl.nodes.reward_evaluator_node"))
    reward = next(params for title, params in sections.items() if "RewardConfig" in title)
    assert [p.name for p in reward] == _leaf_names(RewardConfig)
    defaults = RewardConfig()
    by_name = {p.name: p for p in reward}
    assert float(by_name["goal_reward"].default) == defaults.goal_reward
    assert reference.PHASE_TABLE_TITLE in sections  # the reward evaluator reads the phase table


def test_nested_defaults_follow_the_field_factories():
    """ActionTable's fields default through lambdas (fast_forward: throttle 0.75, ...): the reference
    shows those values, equal to the imported defaults, leaf by leaf."""
    index = reference.SourceIndex(ROOT / "src" / "carla_rl" / "carla_rl")
    sections = dict(reference.node_parameters(index, "carla_rl.nodes.dqn_policy_node"))
    actions = next(params for title, params in sections.items() if "_SharedActions" in title)
    expected = to_mapping(ActionTable())
    assert len(actions) == sum(len(v) for v in expected.values())
    for p in actions:
        _, action, leaf = p.name.split(".")
        assert ast.literal_eval(p.default) == expected[action][leaf], p.name


def test_every_name_and_interface_is_listed():
    text = reference.generate(ROOT)
    for name in dir(topics):
        value = getattr(topics, name)
        if name.isupper() and isinstance(value, str) and name not in ("DEFAULT_ROLE_NAME", "LINK_PREFIX"):
            assert f"| `{value}` | `topics.{name}` |" in text, name
    interfaces = ROOT / "src" / "carla_rl_interfaces"
    for path in [*interfaces.glob("msg/*.msg"), *interfaces.glob("srv/*.srv")]:
        assert f"### {path.stem}\n" in text, path.name
    for command in ("train", "eval", "sim", "set-phase", "status", "bench graph", "bench chain", "record",
                    "replay", "reference"):
        assert f"### `carla-rl {command}`\n" in text, command
    assert "| `--parallel-envs N` | `1` |" in text  # flags with their defaults, 0 and '' included
    assert "| `--seed SEED` | `0` |" in text
    observation = (interfaces / "msg" / "Observation.msg").read_text()
    header, (fields,) = reference.parse_interface(observation)
    assert "preprocessed observation" in header
    assert [f.name for f in fields][:3] == ["header", "env_id", "step_id"]
    assert all(f"| `{f.name}` | `{f.type}` |" in text for f in fields)


def test_check_fails_when_stale_and_passes_after_writing(tmp_path):
    shutil.copytree(ROOT / "src", tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (tmp_path / "docs").mkdir()
    out = tmp_path / "out.txt"
    with open(out, "w") as stream:
        assert reference.run(check=True, repo_root=tmp_path, stream=stream) == 1  # missing
        assert reference.run(check=False, repo_root=tmp_path, stream=stream) == 0
        assert reference.run(check=True, repo_root=tmp_path, stream=stream) == 0
        msg = tmp_path / "src" / "carla_rl_interfaces" / "msg" / "StepReward.msg"
        msg.write_text(msg.read_text() + "float32 new_field_for_the_test  # added\n")
        assert reference.run(check=True, repo_root=tmp_path, stream=stream) == 1  # a message changed
    assert "is stale" in out.read_text()


def test_run_time_column_follows_the_dataclasses():
    """The reference marks exactly the ``param(..., runtime=True)`` fields as settable at run time."""
    import dataclasses

    from carla_rl.curriculum.config import CurriculumConfig

    index = reference.SourceIndex(ROOT / "src" / "carla_rl" / "carla_rl")
    sections = dict(reference.node_parameters(index, "carla_rl.nodes.curriculum_manager_node"))
    schedule = next(params for title, params in sections.items() if "CurriculumConfig" in title)
    expected = [f.name for f in dataclasses.fields(CurriculumConfig) if f.metadata["runtime"]]
    assert expected and [p.name for p in schedule if not p.read_only] == expected
