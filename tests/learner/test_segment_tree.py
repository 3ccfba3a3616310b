import numpy as np
import pytest

from carla_rl.learner.segment_tree import SumTree


def test_sums_and_prefix_search_match_numpy():
    rng = np.random.default_rng(0)
    tree = SumTree(1000)
    values = rng.random(1000)
    tree.update(np.arange(1000), values)
    tree.update(np.array([3, 3, 7]), np.array([5.0, 2.0, 0.0]))  # repeated index: last wins
    values[3], values[7] = 2.0, 0.0
    assert tree.total() == pytest.approx(values.sum())
    queries = rng.random(500) * values.sum()
    expected = np.searchsorted(np.cumsum(values), queries, side="right")
    np.testing.assert_array_equal(tree.find_prefixsum(queries), expected)


def test_sampling_frequencies_match_priorities_chi_square():
    rng = np.random.default_rng(1)
    capacity = 37  # not a power of two
    priorities = rng.random(capacity) + 0.05
    priorities[[5, 20]] = 0.0  # zero priority: never sampled
    tree = SumTree(capacity)
    tree.update(np.arange(capacity), priorities)
    draws = np.concatenate([tree.sample(64, rng) for _ in range(2000)])  # 128k samples
    counts = np.bincount(draws, minlength=capacity)
    assert counts[5] == 0 and counts[20] == 0
    keep = priorities > 0
    expected = priorities[keep] / priorities.sum() * draws.size
    chi2 = ((counts[keep] - expected) ** 2 / expected).sum()
    dof = keep.sum() - 1
    # 99.9% quantile of chi-square(34) is ~65.2; allow that (fixed seed, deterministic).
    assert chi2 < 65.2, (chi2, dof)
