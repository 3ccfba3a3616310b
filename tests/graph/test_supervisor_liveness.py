"""The supervisor's liveness and restart rules (no processes started, a fake clock): liveness is per node
(a process whose nodes are all unheard for heartbeat_timeout_s, or one of whose nodes is unheard for
node_heartbeat_timeout_s, is hung and restarted; shorter single-node gaps, as a busy machine shows, are
not); the restart budget is a sliding window with backoff, and a crash loop ends the run with one
message naming the process, its nodes and its last log lines."""

from dataclasses import replace

import pytest

from carla_rl.contract.config import ConfigError
from carla_rl.graph import GraphOptions, build_graph
from carla_rl.graph.supervisor import (RestartWindow, Supervisor, SupervisorConfig, load_supervisor_config)
from ros_testing import CONFIG_DIR, FakeClock

PROCESS_TIMEOUT_S = 30.0
NODE_TIMEOUT_S = 120.0


class RunningProcess:  # what Supervisor.poll asks of a child process
    pid = 0

    def poll(self):
        return None

    def wait(self):
        return -9


class ExitedProcess(RunningProcess):
    def poll(self):
        return 1

    def wait(self):
        return 1


def make_supervisor(tmp_path, monkeypatch, composition="halves", **config):
    killed, spawned = [], []
    clock = FakeClock()
    monkeypatch.setattr(Supervisor, "_kill", staticmethod(lambda proc: killed.append(proc)))

    def fake_spawn(self, managed):  # as _spawn leaves a process: every hosted node heard at the start
        spawned.append(managed.spec.fqn)
        managed.log_path = tmp_path / "logs" / (managed.spec.fqn.strip("/").replace("/", "__") + ".log")
        managed.process = RunningProcess()
        managed.started_at = self.clock()
        managed.last_heartbeat = {node.fqn: managed.started_at for node in managed.spec.components}

    monkeypatch.setattr(Supervisor, "_spawn", fake_spawn)
    specs = build_graph(GraphOptions(num_envs=2, composition=composition, monitor=False))
    cfg = SupervisorConfig(heartbeat_timeout_s=PROCESS_TIMEOUT_S, node_heartbeat_timeout_s=NODE_TIMEOUT_S,
                           **config)
    supervisor = Supervisor(specs, tmp_path, tmp_path / "logs", config=cfg, clock=clock)
    supervisor.start()
    clock.now += 1.0
    hear_all_but(supervisor, "")  # every node has started up
    return supervisor, clock, killed, spawned


def container(supervisor):
    managed = supervisor.processes["/graph_container"]
    assert len(managed.last_heartbeat) > 2  # the policy's container hosts several nodes
    return managed


def hear_all_but(supervisor, silent: str) -> None:
    """Every node of every process heard now, but ``silent``."""
    for managed in supervisor.processes.values():
        for fqn in managed.last_heartbeat:
            if fqn != silent:
                supervisor.heartbeat(fqn)


def test_the_config_file_sets_the_documented_defaults():
    assert load_supervisor_config(CONFIG_DIR) == SupervisorConfig()


def test_a_config_directory_without_the_block_or_the_file_gets_the_defaults(tmp_path):
    assert load_supervisor_config(tmp_path) == SupervisorConfig()
    (tmp_path / "graph.yaml").write_text("supervisor:\n  ros__parameters:\n    max_crashes: 9\n")
    assert load_supervisor_config(tmp_path) == replace(SupervisorConfig(), max_crashes=9)


def test_an_invalid_supervisor_setting_names_the_file_and_key(tmp_path):
    (tmp_path / "graph.yaml").write_text("supervisor:\n  ros__parameters:\n    max_crashes: 0\n")
    with pytest.raises(ConfigError, match=r"graph.yaml: supervisor: max_crashes: 0 is below the minimum 1"):
        load_supervisor_config(tmp_path)


def test_a_single_node_unheard_for_a_while_on_a_busy_machine_is_not_a_hang(tmp_path, monkeypatch):
    supervisor, clock, killed, _ = make_supervisor(tmp_path, monkeypatch)
    managed = container(supervisor)
    slow = sorted(managed.last_heartbeat)[0]
    for _ in range(int(NODE_TIMEOUT_S / 10) - 1):  # its siblings heard every 10 s, it not at all
        clock.now += 10.0
        hear_all_but(supervisor, slow)
        assert supervisor.poll() == [] and killed == []
    assert managed.restarts == 0


def test_one_silent_node_in_a_container_marks_the_process_hung(tmp_path, monkeypatch):
    supervisor, clock, killed, spawned = make_supervisor(tmp_path, monkeypatch)
    managed = container(supervisor)
    hung = "/dqn_policy"
    assert hung in managed.last_heartbeat
    events = []
    for _ in range(int(NODE_TIMEOUT_S / 10) + 1):
        clock.now += 10.0
        hear_all_but(supervisor, hung)
        events += supervisor.poll()
    assert events == [f"/graph_container: node {hung} silent for {NODE_TIMEOUT_S:.0f} s, killing",
                      f"/graph_container: node {hung} silent for {NODE_TIMEOUT_S:.0f} s; restarting in 1.0 s"]
    assert len(killed) == 1 and managed.restarts == 1 and managed.process is None
    clock.now += 1.0
    assert supervisor.poll() == ["/graph_container: restarted (#1)"] and spawned.count("/graph_container") == 2


