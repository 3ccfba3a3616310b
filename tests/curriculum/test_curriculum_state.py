"""CurriculumState: schedule, advancement, phase requests, persistence."""

import dataclasses
import json
from pathlib import Path

import pytest

from carla_rl.contract.config import ConfigError
from carla_rl.curriculum import (CurriculumConfig, CurriculumState, CurriculumStateError,
                                 DecisionKind, load_curriculum_config, load_phase_table)
from carla_rl.reward import EpisodeStats, EvaluationResult
from carla_rl.contract.scenario import PhaseConfig, ScenarioConfig

NUM_PHASES = 10
BUDGET = 10
EVERY = 4
CONFIG_FILE = Path(__file__).resolve().parents[2] / "config" / "curriculum.yaml"


def phase_table(num=NUM_PHASES, broken=()):
    table = []
    for i in range(1, num + 1):
        if i in broken:
            table.append(ConfigError(f"curriculum.yaml: phases.phase_{i}.scenario.map_name: bad"))
        else:
            table.append(PhaseConfig(scenario=ScenarioConfig(name=f"p{i}"), episode_budget=BUDGET,
                                     eval_episodes=3))
    return table


def make(broken=(), **config):
    settings = dict(evaluate_every_episodes=EVERY, reevaluate_every_episodes=EVERY)
    settings.update(config)
    return CurriculumState(phase_table(broken=broken), CurriculumConfig(**settings))


def train(state, episodes, phase=None):
    decisions = []
    for _ in range(episodes):
        decisions += state.on_episode_end(EpisodeStats(phase=phase or state.phase))
    return decisions


def kinds(decisions):
    return [d.kind for d in decisions if d.kind is not DecisionKind.SAVE]


def result(state, passed, phase=None):
    return EvaluationResult(phase=phase or state.phase, episodes=3, goal_rate=1.0 if passed else 0,
                            collision_free_rate=1.0, sidewalk_free_rate=1.0, passed=passed)


def test_fresh_state():
    state = make()
    assert (state.phase, state.episodes_in_phase, state.total_episodes) == (1, 0, 0)
    assert state.pending_phase == 0 and not state.paused and not state.evaluation_due()
    assert state.status().phase_name == "p1" and state.status().episode_budget == BUDGET


def test_evaluation_every_k_episodes():
    state = make()
    assert kinds(train(state, EVERY - 1)) == []
    decisions = train(state, 1)
    assert kinds(decisions) == [DecisionKind.EVALUATE]
    evaluate = [d for d in decisions if d.kind is DecisionKind.EVALUATE][0]
    assert evaluate.phase == 1 and evaluate.episodes == 3
    assert state.evaluating and not state.evaluation_due()
    assert kinds(train(state, 2)) == []          # training goes on; no second evaluation


def test_failed_evaluation_does_not_advance_and_reschedules():
    state = make()
    train(state, EVERY)
    assert state.on_evaluation(result(state, passed=False)) is False
    assert state.phase == 1 and not state.evaluating
    assert state.next_evaluation_at == 2 * EVERY
    assert kinds(train(state, EVERY)) == [DecisionKind.EVALUATE]
    state.on_evaluation(result(state, passed=False))
    assert state.next_evaluation_at == BUDGET     # capped at the budget


def test_passing_evaluation_advances_and_resets_phase_counters():
    state = make()
    train(state, EVERY)
    assert state.on_evaluation(result(state, passed=True)) is True
    assert (state.phase, state.episodes_in_phase, state.total_episodes) == (2, 0, EVERY)
    assert state.history[-1].phase == 1 and state.history[-1].passed
    assert state.status().last_evaluation.passed


def test_episodes_of_other_phases_and_evaluation_episodes():
    state = make()
    state.on_episode_end(EpisodeStats(phase=1, evaluation=True))
    assert state.total_episodes == 0
    state.on_episode_end(EpisodeStats(phase=5))
    assert (state.episodes_in_phase, state.total_episodes) == (0, 1)


def test_stale_evaluation_result_is_ignored():
    state = make()
    train(state, EVERY)
    assert state.on_evaluation(result(state, passed=True, phase=4)) is False
    assert state.phase == 1 and state.evaluating


def test_last_phase_pass_finishes():
    state = make(initial_phase=NUM_PHASES)
    train(state, EVERY)
    assert state.on_evaluation(result(state, passed=True)) is True
    assert state.finished and state.phase == NUM_PHASES
    assert kinds(train(state, 2 * EVERY)) == []


