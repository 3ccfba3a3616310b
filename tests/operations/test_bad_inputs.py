"""Bad recordings give one clear line (and a non-zero exit), never a traceback."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from carla_rl.nodes.support import mcap_io
from ros_testing import ros_env


def carla_rl(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "carla_rl.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout, env=ros_env(), stdin=subprocess.DEVNULL)


def valid_file(path):
    recorder = mcap_io.McapRecorder(path)
    recorder.add_topic("/ops_bad/chatter", "std_msgs/msg/String")
    for i in range(200):
        recorder.write("/ops_bad/chatter", b"\x00\x01\x00\x00\x06\x00\x00\x00hello\x00", i * 1000)
    recorder.close()
    return path


def one_error_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_replay_of_a_missing_file(tmp_path):
    result = carla_rl("replay", str(tmp_path / "nope.mcap"))
    assert result.returncode == 1
    assert one_error_line(result) == f"carla-rl: error: {tmp_path / 'nope.mcap'}: no such file"


def test_replay_of_a_truncated_file(tmp_path):
    path = valid_file(tmp_path / "cut.mcap")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    result = carla_rl("replay", str(path))
    assert result.returncode == 1
    assert "truncated MCAP file" in one_error_line(result)


def test_replay_of_a_file_that_is_not_mcap(tmp_path):
    path = tmp_path / "notes.mcap"
    path.write_text("not a recording\n")
    result = carla_rl("replay", str(path))
    assert result.returncode == 1
    assert "not an MCAP file" in one_error_line(result)


def test_record_refuses_to_overwrite(tmp_path):
    path = valid_file(tmp_path / "keep.mcap")
    before = path.read_bytes()
    result = carla_rl("record", str(path), "--duration", "1")
    assert result.returncode == 1
    assert "exists" in one_error_line(result)
    assert path.read_bytes() == before


@pytest.mark.ros
def test_replay_node_with_a_missing_file_exits_with_a_configuration_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "carla_rl.nodes.mcap_replay_node", "--ros-args", "-p",
                             f"file:={tmp_path / 'nope.mcap'}"], capture_output=True, text=True, timeout=60,
                            env=ros_env(), stdin=subprocess.DEVNULL)
    assert result.returncode == 2
    assert f"configuration error: {tmp_path / 'nope.mcap'}: no such file" in result.stderr
    assert "Traceback" not in result.stderr


def test_player_reports_corrupt_chunks(tmp_path):
    path = valid_file(tmp_path / "flipped.mcap")
    from mcap.reader import make_reader

    with open(path, "rb") as f:
        chunk = make_reader(f).get_summary().chunk_indexes[0]
    data = bytearray(path.read_bytes())
    inside = chunk.chunk_start_offset + chunk.chunk_length - 16  # compressed records of the chunk
    data[inside: inside + 8] = b"\xff" * 8
    path.write_bytes(bytes(data))
    with pytest.raises(mcap_io.McapIoError, match="flipped.mcap"):
        list(mcap_io.McapPlayer(path).messages())


# --- learner inputs: checkpoints and transitions ---------------------------------------------------------
def tiny_agent(capacity: int = 64):
    from carla_rl.learner.agent_config import AgentConfig, NetworkConfig, ObservationSpec
    from carla_rl.learner.dqn_agent import DQNAgent

    cfg = AgentConfig()
    cfg.network = NetworkConfig(conv_channels=[4], conv_kernels=[3], conv_strides=[2], vector_hidden=[8],
                                hidden_size=16)
    cfg.replay.capacity = capacity
    cfg.n_atoms = 5
    cfg.reward_scale = 1.0
    return DQNAgent(ObservationSpec(frame_stack=2, height=8, width=8, vector_size=2), 6, cfg, seed=1)


class RunsCodeWhenUnpickled:
    """A payload that creates a folder when unpickled by a loader that runs arbitrary globals."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return os.mkdir, (self.marker,)


def test_a_checkpoint_with_a_pickle_payload_is_refused_and_never_run(tmp_path):
    from carla_rl.learner.checkpoint import CheckpointError, read_checkpoint, write_file
    from carla_rl.graph.supervisor import latest_checkpoint

    marker = tmp_path / "code_ran"
    evil = tmp_path / "run" / "checkpoints" / "episode_0000100.pt"
    write_file(evil, {"fingerprint": "x", "online": RunsCodeWhenUnpickled(marker)})  # valid header and digest
    with pytest.raises(CheckpointError, match=r"episode_0000100.pt: unreadable checkpoint payload: "
                                              r"Weights only load failed"):
        read_checkpoint(evil)
    skipped = []
    assert latest_checkpoint(tmp_path / "run", skipped.append) == ""  # the supervisor never resumes it
    assert len(skipped) == 1 and "unreadable checkpoint payload" in skipped[0]
    assert not marker.exists()


def stream(agent, env, rewards, vectors, start_at=0):
    """One env's ticks: observe + record_action, episode start at ``start_at``; returns the seqs."""
    seqs = []
    for t, (reward, vector) in enumerate(zip(rewards, vectors)):
        seqs.append(agent.observe(env, np.full((8, 8), t, np.uint8), np.asarray(vector, np.float32), reward,
                                  False, False, t == start_at))
        agent.record_action(env, t % 6)
    return seqs


