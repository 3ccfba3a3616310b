"""dqn_policy's /carla_rl/save_checkpoint writes only inside the run's save directory: any other path
(absolute elsewhere, '..', a symbolic link leading out) is refused with a clear message, nothing is
created or deleted outside it, and a replay folder beside a checkpoint that is a symbolic link is never
followed."""

import threading
import types
from pathlib import Path

import pytest

pytest.importorskip("rclpy", reason="rclpy missing: run through `make test`")

from carla_rl.learner.agent_config import AgentConfig, NetworkConfig, ObservationSpec  # noqa: E402
from carla_rl.learner.checkpoint import read_checkpoint  # noqa: E402
from carla_rl.learner.dqn_agent import DQNAgent  # noqa: E402
from carla_rl.nodes.dqn_policy_node import DQNPolicyNode, PolicyNodeConfig  # noqa: E402
from carla_rl_interfaces.srv import SaveCheckpoint  # noqa: E402


def tiny_agent() -> DQNAgent:
    cfg = AgentConfig()
    cfg.network = NetworkConfig(conv_channels=[4], conv_kernels=[3], conv_strides=[2], vector_hidden=[8],
                                hidden_size=16)
    cfg.replay.capacity = 64
    cfg.n_atoms = 5
    return DQNAgent(ObservationSpec(frame_stack=2, height=8, width=8, vector_size=2), 6, cfg, seed=1)


@pytest.fixture
def policy(tmp_path):
    save_dir = tmp_path / "run"
    node = types.SimpleNamespace(cfg=PolicyNodeConfig(save_dir=str(save_dir)), agent=tiny_agent(),
                                 learn_lock=threading.Lock(), checkpoint_dir=save_dir / "checkpoints")
    node.save = lambda path, include_replay: DQNPolicyNode.save(node, path, include_replay)
    return node


def call(node, path="", tag="") -> SaveCheckpoint.Response:
    request = SaveCheckpoint.Request(path=str(path), tag=tag)
    return DQNPolicyNode.on_save_checkpoint(node, request, SaveCheckpoint.Response())


def files_under(path: Path) -> list[Path]:
    return sorted(path.rglob("*"))


def test_default_relative_and_absolute_paths_inside_the_save_directory(policy, tmp_path):
    save_dir = tmp_path / "run"
    response = call(policy, tag="manual")
    assert response.success, response.message
    assert Path(response.path) == (save_dir / "checkpoints" / "manual.pt").resolve()
    response = call(policy, "exports/deep/a.pt")  # relative: from the save directory; folders created
    assert response.success and Path(response.path) == (save_dir / "exports" / "deep" / "a.pt").resolve()
    response = call(policy, save_dir / "checkpoints" / ".." / "b.pt")  # '..' that stays inside is fine
    assert response.success and Path(response.path) == (save_dir / "b.pt").resolve()
    for name in ("checkpoints/manual.pt", "exports/deep/a.pt", "b.pt"):
        read_checkpoint(save_dir / name)


@pytest.mark.parametrize("where", ["absolute", "dotdot", "symlinked_folder", "symlinked_file", "save_dir"])
def test_paths_that_leave_the_save_directory_are_refused(policy, tmp_path, where):
    save_dir, outside = tmp_path / "run", tmp_path / "outside"
    save_dir.mkdir()
    outside.mkdir()
    (outside / "keep.pt.replay-1").mkdir()
    (outside / "keep.pt.replay-1" / "chunk_00000.pt").write_bytes(b"someone else's data")
    (save_dir / "link").symlink_to(outside, target_is_directory=True)
    (save_dir / "file.pt").symlink_to(outside / "keep.pt")
    requested = {"absolute": outside / "keep.pt", "dotdot": "../outside/keep.pt",
                 "symlinked_folder": "link/keep.pt", "symlinked_file": "file.pt", "save_dir": save_dir}[where]
    before = files_under(outside)
    response = call(policy, requested)
    assert not response.success
    assert response.message.startswith(f"{requested}: refused: outside the run's save directory "
                                       f"{save_dir.resolve()}"), response.message
    assert files_under(outside) == before
    assert (outside / "keep.pt.replay-1" / "chunk_00000.pt").read_bytes() == b"someone else's data"


def test_a_name_that_is_not_a_checkpoint_file_is_refused(policy, tmp_path):
    response = call(policy, "notes.txt")
    assert not response.success and response.message == "notes.txt: refused: a checkpoint file name ends in .pt"
    assert not (tmp_path / "run" / "notes.txt").exists()


def test_a_replay_folder_that_is_a_symbolic_link_is_not_followed(policy, tmp_path):
    save_dir, outside = tmp_path / "run", tmp_path / "outside"
    outside.mkdir()
    (outside / "data.bin").write_bytes(b"precious")
    (save_dir / "checkpoints").mkdir(parents=True)
    (save_dir / "checkpoints" / "manual.pt.replay-0-deadbeef").symlink_to(outside, target_is_directory=True)
    assert call(policy, tag="manual").success
    assert (outside / "data.bin").read_bytes() == b"precious"
