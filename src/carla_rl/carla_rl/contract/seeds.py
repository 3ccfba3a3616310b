"""Episode seeds. Training episodes draw from [0, 2**30), evaluation episodes from [2**30, 2**31 - 1):
the two sets are disjoint by construction, whatever the base seed, env or episode index."""

from __future__ import annotations

EVAL_SEED_BASE = 2**30
_SPAN = 2**30 - 1
_ENV_STRIDE = 100_003
_BASE_STRIDE = 1_000_003


def _mix(base_seed: int, env_id: int, episode_index: int) -> int:
    return (base_seed * _BASE_STRIDE + env_id * _ENV_STRIDE + episode_index) % _SPAN


def training_seed(base_seed: int, env_id: int, episode_index: int) -> int:
    return _mix(base_seed, env_id, episode_index)


def evaluation_seed(base_seed: int, env_id: int, episode_index: int) -> int:
    return EVAL_SEED_BASE + _mix(base_seed, env_id, episode_index)


def is_evaluation_seed(seed: int) -> bool:
    return seed >= EVAL_SEED_BASE
