"""The embedded simulator alone, driven by its scripted autopilot, with rviz2:

    ros2 launch carla_rl sim.launch.py phase:=9 time_scale:=1.0
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument

from carla_rl.graph import build_sim_graph
from carla_rl.graph.launch_support import declare_arguments, graph_actions, rviz_action


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        *declare_arguments({"time_scale": "1.0"}),
        DeclareLaunchArgument("rviz", default_value="true", description="Start rviz2 with config/carla_rl.rviz"),
        graph_actions(build_sim_graph),
        rviz_action(),
    ])
