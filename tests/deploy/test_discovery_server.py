"""The discovery server of the deployment files, run for real with the Fast DDS of this venv (the
ros-fastdds wheel ships the fast-discovery-server tool that ``fastdds discovery`` runs in the image):

- ``fastdds discovery ARGS`` execs ``fast-discovery-server 42 ARGS`` (checked in the wheel's CLI
  script), so the manifest's ARGS are run through that tool and must start a UDP server on the port;
- two ROS processes with a worker pod's DDS settings (server address ``localhost:<port>``) start before
  the server, do not find each other without it, and exchange messages once it is up;
- the same with pods emulated by network namespaces (own address, own /dev/shm): server, learner and
  worker pod, the pods' settings verbatim, the Service name resolved to the server pod's address."""

from __future__ import annotations

import re
import sys

import pytest

from dds_processes import CLI_SCRIPT, LISTENER, TALKER, NetworkNamespacesUnavailable, PodNetwork, dds_env, \
    free_udp_port, pods, server_argv, server_command, start_server, wait_for, with_port
from deploy_checks import REPO, flag, image_env
from ros_testing import NodeProcess


def test_fastdds_discovery_passes_its_arguments_to_the_server_tool():
    text = CLI_SCRIPT.read_text()
    assert re.search(r"Command\.SERVER:\s*42", text)
    assert "args_for_cpp = [str(command_int)] + sys.argv[2:]" in text
    assert "[tool_path] + args_for_cpp" in text


def test_the_image_installs_what_fastdds_discovery_imports():
    # the CLI script exits ("psutil" module not found) before starting any server without psutil
    imports_psutil = [p for p in CLI_SCRIPT.parent.rglob("*.py")
                      if re.search(r"^\s*import psutil", p.read_text(), re.M)]
    assert imports_psutil, "the fastdds discovery script no longer imports psutil: drop python3-psutil from the image"
    dockerfile = (REPO / "docker" / "Dockerfile").read_text()
    apt = re.search(r"apt-get install -y --no-install-recommends \\\n(.*?)&& rm", dockerfile, re.S)
    assert apt and "python3-psutil" in apt.group(1).split()


def test_the_manifests_server_arguments_start_a_udp_server(tmp_path):
    argv = server_argv()
    assert flag(argv, "--server-id") == "0"
    port = free_udp_port()
    server = start_server(with_port(argv, port), tmp_path)
    try:
        assert wait_for(lambda: "Server started" in server.output(), 20.0), server.output()
        assert re.search(rf"UDPv4:\[0\.0\.0\.0\]:{port}\b", server.output()), server.output()
        assert server.alive()
    finally:
        server.stop()


def test_an_option_fast_dds_does_not_know_is_refused(tmp_path):
    # the older CLI spelling --port is not an option of this Fast DDS (3.x: --udp-port)
    server = start_server(["fastdds", "discovery", "--server-id", "0", "--port", str(free_udp_port())], tmp_path)
    try:
        assert wait_for(lambda: not server.alive(), 20.0)
    finally:
        server.stop()
    assert "Unknown option: --port" in server.output()
    assert "Server started" not in server.output()


def test_with_the_images_large_data_transports_the_server_does_not_start(tmp_path):
    # why the server pod overrides the image's FASTDDS_BUILTIN_TRANSPORTS
    argv = with_port(server_argv(), free_udp_port())
    server = NodeProcess(server_command(argv), tmp_path / "server.log",
                         dds_env(pods()[0].env, FASTDDS_BUILTIN_TRANSPORTS=image_env()["FASTDDS_BUILTIN_TRANSPORTS"]))
    try:
        assert wait_for(lambda: not server.alive(), 20.0), server.output()
    finally:
        server.stop()
    assert image_env()["FASTDDS_BUILTIN_TRANSPORTS"] == "LARGE_DATA"
    assert "wasn't able to allocate the specified listening port" in server.output()
    assert "Server started" not in server.output()


NO_SERVER_WINDOW_S = 3.0  # how long the two clients are watched not finding each other without a server


@pytest.mark.ros
def test_clients_started_before_the_server_meet_through_it(tmp_path):
    server_pod, _, worker_pod = pods()
    port = free_udp_port()
    host, _, _ = worker_pod.env["ROS_DISCOVERY_SERVER"].rpartition(":")
    # a worker pod's settings, with a name of this machine for the Service's and a free port
    client_env = dds_env(worker_pod.env, ROS_DISCOVERY_SERVER=f"localhost:{port}")
    assert host and worker_pod.env["ROS_DOMAIN_ID"] == server_pod.env["ROS_DOMAIN_ID"]
    talker = NodeProcess([sys.executable, "-c", TALKER], tmp_path / "talker.log", client_env)
    listener = NodeProcess([sys.executable, "-c", LISTENER], tmp_path / "listener.log", client_env)
    server = None
    try:
        assert wait_for(lambda: "ready" in talker.output() and "ready" in listener.output(), 30.0), \
            talker.output() + listener.output()
        # without the server: no discovery (the talker publishes all along)
        assert not wait_for(lambda: "received" in listener.output(), NO_SERVER_WINDOW_S), listener.output()
        server = start_server(with_port(server_pod.argv, port), tmp_path)
        assert wait_for(lambda: not listener.alive(), 30.0), listener.output() + server.output()
    finally:
        code = listener.stop()
        talker.stop()
        if server is not None:
            server.stop()
    assert code == 0 and listener.output().count("received") == 3, listener.output()


@pytest.mark.ros
def test_pods_on_separate_networks_meet_through_the_discovery_service(tmp_path):
    server_pod, learner_pod, worker_pod = pods()
    service = worker_pod.env["ROS_DISCOVERY_SERVER"].rpartition(":")[0]
    net = PodNetwork(["discovery", "learner", "worker"], hosts={service: "discovery"})
    try:
        net.__enter__()
    except NetworkNamespacesUnavailable as exc:
        pytest.skip(f"needs network namespaces (root with CAP_NET_ADMIN): {exc}")
    procs: list[NodeProcess] = []
    try:
        # the pods' DDS settings verbatim (their domain too: nothing outside these namespaces hears them)
        talker = NodeProcess(net.command("learner", [sys.executable, "-c", TALKER]), tmp_path / "learner.log",
                             dds_env(learner_pod.env, own_domain=False))
        listener = NodeProcess(net.command("worker", [sys.executable, "-c", LISTENER]), tmp_path / "worker.log",
                               dds_env(worker_pod.env, own_domain=False))
        procs += [talker, listener]
        assert wait_for(lambda: "ready" in talker.output() and "ready" in listener.output(), 30.0), \
            talker.output() + listener.output()
        assert not wait_for(lambda: "received" in listener.output(), NO_SERVER_WINDOW_S), listener.output()
        server = NodeProcess(net.command("discovery", server_command(server_pod.argv)), tmp_path / "server.log",
                             dds_env(server_pod.env, own_domain=False))
        procs.append(server)
        assert wait_for(lambda: not listener.alive(), 30.0), listener.output() + server.output()
        assert re.search(r"UDPv4:\[0\.0\.0\.0\]:11811\b", server.output()), server.output()
    finally:
        codes = [p.stop() for p in procs]
        net.__exit__()
    assert codes[1] == 0 and listener.output().count("received") == 3, listener.output()
