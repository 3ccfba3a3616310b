"""Procedural maps (``straight``, ``curvy``, ``town``, ``parking``) and the route planner."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from carla_rl.contract.semantic_palette import SemanticTag as Tag
from carla_rl.contract.sensor_frame import LaneMarking
from carla_rl.sim.road import (
    TURN_LEFT,
    TURN_RIGHT,
    TURN_STRAIGHT,
    Lane,
    PedestrianPaths,
    RoadNetwork,
    arc_points,
    offset_polyline,
    resample_polyline,
)
from carla_rl.sim.sim_config import MapGeometryConfig

MAP_MARGIN_M = 30.0  # raster border around the drivable area [m]
LOOP_HALF_WIDTH_M = 0.6  # half width of a sidewalk path loop on linear roads [m]
BUILDING_DEPTH_M = 15.0  # depth of roadside buildings [m]
BUILDING_PITCH_M = 30.0  # spacing of roadside buildings along a road [m]
BUILDING_GAP_M = 8.0  # gap between roadside buildings [m]
PARKING_ENTRY_M = 25.0  # entry road length west of the parking lot [m]
PARKING_MARGIN_M = 12.0  # aisle length before the first and after the last bay [m]
STRAIGHT_BIAS = 0.4  # route planner: extra chance to go straight at a junction

# Unit vectors of the four intersection arms (east, north, west, south).
ARMS = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])


def _rect(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


def _thin_loop(line: np.ndarray, spacing: float) -> np.ndarray:
    """A closed walking loop along ``line``: out on its left side and back on its right."""
    out = offset_polyline(line, LOOP_HALF_WIDTH_M)
    back = offset_polyline(line, -LOOP_HALF_WIDTH_M)[::-1]
    loop = np.concatenate([out, back, out[:1]])
    return resample_polyline(loop, spacing)


def _paths_without_crossings(loops: list[np.ndarray]) -> PedestrianPaths:
    empty_i = np.zeros(0, dtype=np.int64)
    return PedestrianPaths(
        loops, empty_i, np.zeros(0), empty_i, np.zeros(0), np.zeros(0, dtype=bool), empty_i
    )


def _linear_road(
    net: RoadNetwork,
    centre: np.ndarray,
    g: MapGeometryConfig,
    lanes_per_dir: int,
    centre_marking: LaneMarking,
    buildings: bool,
) -> None:
    """A two-way road along ``centre`` [P, 2] with sidewalks; lanes are dead ends."""
    w = g.lane_width_m
    half = lanes_per_dir * w
    for k in range(lanes_per_dir):
        fwd = resample_polyline(offset_polyline(centre, -(k + 0.5) * w), g.waypoint_spacing_m)
        bwd = resample_polyline(offset_polyline(centre, (k + 0.5) * w)[::-1], g.waypoint_spacing_m)
        net.spawn_lanes.append(net.add_lane(Lane(fwd, w)))
        net.add_lane(Lane(bwd, w))
    net.markings.append((centre, centre_marking))
    net.painted.append((centre, False))
    if centre_marking == LaneMarking.SOLIDSOLID:
        net.painted += [
            (offset_polyline(centre, 0.25), False),
            (offset_polyline(centre, -0.25), False),
        ]
    for k in range(1, lanes_per_dir):
        for side in (-1.0, 1.0):
            line = offset_polyline(centre, side * k * w)
            net.markings.append((line, LaneMarking.BROKEN))
            net.painted.append((line, True))
    for side in (-1.0, 1.0):
        edge = offset_polyline(centre, side * half)
        net.markings.append((edge, LaneMarking.SOLID))
        net.painted.append((edge, False))
    net.strokes.append((centre, 2.0 * (half + g.sidewalk_width_m), Tag.SIDEWALK))
    net.strokes.append((centre, 2.0 * half, Tag.ROAD))
    loops = [
        _thin_loop(
            offset_polyline(centre, side * (half + g.sidewalk_width_m / 2.0)), g.waypoint_spacing_m
        )
        for side in (-1.0, 1.0)
    ]
    net.ped_paths = _paths_without_crossings(loops)
    if buildings:
        length = float(np.sum(np.linalg.norm(np.diff(centre, axis=0), axis=1)))
        for side in (-1.0, 1.0):
            near = half + g.sidewalk_width_m + 1.0
            y0, y1 = sorted((side * near, side * (near + BUILDING_DEPTH_M)))
            for x in np.arange(
                centre[0, 0] + 5.0, centre[0, 0] + length - BUILDING_PITCH_M, BUILDING_PITCH_M
            ):
                rect = _rect(x, y0, x + BUILDING_PITCH_M - BUILDING_GAP_M, y1)
                net.buildings.append(rect)
                net.fills.append((rect, Tag.BUILDING))


def build_straight(g: MapGeometryConfig) -> RoadNetwork:
    length = g.straight_length_m
    half = 2 * g.lane_width_m + g.sidewalk_width_m + BUILDING_DEPTH_M + 1.0
    net = RoadNetwork(
        "straight",
        (-MAP_MARGIN_M, -half - MAP_MARGIN_M, length + MAP_MARGIN_M, half + MAP_MARGIN_M),
    )
    centre = np.array([[0.0, 0.0], [length, 0.0]])
    _linear_road(
        net,
        resample_polyline(centre, g.waypoint_spacing_m),
        g,
        2,
        LaneMarking.SOLIDSOLID,
        buildings=True,
    )
    net.finalize()
    return net


# (length [m] or arc angle [deg], radius factor x curvy_min_radius or 0 for a straight)
CURVY_PLAN = (
    (40.0, 0.0),
    (60.0, 1.3),
    (30.0, 0.0),
    (-90.0, 1.0),
    (40.0, 0.0),
    (80.0, 1.6),
    (30.0, 0.0),
    (-70.0, 1.15),
    (40.0, 0.0),
    (60.0, 1.0),
    (40.0, 0.0),
    (-60.0, 1.5),
    (30.0, 0.0),
    (45.0, 1.2),
    (60.0, 0.0),
)


def build_curvy(g: MapGeometryConfig) -> RoadNetwork:
    pts = [np.zeros(2)]
    heading = 0.0
    for value, factor in CURVY_PLAN:
        p = pts[-1]
        if factor == 0.0:
            d = np.array([math.cos(heading), math.sin(heading)])
            pts.append(p + value * d)
            continue
        radius = factor * g.curvy_min_radius_m
        sweep = math.radians(value)
        side = 1.0 if sweep > 0 else -1.0
        centre = p + side * radius * np.array([-math.sin(heading), math.cos(heading)])
        a0 = math.atan2(p[1] - centre[1], p[0] - centre[0])
        arc = arc_points(centre, radius, a0, sweep, 0.5)
        pts.extend(arc[1:])
        heading += sweep
    centre = resample_polyline(np.array(pts), g.waypoint_spacing_m)
    pad = g.lane_width_m + g.sidewalk_width_m + MAP_MARGIN_M
    lo, hi = centre.min(axis=0) - pad, centre.max(axis=0) + pad
    net = RoadNetwork("curvy", (lo[0], lo[1], hi[0], hi[1]))
    _linear_road(net, centre, g, 1, LaneMarking.SOLID, buildings=False)
    net.finalize()
    return net


def build_town(g: MapGeometryConfig) -> RoadNetwork:
    """Grid of intersections (4-way inside, T at the border, signalised when 3+ arms)."""
    n, spacing, w = g.town_grid_size, g.block_spacing_m, g.lane_width_m
    rh = w  # road half width (one lane each way)
    box = rh + g.crosswalk_width_m  # lanes end at the stop line, this far from the node
    sw = g.sidewalk_width_m
    extent = (n - 1) * spacing
    outer = rh + sw + 1.0 + BUILDING_DEPTH_M
    net = RoadNetwork(
        "town",
        (
            -outer - MAP_MARGIN_M,
            -outer - MAP_MARGIN_M,
            extent + outer + MAP_MARGIN_M,
            extent + outer + MAP_MARGIN_M,
        ),
    )
    node_xy = {(i, j): np.array([i * spacing, j * spacing]) for i in range(n) for j in range(n)}
    node_id = {key: k for k, key in enumerate(sorted(node_xy))}
    incoming: dict[tuple[int, int], dict[int, int]] = {key: {} for key in node_xy}
    outgoing: dict[tuple[int, int], dict[int, int]] = {key: {} for key in node_xy}
    # Road lanes between neighbouring nodes, both directions.
    for (i, j), p in node_xy.items():
        for arm, (di, dj) in ((0, (1, 0)), (1, (0, 1))):
            other = (i + di, j + dj)
            if other not in node_xy:
                continue
            q = node_xy[other]
            u = ARMS[arm]
            right = np.array([u[1], -u[0]])
            a, b = p + box * u, q - box * u
            centre = resample_polyline(np.array([a, b]), g.waypoint_spacing_m)
            fwd = centre + right * (w / 2.0)
            bwd = (centre - right * (w / 2.0))[::-1]
            lane_f = net.add_lane(Lane(fwd, w))
            lane_b = net.add_lane(Lane(bwd, w))
            net.spawn_lanes += [lane_f, lane_b]
            outgoing[(i, j)][arm] = lane_f
            incoming[other][(arm + 2) % 4] = lane_f
            outgoing[other][(arm + 2) % 4] = lane_b
            incoming[(i, j)][arm] = lane_b
            net.markings.append((centre, LaneMarking.SOLID))
            net.painted.append((centre, False))
            for side in (-1.0, 1.0):
                net.markings.append((centre + side * right * rh, LaneMarking.CURB))
    # Connectors, lights, stop lines, crosswalks.
    for key, p in node_xy.items():
        arms_here = sorted(set(incoming[key]) | set(outgoing[key]))
        signalised = len(arms_here) >= 3
        light_of_group = {}
        if signalised:
            for group in (0, 1):
                light_of_group[group] = len(net.light_positions)
                net.light_groups.append(group)
                net.light_nodes.append(node_id[key])
                net.light_positions.append((0.0, 0.0))  # set below at an approach
        for arm_in, lane_in in incoming[key].items():
            u_in = ARMS[arm_in]
            travel = -u_in
            end = net.lanes[lane_in].points[-1]
            left = np.array([-travel[1], travel[0]])
            if signalised:
                group = 0 if arm_in in (1, 3) else 1
                light = light_of_group[group]
                net.lanes[lane_in].light_id = light
                net.stop_lines.append(
                    (np.array([end - left * w / 2.0, end + left * w / 2.0]), light)
                )
                net.light_positions[light] = tuple(end - left * (w / 2.0 + 1.0))
            for arm_out, lane_out in outgoing[key].items():
                if arm_out == arm_in:
                    continue
                start = net.lanes[lane_out].points[0]
                u_out = ARMS[arm_out]
                cross = travel[0] * u_out[1] - travel[1] * u_out[0]
                if abs(cross) < 1e-9:
                    pts = resample_polyline(np.array([end, start]), g.waypoint_spacing_m)
                    turn = TURN_STRAIGHT
                else:
                    sign = 1.0 if cross > 0 else -1.0
                    radius = abs(float(np.dot(start - end, travel)))
                    centre = end + sign * radius * left
                    a0 = math.atan2(end[1] - centre[1], end[0] - centre[0])
                    pts = arc_points(centre, radius, a0, sign * math.pi / 2.0, g.waypoint_spacing_m)
                    turn = TURN_LEFT if sign > 0 else TURN_RIGHT
                conn = net.add_lane(Lane(pts, w, is_connector=True, turn=turn))
                net.lanes[lane_in].successors.append(conn)
                net.lanes[conn].successors.append(lane_out)
        for arm in arms_here:
            u = ARMS[arm]
            perp = np.array([-u[1], u[0]])
            a = p + u * rh - perp * rh
            poly = np.array(
                [
                    a,
                    a + 2 * rh * perp,
                    a + 2 * rh * perp + u * g.crosswalk_width_m,
                    a + u * g.crosswalk_width_m,
                ]
            )
            net.crosswalks.append(poly)
    # Map surface: outer sidewalk ring, road area, blocks with rounded corners, buildings.
    lo, hi = -rh, extent + rh
    net.fills.append((_rect(lo - sw, lo - sw, hi + sw, hi + sw), Tag.SIDEWALK))
    net.fills.append((_rect(lo, lo, hi, hi), Tag.ROAD))
    c = g.curb_radius_m
    loops, block_loop = [], {}
    h = spacing / 2.0 - (rh + sw / 2.0)  # half side of a block's walking loop
    for bi in range(n - 1):
        for bj in range(n - 1):
            x0, y0 = bi * spacing + rh, bj * spacing + rh
            x1, y1 = (bi + 1) * spacing - rh, (bj + 1) * spacing - rh
            net.fills.append((_rect(x0 + c, y0, x1 - c, y1), Tag.SIDEWALK))
            net.fills.append((_rect(x0, y0 + c, x1, y1 - c), Tag.SIDEWALK))
            for cx, cy in ((x0 + c, y0 + c), (x1 - c, y0 + c), (x1 - c, y1 - c), (x0 + c, y1 - c)):
                net.circles.append(((cx, cy), c, Tag.SIDEWALK))
            bld = _rect(x0 + sw + 1.0, y0 + sw + 1.0, x1 - sw - 1.0, y1 - sw - 1.0)
            net.buildings.append(bld)
            net.fills.append((bld, Tag.BUILDING))
            cx, cy = (bi + 0.5) * spacing, (bj + 0.5) * spacing
            corners = np.array(
                [
                    [cx - h / 2, cy - h],
                    [cx + h, cy - h],
                    [cx + h, cy + h],
                    [cx - h, cy + h],
                    [cx - h, cy - h],
                    [cx - h / 2, cy - h],
                ]
            )
            block_loop[(bi, bj)] = len(loops)
            loops.append(resample_polyline(corners, g.waypoint_spacing_m))
    for rect in (
        _rect(lo - outer, lo - outer, hi + outer, lo - sw - 1.0),
        _rect(lo - outer, hi + sw + 1.0, hi + outer, hi + outer),
        _rect(lo - outer, lo - sw - 1.0, lo - sw - 1.0, hi + sw + 1.0),
        _rect(hi + sw + 1.0, lo - sw - 1.0, hi + outer, hi + sw + 1.0),
    ):
        net.buildings.append(rect)
        net.fills.append((rect, Tag.BUILDING))
    net.ped_paths = _town_crossings(loops, block_loop, n, h, node_id, net)
    net.finalize()
    return net


def _town_crossings(loops, block_loop, n, h, node_id, net: RoadNetwork) -> PedestrianPaths:
    """Crossing points: crosswalks at block corners and mid-block jaywalk points."""
    # Loop arc length of corners (SE, NE, NW, SW) and side midpoints (S, E, N, W).
    u_corner = {"SE": 1.5 * h, "NE": 3.5 * h, "NW": 5.5 * h, "SW": 7.5 * h}
    u_mid = {"S": 0.5 * h, "E": 2.5 * h, "N": 4.5 * h, "W": 6.5 * h}
    light_at = {}
    for light, (node, group) in enumerate(zip(net.light_nodes, net.light_groups)):
        light_at[(node, group)] = light
    rows = []  # (loop, u, target loop, target u, is crosswalk, walk light)
    key_of = {v: k for k, v in node_id.items()}
    for (bi, bj), loop in block_loop.items():
        # Corner -> neighbour block across the road, the node it touches, and the road crossed:
        # crossing a north/south road (walking east-west) is allowed while group 1 (E/W) is green.
        for corner, (dbi, dbj), node, target_corner, group, eps in (
            ("SE", (1, 0), (bi + 1, bj), "SW", 1, -0.3),
            ("SE", (0, -1), (bi + 1, bj), "NE", 0, 0.3),
            ("NE", (1, 0), (bi + 1, bj + 1), "NW", 1, 0.3),
            ("NE", (0, 1), (bi + 1, bj + 1), "SE", 0, -0.3),
            ("NW", (-1, 0), (bi, bj + 1), "NE", 1, -0.3),
            ("NW", (0, 1), (bi, bj + 1), "SW", 0, 0.3),
            ("SW", (-1, 0), (bi, bj), "SE", 1, 0.3),
            ("SW", (0, -1), (bi, bj), "NW", 0, -0.3),
        ):
            other = (bi + dbi, bj + dbj)
            if other not in block_loop:
                continue
            light = light_at.get((node_id.get(node, -1), group), -1)
            rows.append(
                (
                    loop,
                    u_corner[corner] + eps,
                    block_loop[other],
                    u_corner[target_corner],
                    True,
                    light,
                )
            )
        for side, (dbi, dbj), target_side in (
            ("E", (1, 0), "W"),
            ("N", (0, 1), "S"),
            ("W", (-1, 0), "E"),
            ("S", (0, -1), "N"),
        ):
            other = (bi + dbi, bj + dbj)
            if other in block_loop:
                rows.append((loop, u_mid[side], block_loop[other], u_mid[target_side], False, -1))
    del key_of
    arr = list(zip(*rows))
    return PedestrianPaths(
        loops,
        np.array(arr[0], dtype=np.int64),
        np.array(arr[1]),
        np.array(arr[2], dtype=np.int64),
        np.array(arr[3]),
        np.array(arr[4], dtype=bool),
        np.array(arr[5], dtype=np.int64),
    )


def build_parking(g: MapGeometryConfig) -> RoadNetwork:
    """A parking lot: one aisle along +x with perpendicular bays on both sides."""
    nb, bw, depth, aisle = g.parking_bays_per_side, g.bay_width_m, g.bay_depth_m, g.aisle_width_m
    x_bays = PARKING_MARGIN_M
    length = 2 * PARKING_MARGIN_M + nb * bw
    half = aisle / 2.0 + depth
    sw = g.sidewalk_width_m
    outer = half + sw + 1.0 + BUILDING_DEPTH_M
    net = RoadNetwork(
        "parking",
        (
            -PARKING_ENTRY_M - MAP_MARGIN_M,
            -outer - MAP_MARGIN_M,
            length + outer + MAP_MARGIN_M,
            outer + MAP_MARGIN_M,
        ),
    )
    lane_pts = resample_polyline(
        np.array([[-PARKING_ENTRY_M, 0.0], [length, 0.0]]), g.waypoint_spacing_m
    )
    net.spawn_lanes.append(net.add_lane(Lane(lane_pts, aisle)))
    net.fills.append(
        (_rect(-PARKING_ENTRY_M - sw, -half - sw, length + sw, half + sw), Tag.SIDEWALK)
    )
    net.fills.append((_rect(0.0, -half, length, half), Tag.ROAD))
    net.fills.append((_rect(-PARKING_ENTRY_M - sw, -aisle / 2.0, 0.0, aisle / 2.0), Tag.ROAD))
    for side in (1.0, -1.0):
        for k in range(nb):
            x0 = x_bays + k * bw
            y_in, y_out = side * aisle / 2.0, side * (aisle / 2.0 + depth)
            # corners: entrance left, entrance right, back right, back left (p0-p1 = entrance)
            net.parking_bays.append(
                np.array([[x0, y_in], [x0 + bw, y_in], [x0 + bw, y_out], [x0, y_out]])
            )
            net.bay_yaws.append(side * math.pi / 2.0)
    for rect in (
        _rect(-PARKING_ENTRY_M - sw, half + sw + 1.0, length + outer, outer),
        _rect(-PARKING_ENTRY_M - sw, -outer, length + outer, -half - sw - 1.0),
        _rect(length + sw + 1.0, -half - sw - 1.0, length + outer, half + sw + 1.0),
    ):
        net.buildings.append(rect)
        net.fills.append((rect, Tag.BUILDING))
    ring = np.array(
        [
            [-PARKING_ENTRY_M / 2, half + sw / 2],
            [length + sw / 2, half + sw / 2],
            [length + sw / 2, -half - sw / 2],
            [-PARKING_ENTRY_M / 2, -half - sw / 2],
        ]
    )
    net.ped_paths = _paths_without_crossings([_thin_loop(ring, g.waypoint_spacing_m)])
    net.finalize()
    return net


BUILDERS = {
    "straight": build_straight,
    "curvy": build_curvy,
    "town": build_town,
    "parking": build_parking,
}


def build_map(name: str, geometry: MapGeometryConfig) -> RoadNetwork:
    return BUILDERS[name](geometry)


# ---------------------------------------------------------------------------- routes
@dataclass
class Route:
    """The ego's route: waypoints [K, 2] (map frame), arc length [K], stop lines on it, goal."""

    points: np.ndarray
    s: np.ndarray
    stop_s: np.ndarray  # [n] route arc length of each stop line, ascending
    stop_light: np.ndarray  # [n] light id of each stop line
    goal: np.ndarray  # [2]
    reverse_from_s: float = math.inf  # parking: the route is driven backwards from this arc length
    goal_yaw: float | None = None  # parking: bay axis (into the bay) [rad]

    @property
    def length(self) -> float:
        return float(self.s[-1])


