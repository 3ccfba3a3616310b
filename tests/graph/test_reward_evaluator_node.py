"""reward_evaluator over DDS: the reward of a tick follows its events (a collision announced by the
situation is waited for and scored), and when the simulator steps past an episode's end (the reset
came after its control timeout) the end is announced again with no score, so the policy resets
instead of the graph stalling."""

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy missing: run through `make test`")

from nav_msgs.msg import Odometry as OdometryMsg  # noqa: E402

from carla_rl.nodes.support import ros_conversions as conv  # noqa: E402
from carla_rl.contract import topics  # noqa: E402
from carla_rl.nodes.support import qos_profiles as qos  # noqa: E402
from carla_rl.contract.sensor_frame import CollisionEvent, EgoSituation, Odometry  # noqa: E402
from carla_rl_interfaces.msg import CollisionEvent as CollisionEventMsg  # noqa: E402
from carla_rl_interfaces.msg import EgoSituation as EgoSituationMsg  # noqa: E402
from carla_rl_interfaces.msg import EpisodeStats, StepReward  # noqa: E402
from ros_testing import CONFIG_DIR, NodeProcess, spin_until, watch_diagnostics  # noqa: E402

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
    diag = watch_diagnostics(node, "/reward_evaluator")

    def tick(step, episode_step, collide=False):
        stamp = conv.time_msg(step * 0.05)
        odom.publish(conv.odometry_msg(Odometry(vx=5.0), stamp, ROLE))
        if collide:
            collision.publish(conv.collision_msg(CollisionEvent(1000, (500.0, 0.0, 0.0)), stamp, ROLE))
        sit = EgoSituation(step_id=step, episode_id=4, episode_step=episode_step, phase=5,
                           route_progress_m=float(episode_step), collision_events=int(collide))
        situation.publish(conv.situation_msg(sit, stamp, ROLE))

    try:
        # every topic matched both ways before the first tick: a message sent before its reader matched
        # is lost, and the test would wait for it in vain (the evaluator's writers: its diagnostics)
        assert spin_until(node, lambda: all(pub.get_subscription_count() > 0
                                            for pub in (odom, situation, collision))
                          and reward_sub.get_publisher_count() > 0
                          and stats_sub.get_publisher_count() > 0
                          and int(diag.get("episode_stats_readers", 0)) >= 1
                          and int(diag.get("step_reward_readers", 0)) >= 1, TIMEOUT_S), proc.output()
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


def switches(modes: list) -> list:
    """The mode switches a policy saw, a repeat of the same switch counted once (a switch whose answer
    was lost is sent again: service_calls.ResentRequests)."""
    return [m for i, m in enumerate(modes) if i == 0 or m != modes[i - 1]]


# (overrides, namespace) of the lead evaluator and of the other one
LAYOUTS = {
    # composition halves: each over its own env
    "halves": (({"num_envs": 2, "env_ids": [0], "lead_evaluation": True}, ""),
               ({"num_envs": 2, "env_ids": [1], "lead_evaluation": False}, "/half_1")),
    # a learner host's lead with no env of its own; a worker host's evaluator scoring both envs
    "hosts": (({"num_envs": 2, "score_envs": False}, ""),
              ({"num_envs": 2, "env_ids": [0, 1], "lead_evaluation": False}, "/worker_0")),
}


