"""A stand-in for the parts of a CARLA server that CarlaWorld uses, around a REAL carla.Map (from
OpenDRIVE) and real carla.Transform / Location / Vector3D / VehicleControl values.

Sensors deliver their data from ``world.tick()``: camera/lidar/radar every tick (the radar on a thread,
late, to exercise the per-frame wait), collision events when the ego's x passes ``collision_at_x``.
The ego drives straight along its heading with ``speed = 10 * throttle``, enough for the orchestration;
``collision_at_x`` is the distance from the ego's spawn point at which one collision is reported.
"""

from __future__ import annotations

import itertools
import threading
import time
from types import SimpleNamespace

import carla
import numpy as np

_ids = itertools.count(100)


class FakeBlueprint:
    def __init__(self, bp_id: str, attributes: dict | None = None):
        self.id = bp_id
        self.attributes = dict(attributes or {})

    def set_attribute(self, key, value):
        self.attributes[key] = value

    def has_attribute(self, key):
        return key in self.attributes

    def get_attribute(self, key):
        value = self.attributes[key]
        return SimpleNamespace(as_int=lambda: int(value), recommended_values=["0,0,0", "255,0,0"])


class FakeLibrary:
    def __init__(self):
        self._bps = {bid: FakeBlueprint(bid, attrs) for bid, attrs in [
            ("vehicle.tesla.model3", {"number_of_wheels": "4", "color": "0,0,0"}),
            ("vehicle.audi.tt", {"number_of_wheels": "4"}),
            ("vehicle.yamaha.yzf", {"number_of_wheels": "2"}),
            ("walker.pedestrian.0001", {"is_invincible": "true"}),
            ("controller.ai.walker", {}),
            ("sensor.camera.semantic_segmentation", {"image_size_x": "800", "image_size_y": "600",
                                                     "sensor_tick": "0.0"}),
            ("sensor.lidar.ray_cast", {}), ("sensor.other.radar", {}), ("sensor.other.collision", {}),
            ("sensor.other.lane_invasion", {})]}

    def find(self, bp_id):
        return self._bps[bp_id]

    def filter(self, pattern):
        prefix = pattern.rstrip("*")
        return [bp for bid, bp in self._bps.items() if bid.startswith(prefix)]


class FakeActor:
    def __init__(self, world, bp, transform, parent=None):
        self.id = next(_ids)
        self.world, self.type_id, self.attributes = world, bp.id, dict(bp.attributes)
        self.transform, self.parent = transform, parent
        self.velocity = carla.Vector3D(0.0, 0.0, 0.0)
        self.bounding_box = SimpleNamespace(extent=carla.Vector3D(2.0, 1.0, 0.8))
        self.controls = []
        self.callback = None
        self.alive = True

    # vehicle
    def get_transform(self):
        return self.transform

    def get_location(self):
        return self.transform.location

    def get_velocity(self):
        return self.velocity

    def get_angular_velocity(self):
        return carla.Vector3D(0.0, 0.0, 0.0)

    def apply_control(self, control):
        assert isinstance(control, carla.VehicleControl)
        self.controls.append(control)

    def is_at_traffic_light(self):
        return False

    # sensor
    def listen(self, callback):
        self.callback = callback

    def stop(self):
        self.callback = None


