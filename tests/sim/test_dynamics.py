"""Ego kinematic bicycle model and CARLA's control rules."""

from __future__ import annotations

import math

import numpy as np
import pytest

from carla_rl.contract.sensor_frame import VehicleControl

from sim_helpers import make_world


def _place(world, x=100.0, y=-1.75, yaw=0.0, speed=0.0):
    world.x, world.y, world.yaw, world.speed = x, y, yaw, speed


def test_straight_line_keeps_heading(sim_config):
    world = make_world(sim_config)
    _place(world)
    for _ in range(60):
        frame = world.step(VehicleControl(throttle=1.0))
    assert world.yaw == pytest.approx(0.0, abs=1e-12)
    assert world.y == pytest.approx(-1.75, abs=1e-9)
    assert world.x > 100.0 + 10.0
    assert frame.odometry.vx == pytest.approx(frame.speed)


def test_turning_radius_matches_wheelbase_and_steer(sim_config):
    world = make_world(sim_config)
    _place(world, speed=3.0)
    steer = -1.0  # - = left: counter-clockwise circle
    wb = sim_config.vehicle.wheelbase_m
    delta = abs(steer) * math.radians(sim_config.vehicle.max_steer_deg)
    rear = []
    for _ in range(200):
        world.speed = 3.0
        world.step(VehicleControl(steer=steer))
        rear.append(
            (world.x - wb / 2 * math.cos(world.yaw), world.y - wb / 2 * math.sin(world.yaw))
        )
    rear = np.array(rear)
    # Algebraic circle fit of the rear-axle track.
    a = np.c_[2 * rear, np.ones(len(rear))]
    b = (rear**2).sum(axis=1)
    cx, cy, c = np.linalg.lstsq(a, b, rcond=None)[0]
    radius = math.sqrt(c + cx**2 + cy**2)
    assert radius == pytest.approx(wb / math.tan(delta), rel=1e-3)
    assert world.yaw_rate > 0.0  # steering left turns counter-clockwise


def test_steer_right_turns_clockwise(sim_config):
    world = make_world(sim_config)
    _place(world, speed=3.0)
    world.step(VehicleControl(steer=0.5))
    assert world.yaw < 0.0 and world.yaw_rate < 0.0


def test_nan_control_brakes_and_is_counted(sim_config):
    world = make_world(sim_config)
    _place(world, speed=10.0)
    before = world.invalid_controls
    world.step(VehicleControl(throttle=float("nan"), steer=0.0))
    assert world.invalid_controls == before + 1
    assert world.speed < 10.0 - 0.9 * sim_config.vehicle.max_brake_mps2 * world.dt


def test_out_of_range_controls_are_clipped_and_counted(sim_config):
    a = make_world(sim_config)
    b = make_world(sim_config)
    for w in (a, b):
        _place(w)
    for _ in range(20):
        a.step(VehicleControl(throttle=7.0, steer=-3.0))
        b.step(VehicleControl(throttle=1.0, steer=-1.0))
    assert (a.x, a.y, a.yaw) == (b.x, b.y, b.yaw)
    assert a.invalid_controls == 20 and b.invalid_controls == 0


def test_reverse_gear_drives_backwards_and_brake_stops(sim_config):
    world = make_world(sim_config)
    _place(world)
    for _ in range(40):
        world.step(VehicleControl(throttle=1.0, reverse=True))
    assert world.speed < 0.0 and world.x < 100.0
    assert world.speed >= -sim_config.vehicle.reverse_max_speed_mps
    for _ in range(40):
        world.step(VehicleControl(brake=1.0))
    assert world.speed == 0.0
