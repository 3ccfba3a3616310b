"""Running the deployment's DDS processes on this machine: the discovery server with the venv's Fast DDS
(the ros-fastdds wheel ships the fast-discovery-server tool that ``fastdds discovery`` runs), a talker and a
listener configured like the pods, and :class:`PodNetwork`, network namespaces that give each process its
own address and its own /dev/shm, as pods on different nodes have."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import textwrap
import time
from pathlib import Path

import yaml

from deploy_checks import COMPOSE_DISTRIBUTED, DDS_ENV_KEYS, DISTRIBUTED, PodCommand, compose_commands, \
    is_discovery_server, k8s_commands, load_kustomization
from ros_testing import NodeProcess

PREFIX = Path(sys.prefix)
SERVER_BIN = PREFIX / "bin" / "fast-discovery-server"
CLI_SCRIPT = PREFIX / "tools" / "fastdds" / "discovery" / "parser.py"


def pods() -> tuple[PodCommand, PodCommand, PodCommand]:
    """The discovery server's, the learner's and the first worker's command and environment (image ENV +
    pod env)."""
    commands = k8s_commands(load_kustomization(DISTRIBUTED))
    (server,) = [c for c in commands if is_discovery_server(c.argv)]
    (learner,) = [c for c in commands if c.argv[:2] == ["carla-rl", "train"]]
    worker = next(c for c in commands if c.argv[:2] == ["carla-rl", "worker"])
    (compose,) = [c.argv for c in compose_commands(yaml.safe_load(COMPOSE_DISTRIBUTED.read_text()))
                  if is_discovery_server(c.argv)]
    assert server.argv == compose
    assert server.argv[:2] == ["fastdds", "discovery"], "the tests run the fastdds form"
    return server, learner, worker


def server_argv() -> list[str]:
    return pods()[0].argv


def dds_env(pod_env: dict[str, str] | None = None, own_domain: bool = True, **extra: str) -> dict[str, str]:
    """This process' environment without its DDS settings, with the pod's DDS settings and the venv's
    Fast DDS libraries; ``own_domain``: this run's ROS_DOMAIN_ID instead of the pod's (isolation from
    other runs on the machine; not needed inside a :class:`PodNetwork`)."""
    libs = [str(PREFIX / "lib"), str(Path(sysconfig.get_paths()["purelib"]) / "ros_fastdds.libs")]
    env = {k: v for k, v in os.environ.items() if k not in DDS_ENV_KEYS}
    env["LD_LIBRARY_PATH"] = ":".join(libs + [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(":") if p])
    env["PYTHONUNBUFFERED"] = "1"
    env.update({k: v for k, v in (pod_env or {}).items() if k in DDS_ENV_KEYS})
    if own_domain:
        env["ROS_DOMAIN_ID"] = os.environ["ROS_DOMAIN_ID"]
    env.update(extra)
    return env


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def with_port(argv: list[str], port: int) -> list[str]:
    out = list(argv)
    out[out.index("--udp-port") + 1] = str(port)
    return out


def wait_for(predicate, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def server_command(argv: list[str]) -> list[str]:
    """``fastdds discovery ARGS`` as its CLI script runs it: the server tool with command 42 and ARGS."""
    assert argv[:2] == ["fastdds", "discovery"], argv
    assert SERVER_BIN.is_file(), f"{SERVER_BIN} missing: the ros-fastdds wheel installs it"
    return [str(SERVER_BIN), "42", *argv[2:]]


def start_server(argv: list[str], tmp_path: Path) -> NodeProcess:
    """The server with ``argv``'s arguments in the server pod's DDS environment (this run's domain)."""
    return NodeProcess(server_command(argv), tmp_path / f"server-{time.monotonic_ns()}.log", dds_env(pods()[0].env))


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



class NetworkNamespacesUnavailable(RuntimeError):
    pass


class PodNetwork:
    """One network namespace per emulated pod, joined by a bridge (in a namespace of its own): each pod
    has its own IPv4 address and, through :meth:`command`, its own /dev/shm, as pods on different nodes
    do. ``/etc/netns/<namespace>/hosts`` (bind-mounted by ``ip netns exec``) resolves the given host
    names, as the cluster DNS resolves Service names. Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN)."""

    SUBNET = "10.199.77"

    def __init__(self, pods: list[str], hosts: dict[str, str] | None = None) -> None:
        tag = f"{os.getpid() % 100000}"
        self.pods = list(pods)
        self.ns = {pod: f"crlpod{i}_{tag}" for i, pod in enumerate(self.pods)}
        self.bridge_ns = f"crlbr_{tag}"
        self.ip = {pod: f"{self.SUBNET}.{i + 1}" for i, pod in enumerate(self.pods)}
        self.hosts = {name: self.ip[pod] for name, pod in (hosts or {}).items()}
        self._tag = tag
        self._created: list[str] = []

    @staticmethod
    def _ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)

    def __enter__(self) -> "PodNetwork":
        try:
            self._ip("netns", "add", self.bridge_ns)
        except (OSError, subprocess.CalledProcessError) as exc:
            detail = exc.stderr.strip() if isinstance(exc, subprocess.CalledProcessError) else exc
            raise NetworkNamespacesUnavailable(f"ip netns add failed: {detail}") from None
        self._created.append(self.bridge_ns)
        try:
            self._ip("-n", self.bridge_ns, "link", "add", "br0", "type", "bridge")
            self._ip("-n", self.bridge_ns, "link", "set", "br0", "up")
            for i, pod in enumerate(self.pods):
                ns, inner, outer = self.ns[pod], f"crv{i}_{self._tag}", f"crb{i}_{self._tag}"
                self._ip("netns", "add", ns)
                self._created.append(ns)
                self._ip("link", "add", inner, "type", "veth", "peer", "name", outer)
                self._ip("link", "set", inner, "netns", ns)
                self._ip("link", "set", outer, "netns", self.bridge_ns)
                self._ip("-n", self.bridge_ns, "link", "set", outer, "master", "br0", "up")
                self._ip("-n", ns, "addr", "add", f"{self.ip[pod]}/24", "dev", inner)
                self._ip("-n", ns, "link", "set", inner, "up")
                self._ip("-n", ns, "link", "set", "lo", "up")
                etc = Path("/etc/netns") / ns
                etc.mkdir(parents=True, exist_ok=True)
                lines = ["127.0.0.1 localhost"] + [f"{ip} {name}" for name, ip in self.hosts.items()]
                (etc / "hosts").write_text("\n".join(lines) + "\n")
        except BaseException:
            self.__exit__()
            raise
        return self

    def command(self, pod: str, argv: list[str]) -> list[str]:
        """argv in the pod's namespace with a private tmpfs on /dev/shm."""
        return ["ip", "netns", "exec", self.ns[pod], "unshare", "--mount", "--propagation", "private",
                "sh", "-c", 'mount -t tmpfs -o size=256m tmpfs /dev/shm && exec "$@"', "sh", *argv]

    def __exit__(self, *exc) -> None:
        for ns in reversed(self._created):  # deleting a namespace deletes its end of each veth pair
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
            shutil.rmtree(Path("/etc/netns") / ns, ignore_errors=True)
        self._created.clear()
