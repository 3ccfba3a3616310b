"""EpisodeStatsAccumulator and EvaluationAggregator."""

import pytest

from carla_rl.reward import (TERM_NAMES, EpisodeStats, EpisodeStatsAccumulator,
                             EvaluationAggregator, RewardCalculator, RewardConfig)
from carla_rl.contract.scenario import PhaseThresholds, ScenarioConfig
from carla_rl.contract.sensor_frame import CollisionEvent, EgoSituation, Odometry


def run_episode(ticks, collide_at=None, goal_at=None, env_id=2, episode_id=9, phase=3):
    calculator = RewardCalculator(RewardConfig())
    calculator.reset(ScenarioConfig(target_speed_mps=5.0, max_episode_steps=1000))
    stats = EpisodeStatsAccumulator()
    stats.start(env_id, episode_id, phase, evaluation=False)
    results = []
    for tick in range(ticks):
        situation = EgoSituation(episode_step=tick, route_progress_m=2.0 * tick,
                                 goal_reached=tick == goal_at, ran_red_light=tick == 1)
        collisions = [CollisionEvent(1, (9.0, 0.0, 0.0))] if tick == collide_at else []
        odometry = Odometry(x=2.0 * tick)
        result = calculator.step(situation, odometry, 4.0, collisions, [])
        stats.add(result, situation, odometry, 4.0)
        results.append(result)
        if result.done:
            break
    return stats.finish(), results


def test_stats_sum_the_steps():
    stats, results = run_episode(10, goal_at=4)
    assert (stats.env_id, stats.episode_id, stats.phase, stats.evaluation) == (2, 9, 3, False)
    assert stats.steps == 5 == len(results)
    assert stats.total_reward == pytest.approx(sum(r.reward for r in results))
    assert stats.term_names == TERM_NAMES
    assert sum(stats.term_totals) == pytest.approx(stats.total_reward)
    assert stats.term_total("goal") == 300.0
    assert stats.termination_reason == "goal_reached" and stats.goal_reached
    assert not stats.collision and not stats.sidewalk and stats.red_light_violation
    assert stats.distance_m == pytest.approx(8.0)
    assert stats.mean_speed_mps == pytest.approx(4.0)


def test_stats_of_a_collision():
    stats, _ = run_episode(10, collide_at=2)
    assert stats.collision and not stats.goal_reached and stats.termination_reason == "collision"
    assert stats.term_total("collision") == -1000.0


def test_add_before_start_fails():
    with pytest.raises(RuntimeError):
        EpisodeStatsAccumulator().add(None, EgoSituation(), Odometry(), 0.0)


def eval_stats(goal=True, collision=False, sidewalk=False, reward=100.0, phase=2,
               evaluation=True):
    return EpisodeStats(phase=phase, evaluation=evaluation, goal_reached=goal,
                        collision=collision, sidewalk=sidewalk, total_reward=reward)


def test_evaluation_rates_and_pass_exactly_at_thresholds():
    thresholds = PhaseThresholds(goal_rate=0.6, collision_free_rate=0.8, sidewalk_free_rate=0.8)
    aggregator = EvaluationAggregator(2, thresholds, 5)
    episodes = [eval_stats(), eval_stats(), eval_stats(), eval_stats(goal=False, collision=True),
                eval_stats(goal=False, sidewalk=True, reward=-700.0)]
    for stats in episodes:
        assert aggregator.add(stats)
    result = aggregator.result(stamp_s=12.5)
    assert aggregator.complete
    assert (result.phase, result.episodes) == (2, 5)
    assert result.goal_rate == pytest.approx(0.6)
    assert result.collision_free_rate == pytest.approx(0.8)
    assert result.sidewalk_free_rate == pytest.approx(0.8)
    assert result.mean_reward == pytest.approx((4 * 100.0 - 700.0) / 5)
    assert result.passed and result.stamp_s == 12.5


def test_evaluation_fails_just_below_a_threshold():
    thresholds = PhaseThresholds(goal_rate=0.6, collision_free_rate=0.8, sidewalk_free_rate=0.8)
    aggregator = EvaluationAggregator(2, thresholds, 5)
    for stats in [eval_stats(), eval_stats(), eval_stats(goal=False), eval_stats(goal=False),
                  eval_stats()]:
        aggregator.add(stats)
    assert aggregator.result().goal_rate == pytest.approx(0.6)
    assert aggregator.result().passed
    aggregator = EvaluationAggregator(2, thresholds, 5)
    for stats in [eval_stats(), eval_stats(), eval_stats(collision=True),
                  eval_stats(collision=True), eval_stats()]:
        aggregator.add(stats)
    result = aggregator.result()
    assert result.collision_free_rate == pytest.approx(0.6) and not result.passed


def test_aggregator_rejects_training_other_phase_and_extra_episodes():
    aggregator = EvaluationAggregator(2, PhaseThresholds(), 2)
    assert not aggregator.add(eval_stats(evaluation=False))
    assert not aggregator.add(eval_stats(phase=3))
    assert aggregator.add(eval_stats()) and aggregator.add(eval_stats())
    assert not aggregator.add(eval_stats())
    assert aggregator.rejected == 3 and aggregator.episodes == 2


def test_incomplete_evaluation_does_not_pass():
    aggregator = EvaluationAggregator(1, PhaseThresholds(), 3)
    aggregator.add(eval_stats(phase=1))
    result = aggregator.result()
    assert result.goal_rate == 1.0 and not result.passed and not aggregator.complete
    assert EvaluationAggregator(1, PhaseThresholds(), 3).result().episodes == 0