def test_a_slow_start_is_given_startup_timeout_s(tmp_path, monkeypatch):
    supervisor, clock, killed, _ = make_supervisor(tmp_path, monkeypatch, startup_timeout_s=90.0)
    managed = container(supervisor)
    managed.process = None  # crashed: restarted after the backoff, then silent while it imports
    managed.window.crash(clock.now)
    managed.next_start = clock.now
    assert supervisor.poll() == ["/graph_container: restarted (#0)"]
    for _ in range(8):  # 80 s: well past heartbeat_timeout_s, within startup_timeout_s
        clock.now += 10.0
        hear_all_but(supervisor, "/dqn_policy")  # the other processes keep talking; this one is silent
        for fqn in managed.last_heartbeat:
            managed.last_heartbeat[fqn] = managed.started_at
        assert supervisor.poll() == [] and killed == []
    supervisor.heartbeat("/dqn_policy")  # one node up; the others still starting
    clock.now += 11.0
    events = supervisor.poll()
    assert events[0].startswith("/graph_container: node ") and events[0].endswith(
        " not heard within 90 s of its start, killing")
    assert len(killed) == 1


def test_a_process_none_of_whose_nodes_is_heard_is_restarted(tmp_path, monkeypatch):
    supervisor, clock, killed, _ = make_supervisor(tmp_path, monkeypatch)
    managed = container(supervisor)
    for other in supervisor.processes.values():  # the other processes keep talking
        if other is not managed:
            other.last_heartbeat = dict.fromkeys(other.last_heartbeat, clock.now + PROCESS_TIMEOUT_S + 1.0)
    clock.now += PROCESS_TIMEOUT_S + 1.0
    events = supervisor.poll()
    assert events[0] == f"/graph_container: no heartbeat for {PROCESS_TIMEOUT_S:.0f} s, killing"
    assert len(killed) == 1 and managed.restarts == 1 and managed.process is None


def _policy_process_silent_for(supervisor, clock, seconds, step=10.0):
    """The policy's process falls silent (every node, as a starved executor would) while the other
    processes keep talking; returns the events of polls every ``step`` seconds."""
    managed = supervisor.processes[supervisor.owner["/dqn_policy"]]
    events, waited = [], 0.0
    while waited < seconds:
        clock.now += step
        waited += step
        for other in supervisor.processes.values():
            if other is not managed:
                for fqn in other.last_heartbeat:
                    supervisor.heartbeat(fqn)
        events += supervisor.poll()
    return managed, events


def test_an_announced_silence_is_accepted_for_its_length_and_no_longer(tmp_path, monkeypatch):
    supervisor, clock, killed, _ = make_supervisor(tmp_path, monkeypatch, composition="none")
    supervisor.heartbeat("/dqn_policy", expected_silence_s=300.0)   # "compiling: quiet up to 300 s"
    managed, events = _policy_process_silent_for(supervisor, clock, 290.0)
    assert events == [] and killed == [] and managed.restarts == 0   # 290 s, far past the 30 s limit
    # from its end on, the usual limit: hung heartbeat_timeout_s after the announced 300 s
    managed, events = _policy_process_silent_for(supervisor, clock, 10.0 + PROCESS_TIMEOUT_S)
    assert events == []
    managed, events = _policy_process_silent_for(supervisor, clock, 10.0)
    assert events[0] == f"/dqn_policy: no heartbeat for {PROCESS_TIMEOUT_S:.0f} s, killing"
    assert len(killed) == 1 and managed.restarts == 1


def test_a_status_without_the_announcement_ends_it(tmp_path, monkeypatch):
    supervisor, clock, killed, _ = make_supervisor(tmp_path, monkeypatch, composition="none")
    supervisor.heartbeat("/dqn_policy", expected_silence_s=300.0)
    supervisor.heartbeat("/dqn_policy")                              # compiled: back to the normal limit
    managed, events = _policy_process_silent_for(supervisor, clock, PROCESS_TIMEOUT_S + 10.0)
    assert events[0] == f"/dqn_policy: no heartbeat for {PROCESS_TIMEOUT_S:.0f} s, killing"


def test_an_announced_silence_is_capped_by_max_expected_silence_s(tmp_path, monkeypatch):
    supervisor, clock, killed, _ = make_supervisor(tmp_path, monkeypatch, composition="none",
                                                   max_expected_silence_s=60.0)
    supervisor.heartbeat("/dqn_policy", expected_silence_s=10_000.0)
    managed, events = _policy_process_silent_for(supervisor, clock, 60.0 + PROCESS_TIMEOUT_S + 10.0)
    assert events[0] == f"/dqn_policy: no heartbeat for {PROCESS_TIMEOUT_S:.0f} s, killing"
    assert len(killed) == 1


