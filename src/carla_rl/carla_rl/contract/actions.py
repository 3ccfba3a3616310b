"""The agent's six discrete actions and the carla.VehicleControl each maps to.

A table of named fields (not a list) so that it is a valid ROS 2 parameter tree; it lives under the
``/**`` block of config/sim.yaml, shared by the simulators and the policy node (which publishes the
control of the chosen action in every VehicleCommand).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from carla_rl.contract.config import load_section, param
from carla_rl.contract.sensor_frame import VehicleControl

ACTION_NAMES = ("fast_forward", "forward_left", "forward_right", "brake", "coast", "reverse")
NUM_ACTIONS = len(ACTION_NAMES)


@dataclass(frozen=True)
class ActionControl:
    """One discrete action as a carla.VehicleControl."""

    throttle: float = param(0.0, "Throttle", low=0.0, high=1.0)
    steer: float = param(0.0, "Steer (+ = right, CARLA convention)", low=-1.0, high=1.0)
    brake: float = param(0.0, "Brake", low=0.0, high=1.0)
    hand_brake: bool = param(False, "Hand brake")
    reverse: bool = param(False, "Reverse gear")

    def control(self) -> VehicleControl:
        return VehicleControl(self.throttle, self.steer, self.brake, self.hand_brake, self.reverse)


@dataclass(frozen=True)
class ActionTable:
    """Index order is the field order: 0 fast_forward ... 5 reverse."""

    fast_forward: ActionControl = param(default_factory=lambda: ActionControl(throttle=0.75),
                                        description="0: full-speed forward")
    forward_left: ActionControl = param(default_factory=lambda: ActionControl(throttle=0.5, steer=-0.5),
                                        description="1: forward, steering left")
    forward_right: ActionControl = param(default_factory=lambda: ActionControl(throttle=0.5, steer=0.5),
                                         description="2: forward, steering right")
    brake: ActionControl = param(default_factory=lambda: ActionControl(brake=1.0), description="3: brake")
    coast: ActionControl = param(default_factory=ActionControl, description="4: no throttle, no brake")
    reverse: ActionControl = param(default_factory=lambda: ActionControl(throttle=0.5, reverse=True),
                                   description="5: reverse")

    def control(self, index: int) -> VehicleControl:
        """VehicleControl of discrete action ``index``."""
        if not 0 <= index < NUM_ACTIONS:
            raise IndexError(f"action index {index} is outside 0..{NUM_ACTIONS - 1}")
        return getattr(self, ACTION_NAMES[index]).control()

    def controls(self) -> list[VehicleControl]:
        return [getattr(self, f.name).control() for f in fields(self)]


@dataclass(frozen=True)
class _SharedSimParameters:
    actions: ActionTable = param(default_factory=ActionTable, description="The discrete actions")


def load_action_table(sim_yaml: Path) -> ActionTable:
    """The action table of ``config/sim.yaml`` (its ``/**`` block)."""
    return load_section(sim_yaml, "/**", _SharedSimParameters).actions
