"""MCAP files of ROS 2 CDR messages (the rosbag2 default storage format), without rosbag2.

- :func:`ros2msg_schema` builds the ``ros2msg`` schema text of a type from the installed ``.msg``
  files (``share/<pkg>/msg/<Type>.msg``), dependencies appended in the rosbag2 layout
  (``====...`` line, ``MSG: pkg/Type``, the dependency's text).
- :class:`McapRecorder` writes raw CDR bytes (from ``raw=True`` subscriptions) to one file.
- :class:`EpisodeRecorder` splits a stream of one env's sensor messages into one file per episode
  (boundary: ``EgoSituation.episode_step == 0``, the last message of a tick).
- :class:`McapPlayer` validates a file and yields its messages in log-time order;
  :class:`PlaybackClock` paces them by log time / rate.
- :class:`TopicRecorderNode` records given topics (default: env 0's sensor topics) into one file
  (``carla-rl record``), discovering types and matching the publishers' QoS like rosbag2.

Only this module knows the MCAP layout; the nodes and commands use these classes.
"""

from __future__ import annotations

import importlib
import os
import re
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from carla_rl.contract import topics
from carla_rl.contract.config import param

PROFILE = "ros2"
LIBRARY = "carla_rl"
SCHEMA_ENCODING = "ros2msg"
MESSAGE_ENCODING = "cdr"
QOS_METADATA_KEY = "carla_rl.qos"      # "latched" | "sensor" | "events" | "clock"
MAGIC = b"\x89MCAP0\r\n"
SEPARATOR = "=" * 80
PRIMITIVES = frozenset({"bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16",
                        "int32", "uint32", "int64", "uint64", "string", "wstring"})
COMPRESSIONS = ("zstd", "lz4", "none")


class McapIoError(RuntimeError):
    """A file cannot be written or read; the message is one line naming the file."""


@dataclass(frozen=True)
class RecordConfig:
    """``carla-rl record`` settings (config/monitor.yaml, block ``carla_rl_record``)."""

    compression: str = param("zstd", "Chunk compression of the MCAP file", choices=COMPRESSIONS)
    chunk_size_bytes: int = param(1 << 20, "Target size of an MCAP chunk", low=1024, high=1 << 30)
    discovery_period_s: float = param(0.5, "Look for not yet discovered topics this often", low=0.01,
                                      high=60.0)


# --- types and schemas ----------------------------------------------------------------------------
def split_type_name(type_name: str) -> tuple[str, str]:
    """'pkg/msg/Type' or 'pkg/Type' -> ('pkg', 'Type')."""
    parts = type_name.split("/")
    if len(parts) == 3 and parts[1] == "msg":
        return parts[0], parts[2]
    if len(parts) == 2:
        return parts[0], parts[1]
    raise McapIoError(f"invalid message type name {type_name!r} (expected pkg/msg/Type)")


def type_name_of(msg_class: type) -> str:
    """Message class -> 'pkg/msg/Type'."""
    module = msg_class.__module__.split(".")
    return f"{module[0]}/msg/{msg_class.__name__}"


def message_class(type_name: str) -> type:
    """'pkg/msg/Type' -> the generated Python class (importlib); clear error when not installed."""
    pkg, name = split_type_name(type_name)
    try:
        module = importlib.import_module(f"{pkg}.msg")
        return getattr(module, name)
    except (ImportError, AttributeError):
        raise McapIoError(f"message type {pkg}/msg/{name} is not installed (source the workspace?)") from None


def _share_dirs(pkg: str) -> Iterator[Path]:
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            yield Path(get_package_share_directory(pkg))
        except PackageNotFoundError:
            pass
    except ImportError:  # pragma: no cover - ament_index_python ships with rclpy
        pass
    for prefix in [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p] + [sys.prefix]:
        yield Path(prefix) / "share" / pkg
    try:  # the Python package's prefix: <prefix>/lib/pythonX.Y/site-packages/<pkg>
        module = importlib.import_module(pkg)
        for base in getattr(module, "__path__", []):
            yield Path(base).resolve().parents[3] / "share" / pkg
    except (ImportError, IndexError):
        pass


def msg_definition(pkg: str, name: str) -> str:
    """The text of ``share/<pkg>/msg/<name>.msg``."""
    for share in _share_dirs(pkg):
        path = share / "msg" / f"{name}.msg"
        if path.is_file():
            return path.read_text()
    raise McapIoError(f"definition of {pkg}/msg/{name} not found (no share/{pkg}/msg/{name}.msg in "
                      f"AMENT_PREFIX_PATH or {sys.prefix})")


