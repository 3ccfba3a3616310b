"""call_idempotent re-sends a request whose answer was lost (the rmw_fastrtps discovery race) and
gives up after its timeout, leaving no pending request behind."""

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy missing: run through `make test`")

from rclpy.task import Future  # noqa: E402

from carla_rl.nodes.service_calls import call_idempotent  # noqa: E402


class LossyClient:
    """Answers only attempt number ``answer_on`` (1-based); earlier answers are 'lost'."""

    service_name = "/lossy"

    def __init__(self, answer_on: int | None):
        self.answer_on = answer_on
        self.sent, self.removed = [], []

    def call_async(self, request):
        future = Future()
        self.sent.append(future)
        if len(self.sent) == self.answer_on:
            future.set_result(f"answer to {request} #{len(self.sent)}")
        return future

    def remove_pending_request(self, future):
        self.removed.append(future)


@pytest.mark.ros
def test_a_lost_answer_is_recovered_by_resending(ros_node):
    client = LossyClient(answer_on=3)
    response = call_idempotent(ros_node, client, "phase 3", timeout=30.0, first_attempt_s=0.05)
    assert response == "answer to phase 3 #3"
    assert len(client.sent) == 3
    assert client.removed == client.sent[:2]  # the unanswered attempts are withdrawn


@pytest.mark.ros
def test_an_answer_to_the_first_request_is_not_resent(ros_node):
    client = LossyClient(answer_on=1)
    assert call_idempotent(ros_node, client, "status", timeout=30.0) == "answer to status #1"
    assert len(client.sent) == 1 and client.removed == []


@pytest.mark.ros
def test_no_answer_within_the_timeout_is_none(ros_node):
    client = LossyClient(answer_on=None)
    assert call_idempotent(ros_node, client, "status", timeout=0.5, first_attempt_s=0.1) is None
    assert client.sent and client.removed == client.sent  # nothing left pending
