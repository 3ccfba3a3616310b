"""``carla_rl/Driving-v0``: the embedded simulator as a Gymnasium env, on the same core code as the
ROS graph (World -> ObservationBuilder -> RewardCalculator). It is the sim's only face to RL libraries.

    import gymnasium as gym
    import carla_rl.sim.driving_env  # registers the id (also found through the gymnasium.envs entry point)
    env = gym.make("carla_rl/Driving-v0", phase=3)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from carla_rl.contract.actions import NUM_ACTIONS, load_action_table
from carla_rl.contract.config import default_config_dir, load_section
from carla_rl.preprocess import ObservationBuilder, PreprocessConfig, action_mask
from carla_rl.reward import RewardCalculator, RewardConfig
from carla_rl.contract.scenario import load_phases
from carla_rl.sim.episode import DrivingEpisode
from carla_rl.sim.sim_config import load_sim_config
from carla_rl.sim.world import World

ENV_ID = "carla_rl/Driving-v0"
RENDER_SIZE_PX = 512


class DrivingEnv(gym.Env):
    """Observation: ``{"frames": uint8 [S, H, W], "vector": float32 [V]}``; 6 discrete actions.

    ``info``: ``action_mask`` (allowed actions of the phase), ``terms`` (weighted reward terms),
    ``reason`` (termination reason), ``phase``, ``collisions``, ``lane_invasions``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, phase: int = 1, config_dir: str | Path | None = None, render_mode: str | None = None,
                 evaluation: bool = False) -> None:
        config_dir = Path(config_dir) if config_dir else default_config_dir()
        self.phases = load_phases(config_dir / "curriculum.yaml")
        if not 1 <= phase <= len(self.phases):
            raise ValueError(f"phase {phase} does not exist: valid phases are 1..{len(self.phases)}")
        self.phase = phase
        self.evaluation = evaluation
        self.sim_config = load_sim_config(config_dir / "sim.yaml")
        self.actions = load_action_table(config_dir / "sim.yaml")
        self.pre_config = load_section(config_dir / "preprocess.yaml", "sensor_preprocessor", PreprocessConfig)
        self.reward_config = load_section(config_dir / "reward.yaml", "reward_evaluator", RewardConfig)
        self.world = World(self.sim_config, self.scenario, seed=0)
        self.builder = ObservationBuilder(self.pre_config)
        self.reward = RewardCalculator(self.reward_config)
        self.episode = DrivingEpisode(self.world, self.builder, self.reward)
        self.render_mode = render_mode
        stack, height, width = self.builder.frame_shape
        self.observation_space = spaces.Dict({
            "frames": spaces.Box(0, 255, (stack, height, width), np.uint8),
            "vector": spaces.Box(-self.pre_config.vector.clip, self.pre_config.vector.clip,
                                 (self.builder.vector_size,), np.float32),  # features are clipped
        })
        self.action_space = spaces.Discrete(NUM_ACTIONS)
        self._mask = action_mask(self.scenario.allowed_actions)

    @property
    def scenario(self):
        return self.phases[self.phase - 1].scenario

    def _observe(self) -> dict[str, np.ndarray]:
        frames, vector = self.episode.observation()
        return {"frames": frames.copy(), "vector": vector.astype(np.float32, copy=True)}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if options and "phase" in options:
            phase = int(options["phase"])
            if not 1 <= phase <= len(self.phases):
                raise ValueError(f"phase {phase} does not exist: valid phases are 1..{len(self.phases)}")
            self.phase = phase
            self._mask = action_mask(self.scenario.allowed_actions)
        world_seed = int(self.np_random.integers(0, 2**31 - 1))
        self.episode.reset(world_seed, self.scenario, self.phase, self.evaluation)
        return self._observe(), {"action_mask": self._mask.copy(), "phase": self.phase}

    def step(self, action):
        action = int(action)
        if not self.action_space.contains(action):
            raise ValueError(f"action {action} is outside 0..{NUM_ACTIONS - 1}")
        result = self.episode.step(self.actions.control(action))
        frame = self.episode.frame
        info = {"action_mask": self._mask.copy(), "phase": self.phase, "terms": result.terms,
                "reason": result.reason, "collisions": len(frame.collisions),
                "lane_invasions": len(frame.lane_invasions), "goal_reached": frame.situation.goal_reached}
        return self._observe(), float(result.reward), result.terminated, result.truncated, info

    def render(self):
        if self.render_mode == "rgb_array":
            return self.world.render_topdown(RENDER_SIZE_PX)
        return None


def register_envs() -> None:
    if ENV_ID not in gym.registry:
        gym.register(id=ENV_ID, entry_point="carla_rl.sim.driving_env:DrivingEnv")


register_envs()