def _arc_length(points: np.ndarray) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])


def plan_route(
    net: RoadNetwork, rng: np.random.Generator, lane: int, s0: float, length: float, spacing: float
) -> Route:
    """Random walk over the lane graph from (lane, s0), cut at ``length`` metres."""
    pieces = [net.lane_points_from(lane, s0)]
    stops = []
    total = float(net.lane_len[lane] - s0)
    if net.lane_light[lane] >= 0:
        stops.append((total, int(net.lane_light[lane])))
    current = lane
    while total < length and net.n_succ[current] > 0:
        options = net.succ[current, : net.n_succ[current]]
        straight = [int(o) for o in options if net.lanes[o].turn == TURN_STRAIGHT]
        if straight and len(options) > 1 and rng.random() < STRAIGHT_BIAS:
            current = straight[0]
        else:
            current = int(options[rng.integers(len(options))])
        pieces.append(net.lanes[current].points[1:])
        total += float(net.lane_len[current])
        if net.lane_light[current] >= 0:
            stops.append((total, int(net.lane_light[current])))
    pts = np.concatenate(pieces)
    s = _arc_length(pts)
    end = min(length, float(s[-1]))
    keep = s < end - 1e-6
    goal = np.array([np.interp(end, s, pts[:, 0]), np.interp(end, s, pts[:, 1])])
    pts = resample_polyline(np.concatenate([pts[keep], goal[None]]), spacing)
    stops = [(d, light) for d, light in stops if d < end]
    return Route(
        pts,
        _arc_length(pts),
        np.array([d for d, _ in stops]),
        np.array([light for _, light in stops], dtype=np.int64),
        goal,
    )


