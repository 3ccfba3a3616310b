"""NPC vehicles, pedestrians and traffic lights as structures of arrays (no per-actor loops).

The per-tick work runs in compiled kernels (:mod:`carla_rl.sim.kernels`), one call per group.
"""

from __future__ import annotations

import numpy as np

from carla_rl.contract.sensor_frame import TrafficLightState
from carla_rl.sim import kernels
from carla_rl.sim.road import RoadNetwork
from carla_rl.sim.sim_config import IdmConfig, PedestrianConfig, TrafficLightConfig

FAR_M = kernels.FAR_M  # "no obstacle" gap [m]
WALK, WAIT, CROSS = kernels.WALK, kernels.WAIT, kernels.CROSS  # pedestrian states
STOP_LINE_MARGIN_M = 1.0  # vehicles stop this far before the stop line [m]
_GREEN, _YELLOW, _RED, _OFF = (int(TrafficLightState.GREEN), int(TrafficLightState.YELLOW),
                                int(TrafficLightState.RED), int(TrafficLightState.OFF))
LEADER_SEARCH_TICKS = 3  # full obstacle search every this many ticks (leader tracked between)


class TrafficLights:
    """Fixed-time plan per light: group 0 is green first, group 1 half a cycle later."""

    def __init__(self, net: RoadNetwork, cfg: TrafficLightConfig):
        self.cfg = cfg
        self.group = net.light_group  # [NL]
        self.node = net.light_node  # [NL]
        self.offset = np.zeros(len(self.group))  # [NL] cycle offset [s]
        self.enabled = False
        self.state = np.full(len(self.group), TrafficLightState.OFF, dtype=np.int64)

    def reset(self, rng: np.random.Generator, enabled: bool) -> None:
        self.enabled = enabled and len(self.group) > 0
        num_nodes = int(self.node.max()) + 1 if len(self.node) else 0
        node_offset = rng.uniform(0.0, self.cfg.cycle_s, num_nodes)
        self.offset = node_offset[self.node] if num_nodes else np.zeros(0)
        self.update(0.0)

    def update(self, t: float) -> None:
        """States at episode time ``t`` [s] (in place)."""
        if not self.enabled:
            self.state[:] = _OFF
            return
        c = self.cfg
        kernels.lights_update(
            t, self.offset, self.group, c.green_s + c.yellow_s + c.all_red_s, c.cycle_s,
            c.green_s, c.yellow_s, _RED, _YELLOW, _GREEN, self.state,
        )


def idm_accel(
    v: np.ndarray, v0: np.ndarray, gap: np.ndarray, dv: np.ndarray, cfg: IdmConfig
) -> np.ndarray:
    """IDM acceleration [N]: speed v, desired speed v0, bumper gap [m], dv = v - v_lead."""
    s_star = cfg.min_gap_m + np.maximum(
        0.0,
        v * cfg.time_headway_s
        + v * dv / (2.0 * np.sqrt(cfg.max_accel_mps2 * cfg.comfortable_decel_mps2)),
    )
    free = 1.0 - (v / np.maximum(v0, 0.1)) ** cfg.delta
    inter = (s_star / np.maximum(gap, 0.1)) ** 2
    return np.minimum(
        np.maximum(cfg.max_accel_mps2 * (free - inter), -cfg.max_decel_mps2), cfg.max_accel_mps2
    )


