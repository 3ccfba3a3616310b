"""The ROS-free trainer (carla_rl.training.vector_training) runs the curriculum over a Gymnasium vector env:
envs step in worker processes, the agent learns, the curriculum evaluates and advances, and the run
leaves a loadable checkpoint, the curriculum state and a summary."""

import json
import shutil
from pathlib import Path

import pytest

from carla_rl.curriculum import CurriculumState
from carla_rl.learner.checkpoint import restore_checkpoint
from carla_rl.contract.scenario import load_phases

ROOT = Path(__file__).resolve().parents[2]


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{path.name}: {old!r} not found"
    path.write_text(text.replace(old, new))


@pytest.fixture
def small_run_config(tmp_path):
    config = tmp_path / "config"
    shutil.copytree(ROOT / "config", config)
    _edit(config / "curriculum.yaml", "evaluate_every_episodes: 25", "evaluate_every_episodes: 2")
    _edit(config / "curriculum.yaml", "num_episodes: 0 ", "num_episodes: 6 ")
    _edit(config / "agent.yaml", "learning_starts: 5000", "learning_starts: 64")
    return config


def test_vector_trainer_learns_evaluates_and_advances(small_run_config, tmp_path):
    from carla_rl.training.vector_training import train_vector

    lines = []
    summary = train_vector(small_run_config, num_envs=2, device="cpu", seconds=300.0,
                           save_dir=tmp_path / "run", seed=3, progress=lines.append)
    assert summary.finished and summary.total_episodes >= 6   # num_episodes ends the run
    assert summary.updates > 0 and summary.env_steps > 64
    # the replay ratio is held: train_frequency (4) env steps per gradient step after learning_starts
    assert summary.configured_env_steps_per_update == 4.0
    assert 3.5 <= summary.env_steps_per_update <= 4.0, summary.to_dict()
    # phase 1 (forward only) is evaluated after 2 episodes; its pass moves the curriculum on
    assert summary.evaluations and summary.evaluations[0]["phase"] == 1
    assert any("evaluation of phase 1" in line for line in lines)
    assert (summary.final_phase > 1) == any(r.phase == 1 for r in summary.passed)
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert saved["updates"] == summary.updates
    phases = load_phases(small_run_config / "curriculum.yaml")
    from carla_rl.contract.config import load_section
    from carla_rl.curriculum import CurriculumConfig
    state = CurriculumState.load(tmp_path / "run" / "curriculum_state.json", phases,
                                 load_section(small_run_config / "curriculum.yaml", "curriculum_manager",
                                              CurriculumConfig, ignore=("num_phases", "phases")))
    assert state.phase == summary.final_phase and state.total_episodes == summary.total_episodes
    from carla_rl.learner.agent_config import ObservationSpec, load_agent_config
    from carla_rl.learner.dqn_agent import DQNAgent
    agent = DQNAgent(ObservationSpec(4, 84, 84, 58), 6, load_agent_config(small_run_config / "agent.yaml"))
    restore_checkpoint(agent, tmp_path / "run" / "checkpoints" / "final.pt")
    assert agent.updates == summary.updates


def test_vector_trainer_keeps_passed_phases(small_run_config, tmp_path):
    """Phase 1 passes at once (its thresholds set to 0); in phase 2 half of the episodes are phase 1
    reviews, and after each evaluation of phase 2 phase 1 is evaluated again (reported, not advancing)."""
    import yaml

    from carla_rl.training.vector_training import train_vector

    path = small_run_config / "curriculum.yaml"
    data = yaml.safe_load(path.read_text())
    data["/**"]["ros__parameters"]["phases"]["phase_1"]["thresholds"] = {
        "goal_rate": 0.0, "collision_free_rate": 0.0, "sidewalk_free_rate": 0.0}
    manager = data["/**/curriculum_manager"]["ros__parameters"]
    manager.update(num_episodes=10, review_share=0.5, review_every_evaluations=1, eval_episodes_override=1)
    path.write_text(yaml.safe_dump(data))
    lines = []
    summary = train_vector(small_run_config, num_envs=2, device="cpu", seconds=600.0, save_dir=None, seed=5,
                           progress=lines.append)
    assert summary.finished and [r.phase for r in summary.passed][:1] == [1]
    assert summary.final_phase >= 2 and summary.review_episodes >= 1
    current = [e for e in summary.evaluations if not e["review"]]
    reviews = [e for e in summary.evaluations if e["review"]]
    assert [e["phase"] for e in current][:2] == [1, 2] and reviews and {e["phase"] for e in reviews} == {1}
    assert any("re-evaluation of phase 1" in line for line in lines)
