"""Explicit validation of raw sensor samples before they reach the observation builder.

The node calls these on every message; a :class:`SensorDataError` means "drop this sample": the
node counts it under ``error.reason`` and reports the counts on /diagnostics.
"""

from __future__ import annotations

import math
from enum import StrEnum

import numpy as np

from carla_rl.contract.sensor_frame import Odometry

RGB_CHANNELS = 3
LIDAR_FIELDS = ("x", "y", "z", "intensity")
FLOAT32_BYTES = 4
LIDAR_POINT_STEP = FLOAT32_BYTES * len(LIDAR_FIELDS)


class SensorDataReason(StrEnum):
    """Why a sample was dropped (the keys of the node's drop counters)."""

    WRONG_ENCODING = "wrong_encoding"
    WRONG_SIZE = "wrong_size"
    BAD_STEP = "bad_step"
    TRUNCATED_BUFFER = "truncated_buffer"
    OVERSIZED_BUFFER = "oversized_buffer"
    WRONG_LAYOUT = "wrong_layout"
    NON_FINITE_LIDAR = "non_finite_lidar"
    NON_FINITE_ODOMETRY = "non_finite_odometry"
    NON_FINITE_SPEED = "non_finite_speed"


class SensorDataError(ValueError):
    """A sensor sample is unusable: ``reason`` (:class:`SensorDataReason`) and ``detail``."""

    def __init__(self, reason: SensorDataReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


def _as_bytes_view(data: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8) if data.dtype != np.uint8 else data.reshape(-1)
    return np.frombuffer(data, dtype=np.uint8)


def validate_image(data: bytes | bytearray | memoryview | np.ndarray, height: int, width: int,
                   encoding: str, step: int, *, expected_height: int, expected_width: int,
                   expected_encoding: str = "rgb8") -> np.ndarray:
    """sensor_msgs/Image fields -> [H, W, 3] uint8 RGB (a copy), or :class:`SensorDataError`.

    ``data`` may be the raw buffer or an already shaped [H, W, 3] uint8 array (then ``step`` is
    its row length in bytes). Rows may be padded (``step > width * 3``).
    """
    if encoding != expected_encoding:
        raise SensorDataError(SensorDataReason.WRONG_ENCODING,
                              f"encoding {encoding!r}, expected {expected_encoding!r}")
    if height != expected_height or width != expected_width:
        raise SensorDataError(SensorDataReason.WRONG_SIZE,
                              f"image is {width}x{height}, expected "
                              f"{expected_width}x{expected_height}")
    row_bytes = width * RGB_CHANNELS
    if step < row_bytes:
        raise SensorDataError(SensorDataReason.BAD_STEP,
                              f"step {step} is shorter than a row of {row_bytes} bytes")
    if isinstance(data, np.ndarray) and data.ndim == 3:
        if data.shape != (height, width, RGB_CHANNELS) or data.dtype != np.uint8:
            raise SensorDataError(SensorDataReason.WRONG_SIZE,
                                  f"array {data.shape} {data.dtype}, expected "
                                  f"({height}, {width}, {RGB_CHANNELS}) uint8")
        return np.array(data, copy=True)
    raw = _as_bytes_view(data)
    expected_bytes = step * height
    if raw.size < expected_bytes:
        raise SensorDataError(SensorDataReason.TRUNCATED_BUFFER,
                              f"{raw.size} bytes, expected step {step} x height {height} = "
                              f"{expected_bytes}")
    if raw.size > expected_bytes:
        raise SensorDataError(SensorDataReason.OVERSIZED_BUFFER,
                              f"{raw.size} bytes, expected step {step} x height {height} = "
                              f"{expected_bytes}")
    rows = raw.reshape(height, step)[:, :row_bytes]
    return np.ascontiguousarray(rows).reshape(height, width, RGB_CHANNELS)


def validate_lidar(data: bytes | bytearray | memoryview | np.ndarray, num_points: int | None = None,
                   point_step: int = LIDAR_POINT_STEP,
                   field_names: tuple[str, ...] = LIDAR_FIELDS) -> np.ndarray:
    """Lidar sample -> [N, 4] float32 (x, y, z, intensity), or :class:`SensorDataError`.

    ``data`` is either an [N, 4] array (e.g. from ``ros_conversions.point_cloud_array``) or the raw
    PointCloud2 buffer of ``num_points`` points of ``point_step`` bytes whose first four float32
    fields are ``field_names`` == x, y, z, intensity.
    """
    if tuple(field_names[:len(LIDAR_FIELDS)]) != LIDAR_FIELDS:
        raise SensorDataError(SensorDataReason.WRONG_LAYOUT,
                              f"fields {tuple(field_names)}, expected {LIDAR_FIELDS} first")
    if isinstance(data, np.ndarray) and data.ndim == 2:
        if data.shape[1] != len(LIDAR_FIELDS):
            raise SensorDataError(SensorDataReason.WRONG_LAYOUT,
                                  f"array of shape {data.shape}, expected [N, {len(LIDAR_FIELDS)}]")
        if num_points is not None and data.shape[0] != num_points:
            raise SensorDataError(SensorDataReason.WRONG_SIZE,
                                  f"{data.shape[0]} points, announced {num_points}")
        points = np.asarray(data, dtype=np.float32)
    else:
        if num_points is None:
            raise SensorDataError(SensorDataReason.WRONG_LAYOUT,
                                  "a raw point buffer needs num_points")
        if point_step < LIDAR_POINT_STEP or point_step % FLOAT32_BYTES:
            raise SensorDataError(SensorDataReason.BAD_STEP,
                                  f"point_step {point_step}: need a multiple of {FLOAT32_BYTES} "
                                  f">= {LIDAR_POINT_STEP}")
        raw = _as_bytes_view(data)
        expected_bytes = num_points * point_step
        if raw.size < expected_bytes:
            raise SensorDataError(SensorDataReason.TRUNCATED_BUFFER,
                                  f"{raw.size} bytes, expected {num_points} points x "
                                  f"{point_step} = {expected_bytes}")
        if raw.size > expected_bytes:
            raise SensorDataError(SensorDataReason.OVERSIZED_BUFFER,
                                  f"{raw.size} bytes, expected {num_points} points x "
                                  f"{point_step} = {expected_bytes}")
        rows = raw.reshape(num_points, point_step)[:, :LIDAR_POINT_STEP]
        points = np.ascontiguousarray(rows).view("<f4").reshape(num_points, len(LIDAR_FIELDS))
        points = points.astype(np.float32)
    if not np.isfinite(points).all():
        bad = int((~np.isfinite(points)).any(axis=1).sum())
        raise SensorDataError(SensorDataReason.NON_FINITE_LIDAR,
                              f"{bad} of {len(points)} points hold NaN/inf")
    return points


def validate_odometry(odometry: Odometry, speed: float) -> None:
    """Raise :class:`SensorDataError` when the ego state or speed holds NaN/inf."""
    values = (odometry.x, odometry.y, odometry.z, odometry.yaw, odometry.vx, odometry.vy,
              odometry.yaw_rate)
    if not all(math.isfinite(v) for v in values):
        raise SensorDataError(SensorDataReason.NON_FINITE_ODOMETRY, f"odometry {odometry}")
    if not math.isfinite(speed):
        raise SensorDataError(SensorDataReason.NON_FINITE_SPEED, f"speed {speed}")
