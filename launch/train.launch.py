"""Train on the embedded simulator (default) or CARLA:

    ros2 launch carla_rl train.launch.py num_envs:=4 device:=cuda rviz:=true
    ros2 launch carla_rl train.launch.py role:=learner num_envs:=4 discovery:=server:10.0.0.1:11811

(the second: envs from worker hosts, worker.launch.py)

Arguments mirror `carla-rl train` flags (num_envs <-> --parallel-envs ...); both build the graph
from carla_rl.graph.build_graph.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument

from carla_rl.graph import build_graph
from carla_rl.graph.launch_support import declare_arguments, graph_actions, rviz_action


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        *declare_arguments(),
        DeclareLaunchArgument("rviz", default_value="false", description="Start rviz2 with config/carla_rl.rviz"),
        graph_actions(build_graph, fixed={"training": "true"}),
        rviz_action(),
    ])