@pytest.mark.ros
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_two_evaluators_over_disjoint_envs_evaluate_together(tmp_path, ros_node, layout):
    """Two evaluators over disjoint envs (composition halves: one each; learner and worker hosts: none and
    both); the lead serves /carla_rl/evaluate and its result counts the other's evaluation episodes too
    (from /carla_rl/episode_stats), each once."""
    from std_srvs.srv import SetBool

    from carla_rl_interfaces.msg import EvaluationResult
    from carla_rl_interfaces.srv import Evaluate

    node = ros_node
    modes, results, stats = [], [], []
    node.create_service(SetBool, topics.SET_EVALUATION_MODE_SERVICE,
                        lambda req, resp: (modes.append(req.data), setattr(resp, "success", True), resp)[-1])
    node.create_subscription(EvaluationResult, topics.EVALUATION_RESULT, results.append, qos.EVENTS)
    stats_sub = node.create_subscription(EpisodeStats, topics.EPISODE_STATS, stats.append, qos.EVENTS)
    evaluate = node.create_client(Evaluate, topics.EVALUATE_SERVICE)
    pubs = {}
    for env in (0, 1):
        c = lambda name, env=env: f"/env_{env}/{topics.carla_topic(ROLE, name)}"  # noqa: E731
        pubs[env] = (node.create_publisher(OdometryMsg, c(topics.ODOMETRY), qos.SENSOR),
                     node.create_publisher(EgoSituationMsg, c(topics.SITUATION), qos.SENSOR),
                     node.create_publisher(CollisionEventMsg, c(topics.COLLISION), qos.EVENTS))
    files = ["--params-file", str(CONFIG_DIR / "reward.yaml"), "--params-file", str(CONFIG_DIR / "curriculum.yaml")]
    (lead_overrides, lead_ns), (other_overrides, other_ns) = LAYOUTS[layout]
    lead = NodeProcess.node("reward_evaluator", files, tmp_path, namespace=lead_ns, overrides=lead_overrides)
    other = NodeProcess.node("reward_evaluator", files, tmp_path, namespace=other_ns, overrides=other_overrides)

    def tick(env, step, episode_step, goal=False, collide=False):
        odom, situation, collision = pubs[env]
        stamp = conv.time_msg(step * 0.05)
        odom.publish(conv.odometry_msg(Odometry(vx=5.0), stamp, ROLE))
        if collide:
            collision.publish(conv.collision_msg(CollisionEvent(1000, (500.0, 0.0, 0.0)), stamp, ROLE))
        sit = EgoSituation(step_id=step, episode_id=1, episode_step=episode_step, phase=5, evaluation=True,
                           route_progress_m=float(episode_step), goal_reached=goal, collision_events=int(collide))
        situation.publish(conv.situation_msg(sit, stamp, ROLE))

    logs = lambda: lead.output() + other.output()  # noqa: E731
    lead_diag = watch_diagnostics(node, f"{lead_ns}/reward_evaluator")
    other_diag = watch_diagnostics(node, f"{other_ns}/reward_evaluator")

    def matched() -> bool:
        """Every writer matched its readers: a reliable volatile writer sends nothing to a reader it has not
        matched yet. The test's writers it sees itself; the evaluators' it reads off their diagnostics (each
        one's episode statistics reach this test and the lead: itself, or its remote-episode reader)."""
        return (all(p.get_subscription_count() > 0 for env in pubs for p in pubs[env])
                and all(int(d.get("episode_stats_readers", 0)) >= 2 for d in (lead_diag, other_diag))
                and int(lead_diag.get("evaluation_result_readers", 0)) >= 1)

    try:
        assert spin_until(node, lambda: matched() and stats_sub.get_publisher_count() >= 2
                          and evaluate.service_is_ready() and switches(modes) == [False], TIMEOUT_S), \
            (lead_diag, other_diag, logs())  # the lead's start-up mode reset, only
        future = evaluate.call_async(Evaluate.Request(phase=5, episodes=2))
        assert spin_until(node, future.done, TIMEOUT_S) and future.result().accepted, logs()
        assert spin_until(node, lambda: switches(modes) == [False, True], TIMEOUT_S), logs()  # evaluation mode on
        for step, (episode_step, end) in enumerate([(0, False), (1, False), (2, True)], start=10):
            tick(0, step, episode_step, goal=end)           # env 0 reaches its goal
            tick(1, step, episode_step, collide=end)        # env 1 collides
        assert spin_until(node, lambda: results, TIMEOUT_S), logs()
        result = results[0]
        assert (result.phase, result.episodes) == (5, 2)
        assert result.goal_rate == pytest.approx(0.5) and result.collision_free_rate == pytest.approx(0.5)
        assert spin_until(node, lambda: len(stats) == 2, TIMEOUT_S), logs()
        assert sorted((s.env_id, s.evaluation) for s in stats) == [(0, True), (1, True)]
        assert spin_until(node, lambda: switches(modes) == [False, True, False], TIMEOUT_S), logs()  # switched back
        assert not any(p.get_subscription_count() > 1 for env in pubs for p in pubs[env]), \
            "each env is scored by one evaluator"
        assert len(results) == 1
    finally:
        codes = (lead.stop(), other.stop())
    assert codes == (0, 0), logs()


@pytest.mark.ros
def test_an_evaluator_refuses_env_ids_outside_the_graph(tmp_path):
    proc = NodeProcess.node("reward_evaluator", ["--params-file", str(CONFIG_DIR / "reward.yaml"),
                                                 "--params-file", str(CONFIG_DIR / "curriculum.yaml")],
                            tmp_path, overrides={"num_envs": 2, "env_ids": [1, 2]})
    try:
        proc.proc.wait(timeout=TIMEOUT_S)
    finally:
        proc.stop()
    assert proc.proc.returncode != 0
    assert "env_ids [2] outside 0..1" in proc.output()


def test_episode_stats_cross_the_message_and_back_unchanged():
    from carla_rl.reward import EpisodeStats as Stats

    stats = Stats(env_id=3, episode_id=7, phase=4, evaluation=True, steps=250, total_reward=-812.5,
                  term_totals=tuple(float(i) - 2.5 for i in range(len(Stats().term_names))),
                  termination_reason="sidewalk", goal_reached=False, collision=True, sidewalk=True,
                  red_light_violation=True, distance_m=123.25, mean_speed_mps=4.75)
    msg = conv.episode_stats_msg(stats, conv.time_msg(12.5))
    assert conv.time_seconds(msg.header.stamp) == 12.5
    assert conv.episode_stats_from_msg(msg) == stats  # every value is exact in float32