_ARRAY_SUFFIX = re.compile(r"\[[^\]]*\]$")


def _field_types(definition: str, pkg: str) -> list[tuple[str, str]]:
    """Complex field types of a .msg text, as (pkg, Type), in field order."""
    out: list[tuple[str, str]] = []
    for line in definition.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) < 2 or "=" in parts[1]:  # a constant (primitive) or malformed line
            continue
        base = _ARRAY_SUFFIX.sub("", parts[0])
        base = base.split("<=", 1)[0]  # bounded strings: string<=10
        if base in PRIMITIVES:
            continue
        if "/" in base:
            out.append(split_type_name(base))
        elif base == "Header":
            out.append(("std_msgs", "Header"))
        else:
            out.append((pkg, base))
    return out


def ros2msg_schema(type_name: str) -> str:
    """The ros2msg schema of ``type_name`` (as rosbag2 writes it into MCAP files)."""
    pkg, name = split_type_name(type_name)
    root = msg_definition(pkg, name)
    seen: set[tuple[str, str]] = {(pkg, name)}
    parts = [root.rstrip("\n")]
    stack = list(reversed(_field_types(root, pkg)))
    while stack:  # depth-first, in field order
        dep = stack.pop()
        if dep in seen:
            continue
        seen.add(dep)
        text = msg_definition(*dep)
        parts.append(f"{SEPARATOR}\nMSG: {dep[0]}/{dep[1]}\n{text.rstrip(chr(10))}")
        stack.extend(reversed(_field_types(text, dep[0])))
    return "\n".join(parts) + "\n"


# --- topics of one env ------------------------------------------------------------------------------
@dataclass(frozen=True)
class RecordedTopic:
    name: str              # absolute topic name
    type_name: str         # pkg/msg/Type
    qos: str               # sensor | events | latched | clock
    stamped: bool = True   # the CDR starts with a header / time stamp (see cdr_stamp_ns)


def env_sensor_topics(env_id: int, role_name: str = topics.DEFAULT_ROLE_NAME) -> list[RecordedTopic]:
    """The sensor topics of env ``env_id`` as the simulators publish them (see simulator_shell.py).

    The situation topic comes last: it closes a tick."""
    ns = topics.env_namespace(env_id)

    def carla(name: str) -> str:
        return f"{ns}/{topics.carla_topic(role_name, name)}"

    return [
        RecordedTopic(carla(topics.CAMERA), "sensor_msgs/msg/Image", "sensor"),
        RecordedTopic(carla(topics.LIDAR), "sensor_msgs/msg/PointCloud2", "sensor"),
        RecordedTopic(carla(topics.RADAR), "sensor_msgs/msg/PointCloud2", "sensor"),
        RecordedTopic(carla(topics.ODOMETRY), "nav_msgs/msg/Odometry", "sensor"),
        RecordedTopic(carla(topics.SPEEDOMETER), "std_msgs/msg/Float32", "sensor", stamped=False),
        RecordedTopic(carla(topics.COLLISION), "carla_rl_interfaces/msg/CollisionEvent", "events"),
        RecordedTopic(carla(topics.LANE_INVASION), "carla_rl_interfaces/msg/LaneInvasionEvent", "events"),
        RecordedTopic(carla(topics.ROUTE), "nav_msgs/msg/Path", "latched"),
        RecordedTopic(f"{ns}/{topics.CLOCK}", "rosgraph_msgs/msg/Clock", "clock"),
        RecordedTopic(f"{ns}/{topics.MARKERS}", "visualization_msgs/msg/MarkerArray", "sensor", stamped=False),
        RecordedTopic(f"{ns}/{topics.MAP_MARKERS}", "visualization_msgs/msg/MarkerArray", "latched",
                      stamped=False),
        RecordedTopic(carla(topics.SITUATION), "carla_rl_interfaces/msg/EgoSituation", "sensor"),
    ]


def cdr_stamp_ns(data: bytes) -> int | None:
    """Stamp of a CDR message whose first field is a builtin_interfaces/Time (a Header's or Clock's)."""
    if len(data) < 12:
        return None
    endian = "<" if data[1] == 1 else ">"
    sec, nanosec = struct.unpack_from(endian + "iI", data, 4)
    return sec * 1_000_000_000 + nanosec


