"""Sensors of the embedded simulator: semantic BEV camera, ray-marched LiDAR, radar.

All three work on arrays of actor boxes; the static map is rasterised once per map
(:meth:`RoadNetwork.raster`) and warped into the ego frame with one ``cv2.warpAffine`` per tick,
the actors of one colour are drawn with one ``cv2.fillPoly``; the LiDAR rays are marched and the
radar detections found by compiled kernels (:mod:`carla_rl.sim.kernels`).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from carla_rl.contract.semantic_palette import PALETTE, SemanticTag as Tag
from carla_rl.sim import kernels
from carla_rl.sim.road import RoadNetwork
from carla_rl.sim.sim_config import CameraConfig, LidarConfig, RadarConfig

SUBPIXEL_SHIFT = 2  # fillPoly fractional bits
SUBPIXEL_SCALE = float(1 << SUBPIXEL_SHIFT)
# Obstacle height per semantic tag [m] (what a LiDAR ray at height z hits); ground = 0.
TAG_HEIGHT_M = np.zeros(len(PALETTE), dtype=np.float32)
TAG_HEIGHT_M[[Tag.SIDEWALK, Tag.TERRAIN]] = 0.15
TAG_HEIGHT_M[[Tag.BUILDING, Tag.WALL]] = 10.0
TAG_HEIGHT_M[[Tag.FENCE, Tag.GUARD_RAIL]] = 1.2
TAG_HEIGHT_M[[Tag.POLE, Tag.TRAFFIC_LIGHT, Tag.TRAFFIC_SIGN]] = 4.0
TAG_HEIGHT_M[Tag.VEGETATION] = 3.0
TAG_HEIGHT_M[Tag.CAR] = 1.5
TAG_HEIGHT_M[Tag.PEDESTRIAN] = 1.8
BORDER_TAG = int(Tag.TERRAIN)
RAY_STEP_FRACTION = 0.8  # ray-march step as a fraction of the raster resolution


def box_corners(
    pos: np.ndarray, yaw: np.ndarray, length: np.ndarray, width: np.ndarray
) -> np.ndarray:
    """Corners [N, 4, 2] of boxes centred at ``pos`` [N, 2] with heading ``yaw`` [N]."""
    c, s = np.cos(yaw), np.sin(yaw)
    hl, hw = length / 2.0, width / 2.0
    fx, fy = c * hl, s * hl  # half-length along the heading
    lx, ly = -s * hw, c * hw  # half-width to the left
    x, y = pos[:, 0], pos[:, 1]
    return np.stack(
        [
            np.stack([x + fx + lx, y + fy + ly], -1),
            np.stack([x + fx - lx, y + fy - ly], -1),
            np.stack([x - fx - lx, y - fy - ly], -1),
            np.stack([x - fx + lx, y - fy + ly], -1),
        ],
        axis=1,
    )


def _ego_view_matrix(
    net: RoadNetwork,
    res: float,
    ego_x: float,
    ego_y: float,
    yaw: float,
    mpp: float,
    u_e: float,
    v_e: float,
) -> np.ndarray:
    """Affine [2, 3]: view pixel (u, v) -> raster pixel; view is heading-up, ego at (u_e, v_e)."""
    x_min, _, _, y_max = net.bounds
    k = mpp / res
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array(
        [
            [k * s, -k * c, (ego_x - x_min) / res + k * (v_e * c - u_e * s)],
            [k * c, k * s, (y_max - ego_y) / res - k * (v_e * s + u_e * c)],
        ]
    )


def ego_to_view(corners: np.ndarray, mpp: float, u_e: float, v_e: float) -> np.ndarray:
    """Ego-frame points [..., 2] (x forward, y left, metres) -> fixed-point view pixels (int32)."""
    out = np.empty(corners.shape, dtype=np.int32)
    k = SUBPIXEL_SCALE / mpp
    out[..., 0] = u_e * SUBPIXEL_SCALE - corners[..., 1] * k
    out[..., 1] = v_e * SUBPIXEL_SCALE - corners[..., 0] * k
    return out



class BevCamera:
    """Semantic bird's-eye camera [H, W, 3] uint8 in the CityScapes palette, ego heading up."""

    def __init__(self, cfg: CameraConfig, net: RoadNetwork):
        # The images are small: OpenCV's worker threads only add CPU time (one core per world).
        cv2.setNumThreads(1)
        self.cfg = cfg
        self.net = net
        self.res = cfg.metres_per_pixel / cfg.raster_oversample
        self.tags, self.rgb = net.raster(self.res)
        self.u_e = cfg.ego_col_fraction * cfg.width
        self.v_e = cfg.ego_row_fraction * cfg.height
        self.size = (cfg.width, cfg.height)
        self.border = tuple(int(v) for v in PALETTE[BORDER_TAG])
        # Radius [m] beyond which an actor cannot appear in the image.
        self.view_radius = (
            cfg.metres_per_pixel
            * math.hypot(max(self.u_e, cfg.width - self.u_e), max(self.v_e, cfg.height - self.v_e))
            + 5.0
        )

    def render(
        self,
        ego_x: float,
        ego_y: float,
        yaw: float,
        layers: list[tuple[np.ndarray, tuple[int, int, int]]],
    ) -> np.ndarray:
        """``layers``: (ego-frame corners [N, 4, 2], RGB), drawn in order, one fillPoly each."""
        cfg = self.cfg
        return self.render_px(
            ego_x,
            ego_y,
            yaw,
            [
                (ego_to_view(corners, cfg.metres_per_pixel, self.u_e, self.v_e), colour)
                for corners, colour in layers
            ],
        )

    def render_px(self, ego_x: float, ego_y: float, yaw: float, layers) -> np.ndarray:
        """``layers``: (fixed-point view pixels [N, 4, 2] int32 (:func:`ego_to_view`), RGB)."""
        cfg = self.cfg
        m = _ego_view_matrix(
            self.net, self.res, ego_x, ego_y, yaw, cfg.metres_per_pixel, self.u_e, self.v_e
        )
        img = cv2.warpAffine(
            self.rgb,
            m,
            self.size,
            flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=self.border,
        )
        for pts, colour in layers:
            if len(pts):
                cv2.fillPoly(img, pts, colour, cv2.LINE_8, SUBPIXEL_SHIFT)
        return img


