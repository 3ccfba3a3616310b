"""A dead learner thread ends the dqn_policy process: non-zero exit, the exception and its traceback in
the log (so the supervisor restarts it); a NaN-poisoned agent writes no final checkpoint."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy missing: run through `make test`")

from carla_rl.contract import topics  # noqa: E402
from carla_rl.nodes.support import qos_profiles as qos  # noqa: E402
from carla_rl.nodes.support.node_runner import NODE_FAILURE_EXIT_CODE  # noqa: E402
from carla_rl_interfaces.msg import Observation  # noqa: E402
from ros_testing import CONFIG_DIR, NodeProcess  # noqa: E402

WORKER = Path(__file__).with_name("policy_failure_worker.py")
TIMEOUT_S = 60.0
STACK, SIZE, VECTOR = 4, 84, 8


def start_policy(tmp_path: Path, mode: str) -> NodeProcess:
    from carla_rl.graph import NodeSpec, write_overrides_file

    spec = NodeSpec(name="dqn_policy", executable="dqn_policy",
                    parameters={"num_envs": 1, "save_dir": str(tmp_path / "run")})
    argv = [sys.executable, str(WORKER), mode, "--ros-args",
            "--params-file", str(CONFIG_DIR / "sim.yaml"), "--params-file", str(CONFIG_DIR / "agent.yaml"),
            "--params-file", str(write_overrides_file(spec, tmp_path / "params"))]
    return NodeProcess(argv, tmp_path / f"policy-{mode}.log")


def send_first_observation(node, policy: NodeProcess) -> None:
    pub = node.create_publisher(Observation, f"{topics.env_namespace(0)}/{topics.OBSERVATION}", qos.SENSOR)
    deadline = time.monotonic() + TIMEOUT_S
    while pub.get_subscription_count() == 0:  # reliable QoS: delivered once matched
        assert policy.alive(), policy.output()
        assert time.monotonic() < deadline, f"the policy never subscribed\n{policy.output()}"
        rclpy.spin_once(node, timeout_sec=0.05)
    pub.publish(Observation(env_id=0, step_id=1, frame_stack=STACK, height=SIZE, width=SIZE,
                            frames=bytes(STACK * SIZE * SIZE), vector=[0.0] * VECTOR))


def run_until_exit(tmp_path: Path, ros_node, mode: str) -> tuple[int, str]:
    policy = start_policy(tmp_path, mode)
    try:
        send_first_observation(ros_node, policy)
        try:
            code = policy.proc.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the policy kept running after its learner failed\n{policy.output()}")
    finally:
        policy.stop()
    return code, policy.output()


def test_a_failing_learner_ends_the_process_with_the_reason(tmp_path, ros_node):
    code, output = run_until_exit(tmp_path, ros_node, "raise")
    assert code == NODE_FAILURE_EXIT_CODE, output
    assert "learner thread failed: RuntimeError: injected learner failure" in output, output
    assert "Traceback (most recent call last)" in output and "failing_update" in output, output
    # the agent is intact (finite): its state is written as usual on the way out
    assert (tmp_path / "run" / "checkpoints" / "final.pt").is_file(), output


def test_a_nan_poisoned_learner_ends_the_process_without_a_final_checkpoint(tmp_path, ros_node):
    code, output = run_until_exit(tmp_path, ros_node, "nan")
    assert code == NODE_FAILURE_EXIT_CODE, output
    assert "learner thread failed: ValueError: priorities must be finite" in output, output
    assert "final checkpoint skipped: the agent's weights are not finite" in output, output
    assert not (tmp_path / "run" / "checkpoints" / "final.pt").exists(), output
