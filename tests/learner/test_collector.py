"""The collector core (carla_rl.learner.collector) shared by the policy node and the Gymnasium trainer:
pairing by step id, out-of-order and lost ticks, storing through the agent's replay, episode ends,
evaluation mode, env presence on a fake clock, and non-finite input."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from carla_rl.learner.collector import (ABSENT_DROPPED_TICKS, ABSENT_DROPPED_TRANSITIONS, DROPPED_TICKS,
                                        ENVS_ABSENT_EVENTS, NON_FINITE_INPUTS, NOT_STORED_MID_EPISODE,
                                        RESET_ACTION, UNKNOWN_ENV, Collector, Outcome, Readiness, Tick)
from carla_rl.learner.dqn_agent import DQNAgent
from carla_rl.learner.replay_buffer import NO_ACTION

from helpers import TINY_SPEC, tiny_config


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class SpyAgent(DQNAgent):
    """A real tiny agent that records each act call's batch size and exploration flag."""

    def __init__(self) -> None:
        super().__init__(TINY_SPEC, 6, tiny_config(), seed=3)
        self.calls: list[tuple[int, bool]] = []

    def act(self, frames, vectors=None, explore=True, action_mask=None):
        self.calls.append((len(frames), explore))
        return super().act(frames, vectors, explore, action_mask)


def tick(env: int, step: int, episode: int = 1, episode_step: int | None = None, evaluation: bool = False,
         vector: list[float] | None = None) -> Tick:
    frames = np.full((TINY_SPEC.frame_stack, 8, 8), step % 256, dtype=np.uint8)
    vec = np.array(vector if vector is not None else [0.1, 0.2, 0.3], dtype=np.float32)
    return Tick(env, step, episode, step if episode_step is None else episode_step, frames, vec,
                evaluation=evaluation, context=("header", env, step))


def outcome(env: int, step: int, reward: float = 0.5, terminated: bool = False,
            truncated: bool = False) -> Outcome:
    return Outcome(env, step, reward, terminated, truncated)


def make(num_envs: int = 2, **kwargs) -> tuple[Collector, SpyAgent]:
    agent = SpyAgent()
    return Collector(num_envs, agent=agent, **kwargs), agent


def send(collector: Collector, env: int, step: int, **kwargs) -> Readiness:
    """Observation then outcome of one tick; returns the readiness after both."""
    reward = kwargs.pop("reward", 0.5)
    terminated = kwargs.pop("terminated", False)
    truncated = kwargs.pop("truncated", False)
    collector.add_observation(tick(env, step, **kwargs))
    return collector.add_outcome(outcome(env, step, reward, terminated, truncated))


def test_observation_and_outcome_pair_by_step_id_in_either_order():
    collector, _ = make(1)
    assert collector.add_observation(tick(0, 0)) is Readiness.WAITING
    assert collector.add_outcome(outcome(0, 0)) is Readiness.ALL_READY
    [command] = collector.act().commands
    assert (command.env_id, command.step_id, command.context) == (0, 0, ("header", 0, 0))
    assert 0 <= command.action < 6 and math.isfinite(command.q_value)
    assert collector.add_outcome(outcome(0, 1)) is Readiness.WAITING  # the reward first
    assert collector.add_observation(tick(0, 1)) is Readiness.ALL_READY
    assert collector.act().commands[0].step_id == 1


def test_ready_envs_are_acted_on_as_one_batch_when_every_present_env_is_ready():
    collector, agent = make(3)
    assert send(collector, 0, 0) is Readiness.ALL_READY  # only env 0 has been heard from yet
    collector.add_observation(tick(1, 0))  # env 1 is present from here (not ready: no outcome yet)
    assert collector.present_envs == 2
    collector.act()
    assert send(collector, 0, 1) is Readiness.SOME_READY  # env 1 is present and not ready
    assert collector.add_outcome(outcome(1, 0)) is Readiness.ALL_READY
    batch = collector.act()
    assert sorted(c.env_id for c in batch.commands) == [0, 1] and batch.acted == 2
    assert agent.calls[-1] == (2, True)  # one act call for both envs, exploring
    assert collector.act().commands == []  # nothing ready any more


def test_an_older_unmatched_tick_is_dropped_once_a_newer_one_pairs():
    collector, _ = make(1)
    collector.add_observation(tick(0, 4))      # its outcome never comes
    collector.add_outcome(outcome(0, 3))       # its observation never comes
    assert send(collector, 0, 5) is Readiness.ALL_READY
    assert collector.counters[DROPPED_TICKS] == 2
    assert [c.step_id for c in collector.act().commands] == [5]
    assert collector.add_outcome(outcome(0, 4)) is Readiness.WAITING  # too late: waits, never pairs
    assert send(collector, 0, 6) is Readiness.ALL_READY
    assert collector.counters[DROPPED_TICKS] == 3


def test_unmatched_ticks_are_bounded_per_env():
    collector, _ = make(1, max_pending_ticks=2)
    for step in range(5):
        collector.add_observation(tick(0, step))
    assert len(collector.slots[0].observations) == 2 and collector.counters[DROPPED_TICKS] == 3
    assert collector.add_outcome(outcome(0, 0)) is Readiness.WAITING  # its observation was dropped
    assert collector.add_outcome(outcome(0, 4)) is Readiness.ALL_READY


