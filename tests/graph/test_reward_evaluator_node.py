"""reward_evaluator over DDS: the reward of a tick follows its events (a collision announced by the
situation is waited for and scored), and when the simulator steps past an episode's end (the reset
came after its control timeout) the end is announced again with no score, so the policy resets
instead of the graph stalling."""

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy missing: run through `make test`")

from nav_msgs.msg import Odometry as OdometryMsg  # noqa: E402

from carla_rl import ros_conversions as conv  # noqa: E402
from carla_rl import topics  # noqa: E402
from carla_rl.nodes import qos_profiles as qos  # noqa: E402
from carla_rl.sensor_frame import CollisionEvent, EgoSituation, Odometry  # noqa: E402
from carla_rl_interfaces.msg import CollisionEvent as CollisionEventMsg  # noqa: E402
from carla_rl_interfaces.msg import EgoSituation as EgoSituationMsg  # noqa: E402
from carla_rl_interfaces.msg import EpisodeStats, StepReward  # noqa: E402
from ros_testing import CONFIG_DIR, NodeProcess, spin_until  # noqa: E402

TIMEOUT_S = 60.0
ROLE = topics.DEFAULT_ROLE_NAME


@pytest.mark.ros
def test_collision_scored_and_end_reannounced(tmp_path):
    rclpy.init()
    node = rclpy.create_node("reward_test")
    rewards, stats = [], []
    reward_sub = node.create_subscription(StepReward, f"/env_0/{topics.STEP_REWARD}", rewards.append,
                                          qos.SENSOR)
    stats_sub = node.create_subscription(EpisodeStats, topics.EPISODE_STATS, stats.append, qos.EVENTS)
    c = lambda name: f"/env_0/{topics.carla_topic(ROLE, name)}"  # noqa: E731
    odom = node.create_publisher(OdometryMsg, c(topics.ODOMETRY), qos.SENSOR)
    situation = node.create_publisher(EgoSituationMsg, c(topics.SITUATION), qos.SENSOR)
    collision = node.create_publisher(CollisionEventMsg, c(topics.COLLISION), qos.EVENTS)
    proc = NodeProcess.node("reward_evaluator", ["--params-file", str(CONFIG_DIR / "reward.yaml"),
                                                 "--params-file", str(CONFIG_DIR / "curriculum.yaml")],
                            tmp_path, overrides={"num_envs": 1})

    def tick(step, episode_step, collide=False):
        stamp = conv.time_msg(step * 0.05)
        odom.publish(conv.odometry_msg(Odometry(vx=5.0), stamp, ROLE))
        if collide:
            collision.publish(conv.collision_msg(CollisionEvent(1000, (500.0, 0.0, 0.0)), stamp, ROLE))
        sit = EgoSituation(step_id=step, episode_id=4, episode_step=episode_step, phase=5,
                           route_progress_m=float(episode_step), collision_events=int(collide))
        situation.publish(conv.situation_msg(sit, stamp, ROLE))

    try:
        # every topic matched both ways before the first tick: a best-effort message sent before
        # its reader matched is lost, and the test would wait for it in vain
        assert spin_until(node, lambda: all(pub.get_subscription_count() > 0
                                            for pub in (odom, situation, collision))
                          and reward_sub.get_publisher_count() > 0
                          and stats_sub.get_publisher_count() > 0, TIMEOUT_S), proc.output()
        for i, collide in enumerate([False, False, True]):
            tick(10 + i, i, collide)
            assert spin_until(node, lambda: len(rewards) == i + 1, TIMEOUT_S), proc.output()
        crash = rewards[-1]
        terms = dict(zip(crash.term_names, crash.term_values))
        assert crash.terminated and crash.termination_reason == "collision"
        assert terms["collision"] == pytest.approx(-1000.0)
        assert spin_until(node, lambda: len(stats) == 1 and stats[0].collision, TIMEOUT_S)
        tick(13, 3)  # the simulator braked on past the end: the end is announced again, unscored
        assert spin_until(node, lambda: len(rewards) == 4, TIMEOUT_S), proc.output()
        again = rewards[-1]
        assert again.terminated and again.termination_reason == "collision" and again.reward == 0.0
        assert len(stats) == 1, "the episode is counted once"
    finally:
        code = proc.stop()
        node.destroy_node()
        rclpy.try_shutdown()
    assert code == 0, proc.output()


@pytest.mark.ros
def test_a_new_evaluator_switches_the_policy_out_of_evaluation_mode(tmp_path, ros_node):
    """A restarted evaluator runs no evaluation, so it switches off the evaluation mode its predecessor
    may have left on in the policy (else the policy would act greedily and store nothing for good)."""
    from std_srvs.srv import SetBool

    requests = []

    def on_mode(request, response):  # the policy's service
        requests.append(request.data)
        response.success = True
        return response

    ros_node.create_service(SetBool, topics.SET_EVALUATION_MODE_SERVICE, on_mode)
    with NodeProcess.node("reward_evaluator", ["--params-file", str(CONFIG_DIR / "reward.yaml"),
                                               "--params-file", str(CONFIG_DIR / "curriculum.yaml")],
                          tmp_path, overrides={"num_envs": 1}) as proc:
        assert spin_until(ros_node, lambda: requests, TIMEOUT_S), proc.output()
        assert requests[0] is False
        assert proc.alive(), proc.output()
    assert proc.proc.returncode == 0, proc.output()
