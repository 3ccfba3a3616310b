"""Server lifecycle, config and CarlaWorld's behaviour without a server (none exists here)."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from carla_rl.carla.carla_config import (
    CarlaConfig,
    load_bridge_adapter_config,
    load_carla_config,
)
from carla_rl.carla.carla_world import SensorCollector, SensorTimeout
from carla_rl.carla.server_lifecycle import (
    CarlaConnectionError,
    Pacer,
    ServerLifecycle,
    backoff_delays,
)
from carla_rl.contract.config import ConfigError

REPO = Path(__file__).resolve().parents[2]
CARLA_YAML = REPO / "config" / "carla.yaml"


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fast_config(**kw) -> CarlaConfig:
    base = dict(host="127.0.0.1", port=_unused_port(), timeout_s=0.5, connect_timeout_s=0.5,
                reconnect_attempts=1, reconnect_backoff_s=0.0, reconnect_backoff_max_s=0.0)
    base.update(kw)
    return CarlaConfig(**base)


# -- config -------------------------------------------------------------------------------------

def test_carla_yaml_loads_both_blocks():
    cfg = load_carla_config(CARLA_YAML)
    assert cfg.port == 2000 and cfg.fixed_delta_seconds == pytest.approx(0.05)
    assert cfg.camera.mount.pitch == -90.0 and cfg.camera.mount.z > 0
    assert cfg.town_for("town") == "Town03"
    assert replace(cfg, town="Town10HD_Opt").town_for("straight") == "Town10HD_Opt"
    adapter = load_bridge_adapter_config(CARLA_YAML)
    assert cfg.role_name == "ego_vehicle" and adapter.spawn_ego
    assert adapter.fixed_delta_seconds == cfg.fixed_delta_seconds
    over = load_carla_config(CARLA_YAML, {"host": "carla", "lidar.channels": 64})
    assert over.host == "carla" and over.lidar.channels == 64
    # the two nodes mount the same sensors
    assert (adapter.camera, adapter.lidar, adapter.radar) == (cfg.camera, cfg.lidar, cfg.radar)


def test_config_errors_name_the_key(tmp_path):
    bad = tmp_path / "carla.yaml"
    bad.write_text("carla_client:\n  ros__parameters:\n    carla:\n      port: 70000\n")
    with pytest.raises(ConfigError, match="port"):
        load_carla_config(bad)
    bad.write_text("carla_client:\n  ros__parameters:\n    carla:\n      lidar: {lower_fov_deg: 10.0, upper_fov_deg: 0.0}\n")
    with pytest.raises(ConfigError, match="lower_fov_deg"):
        load_carla_config(bad)


# -- connection -----------------------------------------------------------------------------------

def test_unreachable_server_gives_a_one_line_error_quickly():
    pytest.importorskip("carla")
    cfg = _fast_config()
    t0 = time.monotonic()
    with pytest.raises(CarlaConnectionError) as info:
        ServerLifecycle(cfg).connect()
    assert time.monotonic() - t0 < 10.0
    message = str(info.value)
    assert "\n" not in message
    assert f"127.0.0.1:{cfg.port}" in message and "docker compose" in message


def test_carla_world_without_server_raises_the_clear_error():
    pytest.importorskip("carla")
    from carla_rl.carla.carla_world import CarlaWorld
    from carla_rl.contract.scenario import ScenarioConfig

    cfg = _fast_config()
    t0 = time.monotonic()
    with pytest.raises(CarlaConnectionError, match=rf"cannot reach the CARLA server at 127\.0\.0\.1:{cfg.port}"):
        CarlaWorld(cfg, ScenarioConfig(), seed=1)
    assert time.monotonic() - t0 < 10.0


def test_backoff_delays():
    assert backoff_delays(1.0, 5.0, 5) == [1.0, 2.0, 4.0, 5.0]
    assert backoff_delays(1.0, 5.0, 1) == []


class _FakeClient:
    """carla.Client double: fails ``fail_times`` times, then answers."""

    state = {"fail_times": 0, "calls": 0}

    def __init__(self, host, port):
        self.timeout = None

    def set_timeout(self, t):
        self.timeout = t

    def get_server_version(self):
        _FakeClient.state["calls"] += 1
        if _FakeClient.state["fail_times"] > 0:
            _FakeClient.state["fail_times"] -= 1
            raise RuntimeError("time-out of 500ms while waiting for the simulator")
        return "0.9.16"

    def get_world(self):
        return SimpleNamespace(get_snapshot=lambda: SimpleNamespace(frame=1234))


def test_reconnect_with_backoff_then_health_check():
    _FakeClient.state.update(fail_times=2, calls=0)
    sleeps = []
    lc = ServerLifecycle(_fast_config(reconnect_attempts=4, reconnect_backoff_s=0.5, reconnect_backoff_max_s=8.0),
                         client_factory=_FakeClient, sleep=sleeps.append)
    lc.connect()
    assert sleeps == [0.5, 1.0] and _FakeClient.state["calls"] == 3
    health = lc.health_check()
    assert health.ok and health.server_version == "0.9.16" and health.frame == 1234


def test_recover_restarts_through_the_command_when_reconnect_fails():
    _FakeClient.state.update(fail_times=1000, calls=0)
    commands = []

    def run(cmd):
        commands.append(cmd)
        _FakeClient.state["fail_times"] = 0  # the restarted server answers
        return 0

    cfg = _fast_config(reconnect_attempts=2, restart_command="docker compose restart carla")
    lc = ServerLifecycle(cfg, client_factory=_FakeClient, sleep=lambda s: None, run_command=run)
    lc.recover()
    assert commands == ["docker compose restart carla"] and lc.restarts == 1 and lc.client is not None


def test_recover_without_restart_command_is_a_clear_error():
    _FakeClient.state.update(fail_times=1000, calls=0)
    lc = ServerLifecycle(_fast_config(reconnect_attempts=1), client_factory=_FakeClient, sleep=lambda s: None)
    with pytest.raises(CarlaConnectionError, match="restart_command is empty"):
        lc.recover()


def test_pacer_real_time():
    now = [0.0]
    slept = []

    def sleep(s):
        slept.append(s)
        now[0] += s

    pacer = Pacer(0.05, 1.0, clock=lambda: now[0], sleep=sleep)
    pacer.wait()              # first tick: no wait
    now[0] += 0.01            # the tick took 10 ms
    pacer.wait()
    assert slept == [pytest.approx(0.04)]
    assert Pacer(0.05, 0.0).wait() == 0.0   # time_scale 0: as fast as possible


# -- sensor collection -----------------------------------------------------------------------------

def _data(frame, **kw):
    return SimpleNamespace(frame=frame, **kw)


def test_collector_waits_for_all_sensors_of_the_frame():
    col = SensorCollector()
    col.callback("collision")(_data(9, tag="old"))
    col.callback("camera")(_data(9))  # an older frame: dropped when 10 is collected

    def late():
        time.sleep(0.05)
        for name in ("camera", "lidar", "radar"):
            col.callback(name)(_data(10, name=name))
        col.callback("lane_invasion")(_data(10))
        col.callback("collision")(_data(11, tag="next"))

    threading.Thread(target=late).start()
    data, events = col.collect(10, timeout_s=2.0)
    assert {k: v.name for k, v in data.items()} == {"camera": "camera", "lidar": "lidar", "radar": "radar"}
    assert [e.tag for e in events["collision"]] == ["old"]
    assert len(events["lane_invasion"]) == 1
    for name in ("camera", "lidar", "radar"):
        col.callback(name)(_data(11))
    _, events = col.collect(11, timeout_s=0.1)
    assert [e.tag for e in events["collision"]] == ["next"]


def test_collector_timeout_names_the_missing_sensor():
    col = SensorCollector()
    col.callback("camera")(_data(5))
    col.callback("lidar")(_data(5))
    with pytest.raises(SensorTimeout, match="radar"):
        col.collect(5, timeout_s=0.05)
