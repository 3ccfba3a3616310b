"""Thin ROS 2 shells, one file per executable (<name>_node.py); their helpers, the ROS message conversions
among them, in nodes.support. Only this package imports rclpy and message packages."""
