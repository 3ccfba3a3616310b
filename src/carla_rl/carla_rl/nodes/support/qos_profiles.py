"""QoS chosen by name, one place.

- SENSOR: camera, lidar, radar, odometry, situation, observations, rewards, commands. The training graph
  runs in lockstep (the simulator waits for the command of each tick), so a lost sample would cost a
  control timeout: reliable, keep-last with a depth that covers the in-flight ticks. Best-effort would
  be the choice for free-running sensors (rviz2 views subscribe best-effort and still match).
- EVENTS: collision / lane invasion / episode statistics: reliable, deeper history (bursts).
- LATCHED: scenario, curriculum status, route, map markers: reliable + transient-local, depth 1, so
  late joiners (rviz2, a restarted node) get the last value.
- CLOCK: /clock as rosgraph publishes it (best-effort would drop ticks under load; reliable, depth 1).
"""

from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                       qos_profile_sensor_data)

SENSOR = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=4, reliability=ReliabilityPolicy.RELIABLE,
                    durability=DurabilityPolicy.VOLATILE)
EVENTS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=64, reliability=ReliabilityPolicy.RELIABLE,
                    durability=DurabilityPolicy.VOLATILE)
LATCHED = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
CLOCK = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                   durability=DurabilityPolicy.VOLATILE)
VIEWER = qos_profile_sensor_data  # for visualisation-only subscribers (best-effort)
