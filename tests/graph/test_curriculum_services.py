"""The curriculum manager's services, over DDS from another process: SetPhase 3 succeeds (applied at
the next episode boundary), 0 and 11 fail with a message naming the valid range, a phase whose
config is broken fails and says why; GetStatus and the latched status/scenario topics agree; a pause
requested before the policy is up reaches it once it is; a curriculum that starts paused asks the policy to
stop learning without being told."""

import shutil
import time

import pytest
import yaml

rclpy = pytest.importorskip("rclpy", reason="rclpy missing: run through `make test`")

from carla_rl.contract import topics  # noqa: E402
from carla_rl_interfaces.msg import CurriculumStatus, ScenarioConfig  # noqa: E402
from carla_rl_interfaces.srv import GetStatus, SetPhase  # noqa: E402
from std_srvs.srv import SetBool, Trigger  # noqa: E402
from ros_testing import CONFIG_DIR, NodeProcess, call, spin_until, wait_for_service  # noqa: E402
from carla_rl.nodes.support import qos_profiles as qos  # noqa: E402

TIMEOUT_S = 60.0


def start_curriculum(tmp_path, config_file, overrides=None):
    return NodeProcess.node("curriculum_manager", ["--params-file", str(config_file)], tmp_path,
                            overrides={"save_dir": str(tmp_path), **(overrides or {})})


@pytest.mark.ros
def test_set_phase_service(tmp_path, ros_node):
    statuses, scenarios = [], []
    ros_node.create_subscription(CurriculumStatus, topics.CURRICULUM_STATUS, statuses.append, qos.LATCHED)
    ros_node.create_subscription(ScenarioConfig, topics.SCENARIO, scenarios.append, qos.LATCHED)
    with start_curriculum(tmp_path, CONFIG_DIR / "curriculum.yaml") as proc:
        client = wait_for_service(ros_node, SetPhase, topics.SET_PHASE_SERVICE, TIMEOUT_S)
        ok = call(ros_node, client, SetPhase.Request(phase=3), TIMEOUT_S)
        assert ok.success, ok.message
        assert "phase 3" in ok.message and "next episode" in ok.message
        for bad in (0, 11):
            response = call(ros_node, client, SetPhase.Request(phase=bad), TIMEOUT_S)
            assert not response.success
            assert "1..10" in response.message, response.message
        status_client = wait_for_service(ros_node, GetStatus, topics.GET_STATUS_SERVICE, TIMEOUT_S)
        status = call(ros_node, status_client, GetStatus.Request(), TIMEOUT_S).status
        assert (status.phase, status.pending_phase, status.num_phases) == (1, 3, 10)
        # latched: the scenario of phase 1 at start, then phase 3's (applied by simulators at their reset)
        assert spin_until(ros_node, lambda: any(s.phase == 3 for s in scenarios), TIMEOUT_S), proc.output()
        assert next(s for s in scenarios if s.phase == 3).name == "simple_turns"
        assert spin_until(ros_node, lambda: statuses and statuses[-1].pending_phase == 3, TIMEOUT_S)
        assert proc.alive(), proc.output()
    assert proc.proc.returncode == 0, proc.output()


@pytest.mark.ros
def test_set_phase_refuses_a_broken_phase(tmp_path, ros_node):
    data = yaml.safe_load((CONFIG_DIR / "curriculum.yaml").read_text())
    data["/**"]["ros__parameters"]["phases"]["phase_4"]["scenario"]["num_vehicles"] = -5
    broken = tmp_path / "curriculum.yaml"
    broken.write_text(yaml.safe_dump(data))
    with start_curriculum(tmp_path, broken) as proc:
        client = wait_for_service(ros_node, SetPhase, topics.SET_PHASE_SERVICE, TIMEOUT_S)
        response = call(ros_node, client, SetPhase.Request(phase=4), TIMEOUT_S)
        assert not response.success
        assert "num_vehicles" in response.message, response.message
        assert call(ros_node, client, SetPhase.Request(phase=5), TIMEOUT_S).success
        assert proc.alive(), proc.output()
    shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.mark.ros
def test_cli_set_phase_and_status(tmp_path):
    import json
    import subprocess
    import sys

    from ros_testing import ros_env

    with start_curriculum(tmp_path, CONFIG_DIR / "curriculum.yaml") as proc:
        def cli(*argv):
            return subprocess.run([sys.executable, "-m", "carla_rl.cli.main", *argv], capture_output=True, text=True,
                                  timeout=120, env=ros_env())

        ok = cli("set-phase", "4", "--timeout", "60")
        assert ok.returncode == 0, ok.stderr + proc.output()
        assert "phase 4" in ok.stdout
        bad = cli("set-phase", "11", "--timeout", "60")
        assert bad.returncode == 1 and "1..10" in bad.stdout
        status = cli("status", "--json", "--timeout", "60")
        assert status.returncode == 0, status.stderr
        data = json.loads(status.stdout)
        assert (data["phase"], data["pending_phase"], data["num_phases"]) == (1, 4, 10)


