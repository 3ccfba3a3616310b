"""carla <-> our data: with REAL carla types where the 0.9.16 wheel constructs them without a server
(Transform, Location, Rotation, Vector3D, VehicleControl); sensor buffers are built byte for byte in
CARLA's layouts (carla.Image / LidarMeasurement / RadarMeasurement cannot be constructed offline)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

carla = pytest.importorskip("carla", reason="the carla 0.9.16 client wheel is not installed")

from carla_rl.carla import carla_conversions as conv  # noqa: E402
from carla_rl.carla.carla_config import SensorMount  # noqa: E402
from carla_rl.contract.semantic_palette import PALETTE, SemanticTag  # noqa: E402
from carla_rl.contract.sensor_frame import TrafficLightState, VehicleControl  # noqa: E402


def test_transform_to_odometry_flips_y_and_negates_yaw():
    t = carla.Transform(carla.Location(x=10.0, y=5.0, z=0.3), carla.Rotation(pitch=0.0, yaw=90.0, roll=0.0))
    odom = conv.transform_to_odometry(t)
    assert (odom.x, odom.y, odom.z) == pytest.approx((10.0, -5.0, 0.3))
    # CARLA yaw +90 deg faces +y (left-handed: "right" of x) = -y in ENU, i.e. yaw -pi/2
    assert odom.yaw == pytest.approx(-math.pi / 2)
    fwd = t.get_forward_vector()  # real carla geometry agrees
    assert math.atan2(-fwd.y, fwd.x) == pytest.approx(odom.yaw, abs=1e-6)


@pytest.mark.parametrize("yaw_deg", [-170.0, -45.0, 0.0, 30.0, 135.0, 180.0])
def test_body_velocity_and_yaw_rate(yaw_deg):
    t = carla.Transform(carla.Location(), carla.Rotation(yaw=yaw_deg))
    fwd = t.get_forward_vector()
    speed = 7.0
    velocity = carla.Vector3D(x=fwd.x * speed, y=fwd.y * speed, z=0.0)
    odom = conv.transform_to_odometry(t, velocity, carla.Vector3D(0.0, 0.0, 30.0))
    assert odom.vx == pytest.approx(speed, abs=1e-4)
    assert odom.vy == pytest.approx(0.0, abs=1e-4)
    # +30 deg/s about CARLA's z (clockwise from above) is a right turn: -30 deg/s in ENU
    assert odom.yaw_rate == pytest.approx(-math.radians(30.0))
    assert conv.forward_speed(t, velocity) == pytest.approx(speed, abs=1e-4)
    assert conv.forward_speed(t, carla.Vector3D(-fwd.x * 2, -fwd.y * 2, 0)) == pytest.approx(-2.0, abs=1e-4)


def test_lateral_velocity_sign_is_left_positive():
    t = carla.Transform(carla.Location(), carla.Rotation(yaw=0.0))
    # moving towards CARLA -y = ENU +y = the vehicle's left
    odom = conv.transform_to_odometry(t, carla.Vector3D(0.0, -1.5, 0.0))
    assert odom.vy == pytest.approx(1.5)


def test_rotation_round_trip_and_quaternion():
    rot = carla.Rotation(pitch=10.0, yaw=-35.0, roll=4.0)
    roll, pitch, yaw = conv.rotation_to_rpy(rot)
    assert conv.rpy_to_rotation_deg(roll, pitch, yaw) == pytest.approx((10.0, -35.0, 4.0))
    qx, qy, qz, qw = conv.rpy_to_quaternion(0.0, 0.0, yaw)
    assert conv.quaternion_to_yaw(qx, qy, qz, qw) == pytest.approx(yaw)
    assert conv.location_to_enu(carla.Location(1, 2, 3)) == (1.0, -2.0, 3.0)
    assert conv.enu_to_location_xyz(*conv.location_to_enu(carla.Location(1, 2, 3))) == (1.0, 2.0, 3.0)


def test_mount_to_transform_builds_a_real_transform():
    t = conv.mount_to_transform(SensorMount(x=1.0, y=-0.5, z=20.0, pitch=-90.0, yaw=0.0, roll=0.0))
    assert isinstance(t, carla.Transform)
    assert (t.location.x, t.location.y, t.location.z) == pytest.approx((1.0, -0.5, 20.0))
    down = t.get_forward_vector()
    assert down.z == pytest.approx(-1.0, abs=1e-6)  # pitch -90 looks straight down


def test_vehicle_control_round_trip_and_sanitizing():
    ours = VehicleControl(throttle=0.7, steer=-0.3, brake=0.0, hand_brake=False, reverse=True)
    c = conv.to_carla_control(ours)
    assert isinstance(c, carla.VehicleControl)
    assert (c.throttle, c.steer, c.brake, c.reverse) == pytest.approx((0.7, -0.3, 0.0, True))
    back = conv.from_carla_control(c)
    assert back.throttle == pytest.approx(0.7) and back.steer == pytest.approx(-0.3) and back.reverse
    clipped = conv.to_carla_control(VehicleControl(throttle=2.0, steer=-3.0))
    assert (clipped.throttle, clipped.steer) == pytest.approx((1.0, -1.0))
    nan = conv.to_carla_control(VehicleControl(throttle=float("nan")))
    assert (nan.throttle, nan.brake) == (0.0, 1.0)


def test_bgra_to_rgb():
    h, w = 2, 3
    bgra = np.zeros((h, w, 4), dtype=np.uint8)
    bgra[..., 0], bgra[..., 1], bgra[..., 2], bgra[..., 3] = 10, 20, 30, 255
    rgb = conv.bgra_to_rgb(bgra.tobytes(), h, w)
    assert rgb.shape == (h, w, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0].tolist() == [30, 20, 10]
    with pytest.raises(ValueError):
        conv.bgra_to_rgb(b"\x00" * 5, h, w)


def test_semantic_raw_to_cityscapes_palette():
    h, w = 2, 2
    raw = np.zeros((h, w, 4), dtype=np.uint8)
    raw[0, 0, 2] = SemanticTag.ROAD
    raw[0, 1, 2] = SemanticTag.SIDEWALK
    raw[1, 0, 2] = SemanticTag.CAR
    raw[1, 1, 2] = 200  # not a tag
    rgb = conv.semantic_raw_to_rgb(raw.tobytes(), h, w)
    assert rgb[0, 0].tolist() == [128, 64, 128]
    assert rgb[0, 1].tolist() == PALETTE[SemanticTag.SIDEWALK].tolist()
    assert rgb[1, 0].tolist() == [0, 0, 142]
    assert rgb[1, 1].tolist() == [0, 0, 0]


def test_lidar_raw_flips_y():
    pts = np.array([[1.0, 2.0, 0.5, 0.9], [-3.0, -1.0, 0.0, 0.1]], dtype=np.float32)
    out = conv.lidar_raw_to_points(pts.tobytes())
    assert out.shape == (2, 4) and out.dtype == np.float32
    np.testing.assert_allclose(out[:, 1], [-2.0, 1.0])
    np.testing.assert_allclose(out[:, [0, 2, 3]], pts[:, [0, 2, 3]])
    assert conv.lidar_raw_to_points(b"").shape == (0, 4)
    with pytest.raises(ValueError):
        conv.lidar_raw_to_points(np.zeros(3, np.float32).tobytes())


def test_radar_raw_reorders_to_depth_azimuth_altitude_velocity():
    # carla::sensor::data::RadarDetection memory layout: velocity, azimuth, altitude, depth
    raw = np.array([[-2.5, 0.1, 0.02, 30.0]], dtype=np.float32)
    out = conv.radar_raw_to_detections(raw.tobytes())
    np.testing.assert_allclose(out, [[30.0, 0.1, 0.02, -2.5]], rtol=1e-6)
    dets = [SimpleNamespace(depth=30.0, azimuth=0.1, altitude=0.02, velocity=-2.5)]
    np.testing.assert_allclose(conv.radar_detections_to_array(dets), out, rtol=1e-6)
    assert conv.radar_detections_to_array([]).shape == (0, 4)


def test_events_and_light_states():
    ev = SimpleNamespace(other_actor=SimpleNamespace(id=42), normal_impulse=carla.Vector3D(1.0, -2.0, 0.5))
    col = conv.collision_to_event(ev)
    assert col.other_actor_id == 42 and col.normal_impulse == (1.0, -2.0, 0.5)
    inv = SimpleNamespace(crossed_lane_markings=[SimpleNamespace(type=carla.LaneMarkingType.Solid),
                                                 SimpleNamespace(type=carla.LaneMarkingType.Broken)])
    assert conv.lane_invasion_to_event(inv).crossed_lane_markings == (2, 1)
    assert conv.traffic_light_state(carla.TrafficLightState.Red) == TrafficLightState.RED
    assert conv.traffic_light_state(carla.TrafficLightState.Green) == TrafficLightState.GREEN
    assert conv.traffic_light_state(carla.TrafficLightState.Unknown) == TrafficLightState.UNKNOWN
    assert conv.traffic_light_state(None) == TrafficLightState.UNKNOWN
    assert conv.traffic_light_state(1) == TrafficLightState.YELLOW