@pytest.mark.parametrize("policy", ["keep_training", "pause", "advance"])
def test_budget_exhausted_policies(policy):
    state = make(on_budget_exhausted=policy, evaluate_every_episodes=0)
    decisions = train(state, BUDGET)
    assert kinds(decisions) == [DecisionKind.EVALUATE]
    advanced = state.on_evaluation(result(state, passed=False))
    if policy == "keep_training":
        assert not advanced and state.phase == 1 and not state.paused
        assert kinds(train(state, EVERY)) == [DecisionKind.EVALUATE]
    elif policy == "pause":
        assert not advanced and state.paused
        assert kinds(train(state, 2 * EVERY)) == [] and not state.evaluation_due()
        state.set_paused(False)
        assert state.evaluation_due()
        assert kinds(train(state, 1)) == [DecisionKind.EVALUATE]
    else:
        assert advanced and state.phase == 2


def test_pause_on_start_counts_but_never_evaluates():
    state = make(pause_on_start=True)
    assert state.paused
    assert kinds(train(state, BUDGET)) == []
    assert state.episodes_in_phase == BUDGET


@pytest.mark.parametrize("phase", [0, 11, -1])
def test_request_out_of_range_phase_fails_naming_valid_range(phase):
    state = make()
    success, message = state.request_phase(phase)
    assert not success and "1..10" in message and str(phase) in message
    assert state.pending_phase == 0


def test_request_broken_phase_fails():
    state = make(broken=(7,))
    success, message = state.request_phase(7)
    assert not success and "invalid configuration" in message and "1..10" in message
    assert state.pending_phase == 0


def test_request_phase_is_applied_at_the_episode_boundary():
    state = make()
    train(state, 2)
    success, message = state.request_phase(3)
    assert success and "next episode boundary" in message
    assert state.phase == 1 and state.pending_phase == 3 and state.status().pending_phase == 3
    decisions = state.on_episode_end(EpisodeStats(phase=1))
    assert kinds(decisions) == [DecisionKind.PHASE_CHANGED]
    assert DecisionKind.SAVE in [d.kind for d in decisions]
    assert decisions[0].phase == 3
    assert (state.phase, state.episodes_in_phase, state.pending_phase) == (3, 0, 0)
    assert state.total_episodes == 3


def test_apply_pending_directly_and_request_current_phase():
    state = make()
    assert state.apply_pending_at_boundary() is None
    assert state.request_phase(1) == (True, "already in phase 1 (p1)")
    state.request_phase(4)
    assert state.request_phase(1)[0] and state.pending_phase == 0     # cancels the request
    state.request_phase(5)
    decision = state.apply_pending_at_boundary()
    assert decision.kind is DecisionKind.PHASE_CHANGED and state.phase == 5


def test_no_evaluation_while_a_phase_change_is_pending():
    state = make()
    train(state, EVERY - 1)
    state.request_phase(2)
    assert kinds(train(state, 1)) == [DecisionKind.PHASE_CHANGED]
    assert not state.evaluating


def test_passing_into_a_broken_phase_pauses():
    state = make(broken=(2,))
    train(state, EVERY)
    assert state.on_evaluation(result(state, passed=True)) is False
    assert state.phase == 1 and state.paused and "phase 2" in state.last_message


def test_broken_start_phase_is_a_config_error():
    with pytest.raises(ConfigError, match="initial_phase"):
        make(broken=(1,))


def test_num_episodes_finishes_the_run():
    state = make(num_episodes=3, pause_on_start=True)
    assert kinds(train(state, 2)) == []
    assert kinds(train(state, 1)) == [DecisionKind.FINISHED]
    assert state.finished and kinds(train(state, 2)) == []


def test_eval_episodes_override():
    state = make(eval_episodes_override=7)
    decision = [d for d in train(state, EVERY) if d.kind is DecisionKind.EVALUATE][0]
    assert decision.episodes == 7


def test_history_is_bounded():
    state = make(history_length=2)
    for _ in range(3):
        train(state, EVERY)
        state.on_evaluation(result(state, passed=False))
    assert len(state.history) == 2


