"""Fixtures of the graph tests."""

import pytest


@pytest.fixture
def ros_node():
    """An rclpy node of the test process (rclpy initialised for the test, shut down after)."""
    rclpy = pytest.importorskip("rclpy", reason="rclpy missing: run through `make test`")
    rclpy.init()
    node = rclpy.create_node("graph_test_client")
    yield node
    node.destroy_node()
    rclpy.try_shutdown()


@pytest.fixture
def context():
    """An rclpy context of its own for the test (initialised, shut down after)."""
    rclpy = pytest.importorskip("rclpy", reason="rclpy missing: run through `make test`")
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    yield ctx
    rclpy.try_shutdown(context=ctx)
