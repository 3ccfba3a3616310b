"""Passed phases are kept: review episodes (review_share) and re-evaluations (every K evaluations)."""

import collections

import pytest

from carla_rl.curriculum import CurriculumConfig, CurriculumState, DecisionKind
from carla_rl.reward import EpisodeStats, EvaluationResult
from carla_rl.contract.scenario import PhaseConfig, ScenarioConfig

BUDGET = 100
EVERY = 4


def table(num=6):
    return [PhaseConfig(scenario=ScenarioConfig(name=f"p{i}"), episode_budget=BUDGET, eval_episodes=3)
            for i in range(1, num + 1)]


def make(**config):
    settings = dict(evaluate_every_episodes=EVERY, reevaluate_every_episodes=EVERY, review_share=0.2,
                    review_every_evaluations=2)
    settings.update(config)
    return CurriculumState(table(), CurriculumConfig(**settings))


def result(phase, passed):
    return EvaluationResult(phase=phase, episodes=3, goal_rate=1.0 if passed else 0.0,
                            collision_free_rate=1.0, sidewalk_free_rate=1.0, passed=passed)


def evaluations(decisions):
    return [d for d in decisions if d.kind is DecisionKind.EVALUATE]


def run_to_evaluation(state):
    """Training episodes of the current phase until an evaluation is asked for."""
    for _ in range(10 * BUDGET):
        asked = evaluations(state.on_episode_end(EpisodeStats(phase=state.phase)))
        if asked:
            return asked[0]
    raise AssertionError("no evaluation was asked for")


def pass_phases(state, count):
    for _ in range(count):
        decision = run_to_evaluation(state)
        assert decision.phase == state.phase
        assert state.on_evaluation(result(state.phase, True))


def test_no_review_before_a_phase_is_passed():
    state = make()
    assert {state.next_episode_phase() for _ in range(50)} == {1}


def test_review_share_is_exact_and_round_robin_over_passed_phases():
    state = make(review_share=0.25)
    pass_phases(state, 3)                       # passed 1, 2, 3; now in phase 4
    assert state.phase == 4 and state.review_phases == [1, 2, 3]
    drawn = [state.next_episode_phase() for _ in range(120)]
    counts = collections.Counter(drawn)
    assert counts[4] == 90 and counts[1] == counts[2] == counts[3] == 10
    # spread out, not in a block: every 4th episode is a review
    assert all((phase != 4) == (k % 4 == 3) for k, phase in enumerate(drawn))


@pytest.mark.parametrize("share", [0.0, 0.1, 0.5])
def test_review_share_configurable(share):
    state = make(review_share=share)
    pass_phases(state, 2)
    drawn = [state.next_episode_phase() for _ in range(200)]
    assert sum(p != state.phase for p in drawn) == round(share * 200)


@pytest.mark.parametrize("failed_share", [0.5, 0.0])
def test_reviews_go_first_to_passed_phases_failing_their_reevaluation(failed_share):
    state = make(review_share=0.25, review_failed_share=failed_share)
    pass_phases(state, 3)                       # in phase 4
    state.review_failed = {2}                   # phase 2's latest re-evaluation failed
    drawn = collections.Counter(state.next_episode_phase() for _ in range(160))
    assert drawn[4] == 120
    if failed_share:   # half of the 40 reviews to phase 2, the other half round robin over 1-3
        assert drawn[2] in (20 + 6, 20 + 7) and drawn[1] + drawn[2] + drawn[3] == 40
    else:
        assert abs(drawn[2] - 40 / 3) <= 1 and abs(drawn[1] - 40 / 3) <= 1
    state.review_failed = set()                 # it held again: plain round robin
    drawn = collections.Counter(state.next_episode_phase() for _ in range(120))
    assert drawn[4] == 90 and all(abs(drawn[p] - 10) <= 1 for p in (1, 2, 3))


def test_review_episodes_count_in_total_not_in_the_phase():
    state = make()
    pass_phases(state, 2)
    before = state.episodes_in_phase
    state.on_episode_end(EpisodeStats(phase=1))
    assert state.episodes_in_phase == before and state.review_episodes == 1


