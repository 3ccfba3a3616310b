"""Learner core: Rainbow-style DQN (networks, replay, agent, checkpoints; its benchmarks in carla_rl.bench).

Pure numpy/torch; no ROS, no simulator. See ``dqn_agent.DQNAgent`` for the entry point.
"""

from carla_rl.learner.agent_config import (AgentConfig, ExplorationConfig, NetworkConfig,
                                           ObservationSpec, ReplayConfig, load_agent_config,
                                           network_preset)
from carla_rl.learner.algorithm import UpdateStats
from carla_rl.learner.checkpoint import (CheckpointError, load_checkpoint, restore_checkpoint,
                                         save_checkpoint)
from carla_rl.learner.dqn_agent import ActResult, DQNAgent
from carla_rl.learner.replay_buffer import PrioritizedReplayBuffer, ReplayBuffer, ReplaySample

__all__ = ["ActResult", "AgentConfig", "CheckpointError", "DQNAgent", "ExplorationConfig",
           "NetworkConfig", "ObservationSpec", "PrioritizedReplayBuffer", "ReplayBuffer",
           "ReplayConfig", "ReplaySample", "UpdateStats", "load_agent_config", "load_checkpoint",
           "network_preset", "restore_checkpoint", "save_checkpoint"]