def test_save_load_round_trip(tmp_path):
    state = make()
    train(state, EVERY)
    state.on_evaluation(result(state, passed=True))       # now phase 2
    train(state, 3)
    state.request_phase(6)
    path = tmp_path / "run" / "curriculum_state.json"
    state.save(path)
    assert [p.name for p in path.parent.iterdir()] == [path.name]      # no temp file left
    restored = CurriculumState.load(path, phase_table(), state.config)
    assert restored.to_dict() == state.to_dict()
    assert (restored.phase, restored.episodes_in_phase, restored.total_episodes) == (2, 3, 7)
    assert restored.pending_phase == 6 and restored.history == state.history
    # a resumed run continues with the same counters
    restored.on_episode_end(EpisodeStats(phase=2))
    assert restored.phase == 6 and restored.total_episodes == 8


def test_running_evaluation_becomes_due_again_after_resume(tmp_path):
    state = make()
    train(state, EVERY)
    assert state.evaluating
    path = tmp_path / "state.json"
    state.save(path)
    restored = CurriculumState.load(path, phase_table(), state.config)
    assert not restored.evaluating and restored.evaluation_due()


def test_load_or_create(tmp_path):
    config = CurriculumConfig(evaluate_every_episodes=EVERY)
    path = tmp_path / "state.json"
    assert CurriculumState.load_or_create(path, phase_table(), config).total_episodes == 0
    state = CurriculumState(phase_table(), config)
    train(state, 2)
    state.save(path)
    assert CurriculumState.load_or_create(path, phase_table(), config).total_episodes == 2
    fresh = dataclasses.replace(config, resume=False)
    assert CurriculumState.load_or_create(path, phase_table(), fresh).total_episodes == 0


@pytest.mark.parametrize("content, match", [
    ("{not json", "invalid JSON at line 1"),
    ("", "invalid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"format": "something else", "version": 1}', "not a carla_rl.curriculum_state"),
])
def test_corrupt_file_errors_name_the_file(tmp_path, content, match):
    path = tmp_path / "state.json"
    path.write_text(content)
    with pytest.raises(CurriculumStateError, match=match) as info:
        CurriculumState.load(path, phase_table(), CurriculumConfig())
    assert str(path) in str(info.value)


@pytest.mark.parametrize("key, value, match", [
    ("phase", 11, "phase: phase 11 does not exist"),
    ("episodes_in_phase", -3, "episodes_in_phase"),
    ("paused", "yes", "paused"),
    ("history", [{"phase": 1, "bogus": 2}], "history"),
])
def test_invalid_saved_values(tmp_path, key, value, match):
    data = make().to_dict()
    data[key] = value
    path = tmp_path / "state.json"
    path.write_text(json.dumps(data))
    with pytest.raises(CurriculumStateError, match=match):
        CurriculumState.load(path, phase_table(), CurriculumConfig())


def test_missing_file(tmp_path):
    with pytest.raises(CurriculumStateError, match="not found"):
        CurriculumState.load(tmp_path / "none.json", phase_table(), CurriculumConfig())


def test_shipped_curriculum_drives_the_state():
    config = load_curriculum_config(CONFIG_FILE)
    table = load_phase_table(CONFIG_FILE)
    assert len(table) == NUM_PHASES and not any(isinstance(p, ConfigError) for p in table)
    state = CurriculumState(table, config)
    assert state.scenario.name == "forward_only"
    assert state.request_phase(11)[1] == "phase 11 does not exist: valid phases are 1..10"


def test_new_evaluation_cadence_reschedules_the_next_evaluation():
    """evaluate_every_episodes set on the running curriculum: the next evaluation follows the new
    cadence from the episodes already run (3 of the phase: K 8 -> 2 brings it from 8 to 4)."""
    state = make(evaluate_every_episodes=8)
    train(state, 3)
    assert state.next_evaluation_at == 8
    state.set_config(dataclasses.replace(state.config, evaluate_every_episodes=2))
    assert state.next_evaluation_at == 4 and state.config.evaluate_every_episodes == 2
    assert kinds(train(state, 1)) == [DecisionKind.EVALUATE]
    state.set_config(dataclasses.replace(state.config, evaluate_every_episodes=0))  # evaluating: kept
    assert state.evaluating and state.config.evaluate_every_episodes == 0


def test_new_cadence_zero_means_the_end_of_the_budget():
    state = make()
    train(state, 1)
    state.set_config(dataclasses.replace(state.config, evaluate_every_episodes=0))
    assert state.next_evaluation_at == BUDGET
