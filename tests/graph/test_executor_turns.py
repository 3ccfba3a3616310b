"""A container's executor turn spins again after a spin that ran a timer (node_runner.spin_turn).

A turn runs one callback and the container then drains its in-process queue for up to a few ms. A timer
that is due at every turn (the policy's micro-batching window while its own envs keep arriving) then takes
the turns from the DDS samples: with a 0.5-ms window, 16 envs under `halves`, the policy's container took
no more of the other container's batches after the first seconds (docs/benchmarks/graph_s9/NOTES.md §3)."""

import pytest

from carla_rl.nodes.node_runner import TIMER_TURNS, spin_turn


class ScriptedExecutor:
    """spin_once runs the next scripted callback: 'timer' (sets the flag) or 'sample'."""

    def __init__(self, script: list[str]) -> None:
        self.script = list(script)
        self.ran: list[str] = []
        self.timeouts: list[float] = []
        self.timer_ran = False

    def spin_once(self, timeout_sec: float) -> None:
        self.timeouts.append(timeout_sec)
        if self.script:
            what = self.script.pop(0)
            self.ran.append(what)
            self.timer_ran = self.timer_ran or what == "timer"

    def take_timer_ran(self) -> bool:
        ran, self.timer_ran = self.timer_ran, False
        return ran


def test_a_turn_spins_again_after_a_timer_until_a_sample_ran():
    executor = ScriptedExecutor(["timer", "timer", "sample", "sample"])
    assert spin_turn(executor, 0.25, executor.take_timer_ran) == 3
    assert executor.ran == ["timer", "timer", "sample"]
    assert executor.timeouts == [0.25, 0.0, 0.0]  # only the first spin may wait


def test_a_turn_that_ran_no_timer_is_one_spin():
    executor = ScriptedExecutor(["sample", "timer"])
    assert spin_turn(executor, 0.0, executor.take_timer_ran) == 1
    assert spin_turn(executor, 0.0) == 1  # no timer_ran hook: one spin, whatever ran


def test_a_turn_is_bounded_while_timers_keep_running():
    executor = ScriptedExecutor(["timer"] * (TIMER_TURNS + 3))
    assert spin_turn(executor, 0.0, executor.take_timer_ran) == TIMER_TURNS
    assert not executor.take_timer_ran()  # the flag of the last spin was taken


def test_a_composed_nodes_timer_tells_its_bus(context):
    pytest.importorskip("rclpy", reason="rclpy missing: run through `make test`")
    from rclpy.experimental import EventsExecutor

    from carla_rl.nodes.intra_process import ComposableNode, IntraProcessBus

    bus = IntraProcessBus()
    node = ComposableNode("timer_node", intra_process=bus, context=context)
    fired = []
    node.create_timer(0.001, lambda: fired.append(1))
    executor = EventsExecutor(context=context)
    executor.add_node(node)
    try:
        assert not bus.take_timer_ran()
        for _ in range(200):  # each spin waits up to 50 ms for the 1-ms timer
            executor.spin_once(timeout_sec=0.05)
            if fired:
                break
        assert fired and bus.take_timer_ran() and not bus.take_timer_ran()
    finally:
        executor.remove_node(node)
        node.destroy_node()
        executor.shutdown()
