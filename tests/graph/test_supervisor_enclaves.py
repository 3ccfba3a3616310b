"""SROS2 enclaves: with supervisor.enclave_prefix set, every process of the graph runs in the enclave
<prefix>/<process name> (--ros-args --enclave), a node alone or a component container. Checked through
rcl itself: with ROS_SECURITY_STRATEGY=Enforce and an empty keystore, each process refuses to start and
names its own enclave's folder."""

import os
import subprocess

import pytest

from carla_rl.contract.config import ConfigError
from carla_rl.graph import GraphOptions, build_graph, group_processes
from carla_rl.graph.supervisor import Supervisor, SupervisorConfig, load_supervisor_config, node_command
from ros_testing import CONFIG_DIR, ros_env

TIMEOUT_S = 120.0


def test_no_enclave_unless_configured(tmp_path):
    process = group_processes(build_graph(GraphOptions(num_envs=1, monitor=False)))[0]
    assert "--enclave" not in node_command(process, CONFIG_DIR, "info", tmp_path)
    assert SupervisorConfig().enclave(process) == ""
    assert node_command(process, CONFIG_DIR, "info", tmp_path, "/carla_rl/x")[-3:] == \
        ["--ros-args", "--enclave", "/carla_rl/x"]


@pytest.mark.parametrize("prefix", ["carla_rl", "/carla_rl/"])
def test_an_enclave_prefix_must_be_an_absolute_name(tmp_path, prefix):
    (tmp_path / "graph.yaml").write_text(f"supervisor:\n  ros__parameters:\n    enclave_prefix: '{prefix}'\n")
    with pytest.raises(ConfigError, match="an absolute enclave name"):
        load_supervisor_config(tmp_path)


@pytest.mark.ros
def test_every_process_runs_in_its_own_enclave(tmp_path):
    pytest.importorskip("rclpy", reason="rclpy missing: run through `make test`")
    keystore = tmp_path / "keystore"
    keystore.mkdir()
    env = ros_env(ROS_SECURITY_ENABLE="true", ROS_SECURITY_STRATEGY="Enforce", ROS_SECURITY_KEYSTORE=str(keystore))
    specs = build_graph(GraphOptions(num_envs=1, save_dir=str(tmp_path / "run"), monitor=False))
    supervisor = Supervisor(specs, CONFIG_DIR, tmp_path / "logs", config=SupervisorConfig(enclave_prefix="/carla_rl"),
                            env=env)
    supervisor.start()
    pids = supervisor.pids()
    try:
        for fqn, managed in supervisor.processes.items():
            try:
                code = managed.process.wait(timeout=TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pytest.fail(f"{fqn} started without its enclave\n{managed.log_path.read_text()}")
            log = managed.log_path.read_text()
            name = fqn.rsplit("/", 1)[-1]
            assert code != 0, log
            assert f"SECURITY ERROR: directory '{keystore / 'enclaves' / 'carla_rl' / name}' does not exist" in log
    finally:
        supervisor.stop()
    assert {m.spec.fqn for m in supervisor.processes.values()} >= {"/dqn_policy", "/env_container"}
    assert all(not os.path.exists(f"/proc/{pid}") for pid in pids)
