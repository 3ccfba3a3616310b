"""ObservationBuilder: frame stack, semantic intensities, lidar bins, vector features."""

import math

import numpy as np
import pytest

from carla_rl.preprocess import (ObservationBuilder, PreprocessConfig, SemanticIntensityConfig,
                                 action_mask, lidar_range_bins)
from carla_rl.preprocess.config import LidarBinsConfig
from carla_rl.contract.semantic_palette import PALETTE, SemanticTag
from carla_rl.contract.sensor_frame import EgoSituation, Odometry, TrafficLightState

SIZE = 16
NO_POINTS = np.zeros((0, 4), dtype=np.float32)


def make_builder(**overrides) -> ObservationBuilder:
    return ObservationBuilder(PreprocessConfig(image_width=SIZE, image_height=SIZE, **overrides))


def solid_image(tag: SemanticTag) -> np.ndarray:
    return np.broadcast_to(PALETTE[tag], (SIZE, SIZE, 3)).copy()


def build(builder, image, situation=None, lidar=NO_POINTS, speed=0.0, odometry=None):
    return builder.build(image, lidar, odometry or Odometry(), speed, situation or EgoSituation())


def feature(builder, vector, name):
    return vector[builder.vector_names.index(name)]


def test_first_frame_fills_the_stack():
    builder = make_builder()
    frames, _ = build(builder, solid_image(SemanticTag.ROAD))
    road = SemanticIntensityConfig().road
    assert frames.shape == (4, SIZE, SIZE) and frames.dtype == np.uint8
    assert (frames == road).all()


def test_stack_order_is_oldest_first_and_reset_refills():
    builder = make_builder()
    tags = [SemanticTag.ROAD, SemanticTag.SIDEWALK, SemanticTag.CAR, SemanticTag.PEDESTRIAN,
            SemanticTag.ROAD_LINE]
    intensity = SemanticIntensityConfig()
    levels = [intensity.road, intensity.sidewalk, intensity.vehicle, intensity.pedestrian,
              intensity.road_line]
    for tag in tags:
        frames, _ = build(builder, solid_image(tag))
    assert [int(f[0, 0]) for f in frames] == levels[1:]
    builder.reset()
    frames, _ = build(builder, solid_image(SemanticTag.CAR))
    assert (frames == intensity.vehicle).all()


def test_returned_frames_are_not_aliased():
    builder = make_builder()
    first, _ = build(builder, solid_image(SemanticTag.ROAD))
    build(builder, solid_image(SemanticTag.CAR))
    assert (first == SemanticIntensityConfig().road).all()


def test_palette_maps_to_configured_intensities():
    builder = make_builder()
    image = np.zeros((SIZE, SIZE, 3), dtype=np.uint8)
    pixels = {(0, 0): (SemanticTag.ROAD, "road"), (0, 1): (SemanticTag.ROAD_LINE, "road_line"),
              (0, 2): (SemanticTag.SIDEWALK, "sidewalk"), (0, 3): (SemanticTag.CAR, "vehicle"),
              (0, 4): (SemanticTag.BUS, "vehicle"), (0, 5): (SemanticTag.PEDESTRIAN, "pedestrian"),
              (0, 6): (SemanticTag.TRAFFIC_LIGHT, "traffic_light"),
              (0, 7): (SemanticTag.VEGETATION, "nature"), (0, 8): (SemanticTag.BUILDING,
                                                                   "structure")}
    for (row, col), (tag, _) in pixels.items():
        image[row, col] = PALETTE[tag]
    image[1, 0] = (1, 2, 3)                    # not a palette colour -> unlabeled
    frame = builder.semantic_frame(image)
    intensity = SemanticIntensityConfig()
    for (row, col), (_, group) in pixels.items():
        assert frame[row, col] == getattr(intensity, group)
    assert frame[1, 0] == intensity.unlabeled


def test_key_classes_are_spread_apart():
    intensity = SemanticIntensityConfig()
    levels = sorted([intensity.road, intensity.road_line, intensity.sidewalk, intensity.vehicle,
                     intensity.pedestrian, intensity.traffic_light])
    assert min(b - a for a, b in zip(levels, levels[1:])) >= 20


