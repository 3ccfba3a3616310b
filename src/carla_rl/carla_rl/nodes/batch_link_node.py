"""batch_link: the envs of one container and the policy in another exchange a tick as a few DDS samples.

Composition ``halves`` (carla_rl.graph) runs two of them, one per container (``side``):

- ``envs``, beside the envs apart from the policy: their preprocessors and reward evaluator publish on
  ``<env>/link/observation`` and ``<env>/link/step_reward`` (remapped), which this link gathers into an
  ``env_step_batch`` per tick and group; it hands each command of a ``vehicle_command_batch`` to its simulator on
  ``<env>/link/vehicle_command``.
- ``policy``, beside the policy: hands the observations and rewards of an ``env_step_batch`` out on the
  usual ``<env>/observation`` and ``<env>/step_reward`` (so the policy and any tool see the normal
  contract), and gathers the policy's ``<env>/vehicle_command`` answers into a ``vehicle_command_batch``
  per group.

The envs are gathered in ``groups`` of consecutive env ids (config/graph.yaml), one batch per group, so that
one group steps while the policy acts on another. A group's batch goes out once every env it waits for has
delivered (:class:`carla_rl.graph.batch_link.TickGatherer`), when its container has run everything queued in the
process (the intra-process bus is idle), or at the latest ``max_wait_s`` after its first item. Items of envs
that the link does not serve are dropped and counted (``foreign_envs``) on /diagnostics, with the batches
and items sent and received and the batches sent incomplete.
"""

from __future__ import annotations

from dataclasses import dataclass

from carla_rl.contract import topics
from carla_rl.graph.batch_link import SIDES, TickGatherer, checked_env_ids, split_by_env, split_groups
from carla_rl.contract.config import ConfigError, param
from carla_rl.nodes.support import qos_profiles as qos
from carla_rl.nodes.support.diagnostics import DiagnosticsReporter
from carla_rl.nodes.support.intra_process import ComposableNode
from carla_rl.nodes.support.node_runner import run_node
from carla_rl.nodes.support.ros_parameters import declare_config
from carla_rl_interfaces.msg import EnvStepBatch, Observation, StepReward, VehicleCommand, VehicleCommandBatch


@dataclass(frozen=True)
class BatchLinkConfig:
    side: str = param("envs", "envs: beside the envs apart from the policy; policy: beside the policy",
                      choices=SIDES, read_only=True)
    env_ids: list[int] = param(default_factory=list, description="The envs whose ticks cross this link "
                               "(the second container's share)", low=0, high=1023, read_only=True)
    groups: int = param(1, "Gather the envs in this many groups of consecutive env ids, each sent as soon as it "
                        "is complete: the envs of one group step while the policy acts on another's", low=1,
                        high=64, read_only=True)
    max_wait_s: float = param(0.05, "Send an incomplete batch this long after its first item (a link "
                              "outside a container, or an env that skipped a tick)", low=0.0005, high=10.0)
    diagnostics_period_s: float = param(1.0, "Heartbeat / counters period", low=0.05, high=60.0,
                                        runtime=True)