class Lidar:
    """LiDAR by ray marching the semantic map raster (static map) and an ego-centred raster of
    the actor boxes (see :func:`kernels.lidar_first_hits`)."""

    def __init__(self, cfg: LidarConfig, net: RoadNetwork, map_res: float):
        self.cfg = cfg
        self.net = net
        self.map_res = map_res
        self.tags, _ = net.raster(map_res)
        res = cfg.resolution_m
        half = int(math.ceil(cfg.range_m / res)) + 1
        self.n = 2 * half + 1
        self.c = float(half)
        step = res * RAY_STEP_FRACTION
        self.dist = np.arange(step, cfg.range_m + 1e-9, step, dtype=np.float32)  # [S]
        self.angles = (
            np.arange(cfg.rays_per_channel) * (2.0 * math.pi / cfg.rays_per_channel)
        ).astype(
            np.float32
        )  # [R]
        ca, sa = np.cos(self.angles), np.sin(self.angles)
        u = np.round(self.c - np.outer(sa, self.dist) / res).astype(np.int64)  # [R, S]
        v = np.round(self.c - np.outer(ca, self.dist) / res).astype(np.int64)
        self.ray_u, self.ray_v = u, v  # ego raster pixels of the ray steps [R, S]
        self._actors = np.zeros((self.n, self.n), dtype=np.uint8)  # actor boxes (0 = none)
        self._actors_drawn = False
        elev = np.radians(np.linspace(cfg.upper_fov_deg, cfg.lower_fov_deg, cfg.channels))
        self.ray_z = (cfg.mount_height_m + np.tan(elev)[:, None] * self.dist[None, :]).astype(
            np.float32
        )  # [C, S]
        self.cos, self.sin = ca, sa
        self.row_idx = np.arange(cfg.channels * cfg.rays_per_channel)  # [C * R]
        self.flat_lut = None
        if np.all(elev == 0.0):
            lut = np.zeros(256, dtype=np.uint8)
            lut[: len(TAG_HEIGHT_M)] = TAG_HEIGHT_M >= cfg.mount_height_m
            self.flat_lut = lut
            self.ray_z = self.ray_z[:1]
        self._lut = self.flat_lut if self.flat_lut is not None else np.zeros(256, dtype=np.uint8)
        # Flat LiDAR: distance [map px] from each pixel to the nearest obstacle (0 on obstacles),
        # rounded down and capped, so that rays skip free space (see kernels.lidar_first_hits).
        if self.flat_lut is not None:
            free = cv2.distanceTransform(
                (cv2.LUT(self.tags, self.flat_lut) == 0).astype(np.uint8),
                cv2.DIST_L2,
                cv2.DIST_MASK_PRECISE,
            )
            self.free_px = np.minimum(np.floor(free), 255).astype(np.uint8)
        else:
            self.free_px = np.zeros((1, 1), dtype=np.uint8)
        self._first = np.zeros((len(self.ray_z), cfg.rays_per_channel), dtype=np.int64)  # [C, R]
        self._scratch = np.zeros((3, cfg.rays_per_channel), dtype=np.int64)
        self._dirs = np.zeros((2, cfg.rays_per_channel))
        self._no_box = np.array([0, 0, -1, -1], dtype=np.int64)
        self.view_radius = cfg.range_m * math.sqrt(2.0) + 5.0
        self.empty = np.zeros((0, 4), dtype=np.float32)

    def scan(
        self,
        ego_x: float,
        ego_y: float,
        yaw: float,
        layers: list[tuple[np.ndarray, int]],
        rng: np.random.Generator,
    ) -> np.ndarray:
        """Points [N, 4] float32 (x fwd, y left, z up, intensity), one per ray that hit.

        ``layers``: (ego-frame corners [N, 4, 2], SemanticTag) drawn into the occupancy raster.
        """
        cfg = self.cfg
        return self.scan_px(
            ego_x,
            ego_y,
            yaw,
            [(ego_to_view(corners, cfg.resolution_m, self.c, self.c), tag) for corners, tag in layers],
            rng,
        )

    def scan_px(
        self, ego_x: float, ego_y: float, yaw: float, layers, rng, box: np.ndarray | None = None
    ) -> np.ndarray:
        """As :meth:`scan`, ``layers``: (fixed-point raster pixels [N, 4, 2] int32, tag);
        ``box``: whole-pixel bounds (u0, v0, u1, v1) of those boxes (computed when None)."""
        cfg = self.cfg
        # Actor boxes go into a small ego-centred raster; the static map is sampled by the rays
        # themselves, at the map raster's resolution.
        actors = self._actors
        if self._actors_drawn:
            actors.fill(0)
            self._actors_drawn = False
        for pts, tag in layers:
            if len(pts):
                cv2.fillPoly(actors, pts, int(tag), cv2.LINE_8, SUBPIXEL_SHIFT)
                self._actors_drawn = True
        if not self._actors_drawn:
            box = self._no_box
        elif box is None:
            pts = np.concatenate([p.reshape(-1, 2) for p, _ in layers]) >> SUBPIXEL_SHIFT
            box = np.concatenate([pts.min(axis=0), pts.max(axis=0) + 1]).astype(np.int64)
        first = self._first
        x_min, _, _, y_max = self.net.bounds
        count = kernels.lidar_first_hits(
            self.tags, self.free_px, (ego_x - x_min) / self.map_res, (y_max - ego_y) / self.map_res,
            yaw, self.cos, self.sin, self.dist, self.map_res, actors, self.ray_u, self.ray_v,
            box, self.c, cfg.resolution_m, self.ray_z, TAG_HEIGHT_M, self._lut,
            self.flat_lut is not None, BORDER_TAG, first, self._scratch, self._dirs,
        )
        if count == 0:
            return self.empty
        # Same stream as rng.normal(0, std, count): std * standard normal.
        noise = rng.standard_normal(count) if cfg.noise_std_m > 0.0 else np.zeros(count)
        out = np.empty((count, 4), dtype=np.float32)
        kernels.lidar_points(
            first, self.dist, self.ray_z, self.cos, self.sin, noise, cfg.noise_std_m,
            cfg.atmosphere_attenuation, out,
        )
        return out