@pytest.mark.ros
def test_graph_overrides_beat_the_config_files(tmp_path, ros_node):
    """curriculum.yaml's curriculum_manager block sets initial_phase: 1; the graph's override (a
    node-keyed params file, as the supervisor and launch_ros pass it) must win."""
    with start_curriculum(tmp_path, CONFIG_DIR / "curriculum.yaml", overrides={"initial_phase": 4}) as proc:
        client = wait_for_service(ros_node, GetStatus, topics.GET_STATUS_SERVICE, TIMEOUT_S)
        assert call(ros_node, client, GetStatus.Request(), TIMEOUT_S).status.phase == 4, proc.output()


@pytest.mark.ros
def test_an_evaluation_without_a_result_times_out(tmp_path, ros_node):
    """The evaluator accepted an evaluation and then never reported (it restarted): after
    evaluation_timeout_s the curriculum gives it up (status, diagnostics) instead of waiting forever."""
    from std_srvs.srv import Trigger

    from carla_rl_interfaces.srv import Evaluate
    from ros_testing import watch_diagnostics

    accepted = []

    def on_evaluate(request, response):  # a reward evaluator that accepts and is never heard of again
        accepted.append(request.phase)
        response.accepted, response.message = True, "evaluating"
        return response

    ros_node.create_service(Evaluate, topics.EVALUATE_SERVICE, on_evaluate)
    statuses = []
    ros_node.create_subscription(CurriculumStatus, topics.CURRICULUM_STATUS, statuses.append, qos.LATCHED)
    counters = watch_diagnostics(ros_node, "/curriculum_manager")
    with start_curriculum(tmp_path, CONFIG_DIR / "curriculum.yaml", {"evaluation_timeout_s": 1.0}) as proc:
        client = wait_for_service(ros_node, Trigger, topics.EVALUATE_NOW_SERVICE, TIMEOUT_S)
        deadline = time.monotonic() + TIMEOUT_S
        while not accepted:  # asked until the curriculum has discovered our Evaluate service (refused until then)
            assert time.monotonic() < deadline, proc.output()
            response = call(ros_node, client, Trigger.Request(), TIMEOUT_S)
            if not response.success:
                assert "not available" in response.message, response.message
            spin_until(ros_node, lambda: accepted, 0.2)
        assert spin_until(ros_node, lambda: statuses and not statuses[-1].evaluating
                          and int(counters.get("evaluations_timed_out", 0)) >= 1, TIMEOUT_S), proc.output()
        assert any(s.evaluating for s in statuses)  # it was running before it timed out
        assert "no evaluation result" in proc.output()
        assert proc.alive(), proc.output()


@pytest.mark.ros
def test_pause_reaches_a_policy_that_comes_up_later(tmp_path, ros_node):
    received = []

    def on_set_learning(request, response):
        received.append(request.data)
        response.success = True
        return response

    with start_curriculum(tmp_path, CONFIG_DIR / "curriculum.yaml", {"service_resend_s": 0.2}) as proc:
        pause = wait_for_service(ros_node, Trigger, topics.PAUSE_SERVICE, TIMEOUT_S)
        assert call(ros_node, pause, Trigger.Request(), TIMEOUT_S).success  # no policy (set_learning) yet
        ros_node.create_service(SetBool, topics.SET_LEARNING_SERVICE, on_set_learning)  # the policy comes up
        assert spin_until(ros_node, lambda: received, TIMEOUT_S), proc.output()
        assert received[0] is False  # learning off: the pause
        resume = wait_for_service(ros_node, Trigger, topics.RESUME_SERVICE, TIMEOUT_S)
        assert call(ros_node, resume, Trigger.Request(), TIMEOUT_S).success
        assert spin_until(ros_node, lambda: received[-1] is True, TIMEOUT_S), (received, proc.output())
        assert proc.alive(), proc.output()


@pytest.mark.ros
def test_a_curriculum_paused_on_start_stops_the_learning(tmp_path, ros_node):
    """pause_on_start (like on_budget_exhausted: pause) pauses without the pause service: the policy
    is still asked to stop learning, and to learn again on resume."""
    received = []

    def on_set_learning(request, response):
        received.append(request.data)
        response.success = True
        return response

    data = yaml.safe_load((CONFIG_DIR / "curriculum.yaml").read_text())
    data["/**/curriculum_manager"]["ros__parameters"]["pause_on_start"] = True
    paused = tmp_path / "curriculum.yaml"
    paused.write_text(yaml.safe_dump(data))
    ros_node.create_service(SetBool, topics.SET_LEARNING_SERVICE, on_set_learning)
    with start_curriculum(tmp_path, paused, {"service_resend_s": 0.2}) as proc:
        assert spin_until(ros_node, lambda: received, TIMEOUT_S), proc.output()
        assert received[0] is False  # learning off, nobody called pause
        resume = wait_for_service(ros_node, Trigger, topics.RESUME_SERVICE, TIMEOUT_S)
        assert call(ros_node, resume, Trigger.Request(), TIMEOUT_S).success
        assert spin_until(ros_node, lambda: received[-1] is True, TIMEOUT_S), (received, proc.output())
        assert proc.alive(), proc.output()
    shutil.rmtree(tmp_path, ignore_errors=True)
