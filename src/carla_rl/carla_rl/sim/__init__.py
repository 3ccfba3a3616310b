"""Embedded driving simulator core (numpy + cv2; no ROS, no torch).

- :class:`World` — ego, traffic, pedestrians, lights, sensors; ``reset`` / ``step``
  return a SensorFrame.
- :class:`SimConfig` — typed ``config/sim.yaml`` (block ``embedded_simulator``).
- :class:`Autopilot`, :func:`nearest_action` — scripted reference driver.
- :class:`DrivingEpisode` (``sim.episode``) — one env's ticks through World -> ObservationBuilder ->
  RewardCalculator: the Gymnasium env and the evaluation episodes of ``carla-rl eval`` step it.
- :func:`run_episode`, :func:`evaluate` — the autopilot check's episode loop on the World alone (its
  situation's collision / sidewalk / goal and ``max_steps``; no reward core, sensors may be off).
"""

from carla_rl.sim.sim_config import SimConfig, load_sim_config
from carla_rl.sim.world import ActorsSnapshot, World

__all__ = ["ActorsSnapshot", "SimConfig", "World", "load_sim_config"]
