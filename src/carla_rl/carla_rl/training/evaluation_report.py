"""``carla-rl eval``: evaluation episodes per phase for the scripted autopilot, a random policy or a
trained checkpoint, on the same core code as training (World, ObservationBuilder, RewardCalculator,
EvaluationAggregator with the phase thresholds). Seeds come from the evaluation range
(carla_rl.contract.seeds), disjoint from every training seed. Writes a markdown table, a CSV and a PNG chart.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from carla_rl.contract.actions import NUM_ACTIONS, load_action_table
from carla_rl.contract.config import load_section
from carla_rl.preprocess import ObservationBuilder, PreprocessConfig, action_mask
from carla_rl.reward import (EpisodeStatsAccumulator, EvaluationAggregator, EvaluationResult,
                             RewardCalculator, RewardConfig)
from carla_rl.contract.scenario import load_phases
from carla_rl.contract.seeds import evaluation_seed
from carla_rl.sim.autopilot import Autopilot
from carla_rl.sim.episode import DrivingEpisode
from carla_rl.sim.sim_config import load_sim_config
from carla_rl.sim.world import World

COLUMNS = ("policy", "phase", "name", "episodes", "goal_rate", "collision_free_rate", "sidewalk_free_rate",
           "mean_reward", "passed")


# Drivers: start(world, allowed_actions) at each episode, control(frame, observation) each tick.
class AutopilotDriver:
    name = "autopilot"
    needs_observation = False

    def start(self, world: World, allowed_actions: list[int]) -> None:
        self.autopilot = Autopilot(world)

    def control(self, frame, observation):
        return self.autopilot(frame)


class RandomDriver:
    name = "random"
    needs_observation = False

    def __init__(self, actions, seed: int) -> None:
        self.actions = actions
        self.rng = np.random.default_rng(seed)

    def start(self, world: World, allowed_actions: list[int]) -> None:
        self.allowed = list(allowed_actions) or list(range(NUM_ACTIONS))

    def control(self, frame, observation):
        return self.actions.control(int(self.rng.choice(self.allowed)))


class AgentDriver:
    """A DQNAgent acting greedily (a loaded checkpoint, or the agent being trained)."""

    needs_observation = True

    def __init__(self, agent, actions, name: str) -> None:
        self.agent = agent
        self.actions = actions
        self.name = name

    def start(self, world: World, allowed_actions: list[int]) -> None:
        self.mask = action_mask(allowed_actions).astype(bool)[None]

    def control(self, frame, observation):
        frames, vector = observation
        result = self.agent.act(frames[None], vector[None], explore=False, action_mask=self.mask)
        return self.actions.control(int(result.actions[0]))


@dataclass
class PhaseReport:
    policy: str
    phase: int
    name: str
    result: EvaluationResult

    def row(self) -> dict:
        r = self.result
        return {"policy": self.policy, "phase": self.phase, "name": self.name, "episodes": r.episodes,
                "goal_rate": round(r.goal_rate, 3), "collision_free_rate": round(r.collision_free_rate, 3),
                "sidewalk_free_rate": round(r.sidewalk_free_rate, 3), "mean_reward": round(r.mean_reward, 1),
                "passed": bool(r.passed)}


def make_driver(policy: str, config_dir: Path, seed: int, device: str):
    actions = load_action_table(config_dir / "sim.yaml")
    if policy == "autopilot":
        return AutopilotDriver()
    if policy == "random":
        return RandomDriver(actions, seed)
    if not Path(policy).is_file():
        raise FileNotFoundError(f"--policy {policy}: not autopilot, random or an existing checkpoint file")
    from carla_rl.learner.checkpoint import load_checkpoint

    return AgentDriver(load_checkpoint(policy, device=device), actions, Path(policy).stem)


class PolicyEvaluator:
    """Evaluation episodes of a driver on one embedded world (reused across calls and phases), with
    the phase thresholds; episode ``k`` of a phase runs on ``evaluation_seed(seed, phase, k)``."""

    def __init__(self, config_dir: Path, seed: int) -> None:
        self.table = load_phases(config_dir / "curriculum.yaml")
        self.sim_cfg = load_sim_config(config_dir / "sim.yaml")
        self.builder = ObservationBuilder(load_section(config_dir / "preprocess.yaml", "sensor_preprocessor",
                                                       PreprocessConfig))
        self.calculator = RewardCalculator(load_section(config_dir / "reward.yaml", "reward_evaluator",
                                                        RewardConfig))
        self.seed = seed
        self.world: World | None = None
        self.episode: DrivingEpisode | None = None

    def phase_config(self, phase: int):
        if not 1 <= phase <= len(self.table):
            raise ValueError(f"phase {phase} does not exist: valid phases are 1..{len(self.table)}")
        return self.table[phase - 1]

    def run(self, driver, phase: int, episodes: int, first_episode: int = 0) -> EvaluationResult:
        """Episodes ``first_episode`` .. ``first_episode + episodes - 1`` of ``phase``."""
        cfg = self.phase_config(phase)
        scenario = cfg.scenario
        if self.world is None:
            self.world = World(self.sim_cfg, scenario, seed=self.seed)
            self.episode = DrivingEpisode(self.world, self.builder, self.calculator)
        episode = self.episode
        aggregator = EvaluationAggregator(phase, cfg.thresholds, episodes)
        stats = EpisodeStatsAccumulator()
        for k in range(first_episode, first_episode + episodes):
            frame = episode.reset(evaluation_seed(self.seed, phase, k), scenario, phase, evaluation=True)
            driver.start(self.world, scenario.allowed_actions)
            stats.start(0, k, phase, True)
            while True:
                observation = episode.observation() if driver.needs_observation else None
                result = episode.step(driver.control(frame, observation))
                frame = episode.frame
                stats.add(result, frame.situation, frame.odometry, episode.speed)
                if result.done:
                    break
            aggregator.add(stats.finish())
        return aggregator.result()


def evaluate(driver, phases: list[int], episodes: int, seed: int, config_dir: Path,
             on_phase=None) -> list[PhaseReport]:
    """``episodes`` evaluation episodes of ``driver`` per phase; ``on_phase(report)`` after each phase."""
    evaluator = PolicyEvaluator(config_dir, seed)
    reports = []
    for phase in phases:
        reports.append(PhaseReport(driver.name, phase, evaluator.phase_config(phase).scenario.name,
                                   evaluator.run(driver, phase, episodes)))
        if on_phase is not None:
            on_phase(reports[-1])
    return reports


def write_outputs(reports: list[PhaseReport], output_dir: Path) -> dict[str, Path]:
    output_dir.mkdir(parents=True, exist_ok=True)
    rows = [r.row() for r in reports]
    csv_path = output_dir / "evaluation.csv"
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    md_path = output_dir / "evaluation.md"
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(row[c]) for c in COLUMNS) + " |" for row in rows]
    md_path.write_text("\n".join(lines) + "\n")
    png_path = output_dir / "evaluation.png"
    _bar_chart(reports, png_path)
    return {"csv": csv_path, "markdown": md_path, "png": png_path}


def _bar_chart(reports: list[PhaseReport], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    policies = list(dict.fromkeys(r.policy for r in reports))
    phases = sorted({r.phase for r in reports})
    metrics = (("goal_rate", "goal completion"), ("collision_free_rate", "collision-free"),
               ("sidewalk_free_rate", "sidewalk-free"))
    fig, axes = plt.subplots(len(metrics), 1, figsize=(max(6, len(phases) * 0.9), 8), sharex=True)
    width = 0.8 / max(len(policies), 1)
    x = np.arange(len(phases))
    for ax, (key, label) in zip(axes, metrics):
        for i, policy in enumerate(policies):
            values = [next((getattr(r.result, key) for r in reports if r.policy == policy and r.phase == p), 0.0)
                      for p in phases]
            ax.bar(x + (i - (len(policies) - 1) / 2) * width, values, width, label=policy)
        ax.set_ylabel(label)
        ax.set_ylim(0, 1.05)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(loc="upper right", fontsize="small")
    axes[-1].set_xticks(x, [str(p) for p in phases])
    axes[-1].set_xlabel("phase")
    fig.suptitle("Evaluation per phase")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