@pytest.mark.parametrize("bad", ["nan_reward", "inf_reward", "nan_feature", "inf_feature"])
def test_non_finite_rewards_or_features_are_dropped_counted_and_never_stored(bad):
    from carla_rl.learner.replay_buffer import NO_LINK

    agent = tiny_agent()
    replay = agent.replay
    rewards, vectors = [1.0] * 6, [[0.5, 0.5]] * 6
    if bad.endswith("reward"):
        rewards[3] = float("nan") if bad.startswith("nan") else float("inf")
    else:
        vectors[3] = [0.5, float("nan") if bad.startswith("nan") else float("-inf")]
    seqs = stream(agent, 0, rewards, vectors)
    assert seqs[:3] == [0, 1, 2] and seqs[3:] == [NO_LINK] * 3  # the rest of the episode is not stored
    assert replay.non_finite_dropped == 1 and replay.total == 3
    assert np.isfinite(replay.rewards).all() and np.isfinite(replay.vectors).all()
    assert not replay.is_valid(np.array([2]))[0]  # the transition whose outcome was bad has no outcome
    # the next episode is stored again, from its first tick
    seqs = stream(agent, 0, [0.0, 1.0, 1.0], [[0.1, 0.1]] * 3)
    assert seqs == [3, 4, 5] and replay.non_finite_dropped == 1
    assert bool(replay.is_valid(np.array([3]))[0])
    for _ in range(5):
        sample = replay.sample(2)
        assert np.isfinite(sample.returns).all() and np.isfinite(sample.vectors).all()


def test_a_non_finite_reward_at_an_episode_start_is_not_an_outcome_and_is_kept():
    agent = tiny_agent()
    assert stream(agent, 0, [float("nan"), 1.0], [[0.0, 0.0]] * 2) == [0, 1]
    assert agent.replay.non_finite_dropped == 0


def test_the_policy_reports_non_finite_inputs_on_diagnostics():
    """Rejected by the policy's collector before the replay, or by the replay fed directly: both count."""
    import types
    from collections import Counter

    from carla_rl.learner.collector import Collector, Outcome, Tick
    from carla_rl.nodes.dqn_policy_node import NON_FINITE_COUNTER, DQNPolicyNode

    agent = tiny_agent()
    stream(agent, 1, [1.0, float("nan"), 1.0], [[0.0, 0.0]] * 3)
    counters = Counter()
    collector = Collector(2, counters=counters, agent=agent)
    frames = np.zeros((2, 8, 8), np.uint8)
    for step, reward in enumerate([0.0, float("inf")]):
        collector.add_observation(Tick(0, step, 7, step, frames, np.zeros(2, np.float32)))
        collector.add_outcome(Outcome(0, step, reward, False, False))
        collector.act()
    node = types.SimpleNamespace(collector=collector, agent=agent,
                                 cfg=types.SimpleNamespace(compile_silence_s=600.0),
                                 diag=types.SimpleNamespace(counters=counters, values={}))
    DQNPolicyNode.report_replay_counters(node)
    assert node.diag.counters[NON_FINITE_COUNTER] == 2
    assert node.diag.values == {"envs_present": "1"}   # a CPU learner announces no compile silence


@pytest.mark.parametrize("entry", ["folder_dotdot", "folder_absolute", "chunk_dotdot", "chunk_absolute",
                                   "chunk_symlink"])
def test_replay_manifest_entries_outside_their_folder_are_refused(tmp_path, entry):
    from carla_rl.learner.checkpoint import CheckpointError, read_checkpoint, read_file, save_checkpoint, write_file

    agent = tiny_agent()
    stream(agent, 0, [1.0] * 10, [[0.0, 0.0]] * 10)
    path = save_checkpoint(agent, tmp_path / "run" / "a.pt", include_replay=True, chunk_slots=16)
    read_checkpoint(path)  # as written: fine
    outside = tmp_path / "outside"
    outside.mkdir()
    state = read_file(path)
    manifest = state["replay_manifest"]
    folder = path.parent / manifest["dir"]
    name, digest = manifest["chunks"][0]
    (outside / name).write_bytes((folder / name).read_bytes())  # the same bytes, elsewhere
    if entry == "folder_dotdot":
        manifest["dir"] = "../outside"
    elif entry == "folder_absolute":
        manifest["dir"] = str(outside)
    elif entry == "chunk_dotdot":
        manifest["chunks"][0] = [f"../../outside/{name}", digest]
    elif entry == "chunk_absolute":
        manifest["chunks"][0] = [str(outside / name), digest]
    else:
        (folder / "linked.pt").symlink_to(outside / name)
        manifest["chunks"][0] = ["linked.pt", digest]
    write_file(path, state)
    with pytest.raises(CheckpointError, match=r"a.pt: replay (folder|chunk) .* in the replay manifest "
                                              r"(is not a plain name|leads outside .*): refused"):
        read_checkpoint(path)


def test_the_policy_announces_a_silence_while_its_learner_compiles_for_the_first_time():
    """The status asks the supervisor to accept compile_silence_s of silence until the first compile is done."""
    import types
    from collections import Counter

    from carla_rl.contract.topics import EXPECTED_SILENCE_KEY
    from carla_rl.learner.collector import Collector
    from carla_rl.nodes.dqn_policy_node import DQNPolicyNode

    agent = types.SimpleNamespace(compiling=True)
    node = types.SimpleNamespace(collector=Collector(1, counters=Counter(), agent=tiny_agent()), agent=agent,
                                 cfg=types.SimpleNamespace(compile_silence_s=600.0),
                                 diag=types.SimpleNamespace(counters=Counter(), values={}))
    DQNPolicyNode.report_replay_counters(node)
    assert node.diag.values[EXPECTED_SILENCE_KEY] == "600"
    agent.compiling = False                      # compiled: the next status says nothing of it
    DQNPolicyNode.report_replay_counters(node)
    assert EXPECTED_SILENCE_KEY not in node.diag.values
    node.cfg.compile_silence_s, agent.compiling = 0.0, True   # switched off
    DQNPolicyNode.report_replay_counters(node)
    assert EXPECTED_SILENCE_KEY not in node.diag.values