def test_an_episode_is_stored_and_its_end_asks_for_a_reset():
    collector, agent = make(1)
    rewards = [0.0, 1.0, 2.0, 3.0]
    for step, reward in enumerate(rewards):
        send(collector, 0, step, reward=reward, terminated=step == 3)
        batch = collector.act()
    assert agent.replay.total == 4 and agent.env_steps == 3  # four observations, three actions
    assert list(agent.replay.rewards[:3]) == [1.0, 2.0, 3.0] and bool(agent.replay.terminated[2])
    [reset] = batch.commands
    assert reset.reset and reset.action == RESET_ACTION and not reset.evaluation and batch.acted == 0
    [end] = batch.episode_ends
    assert (end.env_id, end.episode_id, end.steps, end.total_reward) == (0, 1, 3, 6.0)
    assert end.terminated and end.complete and end.training_episodes == 1
    # the end is announced again until the simulator resets: asked again, counted once
    send(collector, 0, 4, episode_step=3, reward=3.0, terminated=True)
    batch = collector.act()
    assert batch.commands[0].reset and batch.episode_ends == [] and collector.training_episodes == 1
    # the next episode is stored from its first tick
    send(collector, 0, 5, episode=2, episode_step=0)
    collector.act()
    assert agent.replay.total == 5 and collector.slots[0].streaming


def test_an_env_first_seen_mid_episode_stores_nothing_until_its_next_episode():
    collector, agent = make(1)
    for step in (7, 8, 9):
        send(collector, 0, step, episode=4, episode_step=step)
        assert collector.act().commands[0].action >= 0  # still acted on
    assert agent.replay.total == 0 and collector.counters[NOT_STORED_MID_EPISODE] == 3
    send(collector, 0, 10, episode=4, episode_step=10, truncated=True)
    [end] = collector.act().episode_ends
    assert not end.complete and end.steps == 4  # the ticks it saw
    send(collector, 0, 11, episode=5, episode_step=0)
    collector.act()
    assert agent.replay.total == 1


def test_evaluation_mode_acts_greedily_and_asks_for_evaluation_episodes():
    collector, agent = make(1)
    send(collector, 0, 0)
    collector.act()
    assert agent.calls[-1][1] is True
    assert collector.set_evaluation_mode(True)
    send(collector, 0, 1)
    collector.act()
    assert agent.calls[-1][1] is False  # greedy at once
    stored = agent.replay.total
    send(collector, 0, 2, terminated=True)
    batch = collector.act()
    assert batch.commands[0].reset and batch.commands[0].evaluation  # the next episode is an evaluation one
    assert collector.training_episodes == 1  # the episode that ends was a training one
    for step in range(3, 6):
        send(collector, 0, step, episode=2, episode_step=step - 3, evaluation=True, terminated=step == 5)
        batch = collector.act()
    assert agent.replay.total == stored + 1  # the final tick of the training episode only
    assert collector.training_episodes == 1 and batch.episode_ends[0].evaluation
    assert batch.episode_ends[0].training_episodes == 0
    assert not collector.set_evaluation_mode(False)
    assert batch.commands[0].reset and batch.commands[0].evaluation  # the mode at the time of that reset


def test_evaluation_episodes_among_training_ones_act_greedily_in_the_same_batch():
    collector, agent = make(2)
    send(collector, 0, 0)
    send(collector, 1, 0, evaluation=True)
    batch = collector.act()
    assert batch.acted == 2 and agent.calls[-2:] == [(2, True), (1, False)]
    assert agent.replay.total == 1  # the training env's first tick only


def test_a_policy_that_does_not_train_never_stores_and_stays_in_evaluation_mode():
    agent = SpyAgent()
    collector = Collector(1, training=False, agent=agent)
    assert collector.evaluation_mode and collector.set_evaluation_mode(False)
    for step in range(3):
        send(collector, 0, step)
        collector.act()
    assert agent.replay.total == 0 and all(not explore for _, explore in agent.calls)
    assert collector.counters[NOT_STORED_MID_EPISODE] == 0