class BatchLinkNode(ComposableNode):
    def __init__(self, **node_options) -> None:  # composed (see nodes/component_container.py), or alone
        super().__init__("batch_link", **node_options)
        self.cfg = declare_config(self, BatchLinkConfig, apply=self.apply_config)
        try:
            self.env_ids = sorted(checked_env_ids(self.cfg.env_ids))
        except ValueError as exc:
            raise ConfigError(f"node '{self.get_name()}' parameters: env_ids: {exc}") from None
        self.diag = DiagnosticsReporter(self, self.cfg.diagnostics_period_s, warn_on=("foreign_envs",))
        sub, pub = self.create_subscription, self.create_publisher
        if self.cfg.side == "envs":
            self.make_gatherers(("observation", "reward"))
            for gatherer in self.gatherers:
                gatherer.await_envs(gatherer.env_ids)  # the first tick of every env
            self.command_pubs = {}
            for env_id in self.env_ids:
                ns = topics.env_namespace(env_id)
                sub(Observation, f"{ns}/{topics.linked(topics.OBSERVATION)}",
                    lambda m: self.gather("observation", m), qos.SENSOR)
                sub(StepReward, f"{ns}/{topics.linked(topics.STEP_REWARD)}",
                    lambda m: self.gather("reward", m), qos.SENSOR)
                self.command_pubs[env_id] = pub(VehicleCommand, f"{ns}/{topics.linked(topics.VEHICLE_COMMAND)}",
                                                qos.SENSOR)
            self.batch_pub = pub(EnvStepBatch, topics.ENV_STEP_BATCH, qos.SENSOR)
            sub(VehicleCommandBatch, topics.VEHICLE_COMMAND_BATCH, self.on_command_batch, qos.SENSOR)
        else:
            self.make_gatherers(("command",))
            self.observation_pubs, self.reward_pubs = {}, {}
            for env_id in self.env_ids:
                ns = topics.env_namespace(env_id)
                self.observation_pubs[env_id] = pub(Observation, f"{ns}/{topics.OBSERVATION}", qos.SENSOR)
                self.reward_pubs[env_id] = pub(StepReward, f"{ns}/{topics.STEP_REWARD}", qos.SENSOR)
                sub(VehicleCommand, f"{ns}/{topics.VEHICLE_COMMAND}", lambda m: self.gather("command", m),
                    qos.SENSOR)
            self.batch_pub = pub(VehicleCommandBatch, topics.VEHICLE_COMMAND_BATCH, qos.SENSOR)
            sub(EnvStepBatch, topics.ENV_STEP_BATCH, self.on_env_step_batch, qos.SENSOR)
        self.wait_deadline = self.create_deadline(self.flush)
        if self._intra_process is not None:
            self._intra_process.add_idle_callback(self.flush)

    def apply_config(self, cfg: BatchLinkConfig) -> None:
        """A run-time parameter was set (the heartbeat period)."""
        self.cfg = cfg
        self.diag.set_period(cfg.diagnostics_period_s)

    def make_gatherers(self, kinds: tuple[str, ...]) -> None:
        self.gatherers = [TickGatherer(group, kinds) for group in split_groups(self.env_ids, self.cfg.groups)]
        self.gatherer_of = {env_id: g for g in self.gatherers for env_id in g.env_ids}

    # --- gathering and sending ------------------------------------------------------------------------
    def gather(self, kind: str, msg) -> None:
        gatherer = self.gatherer_of.get(msg.env_id)
        if gatherer is None:
            self.diag.count("foreign_envs")
            return
        if gatherer.add(kind, msg.env_id, msg):
            self.send(gatherer)
        else:
            self.wait_deadline.arm_if_idle(self.cfg.max_wait_s)

    def flush(self) -> None:
        """Send what each group gathered (the bus went idle, or max_wait_s after the first item)."""
        self.wait_deadline.disarm()
        for gatherer in self.gatherers:
            if gatherer.pending:
                self.send(gatherer)

    def send(self, gatherer: TickGatherer) -> None:
        if not gatherer.complete():
            self.diag.count("incomplete_batches")
        batch = gatherer.take()
        if self.cfg.side == "envs":
            msg = EnvStepBatch(observations=batch["observation"], rewards=batch["reward"])
            items = len(msg.observations) + len(msg.rewards)
        else:
            msg = VehicleCommandBatch(commands=batch["command"])
            items = len(msg.commands)
        msg.header.stamp = self.get_clock().now().to_msg()
        self.batch_pub.publish(msg)
        self.diag.count("batches_sent")
        self.diag.count("items_sent", items)

    # --- receiving --------------------------------------------------------------------------------------
    def on_command_batch(self, msg: VehicleCommandBatch) -> None:  # side envs
        self.diag.count("batches_received")
        commands = self.served(msg.commands)
        self.await_envs(commands)
        for command in commands:
            self.command_pubs[command.env_id].publish(command)

    def on_env_step_batch(self, msg: EnvStepBatch) -> None:  # side policy
        self.diag.count("batches_received")
        observations, rewards = self.served(msg.observations), self.served(msg.rewards)
        self.await_envs(observations)
        for reward in rewards:
            self.reward_pubs[reward.env_id].publish(reward)
        for observation in observations:
            self.observation_pubs[observation.env_id].publish(observation)

    def await_envs(self, items) -> None:
        for env_id in {int(item.env_id) for item in items}:
            self.gatherer_of[env_id].await_envs([env_id])

    def served(self, items) -> list:
        kept, foreign = split_by_env(items, self.env_ids)
        if foreign:
            self.diag.count("foreign_envs", len(foreign))
        self.diag.count("items_received", len(kept))
        return kept


COMPONENT = BatchLinkNode  # for component_container


def main(args: list[str] | None = None) -> int:
    return run_node(BatchLinkNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
