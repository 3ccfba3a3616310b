"""Embedded driving simulator core (numpy + cv2; no ROS, no torch).

- :class:`World` — ego, traffic, pedestrians, lights, sensors; ``reset`` / ``step``
  return a SensorFrame.
- :class:`SimConfig` — typed ``config/sim.yaml`` (block ``embedded_simulator``).
- :class:`Autopilot`, :func:`nearest_action` — scripted reference driver.
- :func:`run_episode`, :func:`evaluate` — episode loop with the curriculum's termination rules.
"""

from carla_rl.sim.sim_config import SimConfig, load_sim_config
from carla_rl.sim.world import ActorsSnapshot, World

__all__ = ["ActorsSnapshot", "SimConfig", "World", "load_sim_config"]
