"""Routes on a ``carla.Map`` and what the map says about the ego (the EgoSituation geometry).

- :func:`plan_route`: a simple planner that follows ``Waypoint.next`` (the lane graph of the map's
  topology), choosing a branch at junctions with the episode's RNG, until the route length is reached.
- :class:`RouteTracker`: the route as an ENU polyline; per tick: progress / remaining along it,
  signed lateral offset (+ = left), heading error, lane width, stop lines ahead and red-light crossing.
- :func:`lane_flags`: on_sidewalk / off_road from the lane type under a location.
- :func:`box_distance`: distance between two oriented 2D boxes (nearest actor distance).

A ``carla.Map`` can be built without a server from OpenDRIVE text (``carla.Map(name, xodr)``), which
is how the tests drive these functions with real carla types, and how the bridge adapter gets the
map from ``/carla/world_info``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from carla_rl.carla.carla_conversions import location_to_enu, rotation_to_rpy, wrap_angle
from carla_rl.contract.sensor_frame import TrafficLightState

# carla.LaneType names (compared by name: no carla import needed)
DRIVABLE_LANE_TYPES = frozenset({"Driving", "Bidirectional", "Parking", "Shoulder", "Entry", "Exit",
                                 "OnRamp", "OffRamp"})
SIDEWALK_LANE_TYPES = frozenset({"Sidewalk"})


def _lane_type_name(lane_type: Any) -> str:
    return getattr(lane_type, "name", None) or str(lane_type).split(".")[-1]


# ---------------------------------------------------------------------------------------------
# Planning


def plan_route(start: Any, length_m: float, step_m: float, rng: random.Random) -> list[Any]:
    """Waypoints from ``start`` along its lane, ``step_m`` apart, for ``length_m`` (or a dead end).

    At a branch (``next`` returns several waypoints, i.e. a junction of the topology) one successor is
    chosen with ``rng``; successors are sorted by (road, lane) first so a seed gives the same route.
    """
    if step_m <= 0:
        raise ValueError("step_m must be positive")
    route = [start]
    travelled = 0.0
    current = start
    while travelled < length_m:
        successors = list(current.next(step_m))
        if not successors:
            break
        successors.sort(key=lambda w: (w.road_id, w.section_id, w.lane_id, round(w.s, 2)))
        nxt = successors[0] if len(successors) == 1 else rng.choice(successors)
        loc_a, loc_b = current.transform.location, nxt.transform.location
        hop = math.hypot(loc_b.x - loc_a.x, loc_b.y - loc_a.y)
        if hop < 1e-3 or hop > 2.5 * step_m:  # end of the lane graph (no move, or a jump elsewhere)
            break
        travelled += hop
        route.append(nxt)
        current = nxt
    return route


def start_candidates(carla_map: Any, spacing_m: float = 10.0) -> list[Any]:
    """Waypoints on driving lanes to start an episode from: the map's spawn points when the server
    provided them, else waypoints generated every ``spacing_m`` (an OpenDRIVE-only map)."""
    wps = [w for w in carla_map.generate_waypoints(spacing_m)
           if _lane_type_name(w.lane_type) == "Driving" and not w.is_junction]
    wps.sort(key=lambda w: (w.road_id, w.section_id, w.lane_id, round(w.s, 2)))
    return wps


def route_points(route: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Route waypoints -> ([K, 2] float32 ENU points, [K] float32 lane widths)."""
    pts = np.array([location_to_enu(w.transform.location)[:2] for w in route], dtype=np.float64)
    widths = np.array([float(w.lane_width) for w in route], dtype=np.float64)
    return pts.astype(np.float32), widths.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Stop lines of traffic lights on the route


@dataclass
class StopLine:
    """A traffic light's stop line on the route: arc length ``s`` [m] along the route."""

    s: float
    light_id: int
    light: Any = None  # the carla.TrafficLight (or a double): its ``state`` is read per tick


