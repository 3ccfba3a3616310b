"""One env's episodes without ROS: World -> ObservationBuilder -> RewardCalculator, tick by tick.

The composition the ROS graph runs as three nodes (simulator, sensor preprocessor, reward evaluator),
in one object: the Gymnasium env (:class:`carla_rl.sim.driving_env.DrivingEnv`, training) and the
evaluation episodes of ``carla-rl eval`` and of the Gymnasium trainer
(:class:`carla_rl.training.evaluation_report.PolicyEvaluator`) both step it, so they share the route
handling, the speed and the reward core's terminations.
"""

from __future__ import annotations

import numpy as np

from carla_rl.contract.sensor_frame import SensorFrame, VehicleControl
from carla_rl.preprocess import ObservationBuilder
from carla_rl.reward import RewardCalculator
from carla_rl.reward.calculator import StepRewardResult
from carla_rl.sim.world import World


class DrivingEpisode:
    """``reset`` starts an episode, ``step`` applies one control and scores the tick with the reward
    core; ``observation`` builds the policy's input from the current frame (only when asked: a scripted
    driver needs none)."""

    def __init__(self, world: World, builder: ObservationBuilder, calculator: RewardCalculator) -> None:
        self.world = world
        self.builder = builder
        self.calculator = calculator
        self.frame: SensorFrame | None = None
        self.speed = 0.0
        self._route_version: int | None = None

    def reset(self, seed: int | None, scenario, phase: int, evaluation: bool) -> SensorFrame:
        frame = self.world.reset(seed=seed, scenario=scenario, evaluation=evaluation, phase=phase)
        self.builder.reset()
        self._route_version = None
        self._enter(frame)
        self.calculator.reset(scenario, frame.situation)
        return frame

    def step(self, control: VehicleControl) -> StepRewardResult:
        frame = self.world.step(control)
        self._enter(frame)
        return self.calculator.step(frame.situation, frame.odometry, self.speed, frame.collisions,
                                    frame.lane_invasions)

    def observation(self) -> tuple[np.ndarray, np.ndarray]:
        """(frames uint8 [S, H, W], vector float32 [V]) of the current frame (the builder's buffers)."""
        frame = self.frame
        return self.builder.build(frame.camera, frame.lidar, frame.odometry, self.speed, frame.situation)

    def _enter(self, frame: SensorFrame) -> None:
        self.frame = frame
        self.speed = float(np.hypot(frame.odometry.vx, frame.odometry.vy))
        if frame.route_version != self._route_version:  # a new route (reset, or re-planned)
            self._route_version = frame.route_version
            self.builder.set_route(frame.route)