class Vehicles:
    """NPC vehicles on lanes: lane [N], s [N], speed [N]; pose derived from the lane geometry."""

    def __init__(self, net: RoadNetwork, cfg: IdmConfig):
        self.net = net
        self.cfg = cfg
        self.resize(0)

    def resize(self, n: int) -> None:
        self.n = n
        self._tick = 0
        self._lead = np.zeros(0, dtype=np.int64)
        self._cone = np.zeros((0, 0), dtype=bool)  # scratch of the obstacle search [N, A]
        self._over = np.zeros(n, dtype=bool)  # vehicles that entered a new lane this tick
        self.lane = np.zeros(n, dtype=np.int64)
        self.next_lane = np.zeros(n, dtype=np.int64)
        self.s = np.zeros(n)
        self.speed = np.zeros(n)
        self.v0 = np.zeros(n)
        self.static = np.zeros(n, dtype=bool)
        self.pos = np.zeros((n, 2))
        self.yaw = np.zeros(n)
        self.length = np.full(n, self.cfg.vehicle_length_m)
        self.width = np.full(n, self.cfg.vehicle_width_m)

    def spawn(
        self,
        rng: np.random.Generator,
        n: int,
        target_speed: float,
        avoid: np.ndarray,
        avoid_radius: float,
    ) -> None:
        """Place ``n`` vehicles on spawn lanes, apart from each other and from ``avoid`` [2]."""
        self.resize(n)
        net, cfg = self.net, self.cfg
        lanes = np.array(net.spawn_lanes)
        placed = 0
        tries = 0
        while placed < n and tries < 50 * n + 100:
            tries += 1
            lane = int(lanes[rng.integers(len(lanes))])
            s = float(rng.uniform(0.0, net.lane_len[lane]))
            p, h = net.lane_pose(np.array([lane]), np.array([s]))
            if np.linalg.norm(p[0] - avoid) < avoid_radius:
                continue
            if (
                placed
                and np.min(np.linalg.norm(self.pos[:placed] - p[0], axis=1)) < cfg.spawn_spacing_m
            ):
                continue
            self.lane[placed], self.s[placed], self.pos[placed], self.yaw[placed] = (
                lane,
                s,
                p[0],
                h[0],
            )
            placed += 1
        self.resize_keep(placed)
        factor = rng.uniform(cfg.speed_factor_low, cfg.speed_factor_high, placed)
        self.v0 = target_speed * factor
        self.speed = self.v0 * 0.5
        self.next_lane = self._choose_next(rng, self.lane)

    def park(self, centres: np.ndarray, yaws: np.ndarray) -> None:
        """Static vehicles (parking lot): fixed poses, never moving."""
        n = len(centres)
        self.resize(n)
        self.pos[:] = centres
        self.yaw[:] = yaws
        self.static[:] = True

    def resize_keep(self, n: int) -> None:
        lane, s, pos, yaw = (
            self.lane[:n].copy(),
            self.s[:n].copy(),
            self.pos[:n].copy(),
            self.yaw[:n].copy(),
        )
        self.resize(n)
        self.lane, self.s, self.pos, self.yaw = lane, s, pos, yaw
        self._over = np.zeros(n, dtype=bool)

    def _choose_next(self, rng: np.random.Generator, lane: np.ndarray) -> np.ndarray:
        count = self.net.n_succ[lane]
        pick = np.floor(rng.random(len(lane)) * np.maximum(count, 1)).astype(np.int64)
        nxt = self.net.succ[lane, pick]
        return np.where(count > 0, nxt, -1)

    def step(
        self,
        dt: float,
        rng: np.random.Generator,
        lights: TrafficLights,
        obstacles_pos: np.ndarray,
        obstacles_yaw: np.ndarray,
        obstacles_speed: np.ndarray,
        obstacles_half_len: np.ndarray,
        obstacles_half_wid: np.ndarray,
        yield_to_all: np.ndarray,
    ) -> None:
        """One IDM step. Obstacles [A, ...] = the vehicles themselves first, then ego, pedestrians.

        ``yield_to_all`` [A] marks obstacles that always keep priority (the ego); among vehicles a
        mutual block is resolved in favour of the lower index, so no intersection deadlocks.
        """
        n = self.n
        if n == 0 or self.static.all():
            return
        net, cfg = self.net, self.cfg
        na = len(obstacles_half_len)
        search = self._tick % LEADER_SEARCH_TICKS == 0 or len(self._lead) != n
        if len(self._lead) != n:
            self._lead = np.full(n, -1, dtype=np.int64)
        if self._cone.shape != (n, na):
            self._cone = np.empty((n, na), dtype=bool)
        if len(self._over) != n:
            self._over = np.zeros(n, dtype=bool)
        self._tick += 1
        del yield_to_all
        n_over = kernels.vehicles_step(
            dt, search, self._lead, self.lane, self.next_lane, self.s, self.speed, self.v0,
            self.static, self.pos, self.yaw, self.length, self.width,
            obstacles_pos, obstacles_yaw, obstacles_speed, obstacles_half_len, obstacles_half_wid,
            self._cone, lights.enabled, lights.state,
            net.lane_len, net.lane_light, net.lane_is_turn, net.lane_off, net.lane_first,
            net.lane_last_seg, net.gs, net.seg_len, net.pts, net.seg_heading,
            cfg.lookahead_m, cfg.lateral_margin_m, STOP_LINE_MARGIN_M, cfg.turn_slowdown_m,
            cfg.turn_speed_mps, cfg.min_gap_m, cfg.time_headway_s, cfg.max_accel_mps2,
            cfg.comfortable_decel_mps2, cfg.delta, cfg.max_decel_mps2, self._over,
        )
        if n_over:
            idx = np.nonzero(self._over)[0]
            self.next_lane[idx] = self._choose_next(rng, self.lane[idx])


