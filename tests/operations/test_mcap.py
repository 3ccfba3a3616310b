"""MCAP: schemas from the installed .msg files, per-episode recording (in the monitor node), the
`carla-rl record` command, and replay (CLI and mcap_replay node) back onto the topics."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from mcap.reader import make_reader  # noqa: E402
from mcap_ros2.decoder import DecoderFactory  # noqa: E402
from nav_msgs.msg import Odometry  # noqa: E402
from rclpy.serialization import serialize_message  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Float32, String  # noqa: E402
from visualization_msgs.msg import Marker, MarkerArray  # noqa: E402

from carla_rl.nodes.support import ros_conversions as conv  # noqa: E402
from carla_rl.nodes.support import mcap_io  # noqa: E402
from carla_rl.nodes.support import qos_profiles as qos  # noqa: E402
from carla_rl_interfaces.msg import CollisionEvent, EgoSituation, LaneInvasionEvent  # noqa: E402
from ops_helpers import DiagnosticsCounters, solid_image, stamp  # noqa: E402
from ros_testing import CONFIG_DIR, NodeProcess, ros_env, spin_until  # noqa: E402

TOPICS = {t.name: t for t in mcap_io.env_sensor_topics(0)}
ROLE = "/env_0/carla/ego_vehicle"


def read_ros2_messages(path: str):
    """Decoded messages of an MCAP file, as mcap_ros2 reads them (log-time order)."""
    with open(path, "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        for schema, channel, message, ros_msg in reader.iter_decoded_messages(log_time_order=True):
            yield SimpleNamespace(schema=schema, channel=channel, message=message, ros_msg=ros_msg)


def sample_messages(t: float) -> dict[str, object]:
    """One message of every recorded sensor type, stamped t."""
    s = stamp(t)
    points = np.arange(12, dtype=np.float32).reshape(3, 4) + t
    situation = EgoSituation(step_id=int(t * 20), episode_id=4, episode_step=2, phase=3, lateral_offset_m=0.25)
    situation.header.stamp = s
    collision = CollisionEvent(other_actor_id=7)
    collision.header.stamp = s
    invasion = LaneInvasionEvent(crossed_lane_markings=[2, 9])
    invasion.header.stamp = s
    odometry = Odometry(child_frame_id="ego_vehicle")
    odometry.header.stamp = s
    odometry.twist.twist.linear.x = 4.5
    route = conv.path_msg(np.array([[0.0, 0.0], [10.0, 0.0]]), s)
    markers = MarkerArray(markers=[Marker(ns="vehicles", id=3)])
    return {
        f"{ROLE}/semantic_bev/image": solid_image((1, 2, 3), 4, t),
        f"{ROLE}/lidar": conv.point_cloud_msg(points, conv.LIDAR_FIELDS, s, "ego_vehicle"),
        f"{ROLE}/radar_front": conv.point_cloud_msg(points, conv.RADAR_FIELDS, s, "ego_vehicle"),
        f"{ROLE}/odometry": odometry,
        f"{ROLE}/speedometer": Float32(data=4.5),
        f"{ROLE}/collision": collision,
        f"{ROLE}/lane_invasion": invasion,
        f"{ROLE}/waypoints": route,
        "/env_0/clock": Clock(clock=s),
        "/env_0/markers": markers,
        "/env_0/map_markers": markers,
        f"{ROLE}/situation": situation,
    }


def test_every_sensor_type_round_trips_through_mcap_ros2(tmp_path):
    messages = sample_messages(12.5)
    assert set(messages) == set(TOPICS)
    path = tmp_path / "all.mcap"
    recorder = mcap_io.McapRecorder(path)
    for i, (topic, msg) in enumerate(messages.items()):
        recorder.add_topic(topic, TOPICS[topic].type_name)
        recorder.write(topic, serialize_message(msg), 1_000 + i)
    recorder.close()
    decoded = {m.channel.topic: m for m in read_ros2_messages(str(path))}
    assert set(decoded) == set(TOPICS)
    for topic, m in decoded.items():
        assert m.schema.name == TOPICS[topic].type_name
        assert m.schema.encoding == "ros2msg" and m.channel.message_encoding == "cdr"
    image = decoded[f"{ROLE}/semantic_bev/image"].ros_msg
    assert (image.height, image.width, image.encoding) == (4, 4, "rgb8")
    assert bytes(image.data) == bytes(messages[f"{ROLE}/semantic_bev/image"].data)
    lidar = decoded[f"{ROLE}/lidar"].ros_msg
    assert [f.name for f in lidar.fields] == list(conv.LIDAR_FIELDS)
    assert bytes(lidar.data) == bytes(messages[f"{ROLE}/lidar"].data)
    assert decoded[f"{ROLE}/odometry"].ros_msg.twist.twist.linear.x == 4.5
    assert decoded[f"{ROLE}/situation"].ros_msg.lateral_offset_m == pytest.approx(0.25)
    assert decoded[f"{ROLE}/situation"].ros_msg.header.stamp.sec == 12
    assert list(decoded[f"{ROLE}/lane_invasion"].ros_msg.crossed_lane_markings) == [2, 9]
    assert decoded["/env_0/markers"].ros_msg.markers[0].ns == "vehicles"
    assert len(decoded[f"{ROLE}/waypoints"].ros_msg.poses) == 2
    assert mcap_io.cdr_stamp_ns(serialize_message(messages["/env_0/clock"])) == 12_500_000_000


def test_schema_layout_matches_rosbag2():
    text = mcap_io.ros2msg_schema("carla_rl_interfaces/msg/CollisionEvent")
    sections = text.split("=" * 80 + "\n")
    assert [s.splitlines()[0] for s in sections[1:]] == ["MSG: std_msgs/Header", "MSG: builtin_interfaces/Time",
                                                         "MSG: geometry_msgs/Vector3"]
    with pytest.raises(mcap_io.McapIoError, match="not found"):
        mcap_io.ros2msg_schema("carla_rl_interfaces/msg/NoSuchType")


def tick(recorder: mcap_io.EpisodeRecorder, t: float, episode: int, step: int, log: int, route: bool = False):
    msgs = sample_messages(t)
    if route:
        recorder.on_message(f"{ROLE}/waypoints", serialize_message(msgs[f"{ROLE}/waypoints"]), log)
    recorder.on_message(f"{ROLE}/semantic_bev/image", serialize_message(msgs[f"{ROLE}/semantic_bev/image"]), log)
    recorder.on_message(f"{ROLE}/speedometer", serialize_message(msgs[f"{ROLE}/speedometer"]), log)
    situation = msgs[f"{ROLE}/situation"]
    situation.episode_id, situation.episode_step = episode, step
    return recorder.on_situation(serialize_message(situation), log + 1, episode, step, phase=3)


def test_episode_recorder_writes_one_self_contained_file_per_episode(tmp_path):
    recorder = mcap_io.EpisodeRecorder(tmp_path, "env_0", list(TOPICS.values()), f"{ROLE}/situation")
    tick(recorder, 0.9, 0, 7, 100)                    # the tail of an episode begun before recording: dropped
    tick(recorder, 1.0, 1, 0, 200, route=True)        # episode 1
    tick(recorder, 1.05, 1, 1, 300)
    tick(recorder, 1.1, 2, 0, 400)                    # episode 2 (route not re-published)
    odometry = sample_messages(1.05)[f"{ROLE}/odometry"]  # a straggler of episode 1 after the boundary
    recorder.on_message(f"{ROLE}/odometry", serialize_message(odometry), 450)
    closed = tick(recorder, 1.15, 2, 1, 500)
    recorder.close()
    assert closed == tmp_path / "env_0_episode_000001.mcap"
    assert recorder.files == [tmp_path / "env_0_episode_000001.mcap", tmp_path / "env_0_episode_000002.mcap"]
    assert recorder.dropped == 3
    first = [(m.channel.topic, m.ros_msg) for m in read_ros2_messages(str(recorder.files[0]))]
    second = [(m.channel.topic, m.ros_msg) for m in read_ros2_messages(str(recorder.files[1]))]
    steps = [msg.episode_step for topic, msg in first if topic.endswith("situation")]
    assert steps == [0, 1]
    assert [topic for topic, _ in first].count(f"{ROLE}/odometry") == 1
    assert [msg.episode_step for topic, msg in second if topic.endswith("situation")] == [0, 1]
    assert f"{ROLE}/waypoints" in [topic for topic, _ in second]  # latched topics repeated per file
    with open(recorder.files[1], "rb") as f:
        metadata = {m.name: m.metadata for m in make_reader(f).iter_metadata()}
    assert metadata["episode"]["episode_id"] == "2" and metadata["episode"]["phase"] == "3"


@pytest.mark.ros
def test_monitor_records_each_episode_of_env0(ros_node, tmp_path):
    node = ros_node
    out = tmp_path / "recordings"
    args = ["--params-file", str(CONFIG_DIR / "monitor.yaml"), "-p", f"log_dir:={tmp_path / 'tb'}",
            "-p", "record_mcap:=true", "-p", f"mcap_dir:={out}", "-p", "topdown_period_s:=0.0",
            "-p", "camera_period_s:=0.0", "-p", "video_evaluation:=false", "-p", "log_hparams:=false",
            "-p", "diagnostics_period_s:=0.1", "-p", "mcap_wait_for_subscribers:=0"]
    diag = DiagnosticsCounters(node, "/training_monitor")
    samples = sample_messages(0.0)
    profiles = {"sensor": qos.SENSOR, "events": qos.EVENTS, "latched": qos.LATCHED, "clock": qos.CLOCK}
    pubs = {name: node.create_publisher(type(samples[name]), name, profiles[spec.qos])
            for name, spec in TOPICS.items()}
    monitor = NodeProcess.node("training_monitor", args, tmp_path)
    sent = ticks = 0
    try:
        assert spin_until(node, lambda: all(p.get_subscription_count() > 0 for p in pubs.values())
                          and diag.seen, 30.0), monitor.output()
        for episode in (1, 2):
            for step in range(3):
                t = episode * 10.0 + step * 0.05
                msgs = sample_messages(t)
                msgs[f"{ROLE}/situation"].episode_id = episode
                msgs[f"{ROLE}/situation"].episode_step = step
                for name, msg in msgs.items():
                    if name.endswith("waypoints") and (episode, step) != (1, 0):
                        continue
                    pubs[name].publish(msg)
                    sent += 0 if name.endswith("situation") else 1
                ticks += 1  # lockstep, as the simulator runs: one tick in flight (keep-last QoS)
                assert spin_until(node, lambda: diag.count("recorded_ticks") >= ticks
                                  and diag.count("recorded_messages") >= sent, 30.0), (diag.values, monitor.output())
    finally:
        code = monitor.stop()
    assert code == 0, monitor.log_path.read_text()
    files = sorted(out.glob("*.mcap"))
    assert [f.name for f in files] == ["env_0_episode_000001.mcap", "env_0_episode_000002.mcap"]
    for episode, path in zip((1, 2), files):
        topics_seen: dict[str, int] = {}
        for m in read_ros2_messages(str(path)):
            topics_seen[m.channel.topic] = topics_seen.get(m.channel.topic, 0) + 1
            if m.channel.topic.endswith("situation"):
                assert m.ros_msg.episode_id == episode
            if m.channel.topic.endswith("semantic_bev/image"):
                assert m.ros_msg.header.stamp.sec == episode * 10
        assert set(topics_seen) == set(TOPICS), path
        assert topics_seen[f"{ROLE}/situation"] == 3 and topics_seen[f"{ROLE}/lidar"] == 3


def chatter_file(path, count: int = 5) -> list[str]:
    recorder = mcap_io.McapRecorder(path)
    recorder.add_topic("/ops_replay/chatter", "std_msgs/msg/String")
    recorder.add_topic("/ops_replay/latched", "std_msgs/msg/String", "latched")
    texts = [f"hello {i}" for i in range(count)]
    recorder.write("/ops_replay/latched", serialize_message(String(data="map")), 1_000_000_000)
    for i, text in enumerate(texts):
        recorder.write("/ops_replay/chatter", serialize_message(String(data=text)), 1_000_000_000 + i * 20_000_000)
    recorder.close()
    return texts


@pytest.mark.ros
@pytest.mark.parametrize("how", ["cli", "node"])
def test_replay_republishes_recorded_messages(ros_node, tmp_path, how):
    node = ros_node
    path = tmp_path / "chatter.mcap"
    texts = chatter_file(path)
    received: list[str] = []
    latched: list[str] = []
    node.create_subscription(String, "/ops_replay/chatter", lambda m: received.append(m.data), 50)
    node.create_subscription(String, "/ops_replay/latched", lambda m: latched.append(m.data), qos.LATCHED)
    if how == "cli":
        argv = [sys.executable, "-m", "carla_rl.cli.main", "replay", str(path), "--rate", "2", "--loop"]
        proc = NodeProcess(argv, tmp_path / "replay.log", ros_env())
    else:
        proc = NodeProcess.node("mcap_replay", ["-p", f"file:={path}", "-p", "rate:=2.0", "-p", "loop:=true"],
                                tmp_path)
    try:
        assert spin_until(node, lambda: set(texts) <= set(received) and latched, 30.0), proc.output()
    finally:
        code = proc.stop()
    assert code == 0, proc.log_path.read_text()
    first = received.index("hello 0")  # within a loop, recorded order
    assert received[first:first + len(texts)] == texts or len(received) - first < len(texts)
    assert latched[0] == "map"


@pytest.mark.ros
def test_record_command_writes_an_mcap_of_the_topic(ros_node, tmp_path):
    node = ros_node
    output = tmp_path / "out.mcap"
    pub = node.create_publisher(String, "/ops_record/chatter", 10)
    count = [0]

    def publish():
        pub.publish(String(data=f"n{count[0]}"))
        count[0] += 1

    node.create_timer(0.05, publish)
    argv = [sys.executable, "-m", "carla_rl.cli.main", "record", str(output), "--topics", "/ops_record/chatter",
            "--duration", "0"]  # until Ctrl-C
    proc = NodeProcess(argv, tmp_path / "record.log", ros_env())
    try:
        assert spin_until(node, lambda: pub.get_subscription_count() > 0, 30.0), proc.output()
        subscribed_at = count[0]
        assert spin_until(node, lambda: count[0] >= subscribed_at + 10, 10.0)
    finally:
        code = proc.stop()
    log = proc.log_path.read_text()
    assert code == 0, log
    data = [m.ros_msg.data for m in read_ros2_messages(str(output))]
    assert len(data) >= 5, log
    numbers = [int(d[1:]) for d in data]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))  # nothing lost, in order
    assert "recorded" in log


@pytest.mark.ros
def test_record_command_stops_after_duration(tmp_path):
    output = tmp_path / "empty.mcap"
    argv = [sys.executable, "-m", "carla_rl.cli.main", "record", str(output), "--topics", "/ops_record/nobody",
            "--duration", "1"]
    proc = NodeProcess(argv, tmp_path / "record.log", ros_env())
    try:
        proc.proc.wait(timeout=60)
    finally:
        code = proc.stop()
    log = proc.log_path.read_text()
    assert code == 0, log
    assert "never seen: /ops_record/nobody" in log
    player = mcap_io.McapPlayer(output)  # a complete, empty file
    assert player.message_count == 0


@pytest.mark.ros
def test_monitor_subscribes_to_the_situation_only_after_the_stack(ros_node, tmp_path):
    """The simulator starts when shell.required_subscribers nodes subscribe to the situation topic:
    the recorder must not be one of them."""
    node = ros_node
    args = ["--params-file", str(CONFIG_DIR / "monitor.yaml"), "-p", f"log_dir:={tmp_path / 'tb'}",
            "-p", "record_mcap:=true", "-p", f"mcap_dir:={tmp_path / 'rec'}", "-p", "log_hparams:=false",
            "-p", "mcap_wait_for_subscribers:=1", "-p", "mcap_wait_period_s:=0.05"]
    situation = node.create_publisher(EgoSituation, f"{ROLE}/situation", qos.SENSOR)
    camera = node.create_publisher(Image, f"{ROLE}/semantic_bev/image", qos.SENSOR)
    monitor = NodeProcess.node("training_monitor", args, tmp_path)
    try:
        assert spin_until(node, lambda: camera.get_subscription_count() > 0, 30.0), monitor.output()
        assert situation.get_subscription_count() == 0
        node.create_subscription(EgoSituation, f"{ROLE}/situation", lambda _: None, qos.SENSOR)  # "the stack"
        assert spin_until(node, lambda: situation.get_subscription_count() == 2, 30.0), monitor.output()
    finally:
        code = monitor.stop()
    assert code == 0, monitor.log_path.read_text()


def test_repeated_latched_messages_do_not_stretch_an_episode_file(tmp_path):
    recorder = mcap_io.EpisodeRecorder(tmp_path, "env_0", list(TOPICS.values()), f"{ROLE}/situation")
    tick(recorder, 1.0, 1, 0, 1_000, route=True)
    tick(recorder, 2.0, 2, 0, 90_000_000_000)  # 90 s later: the route is repeated at the file's start
    tick(recorder, 2.05, 2, 1, 90_050_000_000)
    recorder.close()
    player = mcap_io.McapPlayer(recorder.files[1])
    assert player.topics[f"{ROLE}/waypoints"].count == 1
    assert player.duration_s == pytest.approx(0.05, abs=1e-6)