def stop_lines_on_route(route: Sequence[Any], route_s: np.ndarray, lights: Iterable[Any],
                        match_m: float = 3.0) -> list[StopLine]:
    """Match every light's stop waypoints (``get_stop_waypoints()``) to the route.

    A stop waypoint counts when a route waypoint on the same road and lane lies within ``match_m``;
    its route arc length is the stop line's ``s``. One stop line per light (the first on the route).
    """
    keyed: dict[tuple[int, int], list[int]] = {}
    for i, w in enumerate(route):
        keyed.setdefault((int(w.road_id), int(w.lane_id)), []).append(i)
    out: list[StopLine] = []
    for light in lights:
        best: float | None = None
        for stop in light.get_stop_waypoints():
            idx = keyed.get((int(stop.road_id), int(stop.lane_id)))
            if not idx:
                continue
            sx, sy, _ = location_to_enu(stop.transform.location)
            for i in idx:
                px, py, _ = location_to_enu(route[i].transform.location)
                if math.hypot(px - sx, py - sy) <= match_m:
                    s = float(route_s[i])
                    best = s if best is None else min(best, s)
                    break
        if best is not None:
            out.append(StopLine(s=best, light_id=int(light.id), light=light))
    out.sort(key=lambda sl: sl.s)
    return out


# ---------------------------------------------------------------------------------------------
# Route tracking


@dataclass
class RouteState:
    """Where the ego is relative to its route at one tick."""

    progress_m: float
    remaining_m: float
    lateral_offset_m: float
    heading_error_rad: float
    lane_width_m: float
    goal_reached: bool
    traffic_light_state: int = TrafficLightState.UNKNOWN
    traffic_light_distance_m: float = math.inf
    ran_red_light: bool = False


@dataclass
class RouteTracker:
    """An ENU polyline route with monotone progress tracking.

    ``points``: [K, 2] ENU, ``lane_widths``: [K]. The projection searches a window around the last
    segment (``search_behind_m`` back, ``search_ahead_m`` ahead) so loops and parallel lanes do not make
    the progress jump; the reported progress never decreases.
    """

    points: np.ndarray
    lane_widths: np.ndarray
    goal_tolerance_m: float = 3.0
    search_ahead_m: float = 30.0
    search_behind_m: float = 10.0
    stop_lines: list[StopLine] = field(default_factory=list)

    def __post_init__(self) -> None:
        pts = np.asarray(self.points, dtype=np.float64).reshape(-1, 2)
        if len(pts) < 2:
            raise ValueError("a route needs at least two points")
        self._pts = pts
        seg = np.diff(pts, axis=0)                       # [K-1, 2]
        self._seg_len = np.hypot(seg[:, 0], seg[:, 1])   # [K-1]
        self._seg = seg
        self.s = np.concatenate([[0.0], np.cumsum(self._seg_len)])  # [K] arc length at each point
        self.length_m = float(self.s[-1])
        self._seg_index = 0
        self._progress = 0.0

    def reset(self) -> None:
        self._seg_index = 0
        self._progress = 0.0

    def project(self, x: float, y: float) -> tuple[int, float, float]:
        """(segment index, arc length, signed lateral offset + = left) of the closest point ahead."""
        current = self._seg_index
        start = max(int(np.searchsorted(self.s, self.s[current] - self.search_behind_m, side="left")) - 1, 0)
        end = int(np.searchsorted(self.s, self.s[current] + self.search_ahead_m, side="right"))
        end = min(max(end, start + 1), len(self._seg))
        best = (start, float(self.s[start]), math.inf, 0.0)
        p = np.array([x, y])
        for i in range(start, end):
            a, d, length = self._pts[i], self._seg[i], self._seg_len[i]
            if length < 1e-9:
                continue
            t = float(np.clip(np.dot(p - a, d) / (length * length), 0.0, 1.0))
            q = a + t * d
            dist = float(np.hypot(*(p - q)))
            if dist < best[2]:
                cross = d[0] * (p[1] - a[1]) - d[1] * (p[0] - a[0])
                best = (i, float(self.s[i] + t * length), dist, math.copysign(dist, cross) if dist else 0.0)
        return best[0], best[1], best[3]

    def update(self, x: float, y: float, yaw: float) -> RouteState:
        """Advance with the ego's ENU pose; stop lines crossed on red in this call set ``ran_red_light``."""
        previous = self._progress
        index, s, lateral = self.project(x, y)
        self._seg_index = index
        self._progress = max(self._progress, s)
        tangent = math.atan2(self._seg[index][1], self._seg[index][0])
        frac = 0.0 if self._seg_len[index] < 1e-9 else (s - self.s[index]) / self._seg_len[index]
        w0, w1 = self.lane_widths[index], self.lane_widths[min(index + 1, len(self.lane_widths) - 1)]
        width = float(w0 * (1.0 - frac) + w1 * frac)
        remaining = max(self.length_m - self._progress, 0.0)
        state = RouteState(progress_m=self._progress, remaining_m=remaining, lateral_offset_m=lateral,
                           heading_error_rad=wrap_angle(yaw - tangent), lane_width_m=width,
                           goal_reached=remaining <= self.goal_tolerance_m)
        for line in self.stop_lines:
            light_state = _light_state(line.light)
            if previous < line.s <= self._progress and light_state == TrafficLightState.RED:
                state.ran_red_light = True
            if line.s > self._progress:
                state.traffic_light_state = light_state
                state.traffic_light_distance_m = line.s - self._progress
                break
        return state