class Radar:
    """Front radar: [M, 4] float32 (depth m, azimuth rad + left, altitude rad, velocity m/s).

    One detection per actor in the field of view, nearest first; velocity is the radial
    relative velocity (negative = approaching), as carla.RadarDetection.
    """

    def __init__(self, cfg: RadarConfig, front_offset_m: float):
        self.cfg = cfg
        self.front = front_offset_m
        self.half_h = math.radians(cfg.horizontal_fov_deg) / 2.0
        self.half_v = math.radians(cfg.vertical_fov_deg) / 2.0
        self.empty = np.zeros((0, 4), dtype=np.float32)

    def detect(
        self,
        x: np.ndarray,
        y: np.ndarray,
        vx: np.ndarray,
        vy: np.ndarray,
        radius: np.ndarray,
        height: np.ndarray,
        ego_speed: float,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """Actors in the ego frame: centres ``x``, ``y`` [A], velocities ``vx``, ``vy`` [A] (world
        velocity rotated into the ego frame), footprint radius and height [A]."""
        cfg = self.cfg
        if len(x) == 0:
            return self.empty
        x = x - self.front
        dist = np.hypot(x, y)
        az = np.arctan2(y, x)
        depth = dist - radius
        keep = (x > 0.0) & (np.abs(az) < self.half_h) & (depth < cfg.range_m)
        if not keep.any():
            return self.empty
        idx = np.nonzero(keep)[0]
        alt = np.arctan2(height[idx] * 0.5 - cfg.mount_height_m, dist[idx])
        inside = np.abs(alt) < self.half_v
        idx, alt = idx[inside], alt[inside]
        if len(idx) == 0:
            return self.empty
        d_all = np.maximum(dist[idx], 1e-6)
        radial = ((vx[idx] - ego_speed) * x[idx] + vy[idx] * y[idx]) / d_all
        cand = np.stack([np.maximum(depth[idx], 0.0), az[idx], alt, radial], axis=1)
        return self.finish(cand, rng)

    def finish(self, cand: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Detections from candidates [n, 4] (depth >= 0, azimuth, altitude, radial velocity) in
        actor order: depth noise, nearest first, at most ``max_detections``."""
        if len(cand) == 0:
            return self.empty
        cfg = self.cfg
        # Same stream as rng.normal(0, std, n): std * standard normal.
        noise = rng.standard_normal(len(cand)) if cfg.noise_std_m > 0.0 else np.zeros(len(cand))
        out = np.empty((min(len(cand), cfg.max_detections), 4), dtype=np.float32)
        kernels.radar_finish(cand, noise, cfg.noise_std_m, out)
        return out
