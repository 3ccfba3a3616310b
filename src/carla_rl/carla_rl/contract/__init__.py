"""What every layer shares: topic names, actions, scenario and phase config, sensor frames, seeds, the
semantic palette, config loading, atomic file writes and the allocator choice. No rclpy here."""
