"""Rainbow-style DQN agent, split like Tianshou/SB3 into

* :class:`DQNPolicy`    observation -> action (batched over envs, epsilon or noisy exploration,
                        action masks),
* :class:`DQNAlgorithm` the update (:mod:`carla_rl.learner.algorithm`, the reference): double-DQN /
                        C51 targets, PER weights, grad clipping, optimizer, target network;
                        where the config selects the fast path, :class:`FastDQNAlgorithm`
                        (:mod:`carla_rl.learner.fast_algorithm`) driven by :class:`FastUpdater`
                        (:mod:`carla_rl.learner.fast_update`) instead,
* the replay memory     :mod:`carla_rl.learner.replay_buffer`,

and :class:`DQNAgent`, which owns the three, the counters and the RNGs, and is what the
``dqn_policy`` node drives: ``observe`` / ``record_action`` per env tick, ``act`` for a batch of
envs, ``update`` (from a background thread if wanted) while ``updates_due() > 0``.
"""

from __future__ import annotations

import threading
from typing import Any, NamedTuple

import numpy as np
import torch

from carla_rl.learner.agent_config import AgentConfig, ObservationSpec
from carla_rl.learner.algorithm import DQNAlgorithm, UpdateStats, to_batch
from carla_rl.learner.fast_algorithm import FastDQNAlgorithm, autocast
from carla_rl.learner.fast_update import FastUpdater
from carla_rl.learner.networks import FrozenQNetwork, QNetwork
from carla_rl.learner.replay_buffer import PrioritizedReplayBuffer, ReplayBuffer


class ActResult(NamedTuple):
    actions: np.ndarray   # [B] int64
    q_values: np.ndarray  # [B] float32, Q (expected value for C51) of the chosen action


class DQNPolicy:
    """Observation -> action for a batch of envs.

    An acting copy that changes only through :meth:`load_weights` (the policy node's actor, synced
    every N updates) acts through :class:`FrozenQNetwork` copies built at each sync: one with the noisy
    layers' noise folded into their weights (``mu + sigma * eps``, the noise of the sync), one with
    ``mu`` alone (greedy). Acting then costs plain functional layers instead of the module stack
    recomputing every noisy weight matrix per call (batch-1 CPU act: docs/BENCHMARKS.md)."""

    def __init__(self, network: QNetwork, config: AgentConfig, device: torch.device,
                 rng: np.random.Generator) -> None:
        self.network = network
        self.config = config
        self.device = device
        self.rng = rng
        self._frozen: dict[bool, FrozenQNetwork] = {}  # with noise? -> frozen copy; built by load_weights

    def load_weights(self, state_dict: dict) -> None:
        """Copy the learner's weights and noise into this (acting) copy and freeze them for acting."""
        self.network.load_state_dict(state_dict)
        if self.network.encoder.space_to_depth:
            return  # acts through the module (FrozenQNetwork covers the plain and NHWC encoders)
        self._frozen = {noise: FrozenQNetwork(self.network, with_noise=noise) for noise in (True, False)}

    def q_values(self, frames: np.ndarray, vectors: np.ndarray | None,
                 noise: bool) -> torch.Tensor:
        frames_t = torch.as_tensor(frames).to(self.device, non_blocking=True)  # [B, S, H, W]
        if vectors is None:
            vectors = np.zeros((frames.shape[0], self.network.spec.vector_size), np.float32)
        vectors_t = torch.as_tensor(vectors, dtype=torch.float32).to(self.device)  # [B, V]
        frozen = self._frozen.get(noise and self.network.training)  # eval mode: noisy layers use mu
        with torch.inference_mode(), autocast(self.device, self.config.mixed_precision):
            if frozen is not None:
                return frozen.q_values(frames_t, vectors_t).float()  # [B, A]
            return self.network.q_values(frames_t, vectors_t, noise=noise).float()  # [B, A]

    def act(self, frames: np.ndarray, vectors: np.ndarray | None, epsilon: float,
            noise: bool, action_mask: np.ndarray | None) -> ActResult:
        batch = frames.shape[0]
        num_actions = self.network.action_size
        mask = np.ones((batch, num_actions), dtype=np.bool_) if action_mask is None \
            else np.asarray(action_mask, dtype=np.bool_).reshape(batch, num_actions)
        if not mask.any(axis=1).all():
            raise ValueError("action_mask: every row must allow at least one action")
        q = self.q_values(frames, vectors, noise).cpu().numpy()  # [B, A]
        greedy = np.where(mask, q, -np.inf).argmax(axis=1)        # [B]
        actions = greedy
        if epsilon > 0.0:
            scores = np.where(mask, self.rng.random((batch, num_actions)), -1.0)  # [B, A]
            explore = self.rng.random(batch) < epsilon                            # [B]
            actions = np.where(explore, scores.argmax(axis=1), greedy)
        actions = actions.astype(np.int64)
        return ActResult(actions, q[np.arange(batch), actions].astype(np.float32))


