"""SubscriberCheck: the middleware is asked at most once per refresh period, and the answer follows it."""

from carla_rl.nodes.support.subscriber_check import SubscriberCheck


class FakePublisher:
    def __init__(self) -> None:
        self.count = 0
        self.queries = 0

    def get_subscription_count(self) -> int:
        self.queries += 1
        return self.count


def test_cached_within_the_refresh_period():
    pub = FakePublisher()
    check = SubscriberCheck(pub, refresh_s=3600.0)
    assert check() is False and pub.queries == 1
    pub.count = 2
    assert [check() for _ in range(100)] == [False] * 100  # trusted for the period
    assert pub.queries == 1


def test_asked_again_after_the_refresh_period():
    pub = FakePublisher()
    check = SubscriberCheck(pub, refresh_s=-1.0)  # a negative period: every call asks
    assert check() is False
    pub.count = 1
    assert check() is True
    pub.count = 0
    assert check() is False
    assert pub.queries == 3


def test_counts_beyond_the_local_subscriptions():
    """The intra-process publisher's question: subscribers beyond the in-process ones."""
    pub = FakePublisher()
    local = [1]
    check = SubscriberCheck(pub, refresh_s=-1.0, local=lambda: local[0])
    pub.count = 1
    assert check() is False  # only the in-process one
    pub.count = 2
    assert check() is True
    local[0] = 2
    assert check() is False
