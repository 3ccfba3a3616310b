"""Training without ROS: the graph's cores stepped in one process over a Gymnasium vector env.

The same pieces as the ROS graph — ``carla_rl/Driving-v0`` (World -> ObservationBuilder ->
RewardCalculator, one env per worker process), :class:`DQNAgent` and :class:`CurriculumState` with
the phase table of ``config/curriculum.yaml`` — wired as a plain loop (collector -> replay ->
learner, like Tianshou/SB3) instead of topics. It is for machines where ROS 2 cannot be installed
(a GPU machine without ROS) and for quick experiments; the ROS graph (``carla-rl train``) is the product.

The envs' ticks go through the policy node's collector (:class:`carla_rl.learner.collector.Collector`:
pairing, storing, episode ends, batched acting), stepped in lockstep. Per vector step: the collector
stores the last transitions and acts on all envs (batched, noisy/epsilon exploration), the envs step
in parallel, their ticks go back to the collector, and the gradient steps the replay ratio owes run.
An env whose episode ended (the collector's reset command) is reset at once, into the phase the
curriculum picks (the current one, or for ``review_share`` of the episodes a passed one), and acted on
with the others' step. Evaluations (scheduled by the curriculum, re-evaluations of passed phases
included) run greedily through ``carla-rl eval``'s :class:`PolicyEvaluator`, on evaluation seeds disjoint from
training seeds.

    python -m carla_rl.training.vector_training --envs 12 --device cuda --seconds 1500 --save-dir runs/gpu
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from carla_rl.contract.config import default_config_dir, load_section
from carla_rl.curriculum import CurriculumConfig, CurriculumState, DecisionKind
from carla_rl.reward.stats import EpisodeStats
from carla_rl.contract.scenario import load_phases
from carla_rl.contract.seeds import training_seed

PROGRESS_PERIOD_S = 30.0  # wall seconds between progress lines


@dataclass
class PhaseRecord:
    phase: int
    passed_at_s: float
    total_episodes: int
    env_steps: int


@dataclass
class VectorTrainingSummary:
    wall_s: float = 0.0
    env_steps: int = 0
    updates: int = 0
    total_episodes: int = 0
    final_phase: int = 1
    finished: bool = False
    passed: list[PhaseRecord] = field(default_factory=list)
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    review_episodes: int = 0
    learning_env_steps: int = 0           # env steps of this run after learning_starts
    learning_updates: int = 0             # gradient steps of this run
    configured_env_steps_per_update: float = 0.0  # agent.train_frequency / agent.gradient_steps

    @property
    def env_steps_per_update(self) -> float:
        """The replay ratio held: this run's env steps after ``learning_starts`` per gradient step (NaN:
        no update)."""
        return self.learning_env_steps / self.learning_updates if self.learning_updates else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {"wall_s": round(self.wall_s, 1), "env_steps": self.env_steps, "updates": self.updates,
                "env_steps_per_update": round(self.env_steps_per_update, 3),
                "configured_env_steps_per_update": self.configured_env_steps_per_update,
                "total_episodes": self.total_episodes, "final_phase": self.final_phase,
                "finished": self.finished, "passed": [vars(p) for p in self.passed],
                "review_episodes": self.review_episodes,
                "evaluations": self.evaluations}


def _training_episode_stats(env_id: int, episode_id: int, phase: int, steps: int, total_reward: float,
                            reason: str) -> EpisodeStats:
    """What the curriculum counts of a finished training episode (the env reports its reason only)."""
    return EpisodeStats(env_id=env_id, episode_id=episode_id, phase=phase, evaluation=False,
                        steps=steps, total_reward=total_reward, termination_reason=reason,
                        goal_reached=reason == "goal_reached", collision=reason == "collision",
                        sidewalk=reason == "sidewalk")


def build_curriculum(config_dir: Path, phase: int | None = None, num_episodes: int = 0,
                     num_eval_episodes: int = 0, load_model_from: str | Path = "") -> CurriculumState:
    """The curriculum of a run, as the curriculum manager node builds it: ``curriculum.yaml`` with the
    run's flags over it (see :func:`train_vector`); resumed from the state file of the checkpoint's run
    directory when ``load_model_from`` names a checkpoint and that file exists."""
    config_dir = Path(config_dir)
    overrides: dict[str, Any] = {}
    if phase is not None:
        overrides["initial_phase"] = phase
    if num_episodes:
        overrides["num_episodes"] = num_episodes
    if num_eval_episodes:
        overrides["eval_episodes_override"] = num_eval_episodes
    config = load_section(config_dir / "curriculum.yaml", "curriculum_manager", CurriculumConfig,
                          overrides=overrides,
                          ignore=("num_phases", "phases"))  # the phase table: load_phases
    phases = load_phases(config_dir / "curriculum.yaml")
    if load_model_from and config.state_file:  # checkpoints/<name>.pt of a run directory
        state_path = Path(load_model_from).resolve().parent.parent / config.state_file
        return CurriculumState.load_or_create(state_path, phases, config)
    return CurriculumState(phases, config)


def train_vector(config_dir: Path, num_envs: int, device: str, seconds: float, save_dir: Path | None,
                 seed: int = 0, progress: Callable[[str], None] | None = None, phase: int | None = None,
                 batch_size: int = 0, num_episodes: int = 0, num_eval_episodes: int = 0,
                 load_model_from: str | Path = "") -> VectorTrainingSummary:
    """Train through the curriculum for ``seconds`` of wall time (or until it finishes).

    As the graph's flags of the same names: ``phase`` the initial phase (None: curriculum.yaml's;
    a resumed run keeps its saved one), ``batch_size`` the learner's (0: the agent config's),
    ``num_episodes`` training episodes of the run (0: curriculum.yaml's), ``num_eval_episodes`` episodes
    per evaluation (0: per phase), ``load_model_from`` a checkpoint to resume (weights, optimizer,
    counters, the replay if saved) with the curriculum state of its run directory. The agent config is
    ``agent.yaml`` with the device's preset over it (``agent_cuda.yaml`` on CUDA)."""
    import gymnasium as gym

    from carla_rl.contract.actions import load_action_table
    from carla_rl.training.evaluation_report import AgentDriver, PolicyEvaluator
    from carla_rl.learner.agent_config import ObservationSpec, load_device_agent_config
    from carla_rl.learner.checkpoint import restore_checkpoint, save_checkpoint
    from carla_rl.learner.collector import Collector, Outcome, Tick
    from carla_rl.learner.dqn_agent import DQNAgent
    from carla_rl.sim.driving_env import DrivingEnv

    config_dir = Path(config_dir)
    curriculum = build_curriculum(config_dir, phase, num_episodes, num_eval_episodes, load_model_from)
    agent_cfg = load_device_agent_config(config_dir, device)
    if batch_size:
        agent_cfg = dataclasses.replace(agent_cfg, batch_size=batch_size)
        agent_cfg.validate()

    def make_env(phase: int = curriculum.phase) -> Callable[[], DrivingEnv]:
        return lambda: DrivingEnv(phase=phase, config_dir=config_dir)

    envs = gym.vector.AsyncVectorEnv([make_env() for _ in range(num_envs)],
                                     autoreset_mode=gym.vector.AutoresetMode.DISABLED)
    evaluator = PolicyEvaluator(config_dir, seed)  # the `carla-rl eval` episode loop, one world reused
    episode_index = np.zeros(num_envs, dtype=np.int64)
    seeds = [training_seed(seed, i, 0) for i in range(num_envs)]
    obs, infos = envs.reset(seed=seeds, options={"phase": curriculum.phase})
    episode_index += 1
    masks = np.asarray(infos["action_mask"], dtype=bool)
    phase_of = np.full(num_envs, curriculum.phase)
    spec = ObservationSpec(*obs["frames"].shape[1:], obs["vector"].shape[1])
    agent = DQNAgent(spec, envs.single_action_space.n, agent_cfg, device=device, seed=seed)
    if load_model_from:
        resumed = restore_checkpoint(agent, load_model_from)
        if progress:
            progress(resumed)
    first_env_steps = agent.env_steps
    first_updates = agent.updates
    greedy = AgentDriver(agent, load_action_table(config_dir / "sim.yaml"), "training")
    collector = Collector(num_envs, training=True, agent=agent)  # lockstep envs: always present
    step_ids = np.zeros(num_envs, dtype=np.int64)       # per env, one per tick
    episode_steps = np.zeros(num_envs, dtype=np.int64)
    reasons = [""] * num_envs                           # termination reason of each env's last step

    def feed(env: int, reward: float = 0.0, terminated: bool = False, truncated: bool = False) -> None:
        """The env's newest tick into the collector (episode_step 0: a first tick, reward ignored)."""
        step = int(step_ids[env])
        collector.add_observation(Tick(env, step, int(episode_index[env]), int(episode_steps[env]),
                                       obs["frames"][env], obs["vector"][env], masks[env]))
        collector.add_outcome(Outcome(env, step, float(reward), bool(terminated), bool(truncated)))
        step_ids[env] += 1

    for i in range(num_envs):
        feed(i)
    configured_ratio = agent_cfg.train_frequency / agent_cfg.gradient_steps
    summary = VectorTrainingSummary(configured_env_steps_per_update=configured_ratio)
    eval_index = 0
    interrupted = False
    start = time.monotonic()
    last_report = start
    reported = (agent.env_steps, agent.updates)  # at the last progress line
    actions = np.zeros(num_envs, dtype=np.int64)
    compile_pending = agent_cfg.compile and agent.device.type == "cuda"
    try:
        while time.monotonic() - start < seconds and not curriculum.finished:
            batch = collector.act()  # stores the last transitions; resets for the episodes that ended
            for end in batch.episode_ends:
                i = end.env_id
                stats = _training_episode_stats(i, end.episode_id, int(phase_of[i]), end.steps,
                                                end.total_reward, reasons[i])
                for decision in curriculum.on_episode_end(stats):
                    if decision.kind is DecisionKind.EVALUATE:
                        phase = decision.phase  # the current phase, or a passed one re-evaluated
                        review = phase != curriculum.phase
                        # fresh evaluation seeds every time: episodes eval_index, eval_index + 1, ...
                        result = dataclasses.replace(
                            evaluator.run(greedy, phase, decision.episodes, first_episode=eval_index),
                            stamp_s=time.time())
                        eval_index += decision.episodes
                        summary.evaluations.append({**result.to_dict(), "review": review,
                                                    "at_s": round(time.monotonic() - start, 1)})
                        if curriculum.on_evaluation(result) and result.passed:
                            summary.passed.append(PhaseRecord(phase, round(time.monotonic() - start, 1),
                                                              curriculum.total_episodes, agent.env_steps))
                        if progress:
                            progress(f"{'re-evaluation' if review else 'evaluation'} of phase {phase}: goal {result.goal_rate:.2f}, collision-free "
                                     f"{result.collision_free_rate:.2f}, sidewalk-free "
                                     f"{result.sidewalk_free_rate:.2f} -> "
                                     f"{'passed' if result.passed else 'failed'}; now phase {curriculum.phase}")
            commands = batch.commands
            done = np.zeros(num_envs, dtype=bool)
            done[[c.env_id for c in commands if c.reset]] = True
            if done.any():
                reset_seeds = [training_seed(seed, i, int(episode_index[i])) if done[i] else None
                               for i in range(num_envs)]
                # the curriculum's phase for each new episode: current, or a passed one under review_share
                next_phase = np.array([curriculum.next_episode_phase() if done[i] else phase_of[i]
                                       for i in range(num_envs)])
                for phase in np.unique(next_phase[done]):
                    reset = done & (next_phase == phase)
                    reset_obs, reset_infos = envs.reset(
                        seed=[s if reset[i] else None for i, s in enumerate(reset_seeds)],
                        options={"reset_mask": reset, "phase": int(phase)})
                    for key in ("frames", "vector"):
                        obs[key][reset] = reset_obs[key][reset]
                    masks[reset] = np.asarray(reset_infos["action_mask"], dtype=bool)[reset]
                episode_index[done] += 1
                episode_steps[done] = 0
                phase_of[done] = next_phase[done]
                for i in np.flatnonzero(done):
                    feed(int(i))
                commands = commands + collector.act().commands  # the new episodes' first actions
            for command in commands:
                if not command.reset:
                    actions[command.env_id] = command.action
            obs, rewards, terminated, truncated, infos = envs.step(actions)
            episode_steps += 1
            reasons = [str(r) for r in infos["reason"]]
            for i in range(num_envs):
                feed(i, rewards[i], terminated[i], truncated[i])
            while agent.updates_due() >= agent.updates_per_call:
                if compile_pending and progress:  # one thread here: acting waits for the compile
                    progress(f"first update: compiling the learner (torch.compile, {agent_cfg.compile_mode}); "
                             "minutes on a first start, the envs wait and the time limit is checked after it")
                compile_pending = False
                if agent.update() is None:  # the replay cannot fill a batch yet
                    break
            now = time.monotonic()
            if progress and now - last_report >= PROGRESS_PERIOD_S:
                last_report = now
                steps, updates = agent.env_steps - reported[0], agent.updates - reported[1]
                reported = (agent.env_steps, agent.updates)
                ratio = f"{steps / updates:.2f}" if updates else "-"
                progress(f"{now - start:7.0f} s  phase {curriculum.phase}  episodes {curriculum.total_episodes}  "
                         f"env steps {agent.env_steps} ({(agent.env_steps - first_env_steps) / (now - start):.0f}/s)  "
                         f"updates {agent.updates} ({(agent.updates - first_updates) / (now - start):.0f}/s)  "
                         f"env steps per update {ratio} (configured {configured_ratio:g})")
    except KeyboardInterrupt:  # Ctrl-C: the workers got it too; keep what was learned
        interrupted = True
        if progress:
            progress("interrupted: saving the final checkpoint")
    finally:
        envs.close(terminate=interrupted)
    summary.wall_s = time.monotonic() - start
    summary.env_steps = agent.env_steps
    summary.updates = agent.updates
    summary.learning_updates = agent.updates - first_updates
    summary.learning_env_steps = max(0, agent.env_steps - max(first_env_steps, agent_cfg.learning_starts))
    summary.total_episodes = curriculum.total_episodes
    summary.review_episodes = curriculum.review_episodes
    summary.final_phase = curriculum.phase
    summary.finished = curriculum.finished
    if save_dir is not None:
        save_dir = Path(save_dir)
        save_dir.mkdir(parents=True, exist_ok=True)
        save_checkpoint(agent, save_dir / "checkpoints" / "final.pt", include_replay=False)
        curriculum.save(save_dir / "curriculum_state.json")
        (save_dir / "summary.json").write_text(json.dumps(summary.to_dict(), indent=2))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", type=int, default=4, help="parallel env worker processes")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seconds", type=float, default=600.0, help="wall-time budget")
    parser.add_argument("--save-dir", default="", help="final checkpoint, curriculum state, summary.json")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", default="", help="config directory (default: the package's)")
    args = parser.parse_args(argv)
    config_dir = Path(args.config) if args.config else default_config_dir()
    summary = train_vector(config_dir, args.envs, args.device, args.seconds,
                           Path(args.save_dir) if args.save_dir else None, seed=args.seed,
                           progress=lambda line: print(line, flush=True))
    print(json.dumps(summary.to_dict(), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
