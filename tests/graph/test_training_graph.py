"""The real training graph in processes (2 envs, embedded simulators, preprocessors, policy, reward
evaluator, curriculum) for several episodes: the replay fills, losses are finite, every reward term
agrees with the event or quantity that caused it, and shutdown leaves no process behind."""

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy missing: run through `make test`")

from carla_rl.nodes.support.ros_conversions import stamp_nanoseconds  # noqa: E402
from graph_harness import GraphRun  # noqa: E402

TIMEOUT_S = 300.0
NUM_ENVS = 2
PHASE = 5  # static traffic + pedestrians: random driving meets collisions, sidewalks and proximity
LEARNING_STARTS = 600
MAX_LAG = 8  # the policy holds actions while the learner is more than 8 steps behind the replay ratio
TRAIN_FREQUENCY = 4  # config/agent.yaml


@pytest.mark.ros
@pytest.mark.slow
def test_training_graph_end_to_end(tmp_path):
    # a random warm-up of 600 steps: uniform random driving in phase 5 meets sidewalks and cars
    run = GraphRun(tmp_path, NUM_ENVS, PHASE, sim_params={"shell.required_subscribers": 3},
                   policy_params={"agent.learning_starts": LEARNING_STARTS,
                                  "max_learner_lag_updates": MAX_LAG})
    terminal = {"collision", "sidewalk"}
    with run.running(NUM_ENVS) as node:
        run.wait_for(node, lambda: len(run.episodes) >= 6 and run.learning_ok()
                     and max(t.replay_size for t in run.training) >= 64
                     and any(e.termination_reason in terminal for e in run.episodes), TIMEOUT_S)
        # env steps never outran the learner by more than MAX_LAG gradient steps (+ one action batch)
        owed = [(t.env_steps - LEARNING_STARTS) // TRAIN_FREQUENCY + 1 - t.updates
                for t in run.training if t.learning and not t.evaluation_mode and t.env_steps >= LEARNING_STARTS]
        assert owed and max(owed) <= MAX_LAG + NUM_ENVS, owed

    run.check_trained_every_env(NUM_ENVS)

    checked = {"collision": 0, "sidewalk": 0, "proximity": 0, "ticks": 0}
    ended = set()
    for reward in run.rewards:
        situation = run.situations.get((reward.env_id, reward.step_id))
        if situation is None or reward.episode_step == 0:
            continue
        terms = dict(zip(reward.term_names, reward.term_values))
        if (reward.env_id, reward.episode_id) in ended:  # the end re-announced until the reset: no score
            assert reward.reward == 0.0 and not any(terms.values())
            assert reward.terminated or reward.truncated
            continue
        if reward.terminated or reward.truncated:
            ended.add((reward.env_id, reward.episode_id))
        assert sum(terms.values()) == pytest.approx(reward.reward, abs=1e-3)
        events = run.collisions.get((reward.env_id, stamp_nanoseconds(reward.header.stamp)), [])
        assert len(events) == situation.collision_events
        assert (terms["collision"] == pytest.approx(-1000.0)) == (len(events) > 0), (reward, events)
        assert (terms["sidewalk"] == pytest.approx(-800.0)) == situation.on_sidewalk
        assert (terms["goal"] == pytest.approx(300.0)) == situation.goal_reached
        assert (terms["proximity"] == pytest.approx(-15.0)) == (situation.nearest_actor_distance_m < 3.0)
        assert (terms["red_light"] != 0.0) == situation.ran_red_light
        if reward.terminated:
            assert reward.termination_reason in ("collision", "sidewalk", "off_road", "goal_reached")
        if reward.truncated:
            assert reward.termination_reason in ("timeout", "stuck")
        checked["ticks"] += 1
        checked["collision"] += len(events) > 0
        checked["sidewalk"] += situation.on_sidewalk
        checked["proximity"] += terms["proximity"] != 0.0
    assert checked["ticks"] > 200, checked
    assert checked["collision"] + checked["sidewalk"] > 0, f"no terminal event was exercised: {checked}"
    reasons = {e.termination_reason for e in run.episodes}
    assert reasons <= {"collision", "sidewalk", "off_road", "goal_reached", "timeout", "stuck"}, reasons


@pytest.mark.ros
@pytest.mark.slow
def test_training_graph_in_one_container(tmp_path):
    """composition 'all': every node of the tick in one process, the policy's learner thread beside
    the simulators. It trains (finite losses), episodes end and start again, the curriculum counts
    them, and a stop writes the final checkpoint and leaves no process behind."""
    from carla_rl.graph import group_processes

    run = GraphRun(tmp_path, NUM_ENVS, 2, composition="all", policy_params={"max_learner_lag_updates": MAX_LAG})
    assert len(group_processes(run.specs)) == 1
    with run.running(NUM_ENVS) as node:
        run.wait_for(node, lambda: len(run.episodes) >= 3 and run.learning_ok(), TIMEOUT_S)
    run.check_trained_every_env(NUM_ENVS)
    assert (run.save_dir / "checkpoints" / "final.pt").is_file(), run.logs()


@pytest.mark.ros
@pytest.mark.slow
def test_training_graph_in_two_containers(tmp_path):
    """composition 'halves' with 3 envs: env 2 beside the policy, envs 0 and 1 in the second container,
    whose ticks cross through the batch links. Every env trains and ends episodes, each env's rewards are
    on its usual /env_<i>/step_reward topic, and both links moved batches and saw no foreign env."""
    from carla_rl.graph import env_shares, group_processes, GraphOptions

    num_envs = 3
    assert env_shares(GraphOptions(num_envs=num_envs, composition="halves")) == [[2], [0, 1]]
    run = GraphRun(tmp_path, num_envs, 2, composition="halves", policy_params={"max_learner_lag_updates": MAX_LAG})
    assert len(group_processes(run.specs)) == 2
    links = ("/half_1/batch_link_envs", "/half_1/batch_link_policy")

    def links_moved_batches() -> bool:
        return all(int(run.diagnostics.get(name, {}).get("batches_received", 0)) >= 20 for name in links)

    with run.running(num_envs) as node:
        run.wait_for(node, lambda: len({e.env_id for e in run.episodes}) == num_envs and run.learning_ok()
                     and links_moved_batches(), TIMEOUT_S, seen=str(run.diagnostics))
    run.check_trained_every_env(num_envs)
    assert {r.env_id for r in run.rewards} == set(range(num_envs))
    for name in links:
        assert int(run.diagnostics[name].get("foreign_envs", 0)) == 0, run.diagnostics[name]
        assert int(run.diagnostics[name]["items_sent"]) > 0, run.diagnostics[name]
