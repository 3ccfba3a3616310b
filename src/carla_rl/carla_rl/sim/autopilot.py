"""Scripted autopilot: pure-pursuit route following, IDM gap keeping, light obedience, parking.

It reads the world's privileged state (route, actors) and returns a carla.VehicleControl; it is a
reference driver for tests, benchmarks and demonstrations, not part of the learning stack.
:func:`nearest_action` maps its control to the closest discrete action.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from carla_rl.contract.sensor_frame import SensorFrame, TrafficLightState, VehicleControl
from carla_rl.sim.sim_config import IdmConfig, SimConfig
from carla_rl.sim.traffic import idm_accel
from carla_rl.sim.world import World

FAR_M = 1.0e6
_RED, _YELLOW = int(TrafficLightState.RED), int(TrafficLightState.YELLOW)
ROUTE_STRIDE = 2  # route points used by the obstacle corridor check (1 m apart)


@dataclass(frozen=True)
class AutopilotConfig:
    """Gains of the reference driver (not a ROS parameter set: the autopilot is a test tool)."""

    lookahead_min_m: float = 2.5  # pure-pursuit look-ahead at standstill [m]
    lookahead_gain_s: float = 0.35  # extra look-ahead per m/s [s]
    max_lateral_accel_mps2: float = 2.8  # curve speed limit [m/s^2]
    comfortable_decel_mps2: float = 3.0  # planning deceleration [m/s^2]
    scan_ahead_m: float = 40.0  # route length checked for obstacles [m]
    vehicle_margin_m: float = 0.7  # extra lateral clearance to vehicles [m]
    pedestrian_margin_m: float = 1.5  # extra lateral clearance to pedestrians [m]
    pedestrian_predict_s: float = 1.5  # pedestrians are also checked where they will be [s]
    vehicle_predict_s: float = 1.5  # vehicles are also checked where they will be [s]
    stop_line_margin_m: float = 1.0  # stop this far before a stop line [m]
    parking_speed_mps: float = 1.5  # speed of the parking manoeuvre [m/s]
    parking_lookahead_m: float = 2.5  # pure-pursuit look-ahead while reversing [m]
    heading_gain: float = 1.2  # steer [rad] per rad of heading error
    lateral_gain: float = 0.4  # steer [rad] per m of lateral error
    speed_gain: float = 0.8  # throttle / brake per m/s^2 of acceleration error


class Autopilot:
    """``autopilot(frame) -> VehicleControl`` for the current episode of ``world``."""

    def __init__(self, world: World, config: AutopilotConfig | None = None):
        self.world = world
        self.cfg = config or AutopilotConfig()
        sim: SimConfig = world.cfg
        self.veh = sim.vehicle
        self.idm = IdmConfig(
            max_accel_mps2=3.0,
            comfortable_decel_mps2=self.cfg.comfortable_decel_mps2,
            time_headway_s=1.2,
            min_gap_m=2.5,
            max_decel_mps2=sim.vehicle.max_brake_mps2,
        )
        self.max_steer = math.radians(self.veh.max_steer_deg)
        self._episode = -1
        self._reversing = False
        self._curv_speed = np.zeros(0)

    # ------------------------------------------------------------------ helpers
    def _new_episode(self) -> None:
        self._episode = self.world.episode_id
        self._reversing = False
        route = self.world.route
        pts = route.points
        d = np.diff(pts, axis=0)
        heading = np.unwrap(np.arctan2(d[:, 1], d[:, 0]))
        ds = np.maximum(np.linalg.norm(d, axis=1), 1e-6)
        curv = np.abs(np.diff(heading)) / ds[1:]  # [K-2]
        curv = np.concatenate([[0.0], curv, [0.0]])
        signed = np.diff(heading) / ds[1:]
        self._signed_curv = np.convolve(
            np.concatenate([[0.0], signed, [0.0]]), np.ones(3) / 3.0, mode="same"
        )  # [K] 1/m
        # Smooth over +-2 points so one kink does not hide a turn.
        curv = np.convolve(curv, np.ones(5) / 5.0, mode="same")
        self._curv_speed = np.sqrt(self.cfg.max_lateral_accel_mps2 / np.maximum(curv, 1e-4))  # [K]

    def _point_at(self, s: float) -> np.ndarray:
        route = self.world.route
        s = min(max(s, 0.0), route.length)
        return np.array(
            [np.interp(s, route.s, route.points[:, 0]), np.interp(s, route.s, route.points[:, 1])]
        )

    def _pursuit_steer(self, target: np.ndarray, reverse: bool) -> float:
        w = self.world
        wb = self.veh.wheelbase_m
        c, s = math.cos(w.yaw), math.sin(w.yaw)
        rear = np.array([w.x - wb / 2.0 * c, w.y - wb / 2.0 * s])
        heading = w.yaw + (math.pi if reverse else 0.0)
        d = target - rear
        dist = max(float(np.hypot(d[0], d[1])), 0.5)
        alpha = math.atan2(d[1], d[0]) - heading
        curvature = 2.0 * math.sin(alpha) / dist
        delta = math.atan(wb * curvature)  # + = left
        steer = delta / self.max_steer if reverse else -delta / self.max_steer
        return float(min(max(steer, -1.0), 1.0))

    def _track_steer(self) -> float:
        """Rear-axle path tracking: curvature feed-forward + heading and lateral feedback."""
        w, cfg = self.world, self.cfg
        wb = self.veh.wheelbase_m
        c, s = math.cos(w.yaw), math.sin(w.yaw)
        rear = np.array([w.x - wb / 2.0 * c, w.y - wb / 2.0 * s])
        pts = w.route.points
        lo = max(0, w._route_idx - 8)
        hi = min(len(pts) - 1, w._route_idx + 8)
        a, b = pts[lo:hi], pts[lo + 1 : hi + 1]
        ab = b - a
        seg2 = np.maximum(np.einsum("ij,ij->i", ab, ab), 1e-12)
        t = np.minimum(np.maximum(np.einsum("ij,ij->i", rear - a, ab) / seg2, 0.0), 1.0)
        diff = rear - (a + t[:, None] * ab)
        k = int(np.argmin(np.einsum("ij,ij->i", diff, diff)))
        seg = ab[k] / math.sqrt(seg2[k])
        lateral = float(seg[0] * diff[k, 1] - seg[1] * diff[k, 0])  # + = left
        heading_err = math.atan2(
            math.sin(w.yaw - math.atan2(seg[1], seg[0])),
            math.cos(w.yaw - math.atan2(seg[1], seg[0])),
        )
        kappa = float(self._signed_curv[min(lo + k + 1, len(pts) - 1)])
        delta = math.atan(wb * kappa) - cfg.heading_gain * heading_err - cfg.lateral_gain * lateral
        return float(min(max(-delta / self.max_steer, -1.0), 1.0))

    def _pedals(self, accel: float, reverse: bool = False) -> tuple[float, float]:
        """Throttle and brake for a desired acceleration along the direction of travel."""
        veh = self.veh
        v = abs(self.world.speed)
        natural = veh.rolling_resistance_mps2 + veh.drag_coefficient * v * v
        if accel >= 0.0:
            gain = veh.max_accel_mps2 * (0.6 if reverse else 1.0)
            return float(min(1.0, (accel + natural) / gain)), 0.0
        need = -accel - natural
        if need <= 0.0:
            return float(min(1.0, (accel + natural) / veh.max_accel_mps2)), 0.0
        return 0.0, float(min(1.0, need / veh.max_brake_mps2))

    # ------------------------------------------------------------------ policy
    def __call__(self, frame: SensorFrame) -> VehicleControl:
        if self.world.episode_id != self._episode:
            self._new_episode()
        if self.world.route.goal_yaw is not None:
            return self._park(frame)
        return self._drive(frame)

    def _drive(self, frame: SensorFrame) -> VehicleControl:
        w, cfg = self.world, self.cfg
        sit = frame.situation
        progress = sit.route_progress_m
        v = max(w.speed, 0.0)
        steer = self._track_steer()
        # Desired speed: scenario target, limited by curves ahead (with braking distance).
        route = w.route
        i0 = int(np.searchsorted(route.s, progress))
        i1 = int(np.searchsorted(route.s, progress + cfg.scan_ahead_m))
        v_des = w.scenario.target_speed_mps
        if i1 > i0:
            ahead = np.maximum(route.s[i0:i1] - progress, 0.0)
            allowed = np.sqrt(
                self._curv_speed[i0:i1] ** 2 + 2.0 * cfg.comfortable_decel_mps2 * ahead
            )
            v_des = min(v_des, float(allowed.min()))
        gap, lead_v = self._obstacle_gap(progress, i0, i1)
        # Lights: a red (or a yellow we can stop for) stop line is a standing obstacle.
        if sit.traffic_light_state in (_RED, _YELLOW):
            dist = sit.traffic_light_distance_m
            stoppable = v * v / (2.0 * cfg.comfortable_decel_mps2) < dist
            if dist > -0.5 and (sit.traffic_light_state == _RED or stoppable):
                light_gap = dist - cfg.stop_line_margin_m + self.idm.min_gap_m
                if light_gap < gap:
                    gap, lead_v = light_gap, 0.0
        accel = float(
            idm_accel(
                np.array([v]), np.array([v_des]), np.array([gap]), np.array([v - lead_v]), self.idm
            )[0]
        )
        if v_des < 0.3 and gap > 50.0:
            accel = min(accel, -1.0)
        throttle, brake = self._pedals(accel)
        if v < 0.2 and accel < 0.0:
            throttle, brake = 0.0, 1.0
        return VehicleControl(throttle=throttle, steer=steer, brake=brake)

    def _obstacle_gap(self, progress: float, i0: int, i1: int) -> tuple[float, float]:
        """Bumper gap [m] along the route to the nearest actor in the corridor, and its speed."""
        w, cfg = self.world, self.cfg
        pos = w._a_pos  # [A, 2]
        if len(pos) == 0 or i1 <= i0:
            return FAR_M, 0.0
        route = w.route
        pts = route.points[i0:i1:ROUTE_STRIDE]  # [W, 2]
        s_pts = route.s[i0:i1:ROUTE_STRIDE]
        nv = w.vehicles.n
        ped = np.arange(len(pos)) >= nv
        yaw, speed = w._a_yaw, w._a_speed
        lengths, widths = w._a_len, w._a_wid
        horizon = np.where(ped, cfg.pedestrian_predict_s, cfg.vehicle_predict_s)
        step = (speed * horizon)[:, None] * np.stack([np.cos(yaw), np.sin(yaw)], axis=1)
        cand = np.concatenate([pos, pos + 0.5 * step, pos + step])  # [3A, 2]
        near = np.tile(w._a_dist2, 3) < (cfg.scan_ahead_m + 10.0) ** 2
        if not near.any():
            return FAR_M, 0.0
        idx = np.nonzero(near)[0]
        diff = cand[idx, None, :] - pts[None, :, :]  # [n, W, 2]
        dist = np.hypot(diff[..., 0], diff[..., 1])
        k = dist.argmin(axis=1)
        lateral = dist[np.arange(len(idx)), k]
        a = idx % len(pos)
        margin = np.where(ped[a], cfg.pedestrian_margin_m, cfg.vehicle_margin_m)
        half_w = widths[a] / 2.0
        blocked = lateral < self.veh.width_m / 2.0 + half_w + margin
        if not blocked.any():
            return FAR_M, 0.0
        along = s_pts[k] - progress - self.veh.length_m / 2.0 - lengths[a] / 2.0
        along = np.where(blocked, along, FAR_M)
        j = int(along.argmin())
        heading = (
            math.atan2(
                pts[min(k[j] + 1, len(pts) - 1), 1] - pts[k[j], 1],
                pts[min(k[j] + 1, len(pts) - 1), 0] - pts[k[j], 0],
            )
            if len(pts) > 1
            else w.yaw
        )
        lead_v = float(speed[a[j]] * math.cos(yaw[a[j]] - heading))
        return float(max(along[j], 0.0)), max(lead_v, 0.0)

    def _park(self, frame: SensorFrame) -> VehicleControl:
        """Parking: follow the route forward, slow (target speed), into the bay; a route with a
        reverse part (``reverse_from_s`` finite) is driven to its switch point, then backwards."""
        w, cfg = self.world, self.cfg
        route = w.route
        progress = frame.situation.route_progress_m
        if not self._reversing:
            to_switch = route.reverse_from_s - progress
            if to_switch < 0.3 and abs(w.speed) < 0.05:
                self._reversing = True
            else:
                target = self._point_at(
                    min(progress + cfg.lookahead_min_m, route.reverse_from_s + 3.0)
                )
                if to_switch < cfg.lookahead_min_m:
                    end = self._point_at(route.reverse_from_s)
                    heading = np.array([math.cos(w.yaw), math.sin(w.yaw)])
                    target = end + heading * cfg.lookahead_min_m
                steer = self._pursuit_steer(target, reverse=False)
                v_des = min(
                    w.scenario.target_speed_mps, math.sqrt(2.0 * 1.0 * max(to_switch - 0.2, 0.0))
                )
                accel = cfg.speed_gain * 4.0 * (v_des - w.speed)
                throttle, brake = self._pedals(accel)
                if to_switch < 0.3:
                    throttle, brake = 0.0, 1.0
                return VehicleControl(throttle=throttle, steer=steer, brake=brake)
        remaining = route.length - progress
        if remaining < 0.15 or frame.situation.goal_reached:
            return VehicleControl(brake=1.0, reverse=True)
        target = self._point_at(progress + cfg.parking_lookahead_m)
        if route.length - progress < cfg.parking_lookahead_m:
            # Extend the last segment so the look-ahead point stays in front of the rear axle.
            end, before = self._point_at(route.length), self._point_at(route.length - 1.0)
            target = end + (end - before) * (cfg.parking_lookahead_m - remaining)
        steer = self._pursuit_steer(target, reverse=True)
        v_des = min(cfg.parking_speed_mps, math.sqrt(2.0 * 0.8 * max(remaining - 0.05, 0.0)))
        accel = cfg.speed_gain * 4.0 * (v_des - (-w.speed))
        throttle, brake = self._pedals(accel, reverse=True)
        return VehicleControl(throttle=throttle, steer=steer, brake=brake, reverse=True)


def nearest_action(
    control: VehicleControl, sim_config: SimConfig, allowed: list[int] | tuple[int, ...] = ()
) -> int:
    """Index of the discrete action closest to ``control`` (squared distance of the pedals, steer
    and gear), among ``allowed`` (empty = all)."""
    table = sim_config.action_table()
    candidates = list(allowed) or list(range(len(table)))
    best, best_d = candidates[0], math.inf
    for i in candidates:
        a = table[i]
        d = (
            (a.throttle - control.throttle) ** 2
            + (a.steer - control.steer) ** 2
            + (a.brake - control.brake) ** 2
            + 4.0 * float(a.reverse != control.reverse)
        )
        if d < best_d:
            best, best_d = i, d
    return best