@pytest.mark.parametrize("azimuth_deg, expected_bin", [(0.0, 18), (90.0, 27), (-90.0, 9),
                                                      (179.0, 35), (-179.0, 0), (5.0, 18),
                                                      (-5.0, 17)])
def test_lidar_point_lands_in_its_bin(azimuth_deg, expected_bin):
    config = LidarBinsConfig(count=36, max_range_m=50.0)
    distance = 10.0
    angle = math.radians(azimuth_deg)
    points = np.array([[distance * math.cos(angle), distance * math.sin(angle), 0.0, 1.0]],
                      dtype=np.float32)
    bins = lidar_range_bins(points, config)
    assert bins[expected_bin] == pytest.approx(distance / 50.0, rel=1e-5)
    assert np.count_nonzero(bins < 1.0) == 1


def test_lidar_keeps_closest_return_and_filters_ground_and_far_points():
    config = LidarBinsConfig(count=4, max_range_m=20.0, min_height_m=-1.0, max_height_m=1.0)
    points = np.array([[10.0, 0.0, 0.0, 1.0],     # ahead (bin 2), 10 m
                       [5.0, 0.0, 0.0, 1.0],      # ahead, closer -> kept
                       [3.0, 0.0, -2.0, 1.0],     # ground: ignored
                       [0.0, 30.0, 0.0, 1.0],     # beyond max range: ignored
                       [0.1, 0.0, 0.0, 1.0]],     # inside the ego body: ignored
                      dtype=np.float32)
    bins = lidar_range_bins(points, config)
    np.testing.assert_allclose(bins, [1.0, 1.0, 0.25, 1.0])


def test_vector_features_are_named_and_normalised():
    builder = make_builder()
    situation = EgoSituation(lateral_offset_m=0.875, lane_width_m=3.5, heading_error_rad=0.5,
                             traffic_light_state=TrafficLightState.RED,
                             traffic_light_distance_m=25.0, nearest_actor_distance_m=15.0,
                             route_remaining_m=200.0)
    _, vector = build(builder, solid_image(SemanticTag.ROAD), situation, speed=5.0,
                      odometry=Odometry(vy=1.0, yaw_rate=0.5))
    scales = builder.config.vector
    assert vector.dtype == np.float32 and vector.shape == (len(builder.vector_names),)
    assert feature(builder, vector, "speed") == pytest.approx(5.0 / scales.speed_scale_mps)
    assert feature(builder, vector, "lateral_speed") == pytest.approx(
        1.0 / scales.lateral_speed_scale_mps)
    assert feature(builder, vector, "lateral_offset") == pytest.approx(0.5)
    assert feature(builder, vector, "heading_error") == pytest.approx(0.5 / math.pi)
    assert feature(builder, vector, "heading_error_sin") == pytest.approx(math.sin(0.5))
    one_hot = [feature(builder, vector, n) for n in ("light_red", "light_yellow", "light_green",
                                                     "light_none")]
    assert one_hot == [1.0, 0.0, 0.0, 0.0]
    assert feature(builder, vector, "light_distance") == pytest.approx(
        25.0 / scales.traffic_light_range_m)
    assert feature(builder, vector, "actor_distance") == pytest.approx(15.0 / scales.actor_range_m)
    assert feature(builder, vector, "route_remaining") == pytest.approx(
        200.0 / scales.route_remaining_scale_m)
    lidar = vector[builder.vector_names.index("lidar_bin_00"):]
    assert len(lidar) == builder.config.lidar.count and (lidar == 1.0).all()


def test_missing_light_and_actor_read_as_far_and_none():
    builder = make_builder()
    situation = EgoSituation(traffic_light_state=TrafficLightState.UNKNOWN,
                             traffic_light_distance_m=math.inf, nearest_actor_distance_m=math.inf)
    _, vector = build(builder, solid_image(SemanticTag.ROAD), situation)
    assert feature(builder, vector, "light_none") == 1.0
    assert feature(builder, vector, "light_red") == 0.0
    assert feature(builder, vector, "light_distance") == 1.0
    assert feature(builder, vector, "actor_distance") == 1.0
    assert np.isfinite(vector).all()


