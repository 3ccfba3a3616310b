"""One-shot deadlines run by the spin loop (nodes/support/deadlines.py): the micro-batching window and the batch
link's wait, without an rclpy timer cancelled and reset many times a second."""

from carla_rl.nodes.support.deadlines import DeadlineSchedule


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_deadline_runs_once_when_due_and_not_before():
    clock = FakeClock()
    schedule = DeadlineSchedule(clock)
    ran = []
    deadline = schedule.create(lambda: ran.append(clock.now))
    assert schedule.wait_timeout(0.25) == 0.25 and schedule.run_due() == 0  # not armed: the loop waits fully
    deadline.arm(0.002)
    assert abs(schedule.wait_timeout(0.25) - 0.002) < 1e-12  # the loop waits no longer than the deadline
    clock.now += 0.001
    assert schedule.run_due() == 0 and not ran
    clock.now += 0.001
    assert schedule.run_due() == 1 and ran == [clock.now]
    assert not deadline.armed and schedule.run_due() == 0  # one-shot
    assert schedule.wait_timeout(0.25) == 0.25


def test_arm_if_idle_counts_the_wait_from_its_first_event_and_disarm_ends_it():
    clock = FakeClock()
    schedule = DeadlineSchedule(clock)
    ran = []
    deadline = schedule.create(lambda: ran.append(1))
    deadline.arm_if_idle(0.002)
    clock.now += 0.0015
    deadline.arm_if_idle(0.002)  # a later event of the same wait does not move it
    clock.now += 0.0005
    assert schedule.run_due() == 1 and ran == [1]
    deadline.arm_if_idle(0.002)
    deadline.disarm()  # the wait ended early (every env ready)
    clock.now += 1.0
    assert schedule.run_due() == 0 and ran == [1]


def test_an_overdue_deadline_makes_the_loop_not_wait_and_a_callback_may_arm_again():
    clock = FakeClock()
    schedule = DeadlineSchedule(clock)
    calls = []

    def hold_again():  # as the policy does while it holds the envs for the learner
        calls.append(clock.now)
        if len(calls) < 3:
            deadline.arm(0.002)

    deadline = schedule.create(hold_again)
    deadline.arm(0.002)
    clock.now += 0.01
    assert schedule.wait_timeout(0.25) == 0.0
    for _ in range(5):
        schedule.run_due()
        clock.now += 0.002
    assert len(calls) == 3 and not deadline.armed


def test_due_deadlines_run_in_order_and_a_removed_one_never_runs():
    clock = FakeClock()
    schedule = DeadlineSchedule(clock)
    order = []
    first, second, removed = (schedule.create(lambda n=n: order.append(n)) for n in ("first", "second", "removed"))
    second.arm(0.002)
    first.arm(0.001)
    removed.arm(0.0)
    schedule.remove(removed)
    clock.now += 0.01
    assert schedule.run_due() == 2 and order == ["first", "second"]
