"""Vectorised sum tree over numpy (no Python loop per sample; one loop step per tree level).

Layout: ``size`` = capacity rounded up to a power of two; ``tree[1]`` is the root, node ``i`` has
children ``2i`` and ``2i + 1``, leaf ``j`` sits at ``tree[size + j]``. Priorities are float64 so
that sums over a million leaves stay accurate.
"""

from __future__ import annotations

import numpy as np

SCALAR_PATH_MAX = 4  # updates of at most this many leaves walk up the tree in plain Python


class SumTree:
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self.size = 1 << max(0, (capacity - 1).bit_length())
        self.depth = self.size.bit_length() - 1  # levels below the root
        self.tree = np.zeros(2 * self.size, dtype=np.float64)

    @property
    def nbytes(self) -> int:
        return self.tree.nbytes

    def total(self) -> float:
        return float(self.tree[1])

    def __getitem__(self, indices: np.ndarray) -> np.ndarray:
        return self.tree[self.size + np.asarray(indices)]

    def update(self, indices: np.ndarray, values: np.ndarray) -> None:
        """Set leaves ``indices`` [K] to ``values`` [K] (>= 0) and refresh their ancestors."""
        indices = np.asarray(indices, dtype=np.int64).ravel()
        values = np.asarray(values, dtype=np.float64).ravel()
        if indices.size == 0:
            return
        if np.any(values < 0) or not np.all(np.isfinite(values)):
            raise ValueError("priorities must be finite and >= 0")
        nodes = indices + self.size
        self.tree[nodes] = values
        if indices.size <= SCALAR_PATH_MAX:  # the per-observation case: plain Python is faster
            tree = self.tree
            for node in nodes.tolist():
                node >>= 1
                while node >= 1:
                    tree[node] = tree[2 * node] + tree[2 * node + 1]
                    node >>= 1
            return
        for _ in range(self.depth):
            # Duplicate parents recompute the same sum from final children: no unique needed.
            nodes = nodes >> 1
            self.tree[nodes] = self.tree[2 * nodes] + self.tree[2 * nodes + 1]

    def find_prefixsum(self, values: np.ndarray) -> np.ndarray:
        """For each v in ``values`` [K] (0 <= v < total) the leaf j with cumsum(<j) <= v <
        cumsum(<=j). Returns leaf indices [K] int64."""
        values = np.asarray(values, dtype=np.float64).copy()
        nodes = np.ones(values.shape, dtype=np.int64)
        for _ in range(self.depth):
            left = 2 * nodes
            left_sum = self.tree[left]
            go_right = values >= left_sum
            values = np.where(go_right, values - left_sum, values)
            nodes = np.where(go_right, left + 1, left)
        return np.minimum(nodes - self.size, self.capacity - 1)

    def sample(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """Stratified proportional sampling: one draw in each of ``batch_size`` equal slices."""
        total = self.total()
        if total <= 0:
            raise ValueError("cannot sample from an empty sum tree")
        bounds = (np.arange(batch_size) + rng.random(batch_size)) * (total / batch_size)
        return self.find_prefixsum(np.minimum(bounds, np.nextafter(total, 0)))