def test_passed_phases_are_reevaluated_every_k_evaluations_without_blocking():
    state = make(review_every_evaluations=2)
    pass_phases(state, 2)                       # in phase 3
    first = run_to_evaluation(state)
    assert first.phase == 3
    state.on_evaluation(result(3, False))       # evaluation 1 of phase 3: no review yet
    second = run_to_evaluation(state)
    assert second.phase == 3
    state.on_evaluation(result(3, False))       # evaluation 2: reviews of 1 and 2 queued
    assert state.review_queue == [1, 2]
    # the next episode end starts the re-evaluation of phase 1; every env goes to phase 1 meanwhile
    review = evaluations(state.on_episode_end(EpisodeStats(phase=3)))
    assert [d.phase for d in review] == [1] and state.next_episode_phase() == 1
    assert not state.on_evaluation(result(1, False))
    assert state.phase == 3 and state.review_failed == {1}
    assert state.history[-1].phase == 1
    review = evaluations(state.on_episode_end(EpisodeStats(phase=3)))
    assert [d.phase for d in review] == [2]
    state.on_evaluation(result(2, True))
    assert state.review_failed == {1} and not state.review_queue
    # a failed review does not block by default
    assert run_to_evaluation(state).phase == 3
    assert state.on_evaluation(result(3, True)) and state.phase == 4


def test_review_blocks_advance_when_configured():
    state = make(review_every_evaluations=1, review_blocks_advance=True)
    pass_phases(state, 1)                       # in phase 2; phase 1 passed
    run_to_evaluation(state)
    state.on_evaluation(result(2, False))       # queues the review of phase 1
    review = evaluations(state.on_episode_end(EpisodeStats(phase=2)))
    state.on_evaluation(result(review[0].phase, False))
    assert state.review_failed == {1}
    run_to_evaluation(state)
    assert not state.on_evaluation(result(2, True))      # held back by phase 1
    assert state.phase == 2 and state.review_queue[0] == 1
    review = evaluations(state.on_episode_end(EpisodeStats(phase=2)))
    assert review[0].phase == 1
    state.on_evaluation(result(1, True))
    assert not state.review_failed
    run_to_evaluation(state)
    assert state.on_evaluation(result(2, True)) and state.phase == 3


def test_cancelled_review_is_asked_again():
    state = make(review_every_evaluations=1)
    pass_phases(state, 1)
    run_to_evaluation(state)
    state.on_evaluation(result(2, False))
    review = evaluations(state.on_episode_end(EpisodeStats(phase=2)))
    assert review[0].phase == 1
    state.cancel_evaluation()
    assert not state.evaluating and state.review_queue == [1]
    again = evaluations(state.on_episode_end(EpisodeStats(phase=2)))
    assert again[0].phase == 1


def test_review_state_round_trips(tmp_path):
    state = make(review_every_evaluations=1)
    pass_phases(state, 2)
    state.review_failed = {1}
    state.on_episode_end(EpisodeStats(phase=1))
    path = tmp_path / "state.json"
    state.save(path)
    loaded = CurriculumState.load(path, table(), state.config)
    assert loaded.passed_phases == {1, 2} and loaded.review_failed == {1}
    assert loaded.review_episodes == 1 and loaded.evaluations_in_phase == state.evaluations_in_phase


def test_older_state_files_count_the_phases_before_as_passed(tmp_path):
    state = make()
    pass_phases(state, 3)
    data = state.to_dict()
    for key in ("passed_phases", "review_failed", "evaluations_in_phase", "review_episodes"):
        del data[key]
    loaded = CurriculumState.from_dict(data, table(), state.config)
    assert loaded.passed_phases == {1, 2, 3} and loaded.review_phases == [1, 2, 3]


def test_phases_entered_on_request_are_not_passed():
    state = make()
    state.request_phase(4)
    state.apply_pending_at_boundary()
    assert state.phase == 4 and not state.review_phases
    assert {state.next_episode_phase() for _ in range(20)} == {4}
