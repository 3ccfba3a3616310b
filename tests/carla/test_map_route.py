"""Route planning, route tracking, lane flags and stop lines on a REAL carla.Map (built offline from
OpenDRIVE: road 0 straight, road 1 a left arc, road 2 straight; sidewalks on both sides)."""

from __future__ import annotations

import math
import random
from types import SimpleNamespace

import numpy as np
import pytest

carla = pytest.importorskip("carla", reason="the carla 0.9.16 client wheel is not installed")

from carla_rl.carla.map_route import (  # noqa: E402
    RouteTracker,
    box_corners,
    box_distance,
    lane_flags,
    plan_route,
    route_points,
    start_candidates,
    stop_lines_on_route,
)
from carla_rl.contract.sensor_frame import TrafficLightState  # noqa: E402

from xodr_maps import two_road_map  # noqa: E402


@pytest.fixture(scope="module")
def town():
    return carla.Map("test_two_roads", two_road_map())


@pytest.fixture
def start(town):
    # CARLA frame: the right-hand driving lane (OpenDRIVE lane -1) is at y = +1.75
    return town.get_waypoint(carla.Location(x=5.0, y=1.75, z=0.0))


def test_plan_route_follows_the_topology_for_the_length(town, start):
    route = plan_route(start, 180.0, 2.0, random.Random(3))
    assert [route[0].road_id, route[-1].road_id] == [0, 2]
    pts, widths = route_points(route)
    seg = np.hypot(*np.diff(pts, axis=0).T)
    assert 180.0 <= seg.sum() < 184.0
    assert np.all(seg < 2.1)
    assert np.allclose(widths, 3.5)
    # ENU: the right lane heading +x is at y = -1.75, and the arc turns left (+y)
    assert pts[0].tolist() == pytest.approx([5.0, -1.75])
    assert pts[-1][1] > 10.0
    again = route_points(plan_route(start, 180.0, 2.0, random.Random(3)))[0]
    np.testing.assert_array_equal(pts, again)


def test_plan_route_stops_at_a_dead_end(start):
    route = plan_route(start, 10_000.0, 5.0, random.Random(0))
    pts, _ = route_points(route)
    assert 250.0 < np.hypot(*np.diff(pts, axis=0).T).sum() < 260.0


def test_start_candidates_are_driving_lanes(town):
    cands = start_candidates(town, 10.0)
    assert cands and all(str(w.lane_type) == "Driving" for w in cands)


def test_route_tracker_progress_offset_heading_goal(start):
    pts, widths = route_points(plan_route(start, 100.0, 2.0, random.Random(0)))
    tr = RouteTracker(pts, widths, goal_tolerance_m=3.0)
    s0 = tr.update(5.0, -1.75, 0.0)
    assert s0.progress_m == pytest.approx(0.0, abs=1e-6)
    assert s0.remaining_m == pytest.approx(tr.length_m)
    assert s0.lane_width_m == pytest.approx(3.5)
    assert not s0.goal_reached
    s1 = tr.update(25.0, -1.75 + 0.8, 0.2)       # 0.8 m left of the centre, heading 0.2 rad left
    assert s1.progress_m == pytest.approx(20.0, abs=1e-4)
    assert s1.lateral_offset_m == pytest.approx(0.8, abs=1e-4)
    assert s1.heading_error_rad == pytest.approx(0.2, abs=1e-6)
    s2 = tr.update(20.0, -1.75 - 0.5, -0.1)      # drove backwards: progress does not decrease
    assert s2.progress_m == pytest.approx(20.0, abs=1e-4)
    assert s2.lateral_offset_m == pytest.approx(-0.5, abs=1e-3)
    for x, y in pts[10:].tolist():             # drive along the route to its end
        end = tr.update(x, y, 0.0)
    assert end.goal_reached and end.remaining_m == pytest.approx(0.0, abs=1e-4)


def test_lane_flags_sidewalk_offroad_driving(town):
    assert lane_flags(town, carla.Location(x=50.0, y=1.75, z=0.0))[:2] == (False, False)
    # right sidewalk: 3.5 m .. 5.5 m from the centre line (CARLA +y)
    assert lane_flags(town, carla.Location(x=50.0, y=4.5, z=0.0))[:2] == (True, False)
    assert lane_flags(town, carla.Location(x=50.0, y=-4.5, z=0.0))[:2] == (True, False)
    assert lane_flags(town, carla.Location(x=50.0, y=30.0, z=0.0))[:2] == (False, True)


class _Light:
    def __init__(self, light_id, stop_wps, state):
        self.id, self._stops, self.state = light_id, stop_wps, state

    def get_stop_waypoints(self):
        return self._stops

    def get_state(self):
        return self.state


def test_stop_lines_light_distance_and_red_light_crossing(town, start):
    route = plan_route(start, 100.0, 2.0, random.Random(0))
    pts, widths = route_points(route)
    tr = RouteTracker(pts, widths)
    stop = town.get_waypoint(carla.Location(x=45.0, y=1.75, z=0.0))
    other_lane = town.get_waypoint(carla.Location(x=45.0, y=-1.75, z=0.0))
    light = _Light(7, [stop], carla.TrafficLightState.Red)
    ignored = _Light(8, [other_lane], carla.TrafficLightState.Red)
    tr.stop_lines = stop_lines_on_route(route, tr.s, [light, ignored])
    assert [sl.light_id for sl in tr.stop_lines] == [7]
    assert tr.stop_lines[0].s == pytest.approx(40.0, abs=2.0)
    before = tr.update(35.0, -1.75, 0.0)
    assert before.traffic_light_state == TrafficLightState.RED
    assert before.traffic_light_distance_m == pytest.approx(tr.stop_lines[0].s - 30.0, abs=1e-3)
    crossed = tr.update(48.0, -1.75, 0.0)
    assert crossed.ran_red_light
    assert math.isinf(crossed.traffic_light_distance_m)
    # on green nothing is violated
    tr2 = RouteTracker(pts, widths, stop_lines=stop_lines_on_route(
        route, tr.s, [_Light(9, [stop], carla.TrafficLightState.Green)]))
    tr2.update(35.0, -1.75, 0.0)
    assert not tr2.update(48.0, -1.75, 0.0).ran_red_light


def test_box_distance():
    a = box_corners(0.0, 0.0, 0.0, 2.0, 1.0)
    b = box_corners(7.0, 0.0, 0.0, 2.0, 1.0)
    assert box_distance(a, b) == pytest.approx(3.0)
    c = box_corners(0.0, 4.0, math.pi / 2, 2.0, 1.0)      # rotated, its near edge at y = 2
    assert box_distance(a, c) == pytest.approx(1.0)
    assert box_distance(a, box_corners(1.0, 0.5, 0.3, 2.0, 1.0)) == 0.0
    ext = SimpleNamespace(x=2.0, y=1.0)
    from carla_rl.carla.map_route import actor_box

    box = actor_box(carla.Transform(carla.Location(x=0.0, y=-3.0), carla.Rotation(yaw=90.0)), ext)
    assert box[:, 1].min() == pytest.approx(1.0) and box[:, 1].max() == pytest.approx(5.0)
