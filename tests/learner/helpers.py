"""Small configs and a chain MDP shared by the learner tests."""

from __future__ import annotations

import numpy as np

from carla_rl.learner.agent_config import AgentConfig, NetworkConfig, ObservationSpec

TINY_SPEC = ObservationSpec(frame_stack=2, height=8, width=8, vector_size=3)


def tiny_config(**overrides) -> AgentConfig:
    cfg = AgentConfig()
    cfg.network = NetworkConfig(conv_channels=[4], conv_kernels=[3], conv_strides=[2],
                                vector_hidden=[16], hidden_size=32)
    cfg.replay.capacity = 2000
    cfg.learning_starts = 64
    cfg.batch_size = 16
    cfg.n_atoms = 11
    cfg.v_min, cfg.v_max = -2.0, 2.0
    cfg.reward_scale = 1.0  # the test MDPs' rewards already fit the small support
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


class ChainMDP:
    """States 0..L-1, start in the middle. Actions: 0 left, 1 right, 2 stay.
    Left end: reward 0.1 and terminate; right end: reward 1 and terminate; else 0.
    Truncated after ``max_steps``. Observation: one bright pixel column per state in an 8x8
    frame plus the vector (position, 1, 0)."""

    LENGTH = 6
    MAX_STEPS = 12

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.reset()

    def reset(self) -> tuple[np.ndarray, np.ndarray]:
        self.state = self.LENGTH // 2
        self.steps = 0
        return self.obs()

    def obs(self) -> tuple[np.ndarray, np.ndarray]:
        frame = np.zeros((8, 8), dtype=np.uint8)
        frame[:, self.state + 1] = 255
        vector = np.array([self.state / self.LENGTH, 1.0, 0.0], dtype=np.float32)
        return frame, vector

    def step(self, action: int) -> tuple[float, bool, bool]:
        self.steps += 1
        self.state += {0: -1, 1: 1, 2: 0}[int(action)]
        if self.state <= 0:
            return 0.1, True, False
        if self.state >= self.LENGTH - 1:
            return 1.0, True, False
        return 0.0, False, self.steps >= self.MAX_STEPS
