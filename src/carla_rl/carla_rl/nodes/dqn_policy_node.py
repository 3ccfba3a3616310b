"""dqn_policy: one Rainbow DQN agent acting for every env and learning in the background.

The ROS shell of the collector core (carla_rl.learner.collector, shared with the Gymnasium trainer):
per env it pairs the Observation and the StepReward of the same tick (by step id), stores the
transition in the replay, and either asks the simulator for a reset (episode over) or acts. Ready
envs are acted on together: as soon as every present env is ready, or when the micro-batching
window since the first ready env expires. An env is present from its first observation until
``env_absent_after_s`` without a message. Gradient steps run in a learner thread on the online
network; acting uses an actor copy that the learner refreshes every ``actor_sync_updates`` updates,
so acting never waits for a gradient step (only for that short copy).
"""

from __future__ import annotations

import contextlib
import copy
import math
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from std_srvs.srv import SetBool

from carla_rl.nodes.support import ros_conversions as conv
from carla_rl.contract import topics
from carla_rl.contract.actions import NUM_ACTIONS, ActionTable
from carla_rl.contract.config import param
from carla_rl.contract.topics import EXPECTED_SILENCE_KEY
from carla_rl.learner.agent_config import AgentConfig, ObservationSpec
from carla_rl.learner import collector as core
from carla_rl.learner.checkpoint import (REPLAY_CHUNK_SLOTS, CheckpointError, confined_checkpoint_path,
                                         poisoned_weights, remove_checkpoint, remove_orphan_replays,
                                         restore_checkpoint, save_checkpoint)
from carla_rl.learner.dqn_agent import DQNAgent, DQNPolicy
from carla_rl.nodes.support import qos_profiles as qos
from carla_rl.nodes.support.diagnostics import DiagnosticsReporter
from carla_rl.nodes.support.intra_process import ComposableNode
from carla_rl.nodes.support.node_runner import fail_process, freeze_heap, run_node
from carla_rl.nodes.support.ros_parameters import declare_config, set_timer_period
from carla_rl_interfaces.msg import Observation, StepReward, TrainingStats, VehicleCommand
from carla_rl_interfaces.srv import SaveCheckpoint