def plan_parking_route(
    net: RoadNetwork, bay: int, turn_radius: float, length: float, spacing: float,
    straight_in_m: float = 0.0,
) -> Route:
    """Drive along the aisle, then forward on a quarter circle of ``turn_radius`` into ``bay``, nose
    in, and ``straight_in_m`` straight on along the bay axis: the route ends at the bay centre.

    ``turn_radius`` [m] is the arc the ego's centre follows; it must be at least the radius of the
    sharpest discrete steering action, so that the agent can follow the route (mixing steered and
    straight ticks widens the arc, nothing tightens it). The aisle part runs parallel to the aisle,
    ``turn_radius`` beside the bay centre, and starts ``length`` before the bay along the route.
    """
    side = 1.0 if net.bay_yaws[bay] > 0 else -1.0  # +1: bay on the left of the +x aisle
    centre = net.bay_centres[bay]
    arc_end = centre - np.array([0.0, side * straight_in_m])
    y_line = arc_end[1] - side * turn_radius
    switch = np.array([centre[0] - turn_radius, y_line])  # where the arc starts
    arc_c = np.array([switch[0], arc_end[1]])
    arc = arc_points(arc_c, turn_radius, -side * math.pi / 2.0, side * math.pi / 2.0, spacing * 0.5)
    if straight_in_m > 0.0:
        arc = np.concatenate([arc, resample_polyline(np.array([arc[-1], centre]), spacing)[1:]])
    arc[-1] = centre
    arc_len = float(_arc_length(arc)[-1])
    forward_len = max(5.0, length - arc_len)
    start = switch - np.array([forward_len, 0.0])
    fwd = resample_polyline(np.array([start, switch]), spacing)
    pts = np.concatenate([fwd, arc[1:]])
    s = _arc_length(pts)
    return Route(
        pts,
        s,
        np.zeros(0),
        np.zeros(0, dtype=np.int64),
        centre.copy(),
        goal_yaw=float(net.bay_yaws[bay]),
    )
