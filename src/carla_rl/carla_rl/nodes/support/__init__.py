"""The helpers of the node shells: QoS profiles, diagnostics, deadlines, parameters, service calls, the
ROS message conversions, the simulator shell, recording and the ROS side of the benchmarks and the CLI."""