def _light_state(light: Any) -> TrafficLightState:
    from carla_rl.carla.carla_conversions import traffic_light_state

    if light is None:
        return TrafficLightState.UNKNOWN
    state = light.get_state() if hasattr(light, "get_state") else getattr(light, "state", None)
    return traffic_light_state(state)


# ---------------------------------------------------------------------------------------------
# Lane flags and actor distance


def lane_flags(carla_map: Any, location: Any) -> tuple[bool, bool, Any]:
    """(on_sidewalk, off_road, waypoint) for a CARLA location.

    The lane under the location (no projection, any lane type): a sidewalk lane -> on_sidewalk; no lane
    or a lane that is neither drivable nor sidewalk (border, median, ...) -> off_road.
    """
    import carla

    wp = carla_map.get_waypoint(location, project_to_road=False, lane_type=carla.LaneType.Any)
    if wp is None:
        return False, True, None
    name = _lane_type_name(wp.lane_type)
    if name in SIDEWALK_LANE_TYPES:
        return True, False, wp
    return False, name not in DRIVABLE_LANE_TYPES, wp


def box_corners(cx: float, cy: float, yaw: float, half_x: float, half_y: float) -> np.ndarray:
    """[4, 2] corners of an oriented box (ENU)."""
    c, s = math.cos(yaw), math.sin(yaw)
    local = np.array([[half_x, half_y], [half_x, -half_y], [-half_x, -half_y], [-half_x, half_y]])
    rot = np.array([[c, -s], [s, c]])
    return local @ rot.T + np.array([cx, cy])


def _point_segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    d = b - a
    denom = float(np.dot(d, d))
    t = 0.0 if denom < 1e-12 else float(np.clip(np.dot(p - a, d) / denom, 0.0, 1.0))
    return float(np.hypot(*(p - (a + t * d))))


def _overlap(a: np.ndarray, b: np.ndarray) -> bool:
    for poly in (a, b):
        for i in range(4):
            edge = poly[(i + 1) % 4] - poly[i]
            axis = np.array([-edge[1], edge[0]])
            pa, pb = a @ axis, b @ axis
            if pa.max() < pb.min() or pb.max() < pa.min():
                return False
    return True


def box_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Distance between two convex quadrilaterals ([4, 2] corners); 0 when they overlap."""
    if _overlap(a, b):
        return 0.0
    best = math.inf
    for p_poly, q_poly in ((a, b), (b, a)):
        for p in p_poly:
            for i in range(4):
                best = min(best, _point_segment_distance(p, q_poly[i], q_poly[(i + 1) % 4]))
    return best


def actor_box(transform: Any, extent: Any) -> np.ndarray:
    """Oriented ENU box of a CARLA actor from its transform and bounding-box extent."""
    x, y, _ = location_to_enu(transform.location)
    _, _, yaw = rotation_to_rpy(transform.rotation)
    return box_corners(x, y, yaw, float(extent.x), float(extent.y))
