"""Bridge adapter core against the REAL generated carla_msgs classes (test-only package built by the
``carla_msgs`` fixture) and the real std/geometry/nav/sensor/diagnostic message classes."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

from carla_rl.carla import bridge_adapter as ba
from carla_rl.carla.carla_config import BridgeAdapterConfig
from carla_rl.contract.sensor_frame import CollisionEvent, LaneInvasionEvent, TrafficLightState

geometry_msgs = pytest.importorskip("geometry_msgs.msg", reason="ROS 2 message packages are not installed")


def _interfaces():
    return pytest.importorskip("carla_rl_interfaces.msg",
                               reason="carla_rl_interfaces is not built (source install/setup.bash)")


# -- conversions ----------------------------------------------------------------------------------

def test_collision_and_lane_invasion_from_real_carla_msgs(carla_msgs):
    msg, _ = carla_msgs
    col = msg.CarlaCollisionEvent(other_actor_id=17)
    col.normal_impulse.x, col.normal_impulse.y, col.normal_impulse.z = 120.0, -3.5, 0.25
    assert ba.collision_from_msg(col) == CollisionEvent(17, (120.0, -3.5, 0.25))
    inv = msg.CarlaLaneInvasionEvent(crossed_lane_markings=[msg.CarlaLaneInvasionEvent.LANE_MARKING_SOLID, 1])
    assert ba.lane_invasion_from_msg(inv) == LaneInvasionEvent((2, 1))
    # and back into a carla_msgs instance (our interface has the same fields)
    again = ba.fill_collision_msg(msg.CarlaCollisionEvent(), ba.collision_from_msg(col), col.header)
    assert again == col
    inv2 = ba.fill_lane_invasion_msg(msg.CarlaLaneInvasionEvent(), ba.lane_invasion_from_msg(inv))
    assert list(inv2.crossed_lane_markings) == [2, 1]


def test_events_into_our_interfaces(carla_msgs):
    ours = _interfaces()
    msg, _ = carla_msgs
    col = msg.CarlaCollisionEvent(other_actor_id=5)
    col.header.stamp.sec, col.header.frame_id = 12, "ego_vehicle/collision"
    out = ba.fill_collision_msg(ours.CollisionEvent(), ba.collision_from_msg(col), col.header)
    assert out.other_actor_id == 5 and out.header.stamp.sec == 12
    inv = ba.fill_lane_invasion_msg(ours.LaneInvasionEvent(), LaneInvasionEvent((9,)))
    assert list(inv.crossed_lane_markings) == [ours.LaneInvasionEvent.LANE_MARKING_CURB]


def test_vehicle_status_and_status(carla_msgs):
    msg, _ = carla_msgs
    st = msg.CarlaEgoVehicleStatus(velocity=8.5)
    st.orientation.z, st.orientation.w = math.sin(0.3), math.cos(0.3)  # yaw 0.6 rad
    st.acceleration.linear.x = 1.25
    st.control.throttle, st.control.steer, st.control.reverse = 0.4, -0.2, True
    out = ba.vehicle_status_from_msg(st)
    assert out.speed == pytest.approx(8.5) and out.yaw == pytest.approx(0.6)
    assert out.acceleration[0] == pytest.approx(1.25)
    assert out.control.throttle == pytest.approx(0.4) and out.control.reverse
    status = ba.status_from_msg(msg.CarlaStatus(frame=4242, fixed_delta_seconds=0.05, synchronous_mode=True,
                                                synchronous_mode_running=True))
    assert status == ba.BridgeStatus(4242, pytest.approx(0.05), True, True)


def _command(throttle=0.5, steer=0.1, brake=0.0, reset=False):
    control = SimpleNamespace(throttle=throttle, steer=steer, brake=brake, hand_brake=False, reverse=False,
                              manual_gear_shift=False, gear=0)
    return SimpleNamespace(control=control, reset_episode=reset)


def test_vehicle_command_to_carla_ego_vehicle_control(carla_msgs):
    msg, _ = carla_msgs
    out, invalid = ba.fill_ego_control_msg(msg.CarlaEgoVehicleControl(), _command(0.5, 0.1))
    assert (out.throttle, out.steer, out.brake, invalid) == (pytest.approx(0.5), pytest.approx(0.1), 0.0, False)
    out, invalid = ba.fill_ego_control_msg(msg.CarlaEgoVehicleControl(), _command(1.7, -2.0))
    assert (out.throttle, out.steer, invalid) == (1.0, -1.0, True)
    out, invalid = ba.fill_ego_control_msg(msg.CarlaEgoVehicleControl(), _command(float("nan")))
    assert (out.throttle, out.brake, invalid) == (0.0, 1.0, True)
    out, _ = ba.fill_ego_control_msg(msg.CarlaEgoVehicleControl(), _command(0.9, reset=True))
    assert (out.throttle, out.brake) == (0.0, 1.0)


def test_our_vehicle_command_message(carla_msgs):
    ours = _interfaces()
    msg, _ = carla_msgs
    cmd = ours.VehicleCommand(step_id=7, action_index=2)
    cmd.control.throttle, cmd.control.steer = 0.3, 0.5
    out, invalid = ba.fill_ego_control_msg(msg.CarlaEgoVehicleControl(), cmd, cmd.header)
    assert out.throttle == pytest.approx(0.3) and out.steer == pytest.approx(0.5) and not invalid


def test_odometry_image_and_point_clouds():
    nav = pytest.importorskip("nav_msgs.msg")
    sensor = pytest.importorskip("sensor_msgs.msg")
    od = nav.Odometry()
    od.pose.pose.position.x, od.pose.pose.position.y = 3.0, -4.0
    od.pose.pose.orientation.z, od.pose.pose.orientation.w = math.sin(-0.25), math.cos(-0.25)
    od.twist.twist.linear.x, od.twist.twist.angular.z = 6.0, 0.1
    o = ba.odometry_from_msg(od)
    assert (o.x, o.y, o.vx, o.yaw_rate) == pytest.approx((3.0, -4.0, 6.0, 0.1))
    assert o.yaw == pytest.approx(-0.5)

    bgra = np.zeros((2, 3, 4), np.uint8)
    bgra[..., 0], bgra[..., 2] = 142, 0  # CityScapes car (0, 0, 142) in BGRA
    img = sensor.Image(height=2, width=3, encoding="bgra8", step=12, data=bgra.tobytes())
    assert ba.bgra_image_to_rgb(img)[0, 0].tolist() == [0, 0, 142]

    # the bridge's radar layout: 7 float32 fields with a 4-byte gap before ElevationAngle (offset 28)
    pf = sensor.PointField
    names = ["x", "y", "z", "Range", "Velocity", "AzimuthAngle", "ElevationAngle"]
    offsets = [0, 4, 8, 12, 16, 20, 28]
    fields = [pf(name=n, offset=o, datatype=pf.FLOAT32, count=1) for n, o in zip(names, offsets)]
    rec = np.zeros(2, dtype=np.dtype({"names": names, "formats": ["<f4"] * 7, "offsets": offsets,
                                      "itemsize": 32}))
    rec["Range"], rec["Velocity"], rec["AzimuthAngle"], rec["ElevationAngle"] = [10, 20], [-1, 2], [0.1, -0.2], \
        [0.01, 0.02]
    cloud = sensor.PointCloud2(height=1, width=2, fields=fields, is_bigendian=False, point_step=32,
                               row_step=64, data=rec.tobytes(), is_dense=True)
    out = ba.pointcloud_to_array(cloud, ["Range", "AzimuthAngle", "ElevationAngle", "Velocity"])
    np.testing.assert_allclose(out, [[10, 0.1, 0.01, -1], [20, -0.2, 0.02, 2]], rtol=1e-6)
    with pytest.raises(ValueError, match="intensity"):
        ba.pointcloud_to_array(cloud, ["intensity"])


def test_step_id_from_stamp():
    stamp = SimpleNamespace(sec=12, nanosec=350_000_000)
    assert ba.step_id_from_stamp(stamp, 0.05) == 247


# -- watchdog -------------------------------------------------------------------------------------

def _status(frame, running=True):
    return ba.BridgeStatus(frame=frame, fixed_delta_seconds=0.05, synchronous_mode=True,
                           synchronous_mode_running=running)


def test_status_monitor_stall_restart_and_missing_bridge(carla_msgs):
    msg, _ = carla_msgs
    mon = ba.StatusMonitor(timeout_s=2.0)
    mon.start(0.0)
    assert mon.check(1.0).action is ba.Recovery.NONE
    assert mon.check(2.5).action is ba.Recovery.WAIT_FOR_BRIDGE
    real = msg.CarlaStatus(frame=100, fixed_delta_seconds=0.05, synchronous_mode=True,
                           synchronous_mode_running=True)
    assert mon.on_status(ba.status_from_msg(real), 3.0).action is ba.Recovery.NONE
    mon.on_status(_status(101), 3.1)
    assert mon.check(4.0).action is ba.Recovery.NONE
    mon.on_status(_status(101), 4.5)            # same frame again: no advance
    stall = mon.check(5.2)
    assert stall.action is ba.Recovery.RESTART_SERVER and "101" in stall.reason
    assert mon.check(6.0).action is ba.Recovery.NONE   # reported once per stall
    restart = mon.on_status(_status(3), 30.0)   # the frame counter went backwards
    assert restart.action is ba.Recovery.RESPAWN_EGO and mon.restarts == 1
    mon.on_status(_status(4), 30.1)
    assert mon.check(31.0).action is ba.Recovery.NONE
    assert mon.on_status(_status(5, running=False), 31.5).action is ba.Recovery.RESUME
    assert mon.check(60.0).action is ba.Recovery.NONE  # paused on purpose: not a stall


# -- tick assembly ----------------------------------------------------------------------------------

def test_tick_assembler_releases_complete_ticks_after_the_settle_time():
    asm = ba.TickAssembler(settle_s=0.02, timeout_s=1.0)
    t = 100 * 50_000_000
    for name in ba.REQUIRED_TOPICS[:-1]:
        asm.add(name, t, name, now=0.0)
    asm.add_event("collision", t, "c1", now=0.0)
    assert asm.release(0.5) == []                      # odometry missing
    asm.add("odometry", t, "odometry", now=0.5)
    assert asm.release(0.51) == []                     # settling
    asm.add_event("lane_invasion", t, "l1", now=0.515)
    (tick,) = asm.release(0.53)
    assert tick.stamp_ns == t and set(tick.messages) == set(ba.REQUIRED_TOPICS)
    assert tick.events == {"collision": ["c1"], "lane_invasion": ["l1"]}
    # a late event of the released tick counts in the next one; a stale message is ignored
    asm.add_event("collision", t, "late", now=0.6)
    asm.add("camera", t, "stale", now=0.6)
    t2 = t + 50_000_000
    for name in ba.REQUIRED_TOPICS:
        asm.add(name, t2, name, now=0.6)
    (tick2,) = asm.release(0.7)
    assert tick2.events["collision"] == ["late"]


def test_tick_assembler_drops_incomplete_ticks_after_the_timeout():
    asm = ba.TickAssembler(settle_s=0.0, timeout_s=0.5)
    asm.add("camera", 1, "x", now=0.0)          # never completed
    for name in ba.REQUIRED_TOPICS:
        asm.add(name, 2, name, now=0.1)
    assert asm.release(0.2) == []               # the older tick blocks (order is kept) ...
    (tick,) = asm.release(0.6)                  # ... until it times out
    assert tick.stamp_ns == 2 and asm.dropped == 1


# -- spawning -----------------------------------------------------------------------------------------

def test_objects_definition_json_and_spawn_requests(carla_msgs):
    _, srv = carla_msgs
    diagnostic = pytest.importorskip("diagnostic_msgs.msg")
    cfg = BridgeAdapterConfig()
    definition = json.loads(ba.objects_definition_json(cfg))
    ego = next(o for o in definition["objects"] if o["id"] == "ego_vehicle")
    assert ego["type"] == "vehicle.tesla.model3" and "spawn_point" not in ego
    sensors = {s["id"]: s for s in ego["sensors"]}
    assert set(sensors) >= {"semantic_bev", "lidar", "radar_front", "collision", "lane_invasion", "odometry",
                            "control"}
    cam = sensors["semantic_bev"]
    assert cam["type"] == "sensor.camera.semantic_segmentation"
    # CARLA pitch -90 (looking down) is +90 in the ROS-frame spawn_point the bridge expects
    assert cam["spawn_point"]["pitch"] == 90.0 and cam["spawn_point"]["z"] == cfg.camera.mount.z
    assert cam["image_size_x"] == cfg.camera.width
    assert sensors["lidar"]["rotation_frequency"] == cfg.lidar.rotation_frequency_hz
    assert {o["type"] for o in definition["objects"]} >= {"sensor.pseudo.traffic_lights"}
    # topics the adapter subscribes follow the ids
    topics = ba.bridge_topics("ego_vehicle")
    assert topics["camera"] == "/carla/ego_vehicle/semantic_bev/image"
    assert topics["set_transform"] == "/carla/ego_vehicle/control/set_transform"

    specs = ba.spawn_specs(definition)
    ego_index = next(i for i, s in enumerate(specs) if s.id == "ego_vehicle")
    assert specs[ego_index].random_pose and specs[ego_index].parent == -1
    children = [s for s in specs if s.parent == ego_index]
    assert len(children) == len(ego["sensors"])
    cam_spec = next(s for s in specs if s.id == "semantic_bev")
    assert ("image_size_x", str(cfg.camera.width)) in cam_spec.attributes
    req = ba.fill_spawn_request(srv.SpawnObject.Request(), cam_spec, attach_to=321,
                                key_value_cls=diagnostic.KeyValue)
    assert req.type == "sensor.camera.semantic_segmentation" and req.attach_to == 321
    assert not req.random_pose and req.transform.position.z == pytest.approx(cfg.camera.mount.z)
    # pitch +90 deg about y: quaternion (0, sin 45, 0, cos 45)
    assert req.transform.orientation.y == pytest.approx(math.sqrt(0.5))
    assert {kv.key for kv in req.attributes} >= {"image_size_x", "image_size_y", "fov"}


# -- situation ----------------------------------------------------------------------------------------

def test_traffic_lights_from_real_info_and_status(carla_msgs):
    msg, _ = carla_msgs
    info = msg.CarlaTrafficLightInfo(id=11)
    info.transform.position.x, info.transform.position.y = 40.0, 0.0
    info.transform.orientation.z, info.transform.orientation.w = math.sin(math.pi / 4), math.cos(math.pi / 4)
    info.trigger_volume.center.x = 2.0         # 2 m ahead of the light, rotated by its yaw (90 deg)
    info.trigger_volume.size.x, info.trigger_volume.size.y = 2.0, 2.0
    lights = ba.lights_from_info(msg.CarlaTrafficLightInfoList(traffic_lights=[info]))
    assert (lights[11].x, lights[11].y) == pytest.approx((40.0, 2.0))
    status = msg.CarlaTrafficLightStatusList(
        traffic_lights=[msg.CarlaTrafficLightStatus(id=11, state=msg.CarlaTrafficLightStatus.RED)])
    ba.apply_light_status(lights, status)
    assert lights[11].state == TrafficLightState.RED


def test_situation_tracker_on_a_real_map(carla_msgs):
    carla = pytest.importorskip("carla")
    from xodr_maps import two_road_map

    cfg = BridgeAdapterConfig()
    tracker = ba.SituationTracker(cfg, seed=4)
    from carla_rl.contract.sensor_frame import Odometry

    sit = tracker.situation(10, Odometry(), 1, 0)     # no map yet: counters and events only
    assert sit.collision_events == 1 and sit.episode_step == 0
    tracker.set_map(carla.Map("t", two_road_map()))
    scenario = SimpleNamespace(route_length_m=60.0)
    pose = tracker.new_episode(evaluation=True, scenario=scenario, phase=3)
    assert pose is not None and tracker.route.shape[1] == 2 and tracker.route_version == 1
    x, y, z, yaw = pose
    assert z == pytest.approx(cfg.spawn_height_m)
    assert tuple(tracker.route[0]) == pytest.approx((x, y), abs=1e-4)
    s0 = tracker.situation(20, Odometry(x=x, y=y, yaw=yaw), 0, 2)
    assert (s0.episode_id, s0.episode_step, s0.phase, s0.evaluation) == (1, 0, 3, True)
    assert s0.lane_invasion_events == 2 and not s0.on_sidewalk and not s0.off_road
    assert s0.route_remaining_m == pytest.approx(tracker.tracker.length_m, abs=1e-3)
    assert abs(s0.lateral_offset_m) < 1e-3 and abs(s0.heading_error_rad) < 1e-3
    far = tracker.situation(21, Odometry(x=x, y=y + 40.0, yaw=yaw), 0, 0)
    assert far.off_road


def test_frame_from_a_tick_of_real_bridge_messages(carla_msgs):
    msg, _ = carla_msgs
    nav = pytest.importorskip("nav_msgs.msg")
    sensor = pytest.importorskip("sensor_msgs.msg")
    stamp_ns = 250 * 50_000_000                  # tick 250 at 0.05 s
    od = nav.Odometry()
    od.header.stamp.sec, od.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    od.pose.pose.position.x, od.twist.twist.linear.x = 12.0, 4.0
    od.pose.pose.orientation.w = 1.0
    cam = np.zeros((4, 4, 4), np.uint8)
    cam[..., 0], cam[..., 1], cam[..., 2] = 128, 64, 128   # road (128, 64, 128) in BGRA
    image = sensor.Image(height=4, width=4, encoding="bgra8", step=16, data=cam.tobytes())
    pf = sensor.PointField

    def cloud(names, rows):
        rows = np.asarray(rows, np.float32)
        return sensor.PointCloud2(height=1, width=len(rows), is_bigendian=False, point_step=4 * len(names),
                                  row_step=4 * len(names) * len(rows), data=rows.tobytes(), is_dense=True,
                                  fields=[pf(name=n, offset=4 * i, datatype=pf.FLOAT32, count=1)
                                          for i, n in enumerate(names)])

    lidar = cloud(["x", "y", "z", "intensity"], [[1, 2, 3, 0.5]])
    radar = cloud(["x", "y", "z", "Range", "Velocity", "AzimuthAngle", "ElevationAngle"],
                  [[0, 0, 0, 20.0, -1.5, 0.1, 0.05]])
    tick = ba.Tick(stamp_ns=stamp_ns, messages={"camera": image, "lidar": lidar, "radar": radar,
                                                "odometry": od})
    col = msg.CarlaCollisionEvent(other_actor_id=3)
    tick.events["collision"].append(col)
    tracker = ba.SituationTracker(BridgeAdapterConfig())
    frame = ba.frame_from_tick(tick, tracker, 0.05)
    assert frame.step_id == 250 and frame.sim_time == pytest.approx(12.5)
    assert frame.camera.shape == (4, 4, 3) and frame.camera[0, 0].tolist() == [128, 64, 128]
    np.testing.assert_allclose(frame.lidar, [[1, 2, 3, 0.5]])
    np.testing.assert_allclose(frame.radar, [[20.0, 0.1, 0.05, -1.5]], rtol=1e-6)
    assert frame.odometry.x == 12.0 and frame.speed == 4.0
    assert frame.situation.collision_events == 1 and frame.collisions[0].other_actor_id == 3
    assert frame.situation.step_id == 250


def test_reset_gate_holds_ticks_until_the_teleport_applied():
    gate = ba.ResetGate(tolerance_m=2.0, max_ticks=3)
    assert gate.passes(0.0, 0.0)                 # not armed
    gate.arm((100.0, 50.0))
    assert not gate.passes(0.0, 0.0)             # the bridge ticked before the teleport
    assert gate.passes(100.5, 50.2)
    gate.arm((100.0, 50.0))
    assert [gate.passes(0.0, 0.0) for _ in range(4)] == [False, False, False, True]  # gives up
