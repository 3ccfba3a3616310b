"""Road network: Frenet lanes, lane graph, markings, crosswalks, lights, bays, sidewalk paths.

A :class:`Lane` is a polyline with arc length ``s``; :meth:`RoadNetwork.lane_pose` gives the
position and heading at ``(lane, s, d)`` for arrays of lanes at once (one ``searchsorted`` over
the concatenation of all lanes). Maps are built by :mod:`carla_rl.sim.maps`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from carla_rl.contract.semantic_palette import PALETTE, SemanticTag

TURN_STRAIGHT, TURN_LEFT, TURN_RIGHT = 0, 1, 2
MAX_SUCCESSORS = 4
STOP_LINE = -1  # line type of a stop line in the crossing index
PAINT_WIDTH_M = 0.4  # drawn width of painted lines in the map raster [m]
HASH_CELL_M = 10.0  # spatial hash cell of the line index [m]
LINE_SIMPLIFY_TOL_M = 0.02  # markings: drop points closer than this to the chord [m]
LANE_GAP_M = 1.0  # gap between lanes in the concatenated arc-length axis [m]


@dataclass
class Lane:
    """One lane: centre polyline [P, 2] (map frame, metres) in driving direction."""

    points: np.ndarray
    width: float
    is_connector: bool = False
    turn: int = TURN_STRAIGHT
    light_id: int = -1  # signal that controls the end of this lane
    successors: list[int] = field(default_factory=list)

    @property
    def length(self) -> float:
        return float(np.sum(np.linalg.norm(np.diff(self.points, axis=0), axis=1)))


@dataclass
class PedestrianPaths:
    """Closed sidewalk loops and the crossing points on them (all arrays, one row per item)."""

    loops: list[np.ndarray]  # each [P, 2], closed (last point == first point)
    cp_loop: np.ndarray  # [C] loop of the crossing point
    cp_u: np.ndarray  # [C] arc length on that loop [m]
    cp_target_loop: np.ndarray  # [C] loop on the other side of the road
    cp_target_u: np.ndarray  # [C]
    cp_is_crosswalk: np.ndarray  # [C] bool; False = mid-block (only jaywalkers take it)
    cp_walk_light: np.ndarray  # [C] light whose GREEN lets pedestrians walk; -1 = none


def resample_polyline(points: np.ndarray, spacing: float) -> np.ndarray:
    """Resample [P, 2] to points spaced ``spacing`` apart along the line (end point kept)."""
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    n = max(2, int(math.ceil(cum[-1] / spacing)) + 1)
    s = np.linspace(0.0, cum[-1], n)
    return np.stack([np.interp(s, cum, points[:, 0]), np.interp(s, cum, points[:, 1])], axis=1)


def simplify_polyline(points: np.ndarray, tol: float) -> np.ndarray:
    """Drop interior points of [P, 2] that lie within ``tol`` of the chord of their run (greedy)."""
    keep = [0]
    start = 0
    for i in range(2, len(points)):
        a, b = points[start], points[i]
        ab = b - a
        norm = float(np.hypot(ab[0], ab[1]))
        inner = points[start + 1 : i] - a
        dist = np.abs(ab[0] * inner[:, 1] - ab[1] * inner[:, 0]) / max(norm, 1e-12)
        if dist.max() > tol:
            keep.append(i - 1)
            start = i - 1
    keep.append(len(points) - 1)
    return points[keep]


def offset_polyline(points: np.ndarray, d: float) -> np.ndarray:
    """Shift [P, 2] by ``d`` metres to its left (negative = right), using vertex normals."""
    tangent = np.gradient(points, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
    return points + d * normal


def arc_points(
    centre: np.ndarray, radius: float, a0: float, sweep: float, spacing: float
) -> np.ndarray:
    n = max(3, int(math.ceil(abs(sweep) * radius / spacing)) + 1)
    a = a0 + np.linspace(0.0, sweep, n)
    return centre + radius * np.stack([np.cos(a), np.sin(a)], axis=1)


class RoadNetwork:
    """Lanes + lane graph + everything drawn on the map, with vectorised queries."""

    def __init__(self, name: str, bounds: tuple[float, float, float, float]):
        self.name = name
        self.bounds = bounds  # x_min, y_min, x_max, y_max [m]
        self.lanes: list[Lane] = []
        self.markings: list[tuple[np.ndarray, int]] = []  # (polyline [P, 2], LaneMarking)
        self.painted: list[tuple[np.ndarray, bool]] = []  # (polyline, dashed) drawn as ROAD_LINE
        self.stop_lines: list[tuple[np.ndarray, int]] = []  # ([2, 2], light id)
        self.crosswalks: list[np.ndarray] = []  # [4, 2] polygons
        self.light_positions: list[tuple[float, float]] = []
        self.light_groups: list[int] = []  # 0 or 1: which half of the cycle
        self.light_nodes: list[int] = []
        self.parking_bays: list[np.ndarray] = []  # [4, 2] polygons
        self.bay_yaws: list[float] = []  # direction pointing into the bay [rad]
        self.fills: list[tuple[np.ndarray, int]] = []  # (polygon, SemanticTag) in drawing order
        self.circles: list[tuple[tuple[float, float], float, int]] = []  # drawn after fills
        self.strokes: list[tuple[np.ndarray, float, int]] = (
            []
        )  # (polyline, width m, tag) before fills
        self.buildings: list[np.ndarray] = []  # [4, 2] rectangles (also BUILDING fills)
        self.ped_paths: PedestrianPaths | None = None
        self.spawn_lanes: list[int] = []  # lanes where ego / NPCs may start
        self._raster_cache: dict[float, tuple[np.ndarray, np.ndarray]] = {}

    # ------------------------------------------------------------------ building
    def add_lane(self, lane: Lane) -> int:
        self.lanes.append(lane)
        return len(self.lanes) - 1

    def finalize(self) -> None:
        """Concatenate lanes and lines into flat arrays for vectorised queries."""
        pts, gs, first, off, length = [], [], [], [], []
        start_g, start_p = 0.0, 0
        for lane in self.lanes:
            p = lane.points.astype(np.float64)
            seg = np.linalg.norm(np.diff(p, axis=0), axis=1)
            s = np.concatenate([[0.0], np.cumsum(seg)])
            pts.append(p)
            gs.append(start_g + s)
            first.append(start_p)
            off.append(start_g)
            length.append(s[-1])
            start_g += s[-1] + LANE_GAP_M
            start_p += len(p)
        self.pts = np.concatenate(pts)  # [Ptot, 2]
        self.gs = np.concatenate(gs)  # [Ptot] global arc length
        d = np.diff(self.pts, axis=0)
        heading = np.arctan2(d[:, 1], d[:, 0])
        self.seg_heading = np.concatenate([heading, [heading[-1]]])  # [Ptot]
        seg_len = np.diff(self.gs)
        self.seg_len = np.concatenate([np.maximum(seg_len, 1e-9), [1.0]])
        self.lane_first = np.array(first, dtype=np.int64)  # [L]
        self.lane_off = np.array(off)  # [L]
        self.lane_len = np.array(length)  # [L]
        counts = np.array([len(lane.points) for lane in self.lanes])
        self.lane_last_seg = self.lane_first + counts - 2  # [L]
        num = len(self.lanes)
        self.succ = -np.ones((num, MAX_SUCCESSORS), dtype=np.int64)  # [L, 4]
        self.n_succ = np.zeros(num, dtype=np.int64)
        for i, lane in enumerate(self.lanes):
            self.succ[i, : len(lane.successors)] = lane.successors
            self.n_succ[i] = len(lane.successors)
        self.lane_light = np.array([lane.light_id for lane in self.lanes], dtype=np.int64)
        self.lane_is_turn = np.array(
            [lane.is_connector and lane.turn != TURN_STRAIGHT for lane in self.lanes]
        )
        self.lane_width = np.array([lane.width for lane in self.lanes])
        self.num_lights = len(self.light_positions)
        self.light_pos = np.array(self.light_positions, dtype=np.float64).reshape(-1, 2)
        self.light_group = np.array(self.light_groups, dtype=np.int64)
        self.light_node = np.array(self.light_nodes, dtype=np.int64)
        self.bay_centres = np.array([b.mean(axis=0) for b in self.parking_bays]).reshape(-1, 2)
        self._build_line_index()

    def _build_line_index(self) -> None:
        """Segments of markings and stop lines, with a spatial hash for crossing tests."""
        a, b, kind, light = [], [], [], []
        for poly, mtype in self.markings:
            poly = simplify_polyline(poly, LINE_SIMPLIFY_TOL_M)
            a.append(poly[:-1])
            b.append(poly[1:])
            kind += [int(mtype)] * (len(poly) - 1)
            light += [-1] * (len(poly) - 1)
        for seg, light_id in self.stop_lines:
            a.append(seg[:1])
            b.append(seg[1:])
            kind.append(STOP_LINE)
            light.append(light_id)
        self.line_a = np.concatenate(a) if a else np.zeros((0, 2))  # [M, 2]
        self.line_b = np.concatenate(b) if b else np.zeros((0, 2))  # [M, 2]
        self.line_kind = np.array(kind, dtype=np.int64)  # [M]
        self.line_light = np.array(light, dtype=np.int64)  # [M]
        cells: dict[tuple[int, int], list[int]] = {}
        lo = np.minimum(self.line_a, self.line_b) - 3.0
        hi = np.maximum(self.line_a, self.line_b) + 3.0
        for i in range(len(self.line_kind)):
            for cx in range(int(lo[i, 0] // HASH_CELL_M), int(hi[i, 0] // HASH_CELL_M) + 1):
                for cy in range(int(lo[i, 1] // HASH_CELL_M), int(hi[i, 1] // HASH_CELL_M) + 1):
                    cells.setdefault((cx, cy), []).append(i)
        self._line_cells = {k: np.array(v, dtype=np.int64) for k, v in cells.items()}
        self._no_lines = np.zeros(0, dtype=np.int64)

    # ------------------------------------------------------------------ queries
    def lines_near(self, x: float, y: float) -> np.ndarray:
        """Indices of marking / stop-line segments within ~3 m of cell (x, y)."""
        return self._line_cells.get((int(x // HASH_CELL_M), int(y // HASH_CELL_M)), self._no_lines)

    def lane_pose(
        self, lane: np.ndarray, s: np.ndarray, d: np.ndarray | float = 0.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Positions [N, 2] and headings [N] at Frenet (lane [N], s [N], d [N]: + = left)."""
        s = np.minimum(np.maximum(s, 0.0), self.lane_len[lane])
        g = self.lane_off[lane] + s
        k = np.searchsorted(self.gs, g, side="right") - 1
        k = np.minimum(np.maximum(k, self.lane_first[lane]), self.lane_last_seg[lane])
        t = (g - self.gs[k]) / self.seg_len[k]
        p = self.pts[k] + t[:, None] * (self.pts[k + 1] - self.pts[k])
        h = self.seg_heading[k]
        if np.any(d):
            p = p + np.asarray(d)[..., None] * np.stack([-np.sin(h), np.cos(h)], axis=-1)
        return p, h

    def lane_points_from(self, lane: int, s: float) -> np.ndarray:
        """Lane polyline [P, 2] from arc length ``s`` to its end."""
        lo = self.lane_first[lane]
        hi = self.lane_last_seg[lane] + 2
        g = self.lane_off[lane] + s
        keep = self.gs[lo:hi] > g + 1e-6
        start, _ = self.lane_pose(np.array([lane]), np.array([s]))
        return np.concatenate([start, self.pts[lo:hi][keep]])

    # ------------------------------------------------------------------ rendering
    def world_to_raster(self, xy: np.ndarray, res: float) -> np.ndarray:
        x_min, _, _, y_max = self.bounds
        return np.stack([(xy[..., 0] - x_min) / res, (y_max - xy[..., 1]) / res], axis=-1)

    def raster(self, res: float) -> tuple[np.ndarray, np.ndarray]:
        """Static map at ``res`` m/px: tags [H, W] uint8 and palette RGB [H, W, 3] (cached)."""
        if res in self._raster_cache:
            return self._raster_cache[res]
        x_min, y_min, x_max, y_max = self.bounds
        w = int(math.ceil((x_max - x_min) / res))
        h = int(math.ceil((y_max - y_min) / res))
        tags = np.full((h, w), SemanticTag.TERRAIN, dtype=np.uint8)
        shift = 2
        scale = float(1 << shift)

        def px(xy: np.ndarray) -> np.ndarray:
            return np.round(self.world_to_raster(np.asarray(xy), res) * scale).astype(np.int32)

        for poly, width, tag in self.strokes:
            thick = max(1, int(round(width / res)))
            cv2.polylines(tags, [px(poly)], False, int(tag), thick, cv2.LINE_8, shift)
        for poly, tag in self.fills:
            cv2.fillPoly(tags, [px(poly)], int(tag), cv2.LINE_8, shift)
        for (cx, cy), radius, tag in self.circles:
            centre = tuple(int(v) for v in px(np.array([cx, cy])))
            cv2.circle(
                tags, centre, int(round(radius / res * scale)), int(tag), -1, cv2.LINE_8, shift
            )
        for poly in self.crosswalks:
            self._draw_zebra(tags, poly, res, px)
        line_px = max(1, int(round(PAINT_WIDTH_M / res)))  # visible at camera resolution
        for poly, dashed in self.painted:
            if dashed:
                for dash in _dashes(poly, 3.0, 3.0):
                    cv2.polylines(
                        tags, [px(dash)], False, int(SemanticTag.ROAD_LINE), line_px, cv2.LINE_8, shift
                    )
            else:
                cv2.polylines(
                    tags, [px(poly)], False, int(SemanticTag.ROAD_LINE), line_px, cv2.LINE_8, shift
                )
        for seg, _ in self.stop_lines:
            cv2.polylines(
                tags, [px(seg)], False, int(SemanticTag.ROAD_LINE), 2 * line_px, cv2.LINE_8, shift
            )
        for bay in self.parking_bays:
            cv2.polylines(
                tags,
                [px(bay[[1, 2, 3, 0]])],
                False,
                int(SemanticTag.ROAD_LINE),
                line_px,
                cv2.LINE_8,
                shift,
            )
        for x, y in self.light_positions:
            cv2.circle(
                tags,
                tuple(int(v) for v in px(np.array([x, y]))),
                int(0.4 / res * scale),
                int(SemanticTag.TRAFFIC_LIGHT),
                -1,
                cv2.LINE_8,
                shift,
            )
        rgb = PALETTE[tags]
        self._raster_cache[res] = (tags, rgb)
        return tags, rgb

    @staticmethod
    def _draw_zebra(tags: np.ndarray, poly: np.ndarray, res: float, px) -> None:
        """Stripes across a crosswalk polygon [4, 2] (p0-p1 across the road, p0-p3 along it)."""
        p0, p1, _, p3 = poly
        across = p1 - p0
        length = float(np.linalg.norm(across))
        n = max(1, int(length // 1.0))
        for i in range(0, n, 2):
            a = p0 + across * (i / n)
            b = p0 + across * ((i + 1) / n)
            stripe = np.array([a, b, b + (p3 - p0), a + (p3 - p0)])
            cv2.fillPoly(tags, [px(stripe)], int(SemanticTag.ROAD_LINE), cv2.LINE_8, 2)


def _dashes(poly: np.ndarray, on: float, off: float) -> list[np.ndarray]:
    fine = resample_polyline(poly, 0.5)
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(fine, axis=0), axis=1))])
    keep = (s % (on + off)) < on
    out, start = [], None
    for i, k in enumerate(keep):
        if k and start is None:
            start = i
        if (not k or i == len(keep) - 1) and start is not None:
            if i - start >= 1:
                out.append(fine[start : i + 1])
            start = None
    return out
