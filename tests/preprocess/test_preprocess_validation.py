"""Explicit sensor validation: every SensorDataError reason."""

import math

import numpy as np
import pytest

from carla_rl.preprocess import (ObservationBuilder, PreprocessConfig, SensorDataError,
                                 SensorDataReason, validate_lidar, validate_odometry)
from carla_rl.contract.sensor_frame import Odometry

SIZE = 8


@pytest.fixture
def builder():
    return ObservationBuilder(PreprocessConfig(image_width=SIZE, image_height=SIZE))


def image_bytes(height=8, width=8, pad=0):
    rows = np.arange(height * (width * 3 + pad), dtype=np.uint8).reshape(height, -1)
    return rows.tobytes(), rows


def test_valid_image_round_trip(builder):
    data, rows = image_bytes()
    image = builder.validate_image(data, 8, 8, "rgb8", 24)
    assert image.shape == (8, 8, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image.reshape(8, 24), rows)


def test_padded_rows_are_stripped(builder):
    data, rows = image_bytes(pad=8)
    image = builder.validate_image(data, 8, 8, "rgb8", 32)
    np.testing.assert_array_equal(image.reshape(8, 24), rows[:, :24])


def test_shaped_array_is_accepted(builder):
    array = np.ones((8, 8, 3), dtype=np.uint8)
    assert (builder.validate_image(array, 8, 8, "rgb8", 24) == 1).all()


@pytest.mark.parametrize("kwargs, reason", [
    (dict(encoding="bgr8"), SensorDataReason.WRONG_ENCODING),
    (dict(encoding="mono8"), SensorDataReason.WRONG_ENCODING),
    (dict(height=7), SensorDataReason.WRONG_SIZE),
    (dict(width=9, step=27), SensorDataReason.WRONG_SIZE),
    (dict(step=20), SensorDataReason.BAD_STEP),
    (dict(data_bytes=8 * 24 - 1), SensorDataReason.TRUNCATED_BUFFER),
    (dict(data_bytes=8 * 24 + 3), SensorDataReason.OVERSIZED_BUFFER),
])
def test_image_errors_name_their_reason(builder, kwargs, reason):
    args = dict(height=8, width=8, encoding="rgb8", step=24, data_bytes=8 * 24)
    args.update(kwargs)
    data = bytes(args.pop("data_bytes"))
    with pytest.raises(SensorDataError) as info:
        builder.validate_image(data, **args)
    assert info.value.reason is reason
    assert str(info.value).startswith(reason.value)


def test_wrongly_shaped_array_is_wrong_size(builder):
    with pytest.raises(SensorDataError) as info:
        builder.validate_image(np.zeros((8, 8, 4), dtype=np.uint8), 8, 8, "rgb8", 24)
    assert info.value.reason is SensorDataReason.WRONG_SIZE


def lidar_buffer(points: np.ndarray, pad_floats: int = 0) -> bytes:
    padded = np.concatenate([points, np.zeros((len(points), pad_floats), np.float32)], axis=1)
    return padded.astype("<f4").tobytes()


def test_valid_lidar_buffer_and_array():
    points = np.array([[1, 2, 3, 0.5], [4, 5, 6, 0.25]], dtype=np.float32)
    np.testing.assert_array_equal(validate_lidar(lidar_buffer(points), 2), points)
    np.testing.assert_array_equal(validate_lidar(lidar_buffer(points, 2), 2, 24), points)
    np.testing.assert_array_equal(validate_lidar(points), points)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_lidar(value):
    points = np.array([[1, 2, 3, 0.5], [4, value, 6, 0.25]], dtype=np.float32)
    for sample in (lambda: validate_lidar(lidar_buffer(points), 2), lambda: validate_lidar(points)):
        with pytest.raises(SensorDataError) as info:
            sample()
        assert info.value.reason is SensorDataReason.NON_FINITE_LIDAR


def test_lidar_layout_and_size_errors():
    points = np.zeros((3, 4), dtype=np.float32)
    cases = [
        (lambda: validate_lidar(lidar_buffer(points)[:-1], 3), SensorDataReason.TRUNCATED_BUFFER),
        (lambda: validate_lidar(lidar_buffer(points) + b"\0" * 4, 3),
         SensorDataReason.OVERSIZED_BUFFER),
        (lambda: validate_lidar(lidar_buffer(points), 3, 10), SensorDataReason.BAD_STEP),
        (lambda: validate_lidar(lidar_buffer(points), 3, field_names=("x", "y", "i", "z")),
         SensorDataReason.WRONG_LAYOUT),
        (lambda: validate_lidar(np.zeros((3, 3), np.float32)), SensorDataReason.WRONG_LAYOUT),
        (lambda: validate_lidar(points, 4), SensorDataReason.WRONG_SIZE),
        (lambda: validate_lidar(lidar_buffer(points)), SensorDataReason.WRONG_LAYOUT),
    ]
    for call, reason in cases:
        with pytest.raises(SensorDataError) as info:
            call()
        assert info.value.reason is reason, reason


@pytest.mark.parametrize("field", ["x", "y", "z", "yaw", "vx", "vy", "yaw_rate"])
def test_non_finite_odometry(field):
    with pytest.raises(SensorDataError) as info:
        validate_odometry(Odometry(**{field: math.nan}), 1.0)
    assert info.value.reason is SensorDataReason.NON_FINITE_ODOMETRY


def test_non_finite_speed():
    validate_odometry(Odometry(), 3.0)
    with pytest.raises(SensorDataError) as info:
        validate_odometry(Odometry(), math.inf)
    assert info.value.reason is SensorDataReason.NON_FINITE_SPEED
