"""dqn_policy's shell over the collector, in process (no DDS, a fake clock): an env takes part from its
first observation (envs never heard from are not waited for), one silent for env_absent_after_s is
absent (counted on /diagnostics, no longer waited for) and its next observation takes it back."""

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy missing: run through `make test`")

from rclpy.parameter import Parameter  # noqa: E402

from carla_rl.learner.collector import ENVS_ABSENT_EVENTS  # noqa: E402
from carla_rl.nodes.dqn_policy_node import ENVS_PRESENT_VALUE, DQNPolicyNode  # noqa: E402
from carla_rl_interfaces.msg import Observation, StepReward  # noqa: E402

FRAME_SHAPE = (4, 84, 84)
VECTOR_SIZE = 8


class FakeClock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


class Published(list):
    def publish(self, msg) -> None:
        self.append(msg)


def observation(env: int, step: int, episode_step: int) -> Observation:
    msg = Observation(env_id=env, step_id=step, episode_id=1, episode_step=episode_step,
                      frame_stack=FRAME_SHAPE[0], height=FRAME_SHAPE[1], width=FRAME_SHAPE[2])
    msg.frames = np.zeros(FRAME_SHAPE, np.uint8).tobytes()
    msg.vector = np.zeros(VECTOR_SIZE, np.float32).tolist()
    return msg


def tick(node, env: int, step: int, episode_step: int | None = None) -> None:
    node.on_observation(observation(env, step, step if episode_step is None else episode_step))
    node.on_reward(StepReward(env_id=env, step_id=step, reward=0.5))


@pytest.fixture
def policy(context, tmp_path):
    node = DQNPolicyNode(context=context, start_parameter_services=False, parameter_overrides=[
        Parameter("num_envs", value=3), Parameter("micro_batch_window_s", value=1.0),
        Parameter("env_absent_after_s", value=0.5), Parameter("start_learning", value=False),
        Parameter("save_dir", value=str(tmp_path / "run"))])
    node.collector.clock = FakeClock()
    node.cmd_pubs = [Published() for _ in range(3)]
    yield node
    node.stop_event.set()
    if node.learner_thread.is_alive():
        node.learner_thread.join(timeout=10.0)
    node.destroy_node()


def test_envs_take_part_from_their_first_observation_and_leave_when_silent(policy):
    clock, sent = policy.collector.clock, policy.cmd_pubs
    tick(policy, 0, 0)  # env 1 and 2 never spoke: not waited for
    assert [m.step_id for m in sent[0]] == [0] and not policy.batch_window.armed
    tick(policy, 1, 0)  # env 1 is present from here; env 0 (present) is not ready: wait
    assert sent[1] == [] and policy.batch_window.armed
    tick(policy, 0, 1)  # every present env ready: one batch at once
    assert [m.step_id for m in sent[0]] == [0, 1] and [m.step_id for m in sent[1]] == [0]
    assert not policy.batch_window.armed and policy.collector.act_batches[-1] == 2
    clock.now += 0.3
    tick(policy, 0, 2)  # env 1 is present and not ready: the window waits for it
    assert len(sent[0]) == 2 and policy.batch_window.armed
    clock.now += 0.3  # env 1 silent for 0.6 s
    policy.report_replay_counters()  # the /diagnostics period checks presence
    assert policy.diag.counters[ENVS_ABSENT_EVENTS] == 1 and policy.diag.values[ENVS_PRESENT_VALUE] == "1"
    assert [m.step_id for m in sent[0]] == [0, 1, 2] and not policy.batch_window.armed  # acted at once
    tick(policy, 1, 7, episode_step=7)  # back mid-episode: present again, stores from its next episode
    policy.report_replay_counters()
    assert policy.diag.values[ENVS_PRESENT_VALUE] == "2" and policy.batch_window.armed
    tick(policy, 0, 3)  # waited for again
    assert [m.step_id for m in sent[1]] == [0, 7] and [m.step_id for m in sent[0]] == [0, 1, 2, 3]
    assert policy.diag.counters["ticks_not_stored_mid_episode"] == 1
    assert all(m.action_index >= 0 and not m.reset_episode for pub in sent for m in pub)
