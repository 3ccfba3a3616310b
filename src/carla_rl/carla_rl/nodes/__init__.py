"""Thin ROS 2 shells, one file per executable (<name>_node.py). Only this package and
ros_conversions import rclpy and message packages."""
