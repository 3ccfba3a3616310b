"""Compiled per-tick kernels of the embedded world (numba, ``cache=True``).

Each kernel works on whole actor arrays in one call: a numpy version of the same work is a few
hundred tiny array operations per tick, whose per-call overhead (about 1 us each) dominated
``World.step``. Kernels draw no random numbers: the callers draw them from the world's
generators in the same order as before, so runs stay deterministic.
Compiled once per machine (cached next to this file in ``__pycache__``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from carla_rl.contract.sensor_frame import TrafficLightState

FAR_M = 1.0e6  # "no obstacle" gap [m]
_GREEN, _YELLOW = int(TrafficLightState.GREEN), int(TrafficLightState.YELLOW)
WALK, WAIT, CROSS = 0, 1, 2  # pedestrian states

_jit = njit(cache=True, nogil=True)


@_jit
def _seg_index(gs, g, lo, hi):
    """Largest k in [lo, hi] with gs[k] <= g (``searchsorted(side='right') - 1``, clamped)."""
    if g < gs[lo]:
        return lo
    a, b = lo, hi
    while a < b:
        mid = (a + b + 1) >> 1
        if gs[mid] <= g:
            a = mid
        else:
            b = mid - 1
    return a


@_jit
def lane_pose_into(lane, s, lane_len, lane_off, lane_first, lane_last_seg, gs, seg_len, pts,
                   seg_heading, pos, yaw, skip):
    """Pose of (lane [N], s [N]) into ``pos`` [N, 2], ``yaw`` [N]; rows with ``skip`` kept."""
    for i in range(len(lane)):
        if skip[i]:
            continue
        ln = lane[i]
        si = min(max(s[i], 0.0), lane_len[ln])
        g = lane_off[ln] + si
        k = _seg_index(gs, g, lane_first[ln], lane_last_seg[ln])
        t = (g - gs[k]) / seg_len[k]
        pos[i, 0] = pts[k, 0] + t * (pts[k + 1, 0] - pts[k, 0])
        pos[i, 1] = pts[k, 1] + t * (pts[k + 1, 1] - pts[k, 1])
        yaw[i] = seg_heading[k]


@_jit
def vehicles_step(
    dt, search, lead, lane, next_lane, s, speed, v0, static, pos, yaw, length, width,
    obs_pos, obs_yaw, obs_speed, obs_hl, obs_hw, cone,
    lights_enabled, light_state,
    lane_len, lane_light, lane_is_turn, lane_off, lane_first, lane_last_seg, gs, seg_len, pts,
    seg_heading,
    lookahead, lateral_margin, stop_margin, turn_slowdown, turn_speed,
    min_gap, headway, max_accel, comf_decel, delta, max_decel,
    over,
):
    """One IDM tick of all NPC vehicles (see :meth:`traffic.Vehicles.step`); returns how many
    vehicles entered a new lane (``over`` marks them: their ``next_lane`` must be re-drawn)."""
    n = len(lane)
    na = len(obs_hl)
    if search:
        # Look-ahead corridor of every vehicle against every obstacle [N, A].
        for i in range(n):
            c, sn = math.cos(yaw[i]), math.sin(yaw[i])
            corridor = width[i] / 2.0 + lateral_margin
            for j in range(na):
                dx = obs_pos[j, 0] - pos[i, 0]
                dy = obs_pos[j, 1] - pos[i, 1]
                x = dx * c + dy * sn
                y = dy * c - dx * sn
                cone[i, j] = x > 0.1 and x < lookahead and abs(y) < corridor + obs_hw[j]
        for i in range(n):
            hl = length[i] / 2.0
            best, arg = FAR_M, -1
            c, sn = math.cos(yaw[i]), math.sin(yaw[i])
            for j in range(na):
                if not cone[i, j]:
                    continue
                # Mutual block between vehicles: the lower index keeps priority.
                if j < n and cone[j, i] and i < j:
                    continue
                dx = obs_pos[j, 0] - pos[i, 0]
                dy = obs_pos[j, 1] - pos[i, 1]
                gap = dx * c + dy * sn - hl - obs_hl[j]
                if gap < best:
                    best, arg = gap, j
            lead[i] = arg
    sqrt_ab = 2.0 * math.sqrt(max_accel * comf_decel)
    n_over = 0
    for i in range(n):
        c, sn = math.cos(yaw[i]), math.sin(yaw[i])
        hl = length[i] / 2.0
        corridor = width[i] / 2.0 + lateral_margin
        v = speed[i]
        # Between searches only the known leader is tracked (a 0.1-0.15 s reaction time).
        gap, dv = FAR_M, 0.0
        j = lead[i]
        if j >= 0:
            dx = obs_pos[j, 0] - pos[i, 0]
            dy = obs_pos[j, 1] - pos[i, 1]
            x = dx * c + dy * sn
            y = dy * c - dx * sn
            if x > 0.1 and x < lookahead and abs(y) < corridor + obs_hw[j]:
                gap = x - hl - obs_hl[j]
                dv = v - obs_speed[j] * math.cos(obs_yaw[j] - yaw[i])
        ln = lane[i]
        to_end = lane_len[ln] - s[i]
        # Red / yellow light at the end of the current lane: a standing obstacle at the stop line.
        light = lane_light[ln]
        if lights_enabled and light >= 0:
            st = light_state[light]
            if st != _GREEN:
                stop = True
                if st == _YELLOW:
                    stop = v * v / (2.0 * comf_decel) < to_end - stop_margin
                if stop:
                    light_gap = to_end - stop_margin - hl
                    if light_gap < gap:
                        gap, dv = light_gap, v
        # Slow down before and through turns.
        nl = next_lane[i]
        turning = lane_is_turn[ln] or (nl >= 0 and lane_is_turn[nl] and to_end < turn_slowdown)
        v0i = min(v0[i], turn_speed) if turning else v0[i]
        s_star = min_gap + max(0.0, v * headway + v * dv / sqrt_ab)
        free = 1.0 - (v / max(v0i, 0.1)) ** delta
        inter = (s_star / max(gap, 0.1)) ** 2
        acc = min(max(max_accel * (free - inter), -max_decel), max_accel)
        v = max(v + acc * dt, 0.0)
        if static[i]:
            v = 0.0
        speed[i] = v
        si = s[i] + v * dt
        over[i] = False
        if si > lane_len[ln]:
            excess = si - lane_len[ln]
            if nl < 0:
                si = 0.0  # dead end: respawn at the lane start
            else:
                lane[i] = nl
                si = excess
            over[i] = True
            n_over += 1
        s[i] = si
    lane_pose_into(lane, s, lane_len, lane_off, lane_first, lane_last_seg, gs, seg_len, pts,
                   seg_heading, pos, yaw, static)
    return n_over


@_jit
def pedestrians_advance(dt, state, direction, speed, loop, u, loop_off, cp_g, u_new, sorted_idx,
                        hit):
    """Walking step: new arc length ``u_new`` and crossing points passed (``hit``); -> any hit."""
    n = len(u)
    nc = len(cp_g)
    any_hit = False
    for i in range(n):
        walk = state[i] == WALK
        un = u[i] + direction[i] * speed[i] * dt if walk else u[i]
        u_new[i] = un
        hit[i] = False
        if nc and walk:
            off = loop_off[loop[i]]
            i_old = np.searchsorted(cp_g, off + u[i], side="right")
            i_new = np.searchsorted(cp_g, off + un, side="right")
            if i_old != i_new:
                hit[i] = True
                any_hit = True
            sorted_idx[i] = min(max(i_old if direction[i] > 0 else i_new, 0), nc - 1)
    return any_hit


@_jit
def pedestrians_finish(
    dt, any_hit, roll, crossing_probability, jaywalk_probability, lights_enabled, light_state,
    state, direction, speed, loop, u, cp, t, u_new, sorted_idx, hit,
    cp_order, cp_loop, cp_is_crosswalk, cp_walk_light, cp_target_loop, cp_target_u, cp_pos,
    cp_target_pos, loop_off, loop_len, loop_first, loop_last, gs, seg_len, seg_heading, pts,
    pos, yaw,
):
    """Crossing decisions (``roll`` [N, 2] drawn by the caller when ``any_hit``), waiting,
    crossing, and the new poses (see :meth:`traffic.Pedestrians.step`)."""
    for i in range(len(u)):
        if any_hit and hit[i]:
            c = cp_order[sorted_idx[i]]
            if cp_loop[c] == loop[i]:
                crosswalk = cp_is_crosswalk[c]
                p = crossing_probability if crosswalk else jaywalk_probability
                if roll[i, 0] < p:
                    light = cp_walk_light[c]
                    red = (
                        lights_enabled and light >= 0 and light_state[light] != _GREEN
                        and crosswalk
                    )
                    jay = roll[i, 1] < jaywalk_probability
                    cp[i] = c
                    t[i] = 0.0
                    state[i] = WAIT if (red and not jay) else CROSS
        if state[i] == WALK:
            u[i] = u_new[i] % loop_len[loop[i]]
        # Waiting pedestrians go when their walk signal is green (or the signals are off).
        if state[i] == WAIT:
            light = cp_walk_light[cp[i]]
            if not lights_enabled or light < 0 or light_state[light] == _GREEN:
                state[i] = CROSS
        if state[i] == CROSS:
            c = cp[i]
            dx = cp_target_pos[c, 0] - cp_pos[c, 0]
            dy = cp_target_pos[c, 1] - cp_pos[c, 1]
            span = math.sqrt(dx * dx + dy * dy)
            t[i] = t[i] + speed[i] * dt / max(span, 0.1)
            if t[i] >= 1.0:
                loop[i] = cp_target_loop[c]
                u[i] = cp_target_u[c]
                state[i] = WALK
                t[i] = 0.0
    pedestrians_pose(state, direction, loop, u, cp, t, cp_pos, cp_target_pos, loop_off,
                     loop_first, loop_last, gs, seg_len, seg_heading, pts, pos, yaw)


@_jit
def pedestrians_pose(state, direction, loop, u, cp, t, cp_pos, cp_target_pos, loop_off,
                     loop_first, loop_last, gs, seg_len, seg_heading, pts, pos, yaw):
    for i in range(len(u)):
        if state[i] == WALK:
            lp = loop[i]
            g = loop_off[lp] + u[i]
            k = _seg_index(gs, g, loop_first[lp], loop_last[lp])
            f = (g - gs[k]) / seg_len[k]
            pos[i, 0] = pts[k, 0] + f * (pts[k + 1, 0] - pts[k, 0])
            pos[i, 1] = pts[k, 1] + f * (pts[k + 1, 1] - pts[k, 1])
            yaw[i] = seg_heading[k] + (math.pi if direction[i] < 0 else 0.0)
        else:
            c = cp[i]
            dx = cp_target_pos[c, 0] - cp_pos[c, 0]
            dy = cp_target_pos[c, 1] - cp_pos[c, 1]
            f = min(max(t[i], 0.0), 1.0)
            pos[i, 0] = cp_pos[c, 0] + f * dx
            pos[i, 1] = cp_pos[c, 1] + f * dy
            yaw[i] = math.atan2(dy, dx)


@_jit
def gather_actors(x, y, yaw, v_pos, v_yaw, v_speed, p_pos, p_yaw, p_speed, p_state,
                  a_pos, a_yaw, a_speed, a_ex, a_ey, a_dist2, a_cr, a_sr):
    """Actor arrays of this tick (vehicles then pedestrians): world frame, ego frame, squared
    distance -> the smallest squared distance (inf without actors)."""
    nv = len(v_yaw)
    c, s = math.cos(yaw), math.sin(yaw)
    nearest2 = math.inf
    for k in range(len(a_yaw)):
        if k < nv:
            px, py, ay, sp = v_pos[k, 0], v_pos[k, 1], v_yaw[k], v_speed[k]
        else:
            i = k - nv
            px, py, ay = p_pos[i, 0], p_pos[i, 1], p_yaw[i]
            sp = p_speed[i] if p_state[i] != WAIT else 0.0
        a_pos[k, 0] = px
        a_pos[k, 1] = py
        a_yaw[k] = ay
        a_speed[k] = sp
        dx, dy = px - x, py - y
        a_ex[k] = dx * c + dy * s
        a_ey[k] = dy * c - dx * s
        d2 = dx * dx + dy * dy
        a_dist2[k] = d2
        nearest2 = min(nearest2, d2)
        a_cr[k] = math.cos(ay - yaw)
        a_sr[k] = math.sin(ay - yaw)
    return nearest2


@_jit
def sat_hits(a_ex, a_ey, a_cr, a_sr, a_len, a_wid, a_dist2, a_reach, el, ew, out):
    """Separating-axis test (ego frame) of the ego box against the actors in reach -> count;
    the indices of the overlapping actors are written to ``out``, ascending."""
    m = 0
    for k in range(len(a_ex)):
        if not a_dist2[k] < a_reach[k] * a_reach[k]:
            continue
        x, y, cr, sr = a_ex[k], a_ey[k], a_cr[k], a_sr[k]
        hl, hw = a_len[k] * 0.5, a_wid[k] * 0.5
        acr, asr = abs(cr), abs(sr)
        if abs(x) > el + hl * acr + hw * asr or abs(y) > ew + hl * asr + hw * acr:
            continue
        if abs(x * cr + y * sr) > hl + el * acr + ew * asr:
            continue
        if abs(-x * sr + y * cr) > hw + el * asr + ew * acr:
            continue
        out[m] = k
        m += 1
    return m


@_jit
def probe_tags(body, x, y, c, s, tags, x_min, y_max, res, out):
    """Map tags under the body points ``body`` [P, 2] of a box at (x, y, heading (c, s))."""
    h, w = tags.shape
    for i in range(len(body)):
        bx, by = body[i, 0], body[i, 1]
        px = bx * c - by * s + x
        py = bx * s + by * c + y
        col = min(max(int((px - x_min) / res), 0), w - 1)
        row = min(max(int((y_max - py) / res), 0), h - 1)
        out[i] = tags[row, col]


@_jit
def actor_polygons(a_ex, a_ey, a_cr, a_sr, a_len, a_wid, a_dist2, radius2, nv, shift, k_a, u_a,
                   v_a, k_b, u_b, v_b, out_a, out_b, box_b):
    """Corners of the actors within ``radius2`` in two fixed-point pixel frames (a: camera,
    b: LiDAR raster; ``shift`` fractional bits) into ``out_a``, ``out_b`` [A, 4, 2] int32:
    ``u = u0 - y k``, ``v = v0 - x k`` of the ego-frame corner (x forward, y left); vehicles
    first, then pedestrians. ``box_b`` [4] <- whole-pixel bounds (u0, v0, u1, v1) of the b boxes.
    -> (number of vehicles, number of pedestrians) written."""
    box_b[0] = box_b[1] = 1 << 30
    box_b[2] = box_b[3] = -(1 << 30)
    m = 0
    n_veh = 0
    for k in range(len(a_ex)):
        if k == nv:
            n_veh = m
        if not a_dist2[k] < radius2:
            continue
        hl, hw = a_len[k] * 0.5, a_wid[k] * 0.5
        fx, fy = hl * a_cr[k], hl * a_sr[k]
        lx, ly = hw * a_sr[k], hw * a_cr[k]
        for q in range(4):
            f = 1.0 if q < 2 else -1.0  # front-left, front-right, rear-right, rear-left
            lft = 1.0 if (q == 0 or q == 3) else -1.0
            cx = a_ex[k] + f * fx - lft * lx
            cy = a_ey[k] + f * fy + lft * ly
            out_a[m, q, 0] = np.int32(u_a - cy * k_a)
            out_a[m, q, 1] = np.int32(v_a - cx * k_a)
            ub = np.int32(u_b - cy * k_b)
            vb = np.int32(v_b - cx * k_b)
            out_b[m, q, 0] = ub
            out_b[m, q, 1] = vb
            box_b[0] = min(box_b[0], ub >> shift)
            box_b[1] = min(box_b[1], vb >> shift)
            box_b[2] = max(box_b[2], (ub >> shift) + 1)
            box_b[3] = max(box_b[3], (vb >> shift) + 1)
        m += 1
    if nv >= len(a_ex):
        n_veh = m
    return n_veh, m - n_veh


@_jit
def lidar_first_hits(tags, free_px, cx, cy, yaw, ray_cos, ray_sin, dist, res, actors, ray_u,
                     ray_v, actor_box, actor_c, actor_res, ray_z, heights, lut, flat, border,
                     first, scratch, dirs):
    """First hit step per ray: ``first`` [C, R] (-1: no hit) -> hit count.

    Ray r, step k samples the static map ``tags`` [H, W] at the nearest pixel of the ray point
    (ego at map pixel (cx, cy), heading ``yaw``; ``dist`` [S] metres, ``res`` m/px; ``border``
    outside the map) and the ego-centred actor raster ``actors`` at (``ray_u``, ``ray_v``)
    [R, S] (0 = no actor; ``actor_box`` = (u0, v0, u1, v1) bounds of the drawn actors, u1 < u0
    when none; the ego at pixel (``actor_c``, ``actor_c``), ``actor_res`` m/px). ``flat``: all channels horizontal, obstacle = ``lut[tag]``; else
    ``heights[tag] >= ray_z[c, k]``.

    ``free_px`` [H, W] (flat only): distance [px] from each map pixel to the nearest obstacle
    pixel (0 on obstacles), rounded down; a ray skips the samples that lie closer than that to
    the current sample (exact: those pixels cannot be obstacles). The rays advance in lockstep,
    one look-up each per round, so that the (cache-missing) look-ups of different rays overlap.
    ``scratch`` [3, R] int64, ``dirs`` [2, R] float64.
    """
    h, w = tags.shape
    nr, ns = ray_u.shape
    c0, s0 = math.cos(yaw), math.sin(yaw)
    step = dist[1] - dist[0] if ns > 1 else dist[0]
    inv_step_px = res / step
    # A sample's pixel is within sqrt(2)/2 px of its ray point: two of them 1.42 px + the step.
    slack = 1.5
    active, k_cur, k_hit = scratch[0], scratch[1], scratch[2]
    u0, v0, u1, v1 = actor_box
    count = 0
    # Ray directions in map pixels (columns = +x, rows = -y).
    for r in range(nr):
        dirs[0, r] = (c0 * ray_cos[r] - s0 * ray_sin[r]) / res
        dirs[1, r] = -(s0 * ray_cos[r] + c0 * ray_sin[r]) / res
    for c in range(first.shape[0]):
        for r in range(nr):
            active[r] = r
            k_cur[r] = 0
            k_hit[r] = ns
        n_active = nr
        while n_active > 0:
            m = 0
            for i in range(n_active):
                r = active[i]
                k = k_cur[r]
                col = int(math.floor(cx + dist[k] * dirs[0, r] + 0.5))
                row = int(math.floor(cy + dist[k] * dirs[1, r] + 0.5))
                jump = 1
                hit = False
                if 0 <= col < w and 0 <= row < h:
                    if flat:
                        free = free_px[row, col]
                        hit = free == 0
                        jump = max(int((free - slack) * inv_step_px), 1)
                    else:
                        hit = heights[tags[row, col]] >= ray_z[c, k]
                else:
                    hit = (lut[border] != 0) if flat else (heights[border] >= ray_z[c, k])
                if hit:
                    k_hit[r] = k
                elif k + jump < ns:
                    k_cur[r] = k + jump
                    active[m] = r
                    m += 1
            n_active = m
        for r in range(nr):
            kh = k_hit[r]
            if u1 >= u0:
                # Steps whose pixel can lie in the actors' bounds (slab test, 1 px margin).
                lo, hi = 0.0, dist[ns - 1]
                for axis in range(2):
                    # u = c - sin * d / res, v = c - cos * d / res
                    slope = -(ray_sin[r] if axis == 0 else ray_cos[r]) / actor_res
                    b0 = (u0 if axis == 0 else v0) - 1.0 - actor_c
                    b1 = (u1 if axis == 0 else v1) + 1.0 - actor_c
                    if abs(slope) < 1e-12:
                        if b0 > 0.0 or b1 < 0.0:
                            hi = -1.0
                    else:
                        t0, t1 = b0 / slope, b1 / slope
                        lo = max(lo, min(t0, t1))
                        hi = min(hi, max(t0, t1))
                k_lo = max(int(math.floor(lo / step)) - 2, 0)
                k_hi = min(int(math.ceil(hi / step)) + 1, kh) if hi >= lo else 0
                for k in range(k_lo, k_hi):
                    u, v = ray_u[r, k], ray_v[r, k]
                    if u < u0 or u > u1 or v < v0 or v > v1:
                        continue
                    tag = actors[v, u]
                    if tag != 0:
                        if (lut[tag] != 0) if flat else (heights[tag] >= ray_z[c, k]):
                            kh = k
                            break
            if kh < ns:
                first[c, r] = kh
                count += 1
            else:
                first[c, r] = -1
    return count


@_jit
def lidar_points(first, dist, ray_z, cos, sin, noise, noise_std, attenuation, out):
    """Points ``out`` [count, 4] float32 (x fwd, y left, z up, intensity) of the hits in
    ``first``; ``noise`` [count]: standard normal range noise, scaled by ``noise_std``."""
    m = 0
    for c in range(first.shape[0]):
        for r in range(first.shape[1]):
            k = first[c, r]
            if k < 0:
                continue
            d = dist[k] + np.float32(noise_std * noise[m])
            out[m, 0] = d * cos[r]
            out[m, 1] = d * sin[r]
            out[m, 2] = max(ray_z[c, k], np.float32(0.0))
            out[m, 3] = math.exp(-attenuation * d)
            m += 1


@_jit
def radar_candidates(a_ex, a_ey, a_speed, a_cr, a_sr, a_radius, a_height, a_dist2, radius2,
                     front, half_h, half_v, range_m, mount_height, ego_speed, out):
    """Actors (within ``radius2``) in the radar's field of view: ``out`` [A, 4] rows of (depth,
    azimuth, altitude, radial velocity), in actor order -> count."""
    m = 0
    for k in range(len(a_ex)):
        if not a_dist2[k] < radius2:
            continue
        x = a_ex[k] - front
        if not x > 0.0:
            continue
        y = a_ey[k]
        dist = math.hypot(x, y)
        az = math.atan2(y, x)
        depth = dist - a_radius[k]
        if not (abs(az) < half_h and depth < range_m):
            continue
        alt = math.atan2(a_height[k] * 0.5 - mount_height, dist)
        if not abs(alt) < half_v:
            continue
        vx = a_speed[k] * a_cr[k]
        vy = a_speed[k] * a_sr[k]
        out[m, 0] = max(depth, 0.0)
        out[m, 1] = az
        out[m, 2] = alt
        out[m, 3] = ((vx - ego_speed) * x + vy * y) / max(dist, 1e-6)
        m += 1
    return m


@_jit
def segment_crossings(px, py, pyaw, x, y, yaw, wheels, line_a, line_b, idx, cross):
    """Moves of the ``wheels`` [2, 2] (body frame) and of the centre from pose (px, py, pyaw) to
    (x, y, yaw) against the lines ``idx``: ``cross`` [3, m] (wheel 0, wheel 1, centre) -> any."""
    pc, ps = math.cos(pyaw), math.sin(pyaw)
    c, s = math.cos(yaw), math.sin(yaw)
    any_cross = False
    for i in range(3):
        if i < 2:
            wx, wy = wheels[i, 0], wheels[i, 1]
            p0, p1 = wx * pc - wy * ps + px, wx * ps + wy * pc + py
            q0, q1 = wx * c - wy * s + x, wx * s + wy * c + y
        else:
            p0, p1, q0, q1 = px, py, x, y
        rx, ry = q0 - p0, q1 - p1
        for j in range(len(idx)):
            li = idx[j]
            ax, ay = line_a[li, 0], line_a[li, 1]
            sx, sy = line_b[li, 0] - ax, line_b[li, 1] - ay
            apx, apy = ax - p0, ay - p1
            denom = rx * sy - ry * sx
            hit = False
            if abs(denom) > 1e-12:
                t = (apx * sy - apy * sx) / denom
                u = (apx * ry - apy * rx) / denom
                hit = t >= 0.0 and t <= 1.0 and u >= 0.0 and u <= 1.0
            cross[i, j] = hit
            any_cross |= hit
    return any_cross


@_jit
def fill_obstacles(v_pos, v_yaw, v_speed, p_pos, p_yaw, p_speed, p_state, x, y, yaw, speed,
                   ahead_x, ahead_y, o_pos, o_yaw, o_speed):
    """Obstacles of the NPC vehicles: the vehicles, the ego now and ``ahead`` of it, pedestrians
    (waiting ones at speed 0)."""
    nv = len(v_yaw)
    for k in range(nv):
        o_pos[k, 0] = v_pos[k, 0]
        o_pos[k, 1] = v_pos[k, 1]
        o_yaw[k] = v_yaw[k]
        o_speed[k] = v_speed[k]
    o_pos[nv, 0] = x
    o_pos[nv, 1] = y
    o_pos[nv + 1, 0] = x + ahead_x
    o_pos[nv + 1, 1] = y + ahead_y
    o_yaw[nv] = yaw
    o_yaw[nv + 1] = yaw
    o_speed[nv] = speed
    o_speed[nv + 1] = speed
    for i in range(len(p_yaw)):
        k = nv + 2 + i
        o_pos[k, 0] = p_pos[i, 0]
        o_pos[k, 1] = p_pos[i, 1]
        o_yaw[k] = p_yaw[i]
        o_speed[k] = p_speed[i] if p_state[i] != WAIT else 0.0


@_jit
def radar_finish(cand, noise, noise_std, out):
    """Detections ``out`` [M, 4] float32 from candidates [n, 4] (depth, azimuth, altitude,
    radial) plus depth noise ``noise_std * noise`` [n]: nearest first (stable), M <= n."""
    n = len(cand)
    for i in range(n):
        noise[i] = cand[i, 0] + noise_std * noise[i]  # the noisy depth, in place
    d = noise
    order = np.argsort(d, kind="mergesort")
    for j in range(len(out)):
        i = order[j]
        out[j, 0] = d[i]
        out[j, 1] = cand[i, 1]
        out[j, 2] = cand[i, 2]
        out[j, 3] = cand[i, 3]


@_jit
def lights_update(t, offset, group, half, cycle, green_s, yellow_s, red, yellow, green, state):
    """Fixed-time signal states at time ``t`` into ``state`` [NL] (in place)."""
    for i in range(len(offset)):
        phase = (t + offset[i] + group[i] * half) % cycle
        if phase < green_s:
            state[i] = green
        elif phase < green_s + yellow_s:
            state[i] = yellow
        else:
            state[i] = red


@_jit
def project_route(pts, rs, lo, hi, x, y, lost2):
    """Projection of (x, y) on the route polyline ``pts`` [P, 2] (arc length ``rs`` [P]):
    segments lo..hi first, the whole route when farther than sqrt(lost2) from those.
    -> (segment, fraction t, progress [m], lateral offset [m] (+ left), segment heading)."""
    best, kb, tb = math.inf, 0, 0.0
    for sweep in range(2):
        a, b = (lo, hi) if sweep == 0 else (0, len(pts) - 2)
        for k in range(a, b + 1):
            ax, ay = pts[k, 0], pts[k, 1]
            abx, aby = pts[k + 1, 0] - ax, pts[k + 1, 1] - ay
            seg2 = abx * abx + aby * aby
            t = 0.0
            if seg2 > 0.0:
                t = min(max(((x - ax) * abx + (y - ay) * aby) / seg2, 0.0), 1.0)
            dx, dy = x - ax - t * abx, y - ay - t * aby
            d2 = dx * dx + dy * dy
            if d2 < best:
                best, kb, tb = d2, k, t
        if best <= lost2:
            break
        best = math.inf
    ax, ay = pts[kb, 0], pts[kb, 1]
    abx, aby = pts[kb + 1, 0] - ax, pts[kb + 1, 1] - ay
    length = max(math.hypot(abx, aby), 1e-9)
    dx, dy = x - ax - tb * abx, y - ay - tb * aby
    progress = rs[kb] + tb * length
    lateral = (abx * dy - aby * dx) / length
    return kb, progress, lateral, math.atan2(aby, abx)
