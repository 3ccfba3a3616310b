"""EnvShare: several reward evaluators over disjoint shares of the envs, one of them leading the
evaluations. An evaluation counted by the lead (its own envs' episodes as they end, the others' from
the published episode statistics, where its own come back too) gives the rates of one evaluator over
every env."""

import random

import pytest

from carla_rl.reward import (EnvShare, EpisodeStatsAccumulator, EvaluationAggregator, RewardCalculator,
                             RewardConfig)
from carla_rl.contract.scenario import PhaseThresholds, ScenarioConfig
from carla_rl.contract.sensor_frame import CollisionEvent, EgoSituation, Odometry

PHASE = 3
THRESHOLDS = PhaseThresholds(goal_rate=0.5, collision_free_rate=0.5, sidewalk_free_rate=0.5)


def test_share_of_every_env_by_default():
    share = EnvShare([], 4)
    assert share.env_ids == (0, 1, 2, 3) and share.covers_all
    assert not any(share.is_remote(i) for i in range(4))


def test_share_of_some_envs():
    share = EnvShare([3, 1], 5)
    assert share.env_ids == (1, 3) and not share.covers_all
    assert share.serves(1) and not share.serves(2)
    assert [i for i in range(-1, 7) if share.is_remote(i)] == [0, 2, 4]  # unknown env ids are no one's


def test_share_of_no_env_counts_every_env_as_remote():
    """The lead evaluator of a learner host: every env is scored on worker hosts."""
    share = EnvShare([], 4, own=False)
    assert share.env_ids == () and not share.covers_all
    assert [i for i in range(-1, 6) if share.is_remote(i)] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="scores no env of its own"):
        EnvShare([1], 4, own=False)


@pytest.mark.parametrize("env_ids,num_envs,message", [
    ([0, 4], 4, r"env_ids \[4\] outside 0..3"),
    ([-1], 2, r"env_ids \[-1\] outside 0..1"),
    ([1, 1, 0], 2, r"env_ids \[1\] listed more than once"),
    ([], 0, "num_envs must be at least 1"),
])
def test_bad_shares_are_refused(env_ids, num_envs, message):
    with pytest.raises(ValueError, match=message):
        EnvShare(env_ids, num_envs)


def evaluation_episode(env_id: int, episode_id: int, outcome: str):
    """One evaluation episode scored by the reward core: ends in a goal, a collision or on the sidewalk."""
    calculator = RewardCalculator(RewardConfig())
    calculator.reset(ScenarioConfig(target_speed_mps=5.0, max_episode_steps=1000))
    stats = EpisodeStatsAccumulator()
    stats.start(env_id, episode_id, PHASE, evaluation=True)
    for tick in range(1, 50):
        end = tick == 3
        situation = EgoSituation(episode_step=tick, route_progress_m=2.0 * tick, phase=PHASE, evaluation=True,
                                 goal_reached=end and outcome == "goal",
                                 on_sidewalk=end and outcome == "sidewalk")
        collisions = [CollisionEvent(1, (9.0, 0.0, 0.0))] if end and outcome == "collision" else []
        odometry = Odometry(x=2.0 * tick)
        result = calculator.step(situation, odometry, 4.0, collisions, [])
        stats.add(result, situation, odometry, 4.0)
        if result.done:
            return stats.finish()
    raise AssertionError(f"the {outcome} episode did not end")


@pytest.mark.parametrize("lead_envs", [[0], [0, 1], [2, 4, 5]])
def test_a_lead_over_a_share_counts_what_one_evaluator_over_all_counts(lead_envs):
    num_envs, required = 6, 9
    rng = random.Random(7)
    # episodes in the order they end, over every env (more than the evaluation needs)
    outcomes = ["goal", "collision", "goal", "sidewalk"]
    finished = [evaluation_episode(env_id, episode_id, outcomes[(env_id + episode_id) % len(outcomes)])
                for episode_id in range(3) for env_id in rng.sample(range(num_envs), num_envs)]
    one = EvaluationAggregator(PHASE, THRESHOLDS, required)
    for stats in finished:
        one.add(stats)

    lead_share = EnvShare(lead_envs, num_envs)
    other_share = EnvShare([i for i in range(num_envs) if i not in lead_envs], num_envs)
    lead = EvaluationAggregator(PHASE, THRESHOLDS, required)
    topic = []  # /carla_rl/episode_stats: every evaluator publishes what it ends
    for stats in finished:
        if lead_share.serves(stats.env_id):
            lead.add(stats)                     # the lead's own env: counted as it ends
        else:
            assert other_share.serves(stats.env_id)
        topic.append(stats)
        for published in topic:                 # the lead takes the others' from the topic, not its own
            if lead_share.is_remote(published.env_id):
                lead.add(published)
        topic.clear()
    assert lead.complete and one.complete
    assert lead.result() == one.result()
    assert {s.env_id for s in lead._episodes} - set(lead_envs), "the other evaluator's episodes counted"
    result = lead.result()
    assert result.episodes == required
    assert 0.0 < result.goal_rate < 1.0 and result.collision_free_rate < 1.0 and result.sidewalk_free_rate < 1.0