class FakeWorld:
    def __init__(self, carla_map, collision_at_x=None):
        self.map = carla_map
        self.frame = 1000
        self.settings = SimpleNamespace(synchronous_mode=False, fixed_delta_seconds=None, no_rendering_mode=False)
        self.library = FakeLibrary()
        self.actors: dict[int, FakeActor] = {}
        self.collision_at_x = collision_at_x
        self.ticks = 0
        self.dt = 0.05
        drive = [w for w in carla_map.generate_waypoints(20.0) if str(w.lane_type) == "Driving"
                 and w.lane_id == -1 and w.road_id == 0]
        self.spawn_points = [carla.Transform(carla.Location(x=w.transform.location.x, y=w.transform.location.y,
                                                            z=0.3), w.transform.rotation) for w in drive]

    def get_map(self):
        return self.map

    def get_settings(self):
        return self.settings

    def apply_settings(self, settings):
        self.settings = settings

    def get_blueprint_library(self):
        return self.library

    def get_actors(self, ids=None):
        actors = [a for a in self.actors.values() if ids is None or a.id in ids]
        return FakeActorList(actors)

    def try_spawn_actor(self, bp, transform):
        actor = FakeActor(self, bp, transform)
        actor.start = transform.location
        self.actors[actor.id] = actor
        return actor

    def spawn_actor(self, bp, transform, attach_to=None):
        actor = FakeActor(self, bp, transform, parent=attach_to)
        self.actors[actor.id] = actor
        return actor

    def set_pedestrians_seed(self, seed):
        pass

    def set_pedestrians_cross_factor(self, p):
        pass

    def get_random_location_from_navigation(self):
        return carla.Location(x=50.0, y=5.0, z=0.0)

    def get_snapshot(self):
        return SimpleNamespace(frame=self.frame)

    def tick(self, seconds=0.0):
        self.frame += 1
        self.ticks += 1
        for actor in list(self.actors.values()):
            if actor.type_id.startswith("vehicle") and actor.controls:
                c = actor.controls[-1]
                speed = 10.0 * c.throttle * (0.0 if c.brake > 0 else 1.0)
                loc, fwd = actor.transform.location, actor.transform.get_forward_vector()
                actor.transform = carla.Transform(
                    carla.Location(x=loc.x + fwd.x * speed * self.dt, y=loc.y + fwd.y * speed * self.dt, z=loc.z),
                    actor.transform.rotation)
                actor.velocity = carla.Vector3D(fwd.x * speed, fwd.y * speed, 0.0)
        for actor in list(self.actors.values()):
            if actor.callback is None:
                continue
            frame = self.frame
            if actor.type_id == "sensor.camera.semantic_segmentation":
                w, h = int(actor.attributes["image_size_x"]), int(actor.attributes["image_size_y"])
                raw = np.zeros((h, w, 4), np.uint8)
                raw[..., 2] = 1  # road
                actor.callback(SimpleNamespace(frame=frame, raw_data=raw.tobytes(), width=w, height=h))
            elif actor.type_id == "sensor.lidar.ray_cast":
                pts = np.array([[1.0, 2.0, 0.0, 0.5]], np.float32)
                actor.callback(SimpleNamespace(frame=frame, raw_data=pts.tobytes()))
            elif actor.type_id == "sensor.other.radar":
                det = np.array([[-1.0, 0.1, 0.0, 25.0]], np.float32)  # velocity, azimuth, altitude, depth
                cb = actor.callback

                def late(cb=cb, frame=frame, det=det):
                    time.sleep(0.01)
                    cb(SimpleNamespace(frame=frame, raw_data=det.tobytes()))

                threading.Thread(target=late).start()
            elif actor.type_id == "sensor.other.collision" and self.collision_at_x is not None:
                ego = actor.parent
                if ego.transform.location.distance(ego.start) >= self.collision_at_x:
                    self.collision_at_x = None
                    actor.callback(SimpleNamespace(frame=frame, other_actor=SimpleNamespace(id=7),
                                                   normal_impulse=carla.Vector3D(100.0, 0.0, 0.0)))
        return self.frame


class FakeActorList(list):
    def filter(self, pattern):
        prefix = pattern.rstrip("*")
        return FakeActorList(a for a in self if a.type_id.startswith(prefix))


class FakeTrafficManager:
    def __init__(self, port):
        self.port, self.sync, self.seed = port, None, None

    def set_synchronous_mode(self, on):
        self.sync = on

    def set_random_device_seed(self, seed):
        self.seed = seed

    def set_global_distance_to_leading_vehicle(self, d):
        pass

    def global_percentage_speed_difference(self, p):
        pass

    def set_hybrid_physics_mode(self, on):
        pass

    def get_port(self):
        return self.port


class FakeClient:
    """carla.Client stand-in; ``FakeClient.world`` is shared so a test can inspect it."""

    world: FakeWorld | None = None

    def __init__(self, host, port):
        self.timeout = None
        self.batches = []
        self.tm = None

    def set_timeout(self, t):
        self.timeout = t

    def get_server_version(self):
        return "0.9.16"

    def get_world(self):
        return FakeClient.world

    def load_world(self, town):
        return FakeClient.world

    def get_trafficmanager(self, port):
        self.tm = self.tm or FakeTrafficManager(port)
        return self.tm

    def apply_batch_sync(self, commands, do_tick=False):
        self.batches.append(commands)
        out = []
        for cmd in commands:
            if isinstance(cmd, carla.command.DestroyActor):
                FakeClient.world.actors.pop(cmd.actor_id, None)
                out.append(SimpleNamespace(error="", actor_id=cmd.actor_id))
            else:
                bp = FakeClient.world.library.find("vehicle.audi.tt")
                actor = FakeClient.world.try_spawn_actor(bp, carla.Transform())
                out.append(SimpleNamespace(error="", actor_id=actor.id))
        return out