class Pedestrians:
    """Pedestrians on sidewalk loops: state WALK / WAIT (at a red crosswalk) / CROSS."""

    def __init__(self, net: RoadNetwork, cfg: PedestrianConfig, spacing: float):
        self.net = net
        self.cfg = cfg
        paths = net.ped_paths
        self.paths = paths
        pts, gs, off, length, first, last = [], [], [], [], [], []
        g0, p0 = 0.0, 0
        for loop in paths.loops:
            seg = np.linalg.norm(np.diff(loop, axis=0), axis=1)
            s = np.concatenate([[0.0], np.cumsum(seg)])
            pts.append(loop)
            gs.append(g0 + s)
            off.append(g0)
            length.append(s[-1])
            first.append(p0)
            last.append(p0 + len(loop) - 2)
            g0 += s[-1] + 10.0
            p0 += len(loop)
        self.pts = np.concatenate(pts)  # [P, 2]
        self.gs = np.concatenate(gs)  # [P]
        d = np.diff(self.pts, axis=0)
        self.seg_heading = np.concatenate([np.arctan2(d[:, 1], d[:, 0]), [0.0]])
        self.seg_len = np.concatenate([np.maximum(np.linalg.norm(d, axis=1), 1e-9), [1.0]])
        self.loop_off = np.array(off)
        self.loop_len = np.array(length)
        self.loop_first = np.array(first, dtype=np.int64)
        self.loop_last = np.array(last, dtype=np.int64)
        cp_g = self.loop_off[paths.cp_loop] + paths.cp_u if len(paths.cp_loop) else np.zeros(0)
        order = np.argsort(cp_g, kind="stable")
        self.cp_g = cp_g[order]  # [C] sorted
        self.cp_order = order
        self.cp_pos = (
            self._loop_pose(paths.cp_loop, paths.cp_u)[0] if len(order) else np.zeros((0, 2))
        )
        self.cp_target_pos = (
            self._loop_pose(paths.cp_target_loop, paths.cp_target_u)[0]
            if len(order)
            else np.zeros((0, 2))
        )
        self.jaywalk_probability = 0.0
        self.resize(0)

    def resize(self, n: int) -> None:
        self.n = n
        self.loop = np.zeros(n, dtype=np.int64)
        self.u = np.zeros(n)
        self.direction = np.ones(n)
        self.speed = np.zeros(n)
        self.state = np.zeros(n, dtype=np.int64)
        self.cp = np.zeros(n, dtype=np.int64)  # crossing point being waited at / crossed
        self.t = np.zeros(n)  # crossing progress [0, 1]
        self.pos = np.zeros((n, 2))
        self.yaw = np.zeros(n)
        self._u_new = np.zeros(n)  # scratch of the compiled step
        self._sorted_idx = np.zeros(n, dtype=np.int64)
        self._hit = np.zeros(n, dtype=bool)
        self._no_roll = np.zeros((n, 2))

    def _loop_pose(self, loop: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        g = self.loop_off[loop] + u
        k = np.searchsorted(self.gs, g, side="right") - 1
        k = np.minimum(np.maximum(k, self.loop_first[loop]), self.loop_last[loop])
        t = (g - self.gs[k]) / self.seg_len[k]
        return self.pts[k] + t[:, None] * (self.pts[k + 1] - self.pts[k]), self.seg_heading[k]

    def spawn(self, rng: np.random.Generator, n: int, jaywalk_probability: float) -> None:
        self.resize(n)
        self.jaywalk_probability = jaywalk_probability
        if n == 0:
            return
        self.loop = rng.integers(len(self.loop_len), size=n).astype(np.int64)
        self.u = rng.uniform(0.0, 1.0, n) * self.loop_len[self.loop]
        self.direction = np.where(rng.random(n) < 0.5, -1.0, 1.0)
        self.speed = rng.uniform(self.cfg.speed_min_mps, self.cfg.speed_max_mps, n)
        self._update_pose()

    def step(self, dt: float, rng: np.random.Generator, lights: TrafficLights) -> None:
        """Walk, take / wait at / cross crossing points, all pedestrians in two compiled calls.

        A pedestrian passing a crossing point takes it with ``crossing_probability`` (crosswalk)
        or the jaywalk probability; it waits at a red crosswalk unless it jaywalks. ``roll`` [N, 2]
        is drawn only on ticks where someone passed a crossing point.
        """
        if self.n == 0:
            return
        any_hit = kernels.pedestrians_advance(
            dt, self.state, self.direction, self.speed, self.loop, self.u, self.loop_off,
            self.cp_g, self._u_new, self._sorted_idx, self._hit,
        )
        roll = rng.random((self.n, 2)) if any_hit else self._no_roll
        paths = self.paths
        kernels.pedestrians_finish(
            dt, any_hit, roll, self.cfg.crossing_probability, self.jaywalk_probability,
            lights.enabled, lights.state, self.state, self.direction, self.speed, self.loop,
            self.u, self.cp, self.t, self._u_new, self._sorted_idx, self._hit,
            self.cp_order, paths.cp_loop, paths.cp_is_crosswalk, paths.cp_walk_light,
            paths.cp_target_loop, paths.cp_target_u, self.cp_pos, self.cp_target_pos,
            self.loop_off, self.loop_len, self.loop_first, self.loop_last, self.gs,
            self.seg_len, self.seg_heading, self.pts, self.pos, self.yaw,
        )

    def _update_pose(self) -> None:
        kernels.pedestrians_pose(
            self.state, self.direction, self.loop, self.u, self.cp, self.t, self.cp_pos,
            self.cp_target_pos, self.loop_off, self.loop_first, self.loop_last, self.gs,
            self.seg_len, self.seg_heading, self.pts, self.pos, self.yaw,
        )

    @property
    def velocity(self) -> np.ndarray:
        """[P, 2] walking velocity in the map frame [m/s] (zero while waiting)."""
        v = self.speed * (self.state != WAIT)
        return np.stack([np.cos(self.yaw) * v, np.sin(self.yaw) * v], axis=1)
