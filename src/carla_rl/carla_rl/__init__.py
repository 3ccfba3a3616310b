"""carla_rl: deep reinforcement learning for driving, as a ROS 2 node stack."""

__version__ = "0.1.0"