@dataclass(frozen=True)
class PolicyNodeConfig:
    num_envs: int = param(1, "Number of environments (namespaces /env_0 ...)", low=1, high=1024,
                          read_only=True)
    device: str = param("cpu", "torch device: cpu or cuda[:N]", read_only=True)
    seed: int = param(0, "Seed of the agent (network init, exploration, replay sampling)", low=0,
                      high=2**31 - 1, read_only=True)
    training: bool = param(True, "Learn (False: act greedily, store nothing)", read_only=True)
    start_learning: bool = param(True, "Start the learner thread's gradient steps at once (else wait for "
                                 "/carla_rl/set_learning; transitions are stored either way)")
    save_dir: str = param("runs/latest", "Run directory; checkpoints go to <save_dir>/checkpoints",
                          read_only=True)
    load_model_from: str = param("", "Checkpoint to resume from ('' = fresh agent)", read_only=True)
    torch_threads: int = param(1, "torch intra-op threads of this process (0 = torch's default, one per "
                               "core). 1 on small machines: with more, acting spin-waits against the "
                               "simulator processes (batch-1 act, 2 cores, graph running: 1.4 ms with 1 "
                               "thread, 89 ms with 2)", low=0, high=256, read_only=True)
    micro_batch_window_s: float = param(0.002, "Act on the envs ready so far after this long", low=0.0,
                                        high=1.0, runtime=True)
    actor_sync_updates: int = param(50, "Copy the online network to the actor every N updates", low=1,
                                    high=1_000_000, runtime=True)
    checkpoint_every_episodes: int = param(50, "Periodic checkpoint every N training episodes", low=1,
                                           high=1_000_000, runtime=True)
    keep_last_checkpoints: int = param(3, "Periodic checkpoints kept (best/phase/final are kept)", low=1,
                                       high=1000, runtime=True)
    checkpoint_replay: bool = param(True, "Include the replay buffer in periodic checkpoints (written "
                                    "incrementally: only the chunks changed since the last one), so a "
                                    "restarted policy goes on with its replay", runtime=True)
    replay_chunk_slots: int = param(REPLAY_CHUNK_SLOTS, "Replay ring slots per checkpoint chunk file, the "
                                    "unit of incremental replay writes", low=64, high=1 << 24,
                                    read_only=True)
    final_checkpoint_replay: bool = param(True, "Include the replay buffer in the final checkpoint",
                                          runtime=True)
    compile_silence_s: float = param(600.0, "While the learner has not finished its first updates on the "
                                     "CUDA fast path with torch.compile, each /diagnostics status asks the "
                                     "supervisor to accept this long a silence [s] (the compile can starve "
                                     "the executor: a policy restarted, on an H100, 30 s into its first "
                                     "compile); 0 = never", low=0.0, high=86_400.0, read_only=True)
    stats_period_s: float = param(1.0, "TrainingStats period", low=0.05, high=60.0, runtime=True)
    diagnostics_period_s: float = param(1.0, "Heartbeat / counters period", low=0.05, high=60.0,
                                        runtime=True)
    max_pending_ticks: int = param(16, "Unmatched ticks kept per env before the oldest is dropped", low=1,
                                   high=10_000, runtime=True)
    env_absent_after_s: float = param(5.0, "An env without any message for this long (while not waiting for "
                                      "its action) is absent: never waited for by the micro-batching, its "
                                      "unmatched ticks and pending transition dropped (counted); its next "
                                      "observation takes it back, storing from its next episode", low=0.05,
                                      high=3600.0, runtime=True)
    max_learner_lag_updates: int = param(0, "Training: hold the next action while the learner is more than "
                                         "this many gradient steps behind the replay ratio (agent."
                                         "train_frequency), so env steps never outrun learning; 0 = never "
                                         "hold (the envs run at full speed, the learner takes the CPU left)",
                                         low=0, high=1_000_000, runtime=True)
    composed_act_threads: int = param(2, "torch intra-op threads of an act batch of at least "
                                      "composed_act_threads_min_batch envs while the policy is composed with "
                                      "the simulators (composition all: one process, whose envs all wait for "
                                      "the batch); the learner keeps torch_threads. Alone in its process the "
                                      "policy always acts with torch_threads (more would spin against the "
                                      "simulator processes)", low=1, high=256, read_only=True)
    composed_act_threads_min_batch: int = param(8, "Smallest act batch that uses composed_act_threads (smaller "
                                                "ones: too little work per convolution to share)", low=1,
                                                high=1024, runtime=True)


@dataclass(frozen=True)
class _SharedActions:
    actions: ActionTable = param(default_factory=ActionTable, description="Discrete action -> control")


PERIODIC_PREFIX = "episode_"
NON_FINITE_COUNTER = core.NON_FINITE_INPUTS  # ticks with a NaN / inf reward or vector feature: never stored
ENVS_PRESENT_VALUE = "envs_present"  # /diagnostics value: envs heard from within env_absent_after_s


def periodic_episode(path: Path) -> int:
    """Training episodes at which periodic checkpoint ``episode_NNNNNNN.pt`` was written."""
    return int(path.stem[len(PERIODIC_PREFIX):])


