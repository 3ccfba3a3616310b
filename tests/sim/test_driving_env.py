"""carla_rl/Driving-v0: registered, passes gymnasium's env checker, deterministic under a seed,
and its reward/termination come from the same cores as the ROS graph."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from carla_rl.sim.driving_env import ENV_ID, DrivingEnv
from carla_rl.reward import TERM_NAMES


def test_registered_and_passes_env_checker():
    env = gym.make(ENV_ID, phase=2)
    check_env(env.unwrapped, skip_render_check=True)
    obs, info = env.reset(seed=3)
    assert env.observation_space.contains(obs)
    assert info["action_mask"].tolist() == [1, 1, 1, 1, 1, 0]
    env.close()


def rollout(seed: int, actions: list[int]):
    env = DrivingEnv(phase=5)
    obs, _ = env.reset(seed=seed)
    frames, rewards, terms = [obs["frames"]], [], []
    for a in actions:
        obs, r, terminated, truncated, info = env.step(a)
        frames.append(obs["frames"])
        rewards.append(r)
        terms.append(info["terms"])
        if terminated or truncated:
            break
    return np.stack(frames), np.array(rewards), terms


def test_same_seed_and_actions_give_identical_trajectories():
    actions = list(np.random.default_rng(0).integers(0, 5, 120))
    a, b = rollout(11, actions), rollout(11, actions)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    c = rollout(12, actions)
    assert not (len(c[0]) == len(a[0]) and np.array_equal(a[0], c[0]))


def test_reward_terms_sum_to_reward_and_bad_actions_are_rejected():
    _, rewards, terms = rollout(5, [0] * 60)
    assert set(terms[0]) == set(TERM_NAMES)
    for r, t in zip(rewards, terms):
        assert r == pytest.approx(sum(t.values()), abs=1e-4)
    env = DrivingEnv(phase=1)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="outside"):
        env.step(9)
    with pytest.raises(ValueError, match="valid phases are 1..10"):
        env.reset(options={"phase": 11})


def _episode_return(phase: int, action: int, seed: int = 1) -> tuple[float, str]:
    env = DrivingEnv(phase=phase)
    env.reset(seed=seed)
    total = 0.0
    while True:
        _, reward, terminated, truncated, info = env.step(action)
        total += reward
        if terminated or truncated:
            return total, info["reason"]


def test_reward_makes_driving_to_the_goal_beat_standing_still():
    """The shipped reward on the straight road: constant full throttle (too fast for the target speed)
    reaches the goal with a positive return; braking in place ends 'stuck' far below it. (With the
    old overspeed weight the fast episode returned about -440 and standing still was the optimum.)"""
    fast, fast_reason = _episode_return(2, action=0)
    still, still_reason = _episode_return(2, action=3)
    assert fast_reason == "goal_reached" and fast > 0.0
    assert still_reason == "stuck" and still < -900.0
