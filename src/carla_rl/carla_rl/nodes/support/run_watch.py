"""The ROS side of a run's watchers outside the graph (the fault campaign and the soak of
:mod:`carla_rl.cli.chaos`): a node that hands the policy's TrainingStats and the episode statistics to
plain callbacks."""

from __future__ import annotations

from typing import Callable

from rclpy.node import Node

from carla_rl.contract import topics
from carla_rl.nodes.support import qos_profiles as qos
from carla_rl_interfaces.msg import EpisodeStats, TrainingStats


def run_watch_node(on_training: Callable[[TrainingStats], None],
                   on_episode: Callable[[EpisodeStats], None]) -> Node:
    node = Node("carla_rl_campaign_observer")
    node.create_subscription(TrainingStats, topics.TRAINING_STATS, on_training, qos.EVENTS)
    node.create_subscription(EpisodeStats, topics.EPISODE_STATS, on_episode, qos.EVENTS)
    return node
