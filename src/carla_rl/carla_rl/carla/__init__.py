"""Real CARLA integration: the only package that knows ``carla`` (the 0.9.16 client) and carla_msgs.

- ``carla_config``      typed config of ``config/carla.yaml`` (``carla_client`` and ``carla_bridge_adapter``)
- ``carla_conversions`` pure conversions between carla types / raw sensor buffers and our plain data
- ``map_route``         route planner on ``carla.Map`` waypoints, route tracking, lane and actor geometry
- ``server_lifecycle``  connect, health check, reconnect with backoff, restart, town loading, pacing
- ``carla_world``       ``CarlaWorld``: the direct-client backend with the embedded World's interface
- ``bridge_adapter``    pure core of the carla-ros-bridge adapter node (duck-typed messages)

Importing this package never imports ``carla``; modules that need it import it lazily.
"""