class DQNAgent:
    """Policy + algorithm + replay + counters; the learner core driven by the policy node.

    ``fast_path``: None runs the fast path where the config selects it (``cuda_graphs`` on a CUDA
    device) and the reference update elsewhere; True / False force one (the fast path runs
    eagerly on a CPU: tests and A/Bs)."""

    def __init__(self, state_size: Any, action_size: int = 6, config: AgentConfig | None = None,
                 device: str | torch.device = "cpu", seed: int | None = None,
                 fast_path: bool | None = None) -> None:
        self.spec = ObservationSpec.coerce(state_size)
        self.action_size = int(action_size)
        self.config = config if config is not None else AgentConfig()
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("DQNAgent: device 'cuda' requested but CUDA is not available")
        self.seed = seed
        if self.device.type == "cuda" and self.config.tf32_matmul:
            torch.backends.cuda.matmul.allow_tf32 = True  # process-wide (documented in the config)
        if seed is not None:
            torch.manual_seed(seed)
        seeds = np.random.SeedSequence(seed).spawn(2)
        self.act_rng = np.random.default_rng(seeds[0])
        replay_rng = np.random.default_rng(seeds[1])
        cfg = self.config
        self.online = QNetwork(self.spec, self.action_size, cfg).to(self.device)
        self.target = QNetwork(self.spec, self.action_size, cfg).to(self.device)
        self.policy = DQNPolicy(self.online, cfg, self.device, self.act_rng)
        self.use_fast_path = (self.device.type == "cuda" and cfg.cuda_graphs) \
            if fast_path is None else bool(fast_path)
        # the fast path's update also sets the networks' layout (channels-last, space-to-depth)
        self.algorithm = FastDQNAlgorithm(self.online, self.target, cfg, self.device) \
            if self.use_fast_path else DQNAlgorithm(self.online, self.target, cfg)
        self._fast = None  # FastUpdater, built on the first update when use_fast_path
        rc = cfg.replay
        if rc.prioritized:
            self.replay: ReplayBuffer = PrioritizedReplayBuffer(
                rc.capacity, self.spec, rc.n_step, cfg.gamma, rc.alpha, rc.priority_eps,
                rng=replay_rng)
        else:
            self.replay = ReplayBuffer(rc.capacity, self.spec, rc.n_step, cfg.gamma,
                                       rng=replay_rng)
        self.env_steps = 0   # actions recorded (transitions started)
        self.updates = 0     # gradient steps done
        self.replay_lock = threading.Lock()
        # replay files of the last checkpoint written / restored (checkpoint.ReplaySnapshot): the next
        # one writes only the chunks changed since; last_replay_write: what that write did
        self.replay_snapshot = None
        self.last_replay_write = None
        # Held by the learner only while it captures a CUDA graph (once): acting kernels from
        # another thread must not land in the capture.
        self.capture_lock = threading.Lock()

    # ----------------------------------------------------------------- schedules
    @property
    def epsilon(self) -> float:
        ex = self.config.exploration
        frac = min(1.0, self.env_steps / ex.epsilon_decay_steps)
        return ex.epsilon_start + frac * (ex.epsilon_end - ex.epsilon_start)

    @property
    def beta(self) -> float:
        rc = self.config.replay
        frac = min(1.0, self.updates / rc.beta_anneal_updates)
        return rc.beta_start + frac * (1.0 - rc.beta_start)

    @property
    def lr(self) -> float:
        return float(self.algorithm.optimizer.param_groups[0]["lr"])

    @property
    def updates_per_call(self) -> int:
        """Gradient steps one :meth:`update` call makes (``updates_per_graph`` on the graph path)."""
        graph = self.use_fast_path and FastUpdater.graph_enabled(self.config, self.device)
        return self.config.updates_per_graph if graph else 1

    def updates_due(self) -> int:
        """Gradient steps owed by the replay ratio (``gradient_steps`` per ``train_frequency``
        env steps after ``learning_starts``)."""
        cfg = self.config
        if self.env_steps < cfg.learning_starts:
            return 0
        rounds = (self.env_steps - cfg.learning_starts) // cfg.train_frequency + 1
        return max(0, rounds * cfg.gradient_steps - self.updates)

    # ----------------------------------------------------------------- stream API
    def observe(self, env_id: int, frame: np.ndarray, vector: np.ndarray | None, reward: float,
                terminated: bool, truncated: bool, episode_start: bool,
                action_mask: np.ndarray | None = None) -> int:
        """Store one env tick (see :meth:`ReplayBuffer.observe`); pass the ``action_mask``
        given to ``act`` so bootstrap targets only consider allowed actions."""
        reward = reward * self.config.reward_scale
        with self.replay_lock:
            return self.replay.observe(env_id, frame, vector, reward, terminated, truncated,
                                       episode_start, action_mask)

    def record_action(self, env_id: int, action: int) -> None:
        with self.replay_lock:
            self.replay.record_action(env_id, action)
        self.env_steps += 1

    def end_stream(self, env_id: int) -> bool:
        """End the env's stream without an outcome (see :meth:`ReplayBuffer.end_stream`); True when a
        pending transition was dropped."""
        with self.replay_lock:
            return self.replay.end_stream(env_id)

    def observe_many(self, env_ids, frames, vectors, rewards, terminated, truncated,
                     episode_start, action_masks=None) -> np.ndarray:
        rewards = np.asarray(rewards, dtype=np.float32) * self.config.reward_scale
        with self.replay_lock:
            return self.replay.observe_many(env_ids, frames, vectors, rewards, terminated,
                                            truncated, episode_start, action_masks)

    def record_actions(self, env_ids, actions) -> None:
        with self.replay_lock:
            self.replay.record_actions(env_ids, actions)
        self.env_steps += len(actions)

    # ----------------------------------------------------------------- acting
    def act(self, frames: np.ndarray, vectors: np.ndarray | None = None, explore: bool = True,
            action_mask: np.ndarray | None = None) -> ActResult:
        """Actions for B envs: frames uint8 [B, S, H, W], vectors float32 [B, V]."""
        cfg = self.config
        if explore and self.env_steps < cfg.learning_starts:
            epsilon, noise = 1.0, True  # warm-up: uniform over the allowed actions
        elif explore:
            epsilon, noise = (0.0, True) if cfg.noisy else (self.epsilon, False)
        else:
            epsilon, noise = cfg.exploration.eval_epsilon, False
        with self.capture_lock:
            return self.policy.act(frames, vectors, epsilon, noise, action_mask)

    # ----------------------------------------------------------------- learning
    @property
    def compiling(self) -> bool:
        """The learner's first updates on the CUDA fast path with torch.compile are still ahead or
        under way: compiling and autotuning take minutes, during which its process may answer late."""
        return (self.use_fast_path and self.config.compile
                and (self._fast is None or self._fast.warming_up))

    def update(self) -> UpdateStats | None:
        """One gradient step on a replay batch (:attr:`updates_per_call` steps on the CUDA-graph
        path; the stats are the last one's); None before ``learning_starts``."""
        cfg = self.config
        if self.env_steps < cfg.learning_starts:
            return None
        if self.use_fast_path:
            if self._fast is None:
                self._fast = FastUpdater(self)
            return self._fast.update()
        beta = self.beta
        with self.replay_lock:
            if not self.replay.can_sample(cfg.batch_size):
                return None
            sample = self.replay.sample(cfg.batch_size, beta)
        batch = to_batch(sample, self.device)
        loss, priorities, td_abs, q_taken, grad_norm = self.algorithm.step(batch)
        self.updates += 1
        self.algorithm.update_target(self.updates)
        stats = torch.stack([loss.float(), q_taken.mean(), td_abs.mean(),
                             grad_norm.float()]).tolist()  # one host sync
        if cfg.replay.prioritized:
            with self.replay_lock:
                self.replay.update_priorities(sample.indices, priorities.float().cpu().numpy())
        return UpdateStats(loss=stats[0], mean_q=stats[1], td_error=stats[2], beta=beta,
                           grad_norm=stats[3], lr=self.lr, updates=self.updates)
