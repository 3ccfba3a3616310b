"""carla-rl bench chain: the bare three-process chain that gives the machine's messaging floor. Its
source counts only the window's answered ticks, ignores answers to ticks it has moved past, and the
whole chain runs as processes that all end."""

import json
import types

import pytest

pytest.importorskip("rclpy", reason="rclpy missing: run through `make test`")

from carla_rl.nodes.support import bench_chain  # noqa: E402
from carla_rl.nodes.support.bench_chain import WARMUP_TICKS, _Source  # noqa: E402


class _Endpoint:
    def __init__(self, callback=None):
        self.published = []
        self.callback = callback

    def publish(self, msg):
        self.published.append(msg)


class _FakeNode:
    def __init__(self):
        self.publishers, self.subscriptions = [], []

    def create_publisher(self, _type, _topic, _qos):
        self.publishers.append(_Endpoint())
        return self.publishers[-1]

    def create_subscription(self, _type, _topic, callback, _qos):
        self.subscriptions.append(_Endpoint(callback))
        return self.subscriptions[-1]


def _answer(source, env, step_id=None):
    source.on_command(env, types.SimpleNamespace(step_id=source.step[env] if step_id is None else step_id))


def test_source_counts_the_window_only_and_ignores_answers_to_old_ticks(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(bench_chain.time, "perf_counter", lambda: clock[0])
    source = _Source(_FakeNode(), envs=2, seconds=1.0)
    source.start()
    assert source.step == [1, 1]
    for _ in range(WARMUP_TICKS):          # warm-up: env 0 and env 1 answered WARMUP_TICKS times
        _answer(source, 0)
        _answer(source, 1)
    assert source.window_start == 100.0 and source.window_steps == 0
    clock[0] = 100.002
    _answer(source, 0)
    _answer(source, 1, step_id=source.step[1] - 1)   # an answer to a tick env 1 has moved past
    assert source.window_steps == 1 and source.latencies_ms == [pytest.approx(2.0)]
    clock[0] = 102.0                                  # past the window: the next answer ends it
    _answer(source, 1)
    assert source.done and source.window_steps == 2
    report = source.report()
    assert report["steps_per_s"] == 1.0 and report["seconds"] == 2.0
    assert report["p50_ms"] <= report["p99_ms"]
    image_publisher = source.image_pubs[0]
    assert len(image_publisher.published) == WARMUP_TICKS + 2  # start + one tick per answer
    image = image_publisher.published[-1]
    assert (image.height, image.width, image.encoding) == (84, 84, "rgb8")
    assert len(image.data) == 84 * 84 * 3


def test_bench_chain_runs_the_three_processes(capsys):
    from carla_rl.cli.main import main

    assert main(["bench", "chain", "--envs", "2", "--seconds", "0.5", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["envs"] == 2
    assert result["steps_per_s"] > 0
    assert 0 < result["p50_ms"] <= result["p99_ms"]
    assert result["cpu_model"] and result["torch_cpu_capability"]
