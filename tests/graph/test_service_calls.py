"""call_idempotent re-sends a request whose answer was lost (the rmw_fastrtps discovery race) and
gives up after its timeout, leaving no pending request behind."""

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy missing: run through `make test`")

from rclpy.task import Future  # noqa: E402

from carla_rl.nodes.support.service_calls import call_idempotent  # noqa: E402


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


class ReadyClient:
    """A client whose service is up when ``ready``; the test answers its futures by hand."""

    def __init__(self):
        self.ready = False
        self.sent, self.removed = [], []

    def service_is_ready(self):
        return self.ready

    def call_async(self, request):
        future = Future()
        self.sent.append((request, future))
        return future

    def remove_pending_request(self, future):
        self.removed.append(future)


def test_resent_requests_wait_for_the_service_and_resend_until_answered():
    from carla_rl.nodes.support.service_calls import ResentRequests

    now = [0.0]
    client = ReadyClient()
    answers = []
    requests = ResentRequests(client, resend_s=2.0, on_answer=lambda *a: answers.append(a), clock=lambda: now[0])
    requests.submit("learning", "off")
    assert client.sent == [] and "learning" in requests.pending  # service not up: kept, not dropped
    requests.poll()
    assert client.sent == []
    client.ready = True
    requests.poll()                                   # the service came up: sent at the next poll
    assert [r for r, _ in client.sent] == ["off"] and requests.counts["sent"] == 1
    now[0] = 1.0
    requests.poll()                                   # in flight, not yet resend_s old: not sent again
    assert len(client.sent) == 1
    now[0] = 2.5
    requests.poll()                                   # the answer was lost: sent again, the old attempt dropped
    assert len(client.sent) == 2 and client.removed == [client.sent[0][1]] and requests.counts["resent"] == 1
    client.sent[1][1].set_result("ok")
    assert answers == [("learning", "off", "ok")] and not requests.pending
    now[0] = 10.0
    requests.poll()
    assert len(client.sent) == 2                      # answered: never sent again


def test_a_newer_request_replaces_an_unanswered_one():
    from carla_rl.nodes.support.service_calls import ResentRequests

    client = ReadyClient()
    client.ready = True
    requests = ResentRequests(client, resend_s=2.0, clock=lambda: 0.0)
    requests.submit("learning", "off")
    requests.submit("learning", "on")                 # resume after pause: the latest wish wins
    assert client.removed == [client.sent[0][1]]
    client.sent[0][1].set_result("late answer to off")  # an answer to the replaced request clears nothing
    assert requests.pending["learning"][0] == "on"
    client.sent[1][1].set_result("ok")
    assert not requests.pending
    requests.submit("best_phase_1", "save")           # other keys are independent
    requests.submit("phase_complete_1", "save")
    assert set(requests.pending) == {"best_phase_1", "phase_complete_1"}


def test_without_resend_a_request_waits_for_the_service_then_goes_once():
    from carla_rl.nodes.support.service_calls import ResentRequests

    now = [0.0]
    client = ReadyClient()
    requests = ResentRequests(client, resend_s=None, clock=lambda: now[0])
    requests.submit("best_phase_2", "save")
    requests.poll()
    assert client.sent == [] and "best_phase_2" in requests.pending   # held while the service is down
    client.ready = True
    requests.poll()
    assert [r for r, _ in client.sent] == ["save"] and not requests.pending
    now[0] = 100.0
    requests.poll()
    assert len(client.sent) == 1                                      # never sent again, answered or not
    client.sent[0][1].set_result("ok")
    assert requests.counts["answered"] == 1
