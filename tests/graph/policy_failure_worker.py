"""The dqn_policy node with a learner that fails: ``python policy_failure_worker.py MODE --ros-args ...``.

MODE ``raise``: the first gradient step raises. MODE ``nan``: the first gradient step leaves NaN in the
online network and the priority update then fails as a NaN priority does (the sum tree's ValueError).
Learning is due at once (no warm-up), so the first Observation starts the failing learner.
"""

import sys

import numpy as np
import torch

from carla_rl.learner.dqn_agent import DQNAgent
from carla_rl.learner.segment_tree import SumTree
from carla_rl.nodes import dqn_policy_node


def failing_update(agent: DQNAgent):
    raise RuntimeError("injected learner failure")


def nan_update(agent: DQNAgent):
    with torch.no_grad():
        for parameter in agent.online.parameters():
            parameter.fill_(float("nan"))
    SumTree(4).update(np.array([0]), np.array([float("nan")]))


if __name__ == "__main__":
    mode = sys.argv.pop(1)
    DQNAgent.updates_due = lambda agent: agent.updates_per_call
    DQNAgent.update = {"raise": failing_update, "nan": nan_update}[mode]
    raise SystemExit(dqn_policy_node.main())
