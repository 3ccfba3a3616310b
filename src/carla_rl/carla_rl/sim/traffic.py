"""NPC vehicles, pedestrians and traffic lights as structures of arrays (no per-actor loops)."""

from __future__ import annotations

import numpy as np

from carla_rl.sensor_frame import TrafficLightState
from carla_rl.sim.road import RoadNetwork
from carla_rl.sim.sim_config import IdmConfig, PedestrianConfig, TrafficLightConfig

STOP_LINE_MARGIN_M = 1.0  # vehicles stop this far before the stop line [m]
FAR_M = 1.0e6  # "no obstacle" gap [m]
WALK, WAIT, CROSS = 0, 1, 2  # pedestrian states
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
        self.is_red_or_yellow = np.zeros(len(self.group), dtype=bool)
        self.is_green = np.zeros(len(self.group), dtype=bool)

    def reset(self, rng: np.random.Generator, enabled: bool) -> None:
        self.enabled = enabled and len(self.group) > 0
        num_nodes = int(self.node.max()) + 1 if len(self.node) else 0
        node_offset = rng.uniform(0.0, self.cfg.cycle_s, num_nodes)
        self.offset = node_offset[self.node] if num_nodes else np.zeros(0)
        self.update(0.0)

    def update(self, t: float) -> None:
        """States at episode time ``t`` [s]."""
        if not self.enabled:
            self.state[:] = _OFF
            self.is_red_or_yellow[:] = False
            self.is_green[:] = False
            return
        c = self.cfg
        half = c.green_s + c.yellow_s + c.all_red_s
        phase = (t + self.offset + self.group * half) % c.cycle_s  # [NL]
        self.state = np.where(
            phase < c.green_s,
            _GREEN,
            np.where(
                phase < c.green_s + c.yellow_s, _YELLOW, _RED
            ),
        )
        self.is_green = self.state == _GREEN
        self.is_red_or_yellow = ~self.is_green


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
        self._priority = np.zeros((0, 0), dtype=bool)
        self._lane_len = np.zeros(0)
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

    def _lower_has_priority(self, n: int) -> np.ndarray:
        """[N, N] bool: row i yields to column j when both block each other and j < i."""
        if self._priority.shape != (n, n):
            self._priority = np.arange(n)[:, None] > np.arange(n)[None, :]
        return self._priority

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
        if len(self._lane_len) != n:
            self._cache_lane_data()
        cos, sin = np.cos(self.yaw), np.sin(self.yaw)
        half_len = self._half_len
        rows = np.arange(n)
        if self._tick % LEADER_SEARCH_TICKS == 0 or len(self._lead) != n:
            # Full search [N, A]: the nearest obstacle in each vehicle's look-ahead corridor.
            dx = obstacles_pos[None, :, 0] - self.pos[:, 0, None]  # [N, A]
            dy = obstacles_pos[None, :, 1] - self.pos[:, 1, None]
            x = dx * cos[:, None] + dy * sin[:, None]  # ahead
            y = dy * cos[:, None] - dx * sin[:, None]  # left
            in_cone = (
                (x > 0.1)
                & (x < cfg.lookahead_m)
                & (np.abs(y) < self._corridor[:, None] + obstacles_half_wid[None, :])
            )
            mutual = in_cone[:, :n] & in_cone[:, :n].T
            in_cone[:, :n] &= ~mutual | self._lower_has_priority(n)
            gap = np.where(in_cone, x - half_len[:, None] - obstacles_half_len[None, :], FAR_M)
            lead = np.argmin(gap, axis=1)  # [N]
            self._lead = np.where(gap[rows, lead] < FAR_M, lead, -1)
        self._tick += 1
        # Between searches only the known leader is tracked (a 0.1-0.15 s reaction time).
        lead = np.maximum(self._lead, 0)
        dx = obstacles_pos[lead, 0] - self.pos[:, 0]
        dy = obstacles_pos[lead, 1] - self.pos[:, 1]
        x = dx * cos + dy * sin
        y = dy * cos - dx * sin
        valid = (
            (self._lead >= 0)
            & (x > 0.1)
            & (x < cfg.lookahead_m)
            & (np.abs(y) < self._corridor + obstacles_half_wid[lead])
        )
        lead_gap = np.where(valid, x - half_len - obstacles_half_len[lead], FAR_M)
        lead_v = obstacles_speed[lead] * np.cos(obstacles_yaw[lead] - self.yaw)
        dv = np.where(valid, self.speed - lead_v, 0.0)
        del yield_to_all
        # Red / yellow light at the end of the current lane: a standing obstacle at the stop line.
        light = self._light
        to_end = self._lane_len - self.s
        if lights.enabled:
            light0 = np.maximum(light, 0)
            stop = (light >= 0) & lights.is_red_or_yellow[light0]
            yellow = stop & (lights.state[light0] == _YELLOW)
            can_stop = (
                self.speed**2 / (2.0 * cfg.comfortable_decel_mps2) < to_end - STOP_LINE_MARGIN_M
            )
            stop &= ~yellow | can_stop
            light_gap = np.where(stop, to_end - STOP_LINE_MARGIN_M - half_len, FAR_M)
            use_light = light_gap < lead_gap
            lead_gap = np.where(use_light, light_gap, lead_gap)
            dv = np.where(use_light, self.speed, dv)
        # Slow down before and through turns.
        turning = self._turn_now | (self._turn_next & (to_end < cfg.turn_slowdown_m))
        v0 = np.where(turning, np.minimum(self.v0, cfg.turn_speed_mps), self.v0)
        acc = idm_accel(self.speed, v0, lead_gap, dv, cfg)
        any_static = self._any_static
        moving = ~self.static
        self.speed = np.maximum(self.speed + acc * dt, 0.0)
        if any_static:
            self.speed = np.where(moving, self.speed, 0.0)
        self.s = self.s + self.speed * dt
        over = self.s > self._lane_len
        if over.any():
            idx = np.nonzero(over)[0]
            excess = self.s[idx] - net.lane_len[self.lane[idx]]
            nxt = self.next_lane[idx]
            dead = nxt < 0
            self.lane[idx] = np.where(dead, self.lane[idx], nxt)
            self.s[idx] = np.where(dead, 0.0, excess)  # dead end: respawn at the lane start
            self.next_lane[idx] = self._choose_next(rng, self.lane[idx])
            self._cache_lane_data()
        pos, yaw = net.lane_pose(self.lane, self.s)
        if any_static:
            pos = np.where(moving[:, None], pos, self.pos)
            yaw = np.where(moving, yaw, self.yaw)
        self.pos, self.yaw = pos, yaw

    def _cache_lane_data(self) -> None:
        """Per-vehicle copies of lane data; refreshed only when a vehicle changes lane."""
        net = self.net
        self._lane_len = net.lane_len[self.lane]                                     # [N]
        self._light = net.lane_light[self.lane]                                      # [N]
        self._turn_now = net.lane_is_turn[self.lane]                                 # [N]
        self._turn_next = net.lane_is_turn[np.maximum(self.next_lane, 0)] & (self.next_lane >= 0)
        self._half_len = self.length / 2.0
        self._corridor = self.width / 2.0 + self.cfg.lateral_margin_m
        self._any_static = bool(self.static.any())


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
        self.loop = rng.integers(len(self.loop_len), size=n)
        self.u = rng.uniform(0.0, 1.0, n) * self.loop_len[self.loop]
        self.direction = np.where(rng.random(n) < 0.5, -1.0, 1.0)
        self.speed = rng.uniform(self.cfg.speed_min_mps, self.cfg.speed_max_mps, n)
        self._update_pose()

    def step(self, dt: float, rng: np.random.Generator, lights: TrafficLights) -> None:
        if self.n == 0:
            return
        paths = self.paths
        walk = self.state == WALK
        u_new = self.u + np.where(walk, self.direction * self.speed * dt, 0.0)
        if len(self.cp_g):
            g_old = self.loop_off[self.loop] + self.u
            g_new = self.loop_off[self.loop] + u_new
            i_old = np.searchsorted(self.cp_g, g_old, side="right")
            i_new = np.searchsorted(self.cp_g, g_new, side="right")
            hit = walk & (i_old != i_new)
            if hit.any():
                self._on_crossing_points(
                    rng, lights, hit, np.where(self.direction > 0, i_old, i_new)
                )
        self.u = np.where(self.state == WALK, np.mod(u_new, self.loop_len[self.loop]), self.u)
        # Waiting pedestrians go when their walk signal is green (or the signals are off).
        wait = self.state == WAIT
        if wait.any():
            light = paths.cp_walk_light[self.cp]
            go = wait & (~lights.enabled | (light < 0) | lights.is_green[np.maximum(light, 0)])
            self.state = np.where(go, CROSS, self.state)
        cross = self.state == CROSS
        if cross.any():
            span = np.linalg.norm(self.cp_target_pos[self.cp] - self.cp_pos[self.cp], axis=1)
            self.t = np.where(cross, self.t + self.speed * dt / np.maximum(span, 0.1), self.t)
            done = cross & (self.t >= 1.0)
            if done.any():
                self.loop = np.where(done, paths.cp_target_loop[self.cp], self.loop)
                self.u = np.where(done, paths.cp_target_u[self.cp], self.u)
                self.state = np.where(done, WALK, self.state)
                self.t = np.where(done, 0.0, self.t)
        self._update_pose()

    def _on_crossing_points(self, rng, lights, hit, sorted_idx) -> None:
        paths = self.paths
        sorted_idx = np.clip(sorted_idx, 0, len(self.cp_g) - 1)
        cp = self.cp_order[sorted_idx]
        hit &= paths.cp_loop[cp] == self.loop
        roll = rng.random((self.n, 2))
        crosswalk = paths.cp_is_crosswalk[cp]
        take = hit & np.where(
            crosswalk,
            roll[:, 0] < self.cfg.crossing_probability,
            roll[:, 0] < self.jaywalk_probability,
        )
        light = paths.cp_walk_light[cp]
        red = lights.enabled & (light >= 0) & ~lights.is_green[np.maximum(light, 0)] & crosswalk
        jaywalk = roll[:, 1] < self.jaywalk_probability
        go_now = take & (~red | jaywalk)
        wait = take & red & ~jaywalk
        self.cp = np.where(take, cp, self.cp)
        self.t = np.where(take, 0.0, self.t)
        self.state = np.where(go_now, CROSS, np.where(wait, WAIT, self.state))

    def _update_pose(self) -> None:
        walk_pos, walk_yaw = self._loop_pose(self.loop, self.u)
        walk_yaw = walk_yaw + np.where(self.direction < 0, np.pi, 0.0)
        off_walk = self.state != WALK
        if off_walk.any():
            a, b = self.cp_pos[self.cp], self.cp_target_pos[self.cp]
            d = b - a
            cross_pos = a + np.minimum(np.maximum(self.t, 0.0), 1.0)[:, None] * d
            cross_yaw = np.arctan2(d[:, 1], d[:, 0])
            pos = np.where(off_walk[:, None], cross_pos, walk_pos)
            self.yaw = np.where(off_walk, cross_yaw, walk_yaw)
        else:
            pos = walk_pos
            self.yaw = walk_yaw
        self.pos = pos

    @property
    def velocity(self) -> np.ndarray:
        """[P, 2] walking velocity in the map frame [m/s] (zero while waiting)."""
        v = self.speed * (self.state != WAIT)
        return np.stack([np.cos(self.yaw) * v, np.sin(self.yaw) * v], axis=1)
