"""``CarlaWorld``: the direct CARLA 0.9.16 client backend with the embedded simulator World's interface.

    world = CarlaWorld(carla_config, scenario, seed)   # connects; CarlaConnectionError if unreachable
    frame = world.reset(seed=None, scenario=None, evaluation=False, phase=None)
    frame = world.step(VehicleControl(throttle=0.5))
    world.close()

Per tick (synchronous mode, fixed delta): apply the ego control, ``world.tick()``, then collect every
sensor's data of that frame id from the callback buffers (:class:`SensorCollector`, waits with a
timeout), and compute the EgoSituation from the map (route, lane type, lights, nearest actor).

``step_id`` is this object's own tick counter (``sim_time = step_id * fixed_delta_seconds``): unique
and increasing for the life of the world, across episodes and town loads, like the embedded World.
If the server crashes or hangs during a step, the lifecycle reconnects (or restarts it through
``restart_command``) and :class:`EpisodeInterrupted` is raised: the caller resets.
"""

from __future__ import annotations

import logging
import math
import random
import threading
from collections import defaultdict
from typing import Any, Callable

import numpy as np

from carla_rl.carla import carla_conversions as conv
from carla_rl.carla.carla_config import CarlaConfig
from carla_rl.carla.map_route import (
    RouteTracker,
    actor_box,
    box_distance,
    lane_flags,
    plan_route,
    route_points,
    start_candidates,
    stop_lines_on_route,
)
from carla_rl.carla.server_lifecycle import CarlaConnectionError, ServerLifecycle
from carla_rl.contract.scenario import ScenarioConfig
from carla_rl.contract.sensor_frame import EgoSituation, SensorFrame, TrafficLightState, VehicleControl

LOG = logging.getLogger(__name__)

CONTINUOUS_SENSORS = ("camera", "lidar", "radar")
EVENT_SENSORS = ("collision", "lane_invasion")


def _lifted(transform: Any, dz: float) -> Any:
    import carla

    loc = transform.location
    return carla.Transform(carla.Location(x=loc.x, y=loc.y, z=loc.z + dz), transform.rotation)


class EpisodeInterrupted(RuntimeError):
    """The server crashed or hung during the episode and was recovered: call ``reset()``."""


class SensorTimeout(RuntimeError):
    """Not all sensors delivered the data of a frame within ``sensor_timeout_s``."""


class SensorCollector:
    """Buffers sensor callbacks by frame id (callbacks run on libcarla's threads).

    Continuous sensors deliver one item per frame; event sensors deliver zero or more. ``collect(frame)``
    waits until every continuous sensor has data for ``frame`` and returns it with the events of all
    frames up to ``frame``; older buffered data is dropped.
    """

    def __init__(self, continuous: tuple[str, ...] = CONTINUOUS_SENSORS,
                 events: tuple[str, ...] = EVENT_SENSORS):
        self.continuous = tuple(continuous)
        self.events = tuple(events)
        self._cond = threading.Condition()
        self._data: dict[int, dict[str, Any]] = defaultdict(dict)
        self._events: dict[str, list[tuple[int, Any]]] = {name: [] for name in self.events}

    def callback(self, name: str) -> Callable[[Any], None]:
        if name in self.continuous:
            def on_data(data: Any) -> None:
                with self._cond:
                    self._data[int(data.frame)][name] = data
                    self._cond.notify_all()
        elif name in self.events:
            def on_data(data: Any) -> None:
                with self._cond:
                    self._events[name].append((int(data.frame), data))
                    self._cond.notify_all()
        else:
            raise KeyError(f"unknown sensor {name!r}")
        return on_data

    def clear(self) -> None:
        with self._cond:
            self._data.clear()
            for lst in self._events.values():
                lst.clear()

    def collect(self, frame: int, timeout_s: float) -> tuple[dict[str, Any], dict[str, list[Any]]]:
        """(data per continuous sensor, events per event sensor) of ``frame``; SensorTimeout if late."""
        with self._cond:
            ok = self._cond.wait_for(lambda: all(n in self._data.get(frame, {}) for n in self.continuous),
                                     timeout=timeout_s)
            if not ok:
                have = self._data.get(frame, {})
                missing = [n for n in self.continuous if n not in have]
                raise SensorTimeout(f"no data from sensor(s) {', '.join(missing)} for frame {frame} within "
                                    f"{timeout_s:.1f} s")
            data = self._data.pop(frame)
            for old in [f for f in self._data if f < frame]:
                del self._data[old]
            events: dict[str, list[Any]] = {}
            for name, lst in self._events.items():
                events[name] = [e for f, e in lst if f <= frame]
                lst[:] = [(f, e) for f, e in lst if f > frame]
            return data, events


