"""The curriculum manager logs at a human rate: the state save after every episode end at DEBUG, the
decisions a person follows (evaluation, phase change, end of training) at INFO."""

import types

import pytest

pytest.importorskip("rclpy", reason="rclpy missing: run through `make test`")

from carla_rl.curriculum import Decision, DecisionKind  # noqa: E402
from carla_rl.nodes.curriculum_manager_node import CurriculumManagerNode  # noqa: E402


class _Logger:
    def __init__(self):
        self.lines = []

    def debug(self, text):
        self.lines.append(("debug", text))

    def info(self, text):
        self.lines.append(("info", text))


def _apply(kind):
    logger = _Logger()
    done = []
    node = types.SimpleNamespace(get_logger=lambda: logger, save_state=lambda: done.append("save"),
                                 publish_scenario=lambda phase: done.append(("scenario", phase)),
                                 request_evaluation=lambda decision: done.append("evaluate"))
    CurriculumManagerNode.apply(node, Decision(kind, 2, f"{kind} message", episodes=5))
    return logger.lines, done


def test_the_save_after_each_episode_is_debug():
    lines, done = _apply(DecisionKind.SAVE)
    assert lines == [("debug", "save message")] and done == ["save"]


@pytest.mark.parametrize("kind,action", [(DecisionKind.EVALUATE, "evaluate"),
                                         (DecisionKind.PHASE_CHANGED, ("scenario", 2))])
def test_decisions_a_person_follows_are_info(kind, action):
    lines, done = _apply(kind)
    assert lines == [("info", f"{kind} message")] and done == [action]


def test_finished_is_info():
    lines, done = _apply(DecisionKind.FINISHED)
    assert lines == [("info", "finished message")] and done == []