class DQNPolicyNode(ComposableNode):
    def __init__(self, **node_options) -> None:  # alone, or composed: see nodes/component_container.py
        super().__init__("dqn_policy", **node_options)
        self.cfg = declare_config(self, PolicyNodeConfig, apply=self.apply_config)
        if self.cfg.torch_threads > 0:
            torch.set_num_threads(self.cfg.torch_threads)
        self.agent_cfg = declare_config(self, AgentConfig, "agent.")
        self.actions = declare_config(self, _SharedActions).actions
        self.controls = [conv.control_msg(c) for c in self.actions.controls()]
        self.diag = DiagnosticsReporter(self, self.cfg.diagnostics_period_s,
                                        warn_on=(core.DROPPED_TICKS, NON_FINITE_COUNTER, core.ENVS_ABSENT_EVENTS),
                                        before_publish=self.report_replay_counters)
        self.checkpoint_dir = Path(self.cfg.save_dir) / "checkpoints"
        self.actor: DQNPolicy | None = None
        self.actor_lock = threading.Lock()
        self.learn_lock = threading.Lock()
        self.learning = threading.Event()
        if self.cfg.training and self.cfg.start_learning:
            self.learning.set()
        self.stop_event = threading.Event()
        self.new_data = threading.Event()
        self.checkpoint_due = threading.Event()
        self.learner_error: str | None = None  # why the learner thread died (the process then exits)
        # the pairing, storing, episodes and acting (the agent is built on the first observation: its
        # shape fixes the network)
        self.collector = core.Collector(self.cfg.num_envs, training=self.cfg.training,
                                        max_pending_ticks=self.cfg.max_pending_ticks,
                                        env_absent_after_s=self.cfg.env_absent_after_s,
                                        counters=self.diag.counters, agent_factory=self.build_agent,
                                        act_context=self.act_context)
        self.last_stats = None
        self.rate_window: deque[tuple[float, int, int]] = deque(maxlen=20)
        # a restarted policy continues the run's numbering (and rotation) from what is on disk
        self.collector.training_episodes = max((periodic_episode(p) for p in self.periodic_checkpoints()),
                                               default=0)

        self.cmd_pubs = []
        for env_id in range(self.cfg.num_envs):
            ns = topics.env_namespace(env_id)
            self.create_subscription(Observation, f"{ns}/{topics.OBSERVATION}", self.on_observation, qos.SENSOR)
            self.create_subscription(StepReward, f"{ns}/{topics.STEP_REWARD}", self.on_reward, qos.SENSOR)
            self.cmd_pubs.append(self.create_publisher(VehicleCommand, f"{ns}/{topics.VEHICLE_COMMAND}",
                                                       qos.SENSOR))
        self.stats_pub = self.create_publisher(TrainingStats, topics.TRAINING_STATS, qos.EVENTS)
        self.create_service(SaveCheckpoint, topics.SAVE_CHECKPOINT_SERVICE, self.on_save_checkpoint)
        self.create_service(SetBool, topics.SET_EVALUATION_MODE_SERVICE, self.on_set_evaluation_mode)
        self.create_service(SetBool, topics.SET_LEARNING_SERVICE, self.on_set_learning)
        self.batch_window = self.create_deadline(self.act_on_ready)  # the micro-batching window
        self.stats_timer = self.create_timer(self.cfg.stats_period_s, self.publish_stats)
        self.learner_thread = threading.Thread(target=self.learner_loop, name="learner", daemon=True)
        self.composed = self._intra_process is not None

    def apply_config(self, cfg: PolicyNodeConfig) -> None:
        """A run-time parameter was set: read at each use (window, sync, lag, checkpoints), or a
        timer's period."""
        self.cfg = cfg
        self.collector.max_pending_ticks = cfg.max_pending_ticks
        if cfg.env_absent_after_s != self.collector.env_absent_after_s:
            self.collector.set_env_absent_after(cfg.env_absent_after_s)
        set_timer_period(self.stats_timer, cfg.stats_period_s)
        self.diag.set_period(cfg.diagnostics_period_s)

    # --- agent --------------------------------------------------------------------------------------
    @property
    def agent(self) -> DQNAgent | None:
        return self.collector.agent

    @property
    def evaluation_mode(self) -> bool:
        return self.collector.evaluation_mode

    @property
    def training_episodes(self) -> int:
        return self.collector.training_episodes

    def build_agent(self, tick: core.Tick) -> DQNAgent:
        """The agent, from the collector's first observation."""
        stack, height, width = tick.frames.shape
        spec = ObservationSpec(stack, height, width, len(tick.vector))
        agent = DQNAgent(spec, NUM_ACTIONS, self.agent_cfg, device=self.cfg.device, seed=self.cfg.seed)
        if self.cfg.load_model_from:
            try:
                resumed = restore_checkpoint(agent, self.cfg.load_model_from)
            except CheckpointError as exc:
                raise RuntimeError(f"cannot resume from {self.cfg.load_model_from}: {exc}") from None
            self.get_logger().info(resumed)
        self.actor = DQNPolicy(copy.deepcopy(agent.online), self.agent_cfg, agent.device, agent.act_rng)
        self.actor.load_weights(agent.online.state_dict())  # folds the noise for acting
        agent.policy = self.actor  # agent.act() (exploration schedule) now runs on the actor copy
        self.actor_synced_at = agent.updates
        self.collector.agent = agent  # the learner thread reads it from here
        freeze_heap()  # the agent's modules and buffers: kept out of later GC scans
        self.learner_thread.start()
        self.get_logger().info(f"agent on {self.cfg.device}: observation {spec}, {NUM_ACTIONS} actions")
        return agent

    def learner_loop(self) -> None:
        """The learner thread. Any exception ends the process (non-zero exit, reason in the log) so the
        supervisor restarts it from the last checkpoint: acting and heartbeats without learning would
        look healthy from outside."""
        try:
            self.learn()
        except BaseException as exc:  # noqa: BLE001 - whatever ends the thread ends the process
            self.learner_error = (f"dqn_policy: learner thread failed: {type(exc).__name__}: {exc}\n"
                                  f"{traceback.format_exc()}")
            self.get_logger().fatal(self.learner_error)
            fail_process(self.learner_error)

    def learn(self) -> None:
        agent = self.agent
        while not self.stop_event.is_set():
            if self.checkpoint_due.is_set():
                self.checkpoint_due.clear()
                self.write_periodic_checkpoint()
            if not self.learning.is_set() or agent.updates_due() < agent.updates_per_call:
                self.new_data.wait(timeout=0.1)
                self.new_data.clear()
                continue
            with self.learn_lock:
                stats = agent.update()
                if stats is not None and agent.updates - self.actor_synced_at >= self.cfg.actor_sync_updates:
                    with self.actor_lock:
                        self.actor.load_weights(agent.online.state_dict())
                    self.actor_synced_at = agent.updates
            if stats is not None:
                self.last_stats = stats

    # --- pairing and micro-batching (the collector; this shell converts and times) ----------------------
    def on_observation(self, msg: Observation) -> None:
        self.after_message(self.collector.add_observation(conv.tick_from_msg(msg, NUM_ACTIONS)))

    def on_reward(self, msg: StepReward) -> None:
        self.after_message(self.collector.add_outcome(conv.outcome_from_msg(msg)))

    def after_message(self, readiness: core.Readiness) -> None:
        if readiness is core.Readiness.ALL_READY:
            self.batch_window.disarm()
            self.act_on_ready()
        elif readiness is core.Readiness.SOME_READY:
            self.batch_window.arm_if_idle(self.cfg.micro_batch_window_s)

    # --- acting -----------------------------------------------------------------------------------------
    def learner_lagging(self) -> bool:
        limit = self.cfg.max_learner_lag_updates
        return (limit > 0 and self.cfg.training and not self.evaluation_mode and self.learning.is_set()
                and self.agent.updates_due() > limit)

    def act_on_ready(self) -> None:
        if not self.collector.ready_envs or self.agent is None:
            return
        if self.learner_lagging():  # hold the envs until the learner catches up (checked every window)
            self.diag.count("held_for_learner")
            self.batch_window.arm(self.cfg.micro_batch_window_s)
            return
        batch = self.collector.act()
        for end in batch.episode_ends:
            if not end.evaluation:
                self.request_periodic_checkpoint(end.training_episodes)
        for command in batch.commands:
            self.cmd_pubs[command.env_id].publish(conv.command_msg(command, self.controls))
        if batch.acted and self.learning.is_set():  # a paused learner is not woken per act (a GIL hand-over)
            self.new_data.set()

    def act_context(self, batch: int):
        """Around each act call: the actor copy (the learner refreshes it) on its act threads."""
        stack = contextlib.ExitStack()
        stack.enter_context(self.actor_lock)
        stack.enter_context(self.act_threads(batch))
        return stack

    @contextlib.contextmanager
    def act_threads(self, batch: int):
        """torch's intra-op threads for one act call (composed_act_threads), then back to torch_threads,
        so that threads started later (the learner's) keep torch_threads."""
        threads = self.cfg.composed_act_threads
        if not (self.composed and threads != torch.get_num_threads()
                and batch >= self.cfg.composed_act_threads_min_batch):
            yield
            return
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            yield
        finally:
            torch.set_num_threads(previous)

    # --- checkpoints --------------------------------------------------------------------------------------
    def save(self, path: Path, include_replay: bool) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        with self.learn_lock:  # a consistent state: no gradient step while writing
            return save_checkpoint(self.agent, path, include_replay=include_replay,
                                   chunk_slots=self.cfg.replay_chunk_slots)

    def request_periodic_checkpoint(self, training_episodes: int) -> None:
        """Every N training episodes; written by the learner thread, so acting never waits on disk."""
        if training_episodes % self.cfg.checkpoint_every_episodes == 0:
            self.checkpoint_due.set()
            self.new_data.set()

    def periodic_checkpoints(self) -> list[Path]:
        """The run's periodic checkpoints, oldest first."""
        return sorted(self.checkpoint_dir.glob(f"{PERIODIC_PREFIX}*.pt"), key=periodic_episode)

    def write_periodic_checkpoint(self) -> None:  # learner thread
        started = time.monotonic()
        path = self.save(self.checkpoint_dir / f"{PERIODIC_PREFIX}{self.training_episodes:07d}.pt",
                         self.cfg.checkpoint_replay)
        for old in self.periodic_checkpoints()[:-self.cfg.keep_last_checkpoints]:
            remove_checkpoint(old)
        remove_orphan_replays(self.checkpoint_dir)  # of a process killed while writing
        written = self.agent.last_replay_write if self.cfg.checkpoint_replay else None
        replay = (f"; replay {len(self.agent.replay)}: {written.chunks_written} chunks written "
                  f"({written.bytes_written / 1e6:.1f} MB), {written.chunks_linked} unchanged"
                  if written is not None else "")
        self.get_logger().info(f"checkpoint {path} in {time.monotonic() - started:.2f} s{replay}")

    def on_save_checkpoint(self, request: SaveCheckpoint.Request, response: SaveCheckpoint.Response):
        if self.agent is None:
            response.success, response.message = False, "no agent yet (no observation received)"
            return response
        tag = request.tag or "manual"
        if not tag.replace("_", "").replace("-", "").isalnum():
            response.success, response.message = False, f"invalid tag {tag!r}: letters, digits, _ and - only"
            return response
        requested = request.path or self.checkpoint_dir / f"{tag}.pt"
        try:  # only inside the run's save directory (relative paths: from it)
            path = confined_checkpoint_path(self.cfg.save_dir, requested)
        except CheckpointError as exc:
            response.success, response.message = False, str(exc)
            return response
        try:
            saved = self.save(path, include_replay=False)
        except (OSError, CheckpointError) as exc:
            response.success, response.message = False, f"saving {path} failed: {exc}"
            return response
        response.success, response.message, response.path = True, f"saved {saved}", str(saved)
        return response

    def on_shutdown(self) -> None:
        self.stop_event.set()
        if self.learner_thread.is_alive():
            self.learner_thread.join(timeout=30.0)
        if self.agent is None or not self.cfg.training:
            return
        poisoned = poisoned_weights(self.agent)
        if poisoned:  # never over the good checkpoints a restart resumes from
            print(f"[dqn_policy] final checkpoint skipped: the agent's weights are not finite "
                  f"({', '.join(poisoned[:3])})", flush=True)
            return
        try:
            path = self.save(self.checkpoint_dir / "final.pt", self.cfg.final_checkpoint_replay)
        except (OSError, CheckpointError) as exc:
            if self.learner_error is None:
                raise
            print(f"[dqn_policy] final checkpoint failed after the learner's failure: {exc}", flush=True)
            return
        print(f"[dqn_policy] final checkpoint {path}", flush=True)

    # --- modes and stats -------------------------------------------------------------------------------------
    def on_set_evaluation_mode(self, request: SetBool.Request, response: SetBool.Response):
        self.collector.set_evaluation_mode(bool(request.data))
        response.success = True
        response.message = f"evaluation mode {'on' if self.evaluation_mode else 'off'} (from each env's next episode)"
        return response

    def on_set_learning(self, request: SetBool.Request, response: SetBool.Response):
        if request.data and self.cfg.training:
            self.learning.set()
            self.new_data.set()
        else:
            self.learning.clear()
        response.success = True
        response.message = f"learning {'on' if self.learning.is_set() else 'off'}"
        return response

    def report_replay_counters(self) -> None:  # before each /diagnostics status
        collector = self.collector
        # presence, also while no env sends anything; the envs left may all be ready now
        if collector.sweep() and collector.all_ready():
            self.batch_window.disarm()
            self.act_on_ready()
        self.diag.counters[NON_FINITE_COUNTER] = collector.non_finite_inputs
        self.diag.values[ENVS_PRESENT_VALUE] = str(collector.present_envs)
        # the first torch.compile can starve this executor for tens of seconds: tell the supervisor
        if self.agent is not None and self.agent.compiling and self.cfg.compile_silence_s > 0.0:
            self.diag.values[EXPECTED_SILENCE_KEY] = f"{self.cfg.compile_silence_s:g}"
        else:
            self.diag.values.pop(EXPECTED_SILENCE_KEY, None)

    def publish_stats(self) -> None:
        if self.agent is None:
            return
        agent = self.agent
        now = time.monotonic()
        self.rate_window.append((now, agent.updates, self.collector.acted_steps))
        t0, u0, s0 = self.rate_window[0]
        dt = max(now - t0, 1e-9)
        msg = TrainingStats(updates=agent.updates, env_steps=agent.env_steps, replay_size=len(agent.replay),
                            learning=self.learning.is_set(), evaluation_mode=self.evaluation_mode,
                            epsilon=float(agent.epsilon) if not self.agent_cfg.noisy else 0.0,
                            updates_per_s=(agent.updates - u0) / dt,
                            env_steps_per_s=(self.collector.acted_steps - s0) / dt,
                            act_batch_mean=(float(np.mean(self.collector.act_batches))
                                            if self.collector.act_batches else 0.0))
        msg.header.stamp = self.get_clock().now().to_msg()
        stats = self.last_stats
        if stats is not None:
            msg.loss, msg.mean_q, msg.td_error = stats.loss, stats.mean_q, stats.td_error
            msg.beta, msg.grad_norm = stats.beta, stats.grad_norm
        else:
            msg.loss = msg.mean_q = msg.td_error = msg.grad_norm = math.nan
        self.stats_pub.publish(msg)


def main(args: list[str] | None = None) -> int:
    return run_node(DQNPolicyNode, args)


COMPONENT = DQNPolicyNode  # for component_container

if __name__ == "__main__":
    raise SystemExit(main())
