"""The three processes of ``carla-rl bench chain`` (driver: carla_rl.bench.chain): a bare rclpy chain
that gives the machine's messaging floor, to read ``bench graph`` against.

    source ──sensor_msgs/Image 84x84 rgb8 + nav_msgs/Odometry──▶ relay
    relay ──std_msgs/Float32MultiArray (a tiny observation)──▶ responder
    responder ──carla_rl_interfaces/VehicleCommand──▶ source

one process each (``python -m carla_rl.nodes.support.bench_chain --role ...``), per env in lockstep (an env's next
tick waits for the command that answers the last one), no simulation, no network, the graph's QoS
(qos_profiles.SENSOR) and executor (node_runner.make_executor). The source counts steps and the latency
from publishing a tick to its command over a window that starts once every env has made WARMUP_TICKS
ticks, and prints its report as JSON. Every process ends on its own by its deadline.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

IMAGE_SIZE = 84
WARMUP_TICKS = 50
MATCH_TIMEOUT_S = 60.0      # for every publisher and subscription of the chain to match
RESEND_AFTER_S = 1.0        # a tick unanswered this long is sent again (counted; reliable QoS loses none)
OBSERVATION_SIZE = 8
ROLES = ("source", "relay", "responder")


def _topic(env: int, name: str) -> str:
    return f"/bench_chain/env_{env}/{name}"


class _Source:
    """Publishes each env's image + odometry, one tick per answered command; measures the window."""

    def __init__(self, node, envs: int, seconds: float) -> None:
        from nav_msgs.msg import Odometry
        from sensor_msgs.msg import Image

        from carla_rl.nodes.support.qos_profiles import SENSOR
        from carla_rl.nodes.support.ros_conversions import NANOSECONDS, uint8_sequence
        from carla_rl_interfaces.msg import VehicleCommand

        self.node, self.envs, self.seconds = node, envs, seconds
        self.Image, self.Odometry = Image, Odometry
        self.uint8_sequence = uint8_sequence  # as the simulators fill images
        self.nanoseconds = NANOSECONDS
        self.image_pubs = [node.create_publisher(Image, _topic(i, "image"), SENSOR) for i in range(envs)]
        self.odom_pubs = [node.create_publisher(Odometry, _topic(i, "odometry"), SENSOR) for i in range(envs)]
        self.command_subs = [node.create_subscription(VehicleCommand, _topic(i, "command"),
                                                      lambda msg, i=i: self.on_command(i, msg), SENSOR)
                             for i in range(envs)]
        self.pixels = np.random.default_rng(0).integers(0, 255, IMAGE_SIZE * IMAGE_SIZE * 3, dtype=np.uint8)
        self.step = [0] * envs
        self.sent_at = [0.0] * envs
        self.ticks = [0] * envs
        self.resends = 0
        self.window_start: float | None = None
        self.window_end: float | None = None
        self.window_steps = 0
        self.latencies_ms: list[float] = []
        self.done = False

    def matched(self) -> bool:
        return all(p.get_subscription_count() > 0 for p in self.image_pubs + self.odom_pubs) and \
            all(s.get_publisher_count() > 0 for s in self.command_subs)

    def start(self) -> None:
        for env in range(self.envs):
            self.tick(env)

    def tick(self, env: int) -> None:
        self.step[env] += 1
        image = self.Image()
        image.header.stamp.sec, image.header.stamp.nanosec = divmod(self.step[env], self.nanoseconds)  # the step
        image.header.frame_id = "bench"
        image.height = image.width = IMAGE_SIZE
        image.encoding = "rgb8"
        image.step = IMAGE_SIZE * 3
        image.data = self.uint8_sequence(self.pixels)
        odom = self.Odometry()
        odom.header.stamp = image.header.stamp
        odom.pose.pose.position.x = float(self.step[env])
        odom.twist.twist.linear.x = 5.0
        self.sent_at[env] = time.perf_counter()
        self.image_pubs[env].publish(image)
        self.odom_pubs[env].publish(odom)

    def on_command(self, env: int, msg) -> None:
        if self.done or msg.step_id != self.step[env]:
            return  # the answer to a tick sent again
        now = time.perf_counter()
        self.ticks[env] += 1
        if self.window_start is None and min(self.ticks) >= WARMUP_TICKS:
            self.window_start = now
        elif self.window_start is not None:
            self.window_steps += 1
            self.latencies_ms.append((now - self.sent_at[env]) * 1000.0)
            if now - self.window_start >= self.seconds:
                self.done = True
                self.window_end = now
                return
        self.tick(env)

    def resend_overdue(self) -> None:
        now = time.perf_counter()
        for env in range(self.envs):
            if now - self.sent_at[env] > RESEND_AFTER_S:
                self.resends += 1
                self.step[env] -= 1
                self.tick(env)

    def report(self) -> dict:
        window = self.window_end - self.window_start
        lat = np.asarray(self.latencies_ms)
        return {"envs": self.envs, "seconds": round(window, 2),
                "steps_per_s": round(self.window_steps / window, 1),
                "p50_ms": round(float(np.percentile(lat, 50)), 3),
                "p99_ms": round(float(np.percentile(lat, 99)), 3),
                "resent_ticks": self.resends}