class CarlaWorld:
    """A CARLA town driven in lockstep: same interface as the embedded simulator's World."""

    def __init__(self, carla_config: CarlaConfig, scenario: ScenarioConfig, seed: int = 0,
                 lifecycle: ServerLifecycle | None = None):
        import carla  # noqa: F401 - fail early and clearly if the wheel is missing

        self.config = carla_config
        self.scenario = scenario
        self.seed = int(seed)
        self.phase = 1
        self.evaluation = False
        self._rng = random.Random(self.seed)
        self.lifecycle = lifecycle or ServerLifecycle(carla_config)
        self.lifecycle.connect()  # CarlaConnectionError (one line) when unreachable
        self.step_id = 0
        self.episode_id = 0
        self.episode_step = 0
        self.route_version = 0
        self.invalid_controls = 0
        self.collector = SensorCollector()
        self._sensors: list[Any] = []
        self._npc_ids: list[int] = []
        self._walker_ids: list[int] = []
        self._controllers: list[Any] = []
        self.ego: Any = None
        self._tracker: RouteTracker | None = None
        self._route = np.zeros((0, 2), dtype=np.float32)
        self._tm: Any = None
        self._map: Any = None
        self._spawn_transform: Any = None
        self._free_spawn_points: list[Any] = []

    # -- public interface ------------------------------------------------------------------------

    @property
    def sim_time(self) -> float:
        return self.step_id * self.config.fixed_delta_seconds

    def reset(self, seed: int | None = None, scenario: ScenarioConfig | None = None,
              evaluation: bool = False, phase: int | None = None) -> SensorFrame:
        """Start a new episode (new ego pose, route, traffic); returns its first frame (episode_step 0)."""
        if seed is not None:
            self.seed = int(seed)
            self._rng = random.Random(self.seed)
        if scenario is not None:
            self.scenario = scenario
        if phase is not None:
            self.phase = int(phase)
        self.evaluation = bool(evaluation)
        try:
            return self._reset_once()
        except (RuntimeError, SensorTimeout) as exc:
            if isinstance(exc, CarlaConnectionError):
                raise
            LOG.warning("CARLA reset failed (%s): recovering the server", str(exc).splitlines()[0])
            self._forget_actors()
            self.lifecycle.recover()
            return self._reset_once()

    def step(self, control: VehicleControl) -> SensorFrame:
        """Apply ``control`` to the ego, tick once, return the new frame."""
        if self.ego is None:
            raise RuntimeError("CarlaWorld.step() before reset()")
        if control.sanitized()[1]:
            self.invalid_controls += 1
        try:
            self.ego.apply_control(conv.to_carla_control(control))
            frame = self._tick()
            data, events = self.collector.collect(frame, self.config.sensor_timeout_s)
            self.episode_step += 1
            return self._build_frame(data, events)
        except CarlaConnectionError:
            raise
        except (RuntimeError, SensorTimeout) as exc:
            LOG.warning("CARLA step failed (%s): recovering the server", str(exc).splitlines()[0])
            self._forget_actors()
            self.lifecycle.recover()
            raise EpisodeInterrupted(f"CARLA server recovered after: {str(exc).splitlines()[0]}") from None

    def close(self) -> None:
        """Destroy our actors and give the server back in asynchronous mode."""
        try:
            self._destroy_actors()
            if self._tm is not None:
                self._tm.set_synchronous_mode(False)
        except RuntimeError as exc:
            LOG.warning("CARLA cleanup failed: %s", str(exc).splitlines()[0])
        finally:
            self._tm = None
            self.lifecycle.close()

    # -- episode setup ---------------------------------------------------------------------------

    def _reset_once(self) -> SensorFrame:
        import carla

        self._destroy_actors()
        lc = self.lifecycle
        world = lc.ensure_town(self.config.town_for(self.scenario.map_name))
        lc.apply_synchronous(True)
        self._map = world.get_map()
        self._setup_traffic_manager()
        self._setup_traffic_lights(world)
        self._spawn_ego(world)
        self._plan_route(world)
        self._attach_sensors(world)
        self._spawn_vehicles(world)
        self._spawn_walkers(world)
        self.episode_id += 1
        self.episode_step = 0
        brake = conv.to_carla_control(VehicleControl(brake=1.0))
        for _ in range(self.config.settle_ticks):
            self.ego.apply_control(brake)
            self._tick()
        self.collector.clear()
        self.ego.apply_control(carla.VehicleControl())
        frame = self._tick()
        data, _ = self.collector.collect(frame, self.config.sensor_timeout_s)
        return self._build_frame(data, {name: [] for name in EVENT_SENSORS})

    def _tick(self) -> int:
        self.lifecycle.pacer.wait()
        frame = int(self.lifecycle.world.tick(self.config.timeout_s))
        self.step_id += 1
        return frame

    def _setup_traffic_manager(self) -> None:
        tm = self.lifecycle.client.get_trafficmanager(self.config.tm_port)
        tm.set_synchronous_mode(True)
        tm.set_random_device_seed(self.seed)
        tm.set_global_distance_to_leading_vehicle(self.config.tm_global_distance_m)
        tm.global_percentage_speed_difference(self.config.tm_speed_difference_percent)
        tm.set_hybrid_physics_mode(self.config.tm_hybrid_physics)
        self._tm = tm

    def _setup_traffic_lights(self, world: Any) -> None:
        import carla

        for light in world.get_actors().filter("traffic.traffic_light"):
            if self.scenario.traffic_lights:
                light.freeze(False)
            else:  # phases without lights: every light green and frozen
                light.set_state(carla.TrafficLightState.Green)
                light.freeze(True)

    def _spawn_ego(self, world: Any) -> None:
        library = world.get_blueprint_library()
        bp = library.find(self.config.ego_blueprint)
        bp.set_attribute("role_name", self.config.role_name)
        points = list(self._map.get_spawn_points())
        if not points:  # e.g. a world generated from OpenDRIVE: driving-lane waypoints, lifted a little
            points = [_lifted(w.transform, 0.5) for w in start_candidates(self._map)]
        if not points:
            raise RuntimeError(f"town {self._map.name} has no spawn points and no driving lanes")
        self._rng.shuffle(points)
        for transform in points[: self.config.spawn_attempts]:
            actor = world.try_spawn_actor(bp, transform)
            if actor is not None:
                self.ego = actor
                # in synchronous mode a new actor reports its pose only after the next tick
                self._spawn_transform = transform
                self._free_spawn_points = [p for p in points if p is not transform]
                return
        raise RuntimeError(f"could not spawn the ego at {self.config.spawn_attempts} spawn points "
                           f"of {self._map.name} (all occupied?)")

    def _plan_route(self, world: Any) -> None:
        import carla

        start = self._map.get_waypoint(self._spawn_transform.location, project_to_road=True,
                                       lane_type=carla.LaneType.Driving)
        route = plan_route(start, self.scenario.route_length_m, self.config.route_step_m, self._rng)
        pts, widths = route_points(route)
        tracker = RouteTracker(pts, widths, goal_tolerance_m=self.config.goal_tolerance_m)
        if self.scenario.traffic_lights:
            lights = list(world.get_actors().filter("traffic.traffic_light"))
            tracker.stop_lines = stop_lines_on_route(route, tracker.s, lights)
        self._tracker = tracker
        self._route = pts
        self.route_version += 1

    def _attach_sensors(self, world: Any) -> None:
        library = world.get_blueprint_library()
        cam, lid, rad = self.config.camera, self.config.lidar, self.config.radar
        specs = [
            ("camera", "sensor.camera.semantic_segmentation", cam.mount,
             {"image_size_x": cam.width, "image_size_y": cam.height, "fov": cam.fov_deg}),
            ("lidar", "sensor.lidar.ray_cast", lid.mount,
             {"range": lid.range_m, "channels": lid.channels, "points_per_second": lid.points_per_second,
              "rotation_frequency": lid.rotation_frequency_hz, "upper_fov": lid.upper_fov_deg,
              "lower_fov": lid.lower_fov_deg}),
            ("radar", "sensor.other.radar", rad.mount,
             {"horizontal_fov": rad.horizontal_fov_deg, "vertical_fov": rad.vertical_fov_deg,
              "range": rad.range_m, "points_per_second": rad.points_per_second}),
            ("collision", "sensor.other.collision", None, {}),
            ("lane_invasion", "sensor.other.lane_invasion", None, {}),
        ]
        import carla

        self.collector.clear()
        for name, type_id, mount, attributes in specs:
            bp = library.find(type_id)
            for key, value in attributes.items():
                bp.set_attribute(key, str(value))
            if bp.has_attribute("sensor_tick"):
                bp.set_attribute("sensor_tick", "0.0")  # every tick
            transform = conv.mount_to_transform(mount) if mount is not None else carla.Transform()
            sensor = world.spawn_actor(bp, transform, attach_to=self.ego)
            sensor.listen(self.collector.callback(name))
            self._sensors.append(sensor)

    def _spawn_vehicles(self, world: Any) -> None:
        import carla

        count = self.scenario.num_vehicles
        if count <= 0:
            return
        library = world.get_blueprint_library()
        def four_wheels(bp: Any) -> bool:
            return bp.has_attribute("number_of_wheels") and bp.get_attribute("number_of_wheels").as_int() == 4

        bps = [bp for bp in library.filter(self.config.vehicle_filter)
               if not self.config.vehicle_four_wheels_only or four_wheels(bp)]
        bps.sort(key=lambda b: b.id)
        if not bps:
            raise RuntimeError(f"no vehicle blueprint matches {self.config.vehicle_filter!r}")
        port = self._tm.get_port()
        batch = []
        for transform in self._free_spawn_points[:count]:
            bp = self._rng.choice(bps)
            if bp.has_attribute("color"):
                bp.set_attribute("color", self._rng.choice(bp.get_attribute("color").recommended_values))
            bp.set_attribute("role_name", "autopilot")
            batch.append(carla.command.SpawnActor(bp, transform)
                         .then(carla.command.SetAutopilot(carla.command.FutureActor, True, port)))
        for response in self.lifecycle.client.apply_batch_sync(batch, False):
            if response.error:
                LOG.debug("NPC vehicle not spawned: %s", response.error)
            else:
                self._npc_ids.append(response.actor_id)

    def _spawn_walkers(self, world: Any) -> None:
        import carla

        count = self.scenario.num_pedestrians
        if count <= 0:
            return
        world.set_pedestrians_seed(self.seed)
        world.set_pedestrians_cross_factor(float(self.scenario.jaywalk_probability))
        library = world.get_blueprint_library()
        bps = sorted(library.filter(self.config.walker_filter), key=lambda b: b.id)
        batch = []
        for _ in range(count):
            loc = world.get_random_location_from_navigation()
            if loc is None:
                continue
            bp = self._rng.choice(bps)
            if bp.has_attribute("is_invincible"):
                bp.set_attribute("is_invincible", "false")
            batch.append(carla.command.SpawnActor(bp, carla.Transform(loc)))
        responses = self.lifecycle.client.apply_batch_sync(batch, False)
        walker_ids = [r.actor_id for r in responses if not r.error]
        controller_bp = library.find("controller.ai.walker")
        batch = [carla.command.SpawnActor(controller_bp, carla.Transform(), wid) for wid in walker_ids]
        responses = self.lifecycle.client.apply_batch_sync(batch, False)
        controller_ids = [r.actor_id for r in responses if not r.error]
        self._walker_ids = walker_ids
        self._tick()  # controllers need one tick before start()
        for controller in world.get_actors(controller_ids):
            controller.start()
            target = world.get_random_location_from_navigation()
            if target is not None:
                controller.go_to_location(target)
            controller.set_max_speed(self.config.walker_max_speed_mps)
            self._controllers.append(controller)

    # -- per-tick frame --------------------------------------------------------------------------

    def _build_frame(self, data: dict[str, Any], events: dict[str, list[Any]]) -> SensorFrame:
        ego = self.ego
        transform = ego.get_transform()
        odom = conv.transform_to_odometry(transform, ego.get_velocity(), ego.get_angular_velocity())
        speed = conv.forward_speed(transform, ego.get_velocity())
        image = data["camera"]
        camera = conv.semantic_raw_to_rgb(image.raw_data, image.height, image.width)
        lidar = conv.lidar_raw_to_points(data["lidar"].raw_data)
        radar = conv.radar_raw_to_detections(data["radar"].raw_data)
        collisions = [conv.collision_to_event(e) for e in events.get("collision", [])]
        invasions = [conv.lane_invasion_to_event(e) for e in events.get("lane_invasion", [])]
        situation = self._situation(transform, odom, len(collisions), len(invasions))
        return SensorFrame(step_id=self.step_id, sim_time=self.sim_time, camera=camera, lidar=lidar,
                           radar=radar, odometry=odom, speed=speed, situation=situation,
                           route=self._route, route_version=self.route_version,
                           collisions=collisions, lane_invasions=invasions)

    def _situation(self, transform: Any, odom: Any, n_collisions: int, n_invasions: int) -> EgoSituation:
        route = self._tracker.update(odom.x, odom.y, odom.yaw)
        on_sidewalk, off_road, _ = lane_flags(self._map, transform.location)
        light_state, light_distance = route.traffic_light_state, route.traffic_light_distance_m
        if light_state == TrafficLightState.UNKNOWN and self.ego.is_at_traffic_light():
            light_state = conv.traffic_light_state(self.ego.get_traffic_light_state())
            light_distance = 0.0
        return EgoSituation(
            step_id=self.step_id, episode_id=self.episode_id, episode_step=self.episode_step,
            phase=self.phase, evaluation=self.evaluation, on_sidewalk=on_sidewalk, off_road=off_road,
            lateral_offset_m=route.lateral_offset_m, heading_error_rad=route.heading_error_rad,
            lane_width_m=route.lane_width_m, traffic_light_state=int(light_state),
            traffic_light_distance_m=light_distance, ran_red_light=route.ran_red_light,
            nearest_actor_distance_m=self._nearest_actor_distance(transform),
            route_remaining_m=route.remaining_m, route_progress_m=route.progress_m,
            goal_reached=route.goal_reached, collision_events=n_collisions,
            lane_invasion_events=n_invasions)

    def _nearest_actor_distance(self, transform: Any) -> float:
        ego_box = actor_box(transform, self.ego.bounding_box.extent)
        ego_loc = transform.location
        radius = self.config.actor_search_radius_m
        best = math.inf
        actors = self.lifecycle.world.get_actors()
        for pattern in ("vehicle.*", "walker.pedestrian.*"):
            for actor in actors.filter(pattern):
                if actor.id == self.ego.id:
                    continue
                t = actor.get_transform()
                if t.location.distance(ego_loc) > radius:
                    continue
                best = min(best, box_distance(ego_box, actor_box(t, actor.bounding_box.extent)))
        return best

    # -- cleanup ---------------------------------------------------------------------------------

    def _forget_actors(self) -> None:
        """After a server crash the actor handles are dead: drop them without RPCs."""
        self._sensors, self._controllers, self._npc_ids, self._walker_ids = [], [], [], []
        self.ego = None
        self.collector.clear()

    def _destroy_actors(self) -> None:
        import carla

        client = self.lifecycle.client
        for sensor in self._sensors:
            sensor.stop()
        for controller in self._controllers:
            controller.stop()
        ids = [s.id for s in self._sensors] + [c.id for c in self._controllers]
        ids += self._npc_ids + self._walker_ids
        if self.ego is not None:
            ids.append(self.ego.id)
        if ids and client is not None:
            client.apply_batch_sync([carla.command.DestroyActor(i) for i in ids], False)
        self._forget_actors()
