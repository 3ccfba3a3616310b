"""Which client DDS settings carry messages between emulated pods (docs/KUBERNETES.md): for each
RANGE/TRANSPORTS argument, a discovery server, a talker and a listener in their own network namespaces
(tests/deploy/dds_processes.PodNetwork), the server with the server pod's settings, the clients with the
learner's and a worker's settings except ROS_AUTOMATIC_DISCOVERY_RANGE and FASTDDS_BUILTIN_TRANSPORTS.
Needs root (ip netns).

    python tests/deploy/dds_variants.py SUBNET/UDPv4 SUBNET/LARGE_DATA
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from dds_processes import LISTENER, TALKER, PodNetwork, dds_env, pods, server_command, wait_for  # noqa: E402
from ros_testing import NodeProcess  # noqa: E402

WAIT_S = 20.0


def run(discovery_range: str, transports: str) -> str:
    server_pod, learner_pod, worker_pod = pods()
    service = worker_pod.env["ROS_DISCOVERY_SERVER"].rpartition(":")[0]
    tmp = Path(tempfile.mkdtemp(prefix="dds_variants_"))
    over = {"ROS_AUTOMATIC_DISCOVERY_RANGE": discovery_range, "FASTDDS_BUILTIN_TRANSPORTS": transports}
    with PodNetwork(["discovery", "learner", "worker"], hosts={service: "discovery"}) as net:
        procs = [NodeProcess(net.command("discovery", server_command(server_pod.argv)), tmp / "server.log",
                             dds_env(server_pod.env, own_domain=False)),
                 NodeProcess(net.command("learner", [sys.executable, "-c", TALKER]), tmp / "talker.log",
                             dds_env(learner_pod.env, own_domain=False, **over)),
                 NodeProcess(net.command("worker", [sys.executable, "-c", LISTENER]), tmp / "listener.log",
                             dds_env(worker_pod.env, own_domain=False, **over))]
        listener = procs[-1]
        try:
            done = wait_for(lambda: not listener.alive(), WAIT_S)
        finally:
            for p in reversed(procs):
                p.stop()
        received = listener.output().count("received")
    return f"{received} messages" if done else f"{received} messages within {WAIT_S:.0f} s"


def main(argv: list[str]) -> int:
    if not argv or any(a.count("/") != 1 for a in argv):
        print("usage: dds_variants.py RANGE/TRANSPORTS ... (e.g. SUBNET/UDPv4)", file=sys.stderr)
        return 2
    for arg in argv:
        discovery_range, transports = arg.split("/")
        print(f"range={discovery_range} transports={transports}: {run(discovery_range, transports)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
