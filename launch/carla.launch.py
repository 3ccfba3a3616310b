"""Train on a real CARLA server through carla-ros-bridge (synchronous mode, wait-for-control):

    ros2 launch carla_rl carla.launch.py town:=Town03 host:=localhost

Starts the bridge (package carla_ros_bridge, installed separately: it officially supports ROS 2
Foxy) and our graph with simulator:=bridge (nodes: carla_bridge_adapter per env, then the same
preprocessor / policy / reward / curriculum nodes as on the embedded simulator). For a server
without the bridge use `train.launch.py simulator:=carla` (the direct CARLA 0.9.16 client node).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

from carla_rl.graph import build_graph
from carla_rl.graph.launch_support import declare_arguments, graph_actions, rviz_action


def generate_launch_description() -> LaunchDescription:
    bridge = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            PathJoinSubstitution([FindPackageShare("carla_ros_bridge"), "carla_ros_bridge.launch.py"])),
        launch_arguments={
            "host": LaunchConfiguration("host"), "port": LaunchConfiguration("port"),
            "town": LaunchConfiguration("town"), "synchronous_mode": "True",
            "synchronous_mode_wait_for_vehicle_control_command": "True",
            "fixed_delta_seconds": "0.05", "timeout": "10",
        }.items())
    return LaunchDescription([
        *declare_arguments({"simulator": "bridge", "town": "Town03"}),
        DeclareLaunchArgument("host", default_value="localhost", description="CARLA server host"),
        DeclareLaunchArgument("port", default_value="2000", description="CARLA server port"),
        DeclareLaunchArgument("rviz", default_value="false", description="Start rviz2 with config/carla_rl.rviz"),
        bridge,
        graph_actions(build_graph, fixed={"training": "true", "simulator": "bridge"}),
        rviz_action(),
    ])
