"""carla_client: a real CARLA 0.9.16 server behind the same topic contract as the embedded simulator,
through the CARLA Python client (no carla-ros-bridge needed). The lockstep shell is the embedded
simulator's; the world is :class:`carla_rl.carla.carla_world.CarlaWorld` (synchronous mode, fixed
delta, ego + sensors, Traffic Manager NPCs and walkers per phase, server health/reconnect/restart).
"""

from __future__ import annotations

import sys

from rclpy.node import Node

from carla_rl.carla.carla_config import CarlaConfig
from carla_rl.carla.server_lifecycle import CarlaConnectionError
from carla_rl.nodes.support.node_runner import run_node
from carla_rl.nodes.support.ros_parameters import declare_config, declare_phases
from carla_rl.nodes.support.simulator_shell import SimulatorShell, SimulatorShellConfig


class CarlaClientNode(Node):
    def __init__(self) -> None:
        super().__init__("carla_client")
        from carla_rl.carla.carla_world import CarlaWorld

        shell_cfg = declare_config(self, SimulatorShellConfig, "shell.")
        carla_cfg = declare_config(self, CarlaConfig, "carla.")
        self.phases = declare_phases(self)
        if not 1 <= shell_cfg.initial_phase <= len(self.phases):
            raise ValueError(f"shell.initial_phase {shell_cfg.initial_phase} is outside "
                             f"1..{len(self.phases)}")
        scenario = self.phases[shell_cfg.initial_phase - 1].scenario
        self.world = CarlaWorld(carla_cfg, scenario, seed=shell_cfg.seed)
        self.shell = SimulatorShell(self, shell_cfg, self.world, self.scenario_for_phase,
                                    carla_cfg.fixed_delta_seconds)
        self.get_logger().info(f"env {shell_cfg.env_id}: CARLA {carla_cfg.host}:{carla_cfg.port}, "
                               f"phase {shell_cfg.initial_phase} ({scenario.name})")

    def scenario_for_phase(self, phase: int):
        return self.phases[phase - 1].scenario

    def on_shutdown(self) -> None:
        self.world.close()


def main(args: list[str] | None = None) -> int:
    try:
        return run_node(CarlaClientNode, args)
    except CarlaConnectionError as exc:  # one line; the supervisor restarts the node with backoff
        print(f"carla_client: {exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    raise SystemExit(main())