def test_wrong_image_shape_is_rejected():
    builder = make_builder()
    with pytest.raises(ValueError, match="expected"):
        build(builder, np.zeros((SIZE + 1, SIZE, 3), dtype=np.uint8))


def test_action_mask():
    assert action_mask([0, 3, 4], 6).tolist() == [1, 0, 0, 1, 1, 0]
    assert action_mask([], 6).tolist() == [1] * 6


def test_route_lookahead_points_are_in_the_ego_frame():
    from carla_rl.preprocess import ObservationBuilder, PreprocessConfig
    from carla_rl.contract.sensor_frame import EgoSituation, Odometry

    builder = ObservationBuilder(PreprocessConfig())
    names = builder.vector_names
    camera = np.zeros((84, 84, 3), np.uint8)
    lidar = np.zeros((0, 4), np.float32)
    # no route yet: the look-ahead features are zero
    _, vector = builder.build(camera, lidar, Odometry(), 0.0, EgoSituation())
    assert vector[names.index("route_ahead_10m_x")] == 0.0
    # a route along +x then turning left (+y) at x = 20
    builder.set_route(np.array([[0.0, 0.0], [20.0, 0.0], [20.0, 40.0]]))
    scale = builder.config.vector.route_lookahead_scale_m
    _, vector = builder.build(camera, lidar, Odometry(x=0.0, y=0.0, yaw=0.0), 0.0,
                              EgoSituation(route_progress_m=0.0))
    assert vector[names.index("route_ahead_10m_x")] == pytest.approx(10.0 / scale)
    assert vector[names.index("route_ahead_10m_y")] == pytest.approx(0.0)
    assert vector[names.index("route_ahead_40m_x")] == pytest.approx(20.0 / scale)   # the turn ...
    assert vector[names.index("route_ahead_40m_y")] == pytest.approx(20.0 / scale)   # ... is to the left
    # the same route seen by an ego facing +y (yaw 90 deg): straight ahead becomes its right
    _, vector = builder.build(camera, lidar, Odometry(yaw=np.pi / 2), 0.0, EgoSituation())
    assert vector[names.index("route_ahead_10m_x")] == pytest.approx(0.0, abs=1e-6)
    assert vector[names.index("route_ahead_10m_y")] == pytest.approx(-10.0 / scale)


def test_palette_decoder_equals_the_tag_then_intensity_lookup():
    """PaletteDecoder (one table, strided uint32 keys) gives intensity[colours_to_tags(image)] for every
    palette colour, colours outside the palette, odd sizes and non-contiguous views."""
    from carla_rl.preprocess import semantic_intensity_lut
    from carla_rl.contract.semantic_palette import PaletteDecoder, colours_to_tags

    lut = semantic_intensity_lut(SemanticIntensityConfig())
    decode = PaletteDecoder(lut)
    rng = np.random.default_rng(0)
    for height, width in ((84, 84), (7, 13), (1, 1)):
        image = PALETTE[rng.integers(0, len(PALETTE), (height, width))]
        noise = rng.random((height, width)) < 0.2          # some pixels get random (mostly unknown) colours
        image[noise] = rng.integers(0, 256, (int(noise.sum()), 3), dtype=np.uint8)
        expected = lut[colours_to_tags(image)]
        got = decode(image)
        assert got.shape == (height, width) and got.dtype == np.uint8
        np.testing.assert_array_equal(got, expected)
    wide = PALETTE[rng.integers(0, len(PALETTE), (20, 40))]
    view = wide[:, ::2]                                     # non-contiguous
    np.testing.assert_array_equal(decode(view), lut[colours_to_tags(view)])
    first = decode(wide[:, :20].copy())
    decode(PALETTE[np.zeros((20, 20), int)])
    assert not (first == lut[0]).all() or (wide[:, :20] == PALETTE[0]).all()  # results are not aliased
    with pytest.raises(ValueError):
        decode(np.zeros((4, 4), np.uint8))


