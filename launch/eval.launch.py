"""Evaluate a trained policy (no learning, no exploration) through the same graph:

    ros2 launch carla_rl eval.launch.py load_model_from:=runs/latest/checkpoints/final.pt phase:=4
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument

from carla_rl.graph import build_graph
from carla_rl.graph.launch_support import declare_arguments, graph_actions, rviz_action


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        *declare_arguments(),
        DeclareLaunchArgument("rviz", default_value="false", description="Start rviz2 with config/carla_rl.rviz"),
        graph_actions(build_graph, fixed={"training": "false"}),
        rviz_action(),
    ])
