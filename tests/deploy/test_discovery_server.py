"""The discovery server command of the deployment files, run for real with the Fast DDS of this venv
(the ros-fastdds wheel ships the same fast-discovery-server tool as the image's ROS install):

- ``fastdds discovery ARGS`` execs ``fast-discovery-server 42 ARGS`` (checked in the wheel's CLI
  script), so the manifest's ARGS are run through that binary and must start a UDP server on the port;
- two ROS processes configured like the pods (ROS_DISCOVERY_SERVER host:port, the ConfigMap's discovery
  range and transports) start before the server, do not find each other without it, and exchange
  messages once it is up: discovery goes through the server, and pods may start before it."""

from __future__ import annotations

import os
import re
import socket
import sys
import sysconfig
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from deploy_checks import COMPOSE_DISTRIBUTED, DDS_ENV_KEYS, DISTRIBUTED, PodCommand, compose_commands, flag, \
    is_discovery_server, k8s_commands, load_kustomization
from ros_testing import NodeProcess

PREFIX = Path(sys.prefix)
SERVER_BIN = PREFIX / "bin" / "fast-discovery-server"
CLI_SCRIPT = PREFIX / "tools" / "fastdds" / "discovery" / "parser.py"


def _pods() -> tuple[PodCommand, PodCommand]:
    """The discovery server's and the first worker's command and environment (image ENV + pod env)."""
    commands = k8s_commands(load_kustomization(DISTRIBUTED))
    (server,) = [c for c in commands if is_discovery_server(c.argv)]
    worker = next(c for c in commands if c.argv[:2] == ["carla-rl", "worker"])
    (compose,) = [c.argv for c in compose_commands(yaml.safe_load(COMPOSE_DISTRIBUTED.read_text()))
                  if is_discovery_server(c.argv)]
    assert server.argv == compose
    assert server.argv[:2] == ["fastdds", "discovery"], "the tests below run the fastdds form"
    return server, worker


def _server_argv() -> list[str]:
    return _pods()[0].argv


def _env(pod_env: dict[str, str] | None = None, **extra: str) -> dict[str, str]:
    """This process' environment without its DDS settings, with the pod's DDS settings, this run's
    ROS_DOMAIN_ID (isolation from other runs on the machine) and the venv's Fast DDS libraries."""
    libs = [str(PREFIX / "lib"), str(Path(sysconfig.get_paths()["purelib"]) / "ros_fastdds.libs")]
    env = {k: v for k, v in os.environ.items() if k not in DDS_ENV_KEYS}
    env["LD_LIBRARY_PATH"] = ":".join(libs + [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(":") if p])
    env.update({k: v for k, v in (pod_env or {}).items() if k in DDS_ENV_KEYS})
    env["ROS_DOMAIN_ID"] = os.environ["ROS_DOMAIN_ID"]
    env.update(extra)
    return env


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _with_port(argv: list[str], port: int) -> list[str]:
    out = list(argv)
    out[out.index("--udp-port") + 1] = str(port)
    return out


def _wait_for(predicate, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def _start_server(argv: list[str], tmp_path: Path) -> NodeProcess:
    """``fastdds discovery ARGS`` as its CLI script runs it (the tool with command 42 and ARGS), in the
    server pod's DDS environment."""
    assert SERVER_BIN.is_file(), f"{SERVER_BIN} missing: the ros-fastdds wheel installs it"
    return NodeProcess([str(SERVER_BIN), "42", *argv[2:]], tmp_path / f"server-{time.monotonic_ns()}.log",
                       _env(_pods()[0].env))


def test_fastdds_discovery_passes_its_arguments_to_the_server_tool():
    text = CLI_SCRIPT.read_text()
    assert re.search(r"Command\.SERVER:\s*42", text)
    assert "args_for_cpp = [str(command_int)] + sys.argv[2:]" in text
    assert "[tool_path] + args_for_cpp" in text


def test_the_manifests_server_arguments_start_a_udp_server(tmp_path):
    argv = _server_argv()
    assert flag(argv, "--server-id") == "0"
    port = _free_udp_port()
    server = _start_server(_with_port(argv, port), tmp_path)
    try:
        assert _wait_for(lambda: "Server started" in server.output(), 20.0), server.output()
        assert re.search(rf"UDPv4:\[0\.0\.0\.0\]:{port}\b", server.output()), server.output()
        assert server.alive()
    finally:
        server.stop()


def test_an_option_fast_dds_does_not_know_is_refused(tmp_path):
    # the older CLI spelling --port is not an option of this Fast DDS (3.x: --udp-port)
    server = _start_server(["fastdds", "discovery", "--server-id", "0", "--port", str(_free_udp_port())], tmp_path)
    try:
        assert _wait_for(lambda: not server.alive(), 20.0)
    finally:
        server.stop()
    assert "Unknown option: --port" in server.output()
    assert "Server started" not in server.output()


TALKER = textwrap.dedent("""
    import rclpy
    from std_msgs.msg import String
    rclpy.init()
    node = rclpy.create_node("deploy_talker")
    pub = node.create_publisher(String, "/deploy_test/chatter", 10)
    count = [0]
    def tick():
        pub.publish(String(data=f"hello {count[0]}"))
        count[0] += 1
    node.create_timer(0.1, tick)
    print("ready", flush=True)
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass
    rclpy.try_shutdown()
""")

LISTENER = textwrap.dedent("""
    import rclpy
    from std_msgs.msg import String
    rclpy.init()
    node = rclpy.create_node("deploy_listener")
    got = []
    def on_msg(msg):
        got.append(msg.data)
        print("received", msg.data, flush=True)
    node.create_subscription(String, "/deploy_test/chatter", on_msg, 10)
    print("ready", flush=True)
    try:
        while rclpy.ok() and len(got) < 3:
            rclpy.spin_once(node, timeout_sec=0.1)
    except KeyboardInterrupt:
        pass
    rclpy.try_shutdown()
""")

NO_SERVER_WINDOW_S = 3.0  # how long the two clients are watched not finding each other without a server


@pytest.mark.ros
def test_clients_started_before_the_server_meet_through_it(tmp_path):
    server_pod, worker_pod = _pods()
    port = _free_udp_port()
    host, _, _ = worker_pod.env["ROS_DISCOVERY_SERVER"].rpartition(":")
    # a worker pod's settings, with a name of this machine for the Service's and a free port
    client_env = _env(worker_pod.env, ROS_DISCOVERY_SERVER=f"localhost:{port}", PYTHONUNBUFFERED="1")
    assert host and worker_pod.env["ROS_DOMAIN_ID"] == server_pod.env["ROS_DOMAIN_ID"]
    talker = NodeProcess([sys.executable, "-c", TALKER], tmp_path / "talker.log", client_env)
    listener = NodeProcess([sys.executable, "-c", LISTENER], tmp_path / "listener.log", client_env)
    server = None
    try:
        assert _wait_for(lambda: "ready" in talker.output() and "ready" in listener.output(), 30.0), \
            talker.output() + listener.output()
        # without the server: no discovery (the talker publishes all along)
        assert not _wait_for(lambda: "received" in listener.output(), NO_SERVER_WINDOW_S), listener.output()
        server = _start_server(_with_port(server_pod.argv, port), tmp_path)
        assert _wait_for(lambda: not listener.alive(), 30.0), listener.output() + server.output()
    finally:
        code = listener.stop()
        talker.stop()
        if server is not None:
            server.stop()
    assert code == 0 and listener.output().count("received") == 3, listener.output()
