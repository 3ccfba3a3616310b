"""The supervisor's liveness rule (no processes started): a process is alive while any of its nodes is heard
on /diagnostics, and restarted once none of them has been heard for heartbeat_timeout_s."""

import time

from carla_rl.graph import GraphOptions, build_graph
from carla_rl.supervisor import Supervisor, SupervisorConfig

TIMEOUT_S = 30.0


class RunningProcess:  # what Supervisor.poll asks of a child process
    pid = 0

    def poll(self):
        return None

    def wait(self):
        return -9


def container_supervisor(tmp_path, monkeypatch):
    killed = []
    monkeypatch.setattr(Supervisor, "_kill", staticmethod(lambda proc: killed.append(proc)))
    specs = build_graph(GraphOptions(num_envs=2, composition="halves", monitor=False))
    supervisor = Supervisor(specs, tmp_path, tmp_path / "logs", config=SupervisorConfig(heartbeat_timeout_s=TIMEOUT_S))
    for each in supervisor.processes.values():  # as _spawn leaves them: every hosted node heard at the start
        each.process = RunningProcess()
        each.last_heartbeat = {node.fqn: time.monotonic() for node in each.spec.components}
    managed = supervisor.processes["/graph_container"]
    assert len(managed.last_heartbeat) > 2  # the policy's container hosts several nodes
    return supervisor, managed, killed


def test_a_container_is_alive_while_any_of_its_nodes_is_heard(tmp_path, monkeypatch):
    supervisor, managed, killed = container_supervisor(tmp_path, monkeypatch)
    now = time.monotonic()
    nodes = sorted(managed.last_heartbeat)
    for fqn in nodes:
        managed.last_heartbeat[fqn] = now - 10 * TIMEOUT_S  # long unheard ...
    supervisor.heartbeat(nodes[0])                          # ... but for one node
    assert supervisor.poll() == [] and killed == [] and managed.restarts == 0


def test_a_container_none_of_whose_nodes_is_heard_is_restarted(tmp_path, monkeypatch):
    supervisor, managed, killed = container_supervisor(tmp_path, monkeypatch)
    now = time.monotonic()
    for fqn in managed.last_heartbeat:
        managed.last_heartbeat[fqn] = now - TIMEOUT_S - 1.0
    events = supervisor.poll()
    assert events[0] == f"/graph_container: no heartbeat for {TIMEOUT_S:.0f} s, killing"
    assert len(killed) == 1 and managed.restarts == 1 and managed.process is None