# --- writing ------------------------------------------------------------------------------------------
class McapRecorder:
    """One MCAP file: a ros2msg schema per type, a cdr channel per topic, raw messages."""

    def __init__(self, path: Path | str, compression: str = "zstd", chunk_size: int = 1 << 20,
                 metadata: dict[str, dict[str, str]] | None = None) -> None:
        from mcap.writer import CompressionType, Writer

        self.path = Path(path)
        if compression not in COMPRESSIONS:
            raise McapIoError(f"{self.path}: unknown compression {compression!r}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "xb")
        except OSError as exc:
            raise McapIoError(f"{self.path}: cannot create ({exc.strerror or exc})") from None
        kind = {"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4, "none": CompressionType.NONE}
        try:
            self._writer = Writer(self._file, chunk_size=chunk_size, compression=kind[compression])
        except Exception as exc:  # noqa: BLE001 - missing compression module
            self._file.close()
            self.path.unlink(missing_ok=True)
            raise McapIoError(f"{self.path}: {exc}") from None
        self._writer.start(profile=PROFILE, library=LIBRARY)
        for name, data in (metadata or {}).items():
            self._writer.add_metadata(name, data)
        self._schemas: dict[str, int] = {}
        self._channels: dict[str, int] = {}
        self._sequence: dict[str, int] = {}
        self.message_count = 0
        self.closed = False

    def add_topic(self, topic: str, type_name: str, qos: str = "") -> int:
        if topic in self._channels:
            return self._channels[topic]
        pkg, name = split_type_name(type_name)
        full = f"{pkg}/msg/{name}"
        schema_id = self._schemas.get(full)
        if schema_id is None:
            schema_id = self._writer.register_schema(full, SCHEMA_ENCODING, ros2msg_schema(full).encode())
            self._schemas[full] = schema_id
        metadata = {QOS_METADATA_KEY: qos} if qos else {}
        self._channels[topic] = self._writer.register_channel(topic, MESSAGE_ENCODING, schema_id, metadata)
        self._sequence[topic] = 0
        return self._channels[topic]

    def has_topic(self, topic: str) -> bool:
        return topic in self._channels

    def write(self, topic: str, data: bytes, log_time_ns: int, publish_time_ns: int | None = None) -> None:
        channel = self._channels[topic]
        self._sequence[topic] += 1
        self._writer.add_message(channel, log_time=int(log_time_ns), data=bytes(data),
                                 publish_time=int(publish_time_ns if publish_time_ns is not None else log_time_ns),
                                 sequence=self._sequence[topic])
        self.message_count += 1

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self._writer.finish()
        finally:
            if not self._file.closed:
                self._file.close()


class EpisodeRecorder:
    """One MCAP file per episode of one env (no rclpy: fed with raw bytes by a node).

    Messages of a tick arrive before the tick's situation (the simulator publishes it last); they
    wait in ``pending`` until it comes. A situation with ``episode_step == 0`` starts a new file;
    pending messages stamped before it still go to the previous one, which stays open one more tick
    for stragglers. Latched topics (route, map markers) are repeated at the start of each file so
    that every file stands alone. ``every_n``: record every n-th episode only.
    """

    def __init__(self, directory: Path | str, prefix: str, recorded: list[RecordedTopic],
                 situation_topic: str, compression: str = "zstd", chunk_size: int = 1 << 20,
                 every_n: int = 1) -> None:
        self.directory = Path(directory)
        self.prefix = prefix
        self.topics = {t.name: t for t in recorded}
        self.situation_topic = situation_topic
        self.compression = compression
        self.chunk_size = chunk_size
        self.every_n = max(1, every_n)
        self.current: McapRecorder | None = None
        self.current_start_ns: int | None = None
        self.previous: McapRecorder | None = None
        self.pending: list[tuple[str, bytes, int, int | None]] = []
        self.latched: dict[str, tuple[bytes, int]] = {}   # topic -> (last message, log time)
        self.episodes_seen = 0
        self.files: list[Path] = []
        self.dropped = 0          # messages outside a recorded episode (before the first, skipped ones)
        self.max_pending = 4096

    def on_message(self, topic: str, data: bytes, log_time_ns: int) -> None:
        spec = self.topics[topic]
        stamp = cdr_stamp_ns(data) if spec.stamped else None
        if spec.qos == "latched":
            self.latched[topic] = (bytes(data), log_time_ns)
        if (stamp is not None and self.previous is not None and self.current_start_ns is not None
                and stamp < self.current_start_ns):
            self._write(self.previous, topic, data, log_time_ns)  # a straggler of the last episode
            return
        self.pending.append((topic, bytes(data), log_time_ns, stamp))
        if len(self.pending) > self.max_pending:  # no situation for a long time: do not grow forever
            self.dropped += len(self.pending) - self.max_pending
            del self.pending[: len(self.pending) - self.max_pending]

    def on_situation(self, data: bytes, log_time_ns: int, episode_id: int, episode_step: int,
                     evaluation: bool = False, phase: int = 0) -> Path | None:
        """Returns the path of a file that this situation closed, if any."""
        stamp = cdr_stamp_ns(data)
        closed = None
        if self.previous is not None:
            closed_prev = self.previous.path
            self.previous.close()
            self.previous = None
            closed = closed_prev
        if episode_step == 0:
            pending, self.pending = self.pending, []
            keep = []
            for item in pending:
                if item[3] is not None and stamp is not None and item[3] < stamp:
                    if self.current is not None:
                        self._write(self.current, *item[:3])
                    else:
                        self.dropped += 1
                else:
                    keep.append(item)
            self.pending = keep
            self.previous, self.current = self.current, None
            self.current_start_ns = stamp
            if self.episodes_seen % self.every_n == 0:
                self.current = self._open(episode_id, evaluation, phase)
                pending_topics = {item[0] for item in self.pending}
                start = min([item[2] for item in self.pending] + [log_time_ns])  # the file starts here
                for topic, (latched, _) in sorted(self.latched.items()):
                    if topic not in pending_topics:
                        self._write(self.current, topic, latched, start)
            self.episodes_seen += 1
        target = self.current
        for item in self.pending:
            if target is None:
                self.dropped += 1
            else:
                self._write(target, *item[:3])
        self.pending = []
        if target is None:
            self.dropped += 1
        else:
            self._write(target, self.situation_topic, data, log_time_ns)
        return closed

    def _open(self, episode_id: int, evaluation: bool, phase: int) -> McapRecorder:
        base = f"{self.prefix}_episode_{episode_id:06d}"
        path = self.directory / f"{base}.mcap"
        n = 1
        while path.exists():  # a restarted simulator counts episodes from 0 again
            path = self.directory / f"{base}_{n}.mcap"
            n += 1
        meta = {"episode": {"episode_id": str(episode_id), "evaluation": str(bool(evaluation)).lower(),
                            "phase": str(phase), "prefix": self.prefix}}
        recorder = McapRecorder(path, self.compression, self.chunk_size, metadata=meta)
        self.files.append(path)
        return recorder

    def _write(self, recorder: McapRecorder, topic: str, data: bytes, log_time_ns: int) -> None:
        if not recorder.has_topic(topic):
            spec = self.topics[topic]
            recorder.add_topic(topic, spec.type_name, spec.qos)
        recorder.write(topic, data, log_time_ns)

    def close(self) -> None:
        for recorder in (self.previous, self.current):
            if recorder is not None:
                if self.pending and recorder is self.current:
                    for item in self.pending:
                        self._write(recorder, *item[:3])
                    self.pending = []
                recorder.close()
        self.previous = self.current = None


# --- reading ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PlayedTopic:
    name: str
    type_name: str
    qos: str
    count: int


@dataclass(frozen=True)
class PlayedMessage:
    topic: str
    type_name: str
    log_time_ns: int
    data: bytes


class McapPlayer:
    """A validated MCAP file of CDR messages: topics, time range, messages in log-time order."""

    def __init__(self, path: Path | str) -> None:
        from mcap.exceptions import McapError
        from mcap.reader import make_reader

        self.path = Path(path)
        if not self.path.exists():
            raise McapIoError(f"{self.path}: no such file")
        if not self.path.is_file():
            raise McapIoError(f"{self.path}: not a file")
        size = self.path.stat().st_size
        with open(self.path, "rb") as f:
            head = f.read(len(MAGIC))
            f.seek(max(0, size - len(MAGIC)))
            tail = f.read(len(MAGIC))
        if head != MAGIC:
            raise McapIoError(f"{self.path}: not an MCAP file (bad magic bytes)")
        if size < 2 * len(MAGIC) or tail != MAGIC:
            raise McapIoError(f"{self.path}: truncated MCAP file (no footer: was the recording interrupted?)")
        try:
            with open(self.path, "rb") as f:
                summary = make_reader(f).get_summary()
        except (McapError, ValueError, EOFError, OSError, struct.error) as exc:
            raise McapIoError(f"{self.path}: corrupt MCAP file ({exc})") from None
        if summary is None:
            raise McapIoError(f"{self.path}: MCAP file without a summary section (cannot index it)")
        self._summary = summary
        stats = summary.statistics
        counts = dict(stats.channel_message_counts) if stats is not None else {}
        self.topics: dict[str, PlayedTopic] = {}
        self._channels: dict[int, tuple[str, str]] = {}
        for cid, channel in summary.channels.items():
            schema = summary.schemas.get(channel.schema_id)
            if channel.message_encoding != MESSAGE_ENCODING or schema is None:
                continue  # not a ROS 2 CDR channel: skipped
            self._channels[cid] = (channel.topic, schema.name)
            self.topics[channel.topic] = PlayedTopic(channel.topic, schema.name,
                                                     channel.metadata.get(QOS_METADATA_KEY, ""),
                                                     int(counts.get(cid, 0)))
        self.message_count = sum(t.count for t in self.topics.values())
        self.start_ns = stats.message_start_time if stats is not None else 0
        self.end_ns = stats.message_end_time if stats is not None else 0

    @property
    def duration_s(self) -> float:
        return max(0, self.end_ns - self.start_ns) / 1e9

    def messages(self) -> Iterator[PlayedMessage]:
        from mcap.reader import make_reader

        with open(self.path, "rb") as f:
            try:
                for _schema, channel, message in make_reader(f, validate_crcs=True).iter_messages(
                        log_time_order=True):
                    entry = self._channels.get(channel.id)
                    if entry is not None:
                        yield PlayedMessage(entry[0], entry[1], message.log_time, message.data)
            except Exception as exc:  # noqa: BLE001 - CRC, decompression, record errors: all "corrupt"
                raise McapIoError(f"{self.path}: corrupt MCAP data ({type(exc).__name__}: {exc})") from None


class PlaybackClock:
    """Wall-clock due times of recorded log times: ``start + (log_time - first) / rate``; rate 0 = now."""

    def __init__(self, rate: float, now=time.monotonic) -> None:
        if rate < 0:
            raise ValueError(f"rate must be >= 0, got {rate}")
        self.rate = rate
        self._now = now
        self._wall0: float | None = None
        self._log0 = 0

    def restart(self) -> None:
        self._wall0 = None

    def due_in(self, log_time_ns: int) -> float:
        """Seconds until a message logged at ``log_time_ns`` is due (<= 0: publish now)."""
        if self._wall0 is None:
            self._wall0, self._log0 = self._now(), log_time_ns
        if self.rate == 0:
            return 0.0
        return self._wall0 + (log_time_ns - self._log0) / 1e9 / self.rate - self._now()


# --- a recorder node (``carla-rl record``) --------------------------------------------------------------
def _recording_qos(reliable: bool, latched: bool) -> QoSProfile:
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1 if latched else 64,
                      reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)


class TopicRecorderNode(Node):
    """Records topics raw into a :class:`McapRecorder`. Known sensor topics are subscribed at once;
    other topics when discovery shows them, with a QoS that matches all their publishers (as
    rosbag2 does: reliable / transient-local only where every publisher offers it)."""

    def __init__(self, recorder: McapRecorder, requested: list[str], discovery_period_s: float,
                 env_id: int = 0, role_name: str = topics.DEFAULT_ROLE_NAME) -> None:
        super().__init__("carla_rl_record")
        self.recorder = recorder
        known = {t.name: t for t in env_sensor_topics(env_id, role_name)}
        self.wanted = list(requested) if requested else list(known)
        self.subscribed: set[str] = set()
        for name in self.wanted:
            if name in known:
                spec = known[name]
                self._subscribe(name, spec.type_name, spec.qos,
                                _recording_qos(True, spec.qos == "latched"))
        self.create_timer(discovery_period_s, self.discover)

    def missing(self) -> set[str]:
        return set(self.wanted) - self.subscribed

    def discover(self) -> None:
        if not self.missing():
            return
        types = dict(self.get_topic_names_and_types())
        for name in sorted(self.missing()):
            if not types.get(name):
                continue
            infos = self.get_publishers_info_by_topic(name)
            if not infos:
                continue
            reliable = all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos)
            latched = all(i.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for i in infos)
            self._subscribe(name, types[name][0], "latched" if latched else "sensor",
                            _recording_qos(reliable, latched))

    def _subscribe(self, name: str, type_name: str, qos_kind: str, qos_profile) -> None:
        try:
            msg_class = message_class(type_name)
            self.recorder.add_topic(name, type_name, qos_kind)
        except McapIoError as exc:
            self.get_logger().error(f"cannot record {name}: {exc}", once=True)
            return
        self.create_subscription(msg_class, name, lambda data, n=name: self.on_message(n, data),
                                 qos_profile, raw=True)
        self.subscribed.add(name)

    def on_message(self, name: str, data: bytes) -> None:
        self.recorder.write(name, data, time.time_ns())