def test_the_restart_window_backs_off_and_gives_up_on_a_crash_loop():
    window = RestartWindow(max_crashes=5, window_s=600.0, backoff_s=1.0, max_backoff_s=4.0)
    assert [window.crash(t) for t in (0.0, 1.0, 3.0, 7.0)] == [1.0, 2.0, 4.0, 4.0]  # doubling, capped
    assert window.crash(11.0) is None  # the fifth crash within 600 s


def test_crashes_older_than_the_window_no_longer_count():
    window = RestartWindow(max_crashes=3, window_s=600.0, backoff_s=1.0, max_backoff_s=30.0)
    assert window.crash(0.0) == 1.0 and window.crash(100.0) == 2.0
    assert window.crash(650.0) == 2.0   # the crash at 0 s left the window: 2 inside, second backoff
    assert window.crash(1400.0) == 1.0  # a long quiet stretch: back to the first backoff
    assert window.crash(1401.0) == 2.0
    assert window.crash(1402.0) is None  # three within 600 s


def test_a_crash_loop_ends_the_run_with_one_message_naming_the_process_and_its_log(tmp_path, monkeypatch):
    supervisor, clock, _, spawned = make_supervisor(tmp_path, monkeypatch, composition="envs",
                                                    restart_backoff_s=0.0, max_crashes=3)
    policy = supervisor.processes["/dqn_policy"]
    policy.log_path.parent.mkdir(parents=True, exist_ok=True)
    policy.log_path.write_text("".join(f"line {i}\n" for i in range(100)) + "RuntimeError: boom\n")
    events = []
    for _ in range(10):
        clock.now += 1.0
        if supervisor.processes["/dqn_policy"].process is not None:
            supervisor.processes["/dqn_policy"].process = ExitedProcess()
        events += supervisor.poll()
        if supervisor.failed:
            break
    assert spawned.count("/dqn_policy") == 3  # started, restarted twice, then given up
    assert supervisor.failed.startswith("/dqn_policy crashed 3 times within 600 s (last: exited with 1); "
                                        "not restarted again. Log: ")
    assert supervisor.failed.endswith("line 99\nRuntimeError: boom")
    assert len(supervisor.failed.splitlines()) == 1 + SupervisorConfig().log_tail_lines
    assert not any("not restarted again" in e for e in events)  # said once, by whoever ends the run
    clock.now += 100.0
    assert supervisor.poll() == [] and spawned.count("/dqn_policy") == 3


def test_a_crash_looping_container_is_named_with_its_nodes(tmp_path, monkeypatch):
    supervisor, clock, _, _ = make_supervisor(tmp_path, monkeypatch, composition="envs", max_crashes=1)
    supervisor.processes["/env_container"].process = ExitedProcess()
    clock.now += 1.0
    supervisor.poll()
    assert supervisor.failed.startswith("/env_container (nodes /env_0/embedded_simulator, "
                                        "/env_0/sensor_preprocessor, ")
    assert "/reward_evaluator) crashed 1 times" in supervisor.failed


def test_a_restart_after_a_quiet_hour_uses_the_first_backoff(tmp_path, monkeypatch):
    supervisor, clock, _, _ = make_supervisor(tmp_path, monkeypatch, composition="envs")
    policy = supervisor.processes["/dqn_policy"]
    delays = []
    for gap in (1.0, 1.0, 3600.0):
        clock.now += gap
        policy.process = ExitedProcess()
        events = supervisor.poll()
        delays.append(next(e for e in events if e.startswith("/dqn_policy: exited")))
        clock.now += 10.0
        supervisor.poll()  # restarts it
    assert [d.rsplit("in ", 1)[1] for d in delays] == ["1.0 s", "2.0 s", "1.0 s"]
    assert not supervisor.failed and policy.restarts == 3


@pytest.mark.parametrize("values, expected", [({}, 0.0), ({"expected_silence_s": "600"}, 600.0),
                                              ({"expected_silence_s": "-5"}, 0.0),
                                              ({"expected_silence_s": "nan"}, 0.0),
                                              ({"expected_silence_s": "soon"}, 0.0)])
def test_a_status_announces_a_silence_only_with_a_positive_number(values, expected):
    from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

    from carla_rl.nodes.support.diagnostics import expected_silence_s

    status = DiagnosticStatus(name="/dqn_policy",
                              values=[KeyValue(key="envs_present", value="2")]
                              + [KeyValue(key=k, value=v) for k, v in values.items()])
    assert expected_silence_s(status) == expected


def test_a_cpu_learner_never_announces_a_compile():
    from carla_rl.learner.agent_config import ObservationSpec, load_agent_config
    from carla_rl.learner.dqn_agent import DQNAgent

    config = load_agent_config(CONFIG_DIR / "agent.yaml")
    agent = DQNAgent(ObservationSpec(frame_stack=4, height=84, width=84, vector_size=58), 6,
                     replace(config, compile=True, cuda_graphs=True), device="cpu")
    assert not agent.compiling     # torch.compile runs on CUDA only: nothing to wait for on a CPU
