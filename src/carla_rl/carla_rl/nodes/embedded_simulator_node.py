"""embedded_simulator: the CARLA-free world behind the bridge's topic contract (one per env)."""

from __future__ import annotations


from carla_rl.nodes.support.intra_process import ComposableNode
from carla_rl.nodes.support.node_runner import run_node
from carla_rl.nodes.support.ros_parameters import declare_config, declare_phases
from carla_rl.nodes.support.simulator_shell import SimulatorShell, SimulatorShellConfig
from carla_rl.nodes.support.markers import WorldMarkers
from carla_rl.sim.sim_config import SimConfig
from carla_rl.sim.autopilot import Autopilot
from carla_rl.sim.world import World


class EmbeddedSimulatorNode(ComposableNode):
    def __init__(self, **node_options) -> None:  # alone, or composed: see nodes/component_container.py
        super().__init__("embedded_simulator", **node_options)
        shell_cfg = declare_config(self, SimulatorShellConfig, "shell.")
        sim_cfg = declare_config(self, SimConfig)  # top level + the /** actions table
        self.phases = declare_phases(self)
        if not 1 <= shell_cfg.initial_phase <= len(self.phases):
            raise ValueError(f"shell.initial_phase {shell_cfg.initial_phase} is outside 1..{len(self.phases)}")
        scenario = self.phases[shell_cfg.initial_phase - 1].scenario
        world = World(sim_cfg, scenario, seed=shell_cfg.seed)
        world.prepare_maps(p.scenario.map_name for p in self.phases)  # no build, no growth at a phase change
        self.shell = SimulatorShell(self, shell_cfg, world, self.scenario_for_phase,
                                    sim_cfg.fixed_delta_seconds, markers=WorldMarkers(shell_cfg.role_name),
                                    autopilot_factory=Autopilot)
        self.get_logger().info(f"env {shell_cfg.env_id}: embedded simulator, phase {shell_cfg.initial_phase} "
                               f"({scenario.name}), dt {sim_cfg.fixed_delta_seconds} s")

    def scenario_for_phase(self, phase: int):
        return self.phases[phase - 1].scenario


COMPONENT = EmbeddedSimulatorNode  # for component_container


def main(args: list[str] | None = None) -> int:
    return run_node(EmbeddedSimulatorNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
