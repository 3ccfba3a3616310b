"""Run the real training graph (carla_rl.graph + supervisor) inside a test and watch its topics."""

from __future__ import annotations

import contextlib
import math
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

from carla_rl.nodes.support.ros_conversions import stamp_nanoseconds  # noqa: E402
from ros_testing import CONFIG_DIR, pid_alive

# small learner settings so a few episodes exercise learning on 2 CPU cores
FAST_LEARNER = {"agent.learning_starts": 64, "agent.batch_size": 16, "agent.replay.capacity": 20000}


class GraphRun:
    def __init__(self, tmp_path: Path, num_envs: int, phase: int, policy_params: dict | None = None,
                 sim_params: dict | None = None, seed: int = 3, heartbeat_timeout_s: float = 60.0,
                 composition: str | None = None) -> None:
        from carla_rl.graph import GraphOptions, build_graph
        from carla_rl.graph.supervisor import Supervisor, latest_checkpoint, load_supervisor_config

        self.save_dir = tmp_path / "run"
        options = GraphOptions(num_envs=num_envs, phase=phase, save_dir=str(self.save_dir), monitor=False,
                               seed=seed, composition=composition or GraphOptions.composition)
        specs = []
        for spec in build_graph(options):
            if spec.role == "policy":
                spec = replace(spec, parameters={**spec.parameters, **FAST_LEARNER, **(policy_params or {})})
            if spec.role == "simulator":
                spec = replace(spec, parameters={**spec.parameters, **(sim_params or {})})
            specs.append(spec)
        self.specs = specs
        self.supervisor = Supervisor(specs, CONFIG_DIR, self.save_dir / "logs", "info",
                                     config=replace(load_supervisor_config(CONFIG_DIR), restart_backoff_s=0.5,
                                                    heartbeat_timeout_s=heartbeat_timeout_s),
                                     resume_checkpoint=lambda note: latest_checkpoint(self.save_dir, note))
        self.rewards = []
        self.situations = {}
        self.collisions = defaultdict(list)
        self.episodes = []
        self.training = []
        self.diagnostics: dict[str, dict[str, str]] = {}  # node -> its last /diagnostics values
        self.supervisor_events: list[str] = []  # restarts and kills, for failure messages

    def attach(self, node, num_envs: int) -> None:
        from diagnostic_msgs.msg import DiagnosticArray

        from carla_rl.contract import topics
        from carla_rl.nodes.support import qos_profiles as qos
        from carla_rl.nodes.support.diagnostics import DIAGNOSTICS_TOPIC
        from carla_rl_interfaces.msg import (CollisionEvent, EgoSituation, EpisodeStats, StepReward,
                                             TrainingStats)

        for env in range(num_envs):
            ns = topics.env_namespace(env)
            node.create_subscription(StepReward, f"{ns}/{topics.STEP_REWARD}", self.rewards.append, qos.SENSOR)
            node.create_subscription(
                EgoSituation, f"{ns}/{topics.carla_topic(topics.DEFAULT_ROLE_NAME, topics.SITUATION)}",
                lambda m, e=env: self.situations.__setitem__((e, m.step_id), m), qos.SENSOR)
            node.create_subscription(
                CollisionEvent, f"{ns}/{topics.carla_topic(topics.DEFAULT_ROLE_NAME, topics.COLLISION)}",
                lambda m, e=env: self.collisions[(e, stamp_nanoseconds(m.header.stamp))].append(m), qos.EVENTS)
        node.create_subscription(EpisodeStats, topics.EPISODE_STATS, self.episodes.append, qos.EVENTS)
        node.create_subscription(DiagnosticArray, DIAGNOSTICS_TOPIC, self.on_diagnostics, qos.EVENTS)
        node.create_subscription(TrainingStats, topics.TRAINING_STATS, self.training.append, qos.EVENTS)

    @contextlib.contextmanager
    def running(self, num_envs: int, observer: str = "graph_test_observer"):
        """rclpy up, an observer node on the graph's topics (:meth:`attach`), the graph started; yields the
        observer. On the way out, whatever happened: the graph stopped with no process left behind, the
        observer destroyed, rclpy shut down."""
        import rclpy

        rclpy.init()
        node = rclpy.create_node(observer)
        self.attach(node, num_envs)
        try:
            self.supervisor.start()
            yield node
        finally:
            try:
                self.stop_and_check_no_orphans()
            finally:
                node.destroy_node()
                rclpy.try_shutdown()

    def wait_for(self, node, predicate, timeout: float, seen: str = "") -> None:
        """Spin until ``predicate`` holds, failing with what was seen and the logs; then every process of the
        graph must still be alive."""
        ok = self.spin_until(node, predicate, timeout)
        assert ok, (f"episodes {len(self.episodes)}, training {self.training[-1:]} {seen}\n"
                    f"supervisor: {self.supervisor_events}\n{self.logs()}")
        assert all(self.supervisor.alive().values()), f"supervisor: {self.supervisor_events}\n{self.logs()}"

    def on_diagnostics(self, msg) -> None:  # the heartbeats the supervisor watches, as the CLI feeds them
        from carla_rl.nodes.support.diagnostics import expected_silence_s

        for status in msg.status:
            self.supervisor.heartbeat(status.name, expected_silence_s(status))
            self.diagnostics[status.name] = {kv.key: kv.value for kv in status.values}

    def spin_until(self, node, predicate, timeout: float) -> bool:
        import rclpy

        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                return False
            rclpy.spin_once(node, timeout_sec=0.05)
            self.supervisor_events += self.supervisor.poll()
            assert not self.supervisor.failed, f"supervisor: {self.supervisor.failed}\n{self.supervisor_events}"
        return True

    def learning_ok(self) -> bool:
        return any(t.updates >= 5 and math.isfinite(t.loss) for t in self.training)

    def check_trained_every_env(self, num_envs: int) -> None:
        """Every loss is finite from the first TrainingStats that carries update statistics on, and
        every env ended episodes. Before the first statistics the policy reports NaN ("none yet"),
        possibly with updates = 1: its learner thread counts an update just before it stores that
        update's statistics."""
        losses = [t.loss for t in self.training]
        first = next((i for i, loss in enumerate(losses) if not math.isnan(loss)), len(losses))
        # a restarted policy reports NaN ("none yet") again: the supervisor's events say why
        assert losses[first:] and all(math.isfinite(v) for v in losses[first:]), (
            f"losses {losses}\nsupervisor: {self.supervisor_events}\n{self.logs()}")
        assert {e.env_id for e in self.episodes} == set(range(num_envs))

    def pid_of(self, role: str, env: int | None = None) -> int:
        for managed in self.supervisor.processes.values():
            if self._hosts(managed.spec, role, env):
                return managed.process.pid
        raise KeyError(role)


    def managed_of(self, role: str, env: int | None = None):
        """The supervisor's record of the process hosting the node of ``role`` (of env ``env``)."""
        return next(m for m in self.supervisor.processes.values() if self._hosts(m.spec, role, env))

    def pid_of_safe(self, role: str, env: int | None = None):
        for managed in self.supervisor.processes.values():
            if self._hosts(managed.spec, role, env):
                proc = managed.process
                return proc.pid if proc is not None and proc.poll() is None else None
        return None

    @staticmethod
    def _hosts(process, role: str, env: int | None) -> bool:
        """Does this process (a node alone or a container) run the node of ``role`` (of env ``env``)?"""
        return any(c.role == role and (env is None or c.namespace == f"/env_{env}") for c in process.components)

    def logs(self) -> str:
        out = []
        for path in sorted((self.save_dir / "logs").glob("*.log")):
            out.append(f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}")
        return "\n".join(out)

    def stop_and_check_no_orphans(self) -> None:
        pids = self.supervisor.pids()
        self.supervisor.stop()
        alive = [pid for pid in pids if pid_alive(pid)]
        assert not alive, f"processes left behind: {alive}"