def _reference_vector_features(builder, odometry, speed, situation):
    """The numpy formulation the builder used before its plain-float one (scalars + route look-ahead)."""
    scales = builder.config.vector
    half_lane = max(situation.lane_width_m, 0.0) / 2.0
    lateral = situation.lateral_offset_m / half_lane if half_lane > 0.0 else 0.0
    from carla_rl.preprocess.observation import (TRAFFIC_LIGHT_SLOTS, _normalised_distance, _SIGNALLING_STATES,
                                                 _wrap_angle)
    state, distance = situation.traffic_light_state, situation.traffic_light_distance_m
    ahead_light = math.isfinite(distance) and state in _SIGNALLING_STATES
    one_hot = [float(ahead_light and state == s) for _, s in TRAFFIC_LIGHT_SLOTS] + [float(not ahead_light)]
    heading = situation.heading_error_rad
    values = [speed / scales.speed_scale_mps, odometry.vy / scales.lateral_speed_scale_mps,
              odometry.yaw_rate / scales.yaw_rate_scale_rps, _wrap_angle(heading) / math.pi, math.sin(heading),
              math.cos(heading), lateral, *one_hot,
              _normalised_distance(distance if ahead_light else math.inf, scales.traffic_light_range_m),
              _normalised_distance(situation.nearest_actor_distance_m, scales.actor_range_m),
              situation.route_remaining_m / scales.route_remaining_scale_m]
    scalars = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0), -scales.clip, scales.clip)
    ahead = np.asarray(scales.route_lookahead_m, dtype=np.float64)
    s = np.clip(situation.route_progress_m + ahead, 0.0, builder._route_s[-1])
    px = np.interp(s, builder._route_s, builder._route[:, 0]) - odometry.x
    py = np.interp(s, builder._route_s, builder._route[:, 1]) - odometry.y
    c, si = math.cos(odometry.yaw), math.sin(odometry.yaw)
    look = np.stack([c * px + si * py, -si * px + c * py], axis=1).reshape(-1) / scales.route_lookahead_scale_m
    return np.concatenate([scalars, np.clip(look, -scales.clip, scales.clip)]).astype(np.float32)


def test_vector_features_match_the_numpy_formulation():
    builder = ObservationBuilder(PreprocessConfig())
    rng = np.random.default_rng(1)
    route = np.cumsum(rng.uniform(-1.0, 3.0, (60, 2)), axis=0)
    route[10] = route[9]                                    # a zero-length segment
    builder.set_route(route)
    camera = np.zeros((84, 84, 3), np.uint8)
    lights = list(TrafficLightState)
    specials = [math.nan, math.inf, -math.inf]
    n_vector = len(builder.vector_names) - builder.config.lidar.count
    for trial in range(300):
        def value(scale=10.0):
            return specials[trial % 3] if rng.random() < 0.05 else float(rng.normal(0.0, scale))
        def finite(scale=10.0):
            return float(rng.normal(0.0, scale))
        # odometry is validated (finite) before build; the situation's distances may be inf / NaN
        odometry = Odometry(x=finite(50), y=finite(50), yaw=finite(3), vx=finite(), vy=finite(), yaw_rate=finite(1))
        situation = EgoSituation(lane_width_m=value(4), lateral_offset_m=value(2), heading_error_rad=finite(3),
                                 traffic_light_state=lights[trial % len(lights)],
                                 traffic_light_distance_m=value(30), nearest_actor_distance_m=value(20),
                                 route_remaining_m=value(100), route_progress_m=float(rng.uniform(-20, 220)))
        speed = abs(finite())
        _, vector = builder.build(camera, NO_POINTS, odometry, speed, situation)
        expected = _reference_vector_features(builder, odometry, speed, situation)
        np.testing.assert_allclose(vector[:n_vector], expected, rtol=1e-6, atol=1e-6, equal_nan=True)