def _relay(node, envs: int) -> list:
    """Pairs each env's image and odometry by stamp into a tiny observation."""
    from nav_msgs.msg import Odometry
    from sensor_msgs.msg import Image
    from std_msgs.msg import Float32MultiArray

    from carla_rl.nodes.support.qos_profiles import SENSOR
    from carla_rl.nodes.support.ros_conversions import stamp_nanoseconds

    pubs = [node.create_publisher(Float32MultiArray, _topic(i, "observation"), SENSOR) for i in range(envs)]
    pending: list[dict] = [{} for _ in range(envs)]

    def arrived(env: int, kind: str, msg) -> None:
        stamp = stamp_nanoseconds(msg.header.stamp)
        got = pending[env].setdefault(stamp, {})
        got[kind] = msg
        if len(got) < 2:
            return
        del pending[env][stamp]
        for old in [s for s in pending[env] if s < stamp]:
            del pending[env][old]
        image, odom = got["image"], got["odometry"]
        pixels = np.frombuffer(image.data, dtype=np.uint8).reshape(image.height, image.width, 3)
        observation = np.zeros(OBSERVATION_SIZE, dtype=np.float32)
        observation[:3] = pixels[::8, ::8].mean(axis=(0, 1)) / 255.0  # (a numpy view of the message)
        observation[3] = odom.twist.twist.linear.x
        observation[4] = odom.pose.pose.position.x
        out = Float32MultiArray()
        out.data = observation.tolist()
        out.layout.data_offset = stamp  # the tick, for the responder's answer
        pubs[env].publish(out)

    return pubs + [node.create_subscription(Image, _topic(i, "image"),
                                            lambda m, i=i: arrived(i, "image", m), SENSOR) for i in range(envs)] \
        + [node.create_subscription(Odometry, _topic(i, "odometry"),
                                    lambda m, i=i: arrived(i, "odometry", m), SENSOR) for i in range(envs)]


def _responder(node, envs: int) -> list:
    """Answers each observation with a vehicle command for its tick."""
    from std_msgs.msg import Float32MultiArray

    from carla_rl.nodes.support.qos_profiles import SENSOR
    from carla_rl_interfaces.msg import VehicleCommand

    pubs = [node.create_publisher(VehicleCommand, _topic(i, "command"), SENSOR) for i in range(envs)]

    def answer(env: int, msg) -> None:
        command = VehicleCommand()
        command.env_id = env
        command.step_id = msg.layout.data_offset
        command.action_index = 1
        command.control.throttle = float(min(1.0, max(0.0, msg.data[3] / 10.0)))
        pubs[env].publish(command)

    return pubs + [node.create_subscription(Float32MultiArray, _topic(i, "observation"),
                                            lambda m, i=i: answer(i, m), SENSOR) for i in range(envs)]


def run_role(role: str, envs: int, seconds: float, deadline_s: float) -> int:
    """One process of the chain; the source prints its report as JSON on stdout."""
    import rclpy
    from rclpy.executors import ExternalShutdownException

    from carla_rl.nodes.support.node_runner import make_executor

    rclpy.init(args=[])
    node = rclpy.create_node(f"bench_chain_{role}")
    executor = make_executor()
    executor.add_node(node)
    deadline = time.monotonic() + deadline_s
    try:
        if role == "relay":
            keep = _relay(node, envs)  # noqa: F841 - the endpoints live while the node spins
        elif role == "responder":
            keep = _responder(node, envs)  # noqa: F841
        else:
            source = _Source(node, envs, seconds)
            match_by = time.monotonic() + MATCH_TIMEOUT_S
            while not source.matched():
                if time.monotonic() > min(match_by, deadline):
                    print("the chain's endpoints did not match", file=sys.stderr)
                    return 3
                executor.spin_once(timeout_sec=0.05)
            source.start()
            last_check = time.monotonic()
            while not source.done:
                executor.spin_once(timeout_sec=0.1)
                now = time.monotonic()
                if now > deadline:
                    print("the chain did not finish its window before its deadline", file=sys.stderr)
                    return 4
                if now - last_check > RESEND_AFTER_S:
                    source.resend_overdue()
                    last_check = now
            print(json.dumps(source.report()))
            return 0
        while time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
        return 0
    except ExternalShutdownException:  # SIGTERM from the driver once the source has reported
        return 0
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one process of carla-rl bench chain")
    parser.add_argument("--role", choices=ROLES, required=True)
    parser.add_argument("--envs", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--deadline", type=float, required=True, help="the process ends by then [s]")
    args = parser.parse_args(argv)
    return run_role(args.role, args.envs, args.seconds, args.deadline)


if __name__ == "__main__":
    sys.exit(main())