def test_an_env_silent_too_long_is_absent_never_waited_for_and_taken_back_on_its_next_observation():
    clock = FakeClock()
    collector, agent = make(2, env_absent_after_s=5.0, clock=clock)
    for step in range(2):  # both envs run an episode and get actions
        send(collector, 0, step)
        assert send(collector, 1, step) is Readiness.ALL_READY
        collector.act()
    assert agent.replay.total == 4
    collector.add_observation(tick(1, 2))  # env 1's half tick: its outcome never comes, nor anything else
    clock.now += 4.0
    assert send(collector, 0, 2) is Readiness.SOME_READY  # env 1 is still waited for
    collector.act()
    clock.now += 1.5  # 5.5 s since env 1's last message
    assert send(collector, 0, 3) is Readiness.ALL_READY  # env 1 is absent: no longer waited for
    assert collector.counters[ENVS_ABSENT_EVENTS] == 1 and collector.present_envs == 1
    assert collector.counters[ABSENT_DROPPED_TICKS] == 1  # the half-paired tick
    assert collector.counters[ABSENT_DROPPED_TRANSITIONS] == 1  # its action without outcome
    # stored so far: steps 0 and 1 of both envs (seqs 0-3, env 1's last one is seq 3), env 0's step 2
    assert agent.replay.total == 5 and agent.replay.actions[3] == NO_ACTION and agent.replay.actions[2] >= 0
    collector.act()
    # it comes back mid-episode: present again, acted on, nothing stored until its next episode
    stored = agent.replay.total
    send(collector, 1, 3)
    assert collector.present_envs == 2
    send(collector, 0, 4)
    batch = collector.act()
    assert sorted(c.env_id for c in batch.commands) == [0, 1]
    assert agent.replay.total == stored + 1 and collector.counters[NOT_STORED_MID_EPISODE] == 1
    send(collector, 1, 4, episode=2, episode_step=0)
    send(collector, 0, 5)
    collector.act()
    assert agent.replay.total == stored + 3 and collector.slots[1].streaming
    assert collector.counters[ENVS_ABSENT_EVENTS] == 1


def test_an_env_waiting_for_its_action_is_never_absent():
    clock = FakeClock()
    collector, _ = make(2, env_absent_after_s=5.0, clock=clock)
    send(collector, 0, 0)
    send(collector, 1, 0)  # both ready; the batch is held (a learner catching up)
    clock.now += 60.0
    assert collector.sweep() == [] and collector.present_envs == 2
    collector.act()
    clock.now += 5.01
    assert sorted(collector.sweep()) == [0, 1] and collector.present_envs == 0
    assert collector.counters[ENVS_ABSENT_EVENTS] == 2 and collector.counters[ABSENT_DROPPED_TICKS] == 0


def test_presence_is_checked_while_ticks_arrive_without_a_sweep_call():
    clock = FakeClock()
    collector, _ = make(2, env_absent_after_s=2.0, clock=clock)
    send(collector, 1, 0)
    collector.act()
    for step in range(12):  # env 0 ticks every 0.25 s; env 1 never again
        clock.now += 0.25
        send(collector, 0, step)
        collector.act()
    assert collector.counters[ENVS_ABSENT_EVENTS] == 1 and not collector.slots[1].present
    with pytest.raises(ValueError, match="env_absent_after_s"):
        collector.set_env_absent_after(0.0)


@pytest.mark.parametrize("bad", ["nan_reward", "inf_reward", "nan_feature"])
def test_non_finite_input_is_rejected_counted_and_the_episode_stores_no_more(bad):
    collector, agent = make(1)
    send(collector, 0, 0)
    collector.act()
    send(collector, 0, 1)
    collector.act()
    reward = {"nan_reward": math.nan, "inf_reward": math.inf}.get(bad, 0.5)
    vector = [0.1, math.nan, 0.3] if bad == "nan_feature" else None
    send(collector, 0, 2, reward=reward, vector=vector)
    assert collector.act().commands[0].action >= 0  # still acted on
    assert collector.counters[NON_FINITE_INPUTS] == 1 and collector.non_finite_inputs == 1
    assert agent.replay.total == 2 and agent.replay.non_finite_dropped == 0  # never reached the replay
    assert agent.replay.actions[1] == NO_ACTION  # the transition whose outcome was bad has none
    assert np.isfinite(agent.replay.rewards).all() and np.isfinite(agent.replay.vectors).all()
    send(collector, 0, 3)
    collector.act()
    assert agent.replay.total == 2 and collector.counters[NOT_STORED_MID_EPISODE] == 1
    send(collector, 0, 4, episode=2, episode_step=0)
    collector.act()
    assert agent.replay.total == 3 and collector.non_finite_inputs == 1


def test_a_non_finite_reward_at_an_episode_start_is_no_outcome_and_is_accepted():
    collector, agent = make(1)
    send(collector, 0, 0, reward=math.nan)
    collector.act()
    assert agent.replay.total == 1 and collector.counters[NON_FINITE_INPUTS] == 0


def test_ticks_of_unknown_envs_are_counted_and_ignored():
    counters = Counter()
    collector = Collector(2, agent=SpyAgent(), counters=counters)
    assert collector.add_observation(tick(2, 0)) is Readiness.WAITING
    assert collector.add_outcome(outcome(-1, 0)) is Readiness.WAITING
    assert counters[UNKNOWN_ENV] == 2 and collector.present_envs == 0


def test_the_agent_is_built_from_the_first_known_observation():
    built = []

    def factory(first: Tick) -> SpyAgent:
        built.append(first.frames.shape)
        return SpyAgent()

    collector = Collector(1, agent_factory=factory)
    collector.add_observation(tick(5, 0))  # unknown env: no agent yet
    assert collector.agent is None and collector.act().commands == []
    collector.add_observation(tick(0, 0))
    collector.add_observation(tick(0, 1))
    assert built == [(2, 8, 8)] and collector.agent is not None
