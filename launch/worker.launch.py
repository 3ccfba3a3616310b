"""A worker host: only envs (simulators + preprocessors, and their reward evaluator), for a learner on
another host (train.launch.py role:=learner num_envs:=TOTAL, or carla-rl train --role learner):

    ros2 launch carla_rl worker.launch.py worker_index:=1 num_envs:=2 discovery:=server:10.0.0.1:11811

Arguments mirror `carla-rl worker` flags (num_envs <-> --envs, worker_index <-> --worker-index ...);
both build the graph from carla_rl.graph.build_graph with role worker. Env ids are
worker_index*num_envs ... worker_index*num_envs+num_envs-1.
"""

from launch import LaunchDescription

from carla_rl.graph import build_graph
from carla_rl.graph.launch_support import declare_arguments, graph_actions


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        *declare_arguments({"role": "worker", "monitor": False, "save_dir": "runs/worker"}),
        graph_actions(build_graph, fixed={"role": "worker", "training": "true", "monitor": "false"}),
    ])
