"""Fixtures of the operations tests (TensorBoard monitor, MCAP record / replay, live view)."""

from __future__ import annotations

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy missing: run through `make test` (bootstraps the venv)")


@pytest.fixture
def ros_node():
    """An in-process rclpy node for the test's publishers and subscribers."""
    rclpy.init()
    node = rclpy.create_node("operations_test")
    try:
        yield node
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
