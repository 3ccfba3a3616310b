"""training_monitor: TensorBoard logging of the run, and optional per-episode MCAP recordings.

Subscribes to the stack-wide statistics (/carla_rl/episode_stats, evaluation_result, curriculum_status,
training_stats) and to env 0's views, and writes with ``torch.utils.tensorboard.SummaryWriter`` into
``log_dir``:

- ``episode/*`` (training episodes) and ``eval_episode/*`` (evaluation episodes), x = episode count:
  reward, every reward term (``.../terms/<name>``), length, distance, mean speed, phase, and the
  cumulative count of each termination reason (``.../termination/<reason>``);
- ``evaluation/*``: goal / collision-free / sidewalk-free rates, mean reward, passed, phase;
- ``curriculum/*``: phase, episodes in phase, total episodes;
- ``training/*``, x = env steps: loss, mean Q, TD error, beta, grad norm, epsilon, updates/s,
  env steps/s, replay size, and the replay ratio held, ``env_steps_per_update`` (env steps/s over
  updates/s of the policy's last rate window; agent.train_frequency / gradient_steps while the
  learner keeps up);
- images ``images/topdown`` and ``images/semantic_bev`` every ``*_period_s``; an animated GIF
  ``video/evaluation_episode`` of each evaluation episode of env 0 (top-down frames, PIL-encoded,
  written as an image summary since moviepy is not installed);
- hparams: the agent config (config/agent.yaml ``dqn_policy.agent``, flattened), once at start.

Images arrive through ``raw=True`` subscriptions that exist only when needed (one frame per image
period; the video source while the curriculum is evaluating): the simulator renders the top-down
view only while somebody subscribes, and a render costs about as much as 10-20 ticks.
With ``record_mcap``, env 0's sensor topics are recorded raw into one MCAP file per episode
(``mcap_dir/env_0_episode_<id>.mcap``, see :mod:`carla_rl.nodes.support.mcap_io`).
"""

from __future__ import annotations

import functools

import io
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rclpy.node import Node
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import Image

from carla_rl.nodes.support import ros_conversions as conv
from carla_rl.contract import topics
from carla_rl.contract.config import (ConfigError, agent_params_files, deep_merge, default_config_dir, flatten,
                             node_parameters, param)
from carla_rl.nodes.support import mcap_io
from carla_rl.nodes.support import qos_profiles as qos
from carla_rl.nodes.support.diagnostics import DiagnosticsReporter
from carla_rl.nodes.support.node_runner import run_node
from carla_rl.nodes.support.ros_parameters import declare_config, set_timer_period
from carla_rl_interfaces.msg import CurriculumStatus, EgoSituation, EpisodeStats, EvaluationResult, TrainingStats

TRAINING_FIELDS = ("loss", "mean_q", "td_error", "beta", "grad_norm", "epsilon", "updates_per_s",
                   "env_steps_per_s", "replay_size", "updates", "act_batch_mean")
HPARAM_METRICS = ("evaluation/goal_rate", "evaluation/collision_free_rate", "evaluation/sidewalk_free_rate",
                  "episode/reward")


@dataclass(frozen=True)
class MonitorConfig:
    log_dir: str = param("runs/latest/tensorboard", "TensorBoard log directory", read_only=True)
    num_envs: int = param(1, "Number of environments (images and video come from env 0)", low=1, high=1024,
                          read_only=True)
    role_name: str = param(topics.DEFAULT_ROLE_NAME, "Ego role name in the bridge topics", read_only=True)
    flush_period_s: float = param(10.0, "Flush TensorBoard event files this often", low=0.1,
                                  high=3600.0,
                                  runtime=True)
    topdown_period_s: float = param(30.0, "Log env 0's top-down render as an image this often (0 = never); "
                                    "subscribed for one frame each time", low=0.0, high=86400.0)
    camera_period_s: float = param(30.0, "Log env 0's semantic BEV camera as an image this often (0 = never); "
                                   "subscribed for one frame each time", low=0.0, high=86400.0)
    video_evaluation: bool = param(True, "Log each evaluation episode of env 0 as an animated GIF (frames "
                                   "subscribed only while the curriculum status says 'evaluating')")
    video_source: str = param("topdown", "Frames of the video: the top-down render or the BEV camera",
                              choices=("topdown", "camera"))
    video_max_frames: int = param(120, "At most this many frames per video (longer episodes are "
                                  "subsampled evenly)", low=2, high=10000)
    video_fps: float = param(8.0, "Playback rate of the GIF", low=0.5, high=60.0, runtime=True)
    video_max_size_px: int = param(256, "Scale video frames down to at most this many pixels per side",
                                   low=16, high=2048, runtime=True)
    log_hparams: bool = param(True, "Write the agent config as TensorBoard hparams once at start")
    agent_params_file: str = param("", "Params file of the agent config ('' = the run device's agent files "
                                   "of the config directory)")
    agent_device: str = param("cpu", "Device of the run: its agent files are the hparams (agent.yaml; on "
                              "cuda[:N] agent_cuda.yaml over it, as the policy node reads them)")
    record_mcap: bool = param(False, "Record env 0's sensor topics, one MCAP file per episode",
                              read_only=True)
    mcap_dir: str = param("runs/latest/recordings", "Directory of the MCAP recordings", read_only=True)
    mcap_every_n_episodes: int = param(1, "Record every n-th episode only", low=1, high=1000000)
    mcap_compression: str = param("zstd", "Chunk compression of the MCAP files", choices=mcap_io.COMPRESSIONS)
    mcap_chunk_size_bytes: int = param(1 << 20, "Target size of an MCAP chunk", low=1024, high=1 << 30)
    mcap_wait_for_subscribers: int = param(2, "Subscribe to env 0's situation topic only once this many "
                                           "other nodes do: the simulator starts ticking when "
                                           "shell.required_subscribers nodes subscribe to it, and the "
                                           "recorder must not be counted as one of them", low=0, high=100)
    mcap_wait_period_s: float = param(0.2, "Check for those subscribers this often", low=0.01, high=10.0)
    diagnostics_period_s: float = param(1.0, "Heartbeat / counters period", low=0.05, high=60.0,
                                        runtime=True)


def agent_hparams(*paths: Path) -> dict[str, object]:
    """``dqn_policy.agent`` of params files (a later file's keys win: config/agent.yaml, then the device's
    preset) flattened to TensorBoard hparam values."""
    agent: dict = {}
    for path in paths:
        agent = deep_merge(agent, node_parameters(path, "dqn_policy").get("agent") or {})
    out: dict[str, object] = {}
    for key, value in flatten(agent).items():
        if isinstance(value, (bool, int, float, str)):
            out[key] = value
        else:
            out[key] = str(value)
    return out


def gif_bytes(frames: list[np.ndarray], fps: float, max_size_px: int) -> bytes:
    """[H, W, 3] uint8 frames -> an animated GIF (looping)."""
    from PIL import Image as PILImage

    images = []
    for frame in frames:
        image = PILImage.fromarray(np.ascontiguousarray(frame[..., :3]), "RGB")
        if max(image.size) > max_size_px:
            scale = max_size_px / max(image.size)
            image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                                 PILImage.NEAREST)
        images.append(image.quantize(colors=255, method=PILImage.Quantize.MEDIANCUT))
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:],
                   duration=max(1, round(1000.0 / fps)), loop=0)
    return buffer.getvalue()


def gif_summary(tag: str, gif: bytes, height: int, width: int):
    """A TensorBoard image summary holding an animated GIF (what add_video writes, without moviepy)."""
    from tensorboard.compat.proto.summary_pb2 import Summary

    image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=gif)
    return Summary(value=[Summary.Value(tag=tag, image=image)])


class FrameBuffer:
    """Frames of the running episode, at most ``max_frames``: when full, every other frame is
    dropped and the keep-stride doubles, so a long episode stays evenly subsampled."""

    def __init__(self, max_frames: int) -> None:
        self.max_frames = max_frames
        self.frames: list[tuple[int, bytes]] = []   # (stamp ns, raw Image CDR)
        self.stride = 1
        self.seen = 0

    def add(self, stamp_ns: int, data: bytes) -> None:
        if self.seen % self.stride == 0:
            self.frames.append((stamp_ns, data))
            if len(self.frames) > self.max_frames:
                self.frames = self.frames[::2]
                self.stride *= 2
        self.seen += 1

    def take_until(self, stamp_ns: int) -> list[bytes]:
        """Frames stamped at or before ``stamp_ns`` (removed); later frames stay (the next episode)."""
        taken = [d for s, d in self.frames if s <= stamp_ns]
        self.frames = [(s, d) for s, d in self.frames if s > stamp_ns]
        self.stride, self.seen = 1, len(self.frames)
        return taken


class OnDemandSubscription:
    """A raw subscription that exists only while some reason wants it. The simulator renders the
    top-down view only while somebody subscribes (a 256 px render costs about as much as 10-20 ticks),
    so the monitor subscribes for one frame per image period and during evaluations (video)."""

    def __init__(self, node: Node, topic: str, callback) -> None:
        self.node, self.topic, self.callback = node, topic, callback
        self.reasons: set[str] = set()
        self.subscription = None

    def want(self, reason: str, on: bool) -> None:
        if on:
            self.reasons.add(reason)
        else:
            self.reasons.discard(reason)
        if self.reasons and self.subscription is None:
            self.subscription = self.node.create_subscription(Image, self.topic, self.callback, qos.VIEWER,
                                                              raw=True)
        elif not self.reasons and self.subscription is not None:
            self.node.destroy_subscription(self.subscription)
            self.subscription = None


class TrainingMonitorNode(Node):
    def __init__(self) -> None:
        super().__init__("training_monitor")
        self.cfg = declare_config(self, MonitorConfig, apply=self.apply_config)
        self.diag = DiagnosticsReporter(self, self.cfg.diagnostics_period_s, warn_on=("write_errors",))
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = Path(self.cfg.log_dir)
        self.writer = SummaryWriter(log_dir=str(self.log_dir), flush_secs=max(1, round(self.cfg.flush_period_s)))
        self.flush_timer = self.create_timer(self.cfg.flush_period_s, self.writer.flush)
        self.episodes = Counter()               # "episode" / "eval_episode" -> count
        self.reasons: dict[str, Counter] = {"episode": Counter(), "eval_episode": Counter()}
        self.evaluations = 0
        self.last_status_total = -1
        self.image_counts = Counter()
        self.videos = 0
        self.frames = FrameBuffer(self.cfg.video_max_frames)
        if self.cfg.log_hparams:
            self.write_hparams()

        sub = self.create_subscription
        sub(EpisodeStats, topics.EPISODE_STATS, self.on_episode, qos.EVENTS)
        sub(EvaluationResult, topics.EVALUATION_RESULT, self.on_evaluation, qos.EVENTS)
        sub(CurriculumStatus, topics.CURRICULUM_STATUS, self.on_status, qos.LATCHED)
        sub(TrainingStats, topics.TRAINING_STATS, self.on_training, qos.EVENTS)
        ns = topics.env_namespace(0)
        self.topdown_topic = f"{ns}/{topics.TOPDOWN_IMAGE}"
        self.camera_topic = f"{ns}/{topics.carla_topic(self.cfg.role_name, topics.CAMERA)}"
        self.views = {"topdown": OnDemandSubscription(self, self.topdown_topic,
                                                      lambda data: self.on_image("topdown", data)),
                      "semantic_bev": OnDemandSubscription(self, self.camera_topic,
                                                           lambda data: self.on_image("semantic_bev", data))}
        self.video_view = "topdown" if self.cfg.video_source == "topdown" else "semantic_bev"
        for kind, period in (("topdown", self.cfg.topdown_period_s), ("semantic_bev", self.cfg.camera_period_s)):
            if period > 0:  # one frame now, then one per period
                self.views[kind].want("image", True)
                # a partial, not a lambda with a default argument: rclpy's EventsExecutor passes a
                # TimerInfo to any timer callback that takes a parameter
                self.create_timer(period, functools.partial(self.views[kind].want, "image", True))

        self.recorder: mcap_io.EpisodeRecorder | None = None
        if self.cfg.record_mcap:
            self.start_recording()
        self.get_logger().info(f"TensorBoard: {self.log_dir}"
                               + (f"; MCAP recordings: {self.cfg.mcap_dir}" if self.recorder else ""))

    # --- hparams ------------------------------------------------------------------------------------
    def apply_config(self, cfg: MonitorConfig) -> None:
        """A run-time parameter was set: the flush and heartbeat timers (video settings: read per
        GIF)."""
        self.cfg = cfg
        set_timer_period(self.flush_timer, cfg.flush_period_s)
        self.diag.set_period(cfg.diagnostics_period_s)

    def write_hparams(self) -> None:
        from torch.utils.tensorboard.summary import hparams

        try:
            paths = [Path(self.cfg.agent_params_file)] if self.cfg.agent_params_file else \
                [default_config_dir() / name for name in agent_params_files(self.cfg.agent_device)]
            values = agent_hparams(*paths)
        except ConfigError as exc:
            self.get_logger().warning(f"no hparams: {exc}")
            self.diag.count("hparams_errors")
            return
        values["num_envs"] = self.cfg.num_envs
        experiment, start, end = hparams(values, {m: 0.0 for m in HPARAM_METRICS})
        file_writer = self.writer._get_file_writer()
        for summary in (experiment, start, end):
            file_writer.add_summary(summary)

    # --- statistics -----------------------------------------------------------------------------------
    def scalar(self, tag: str, value: float, step: int) -> None:
        value = float(value)
        if np.isfinite(value):
            self.writer.add_scalar(tag, value, step)

    def on_episode(self, msg: EpisodeStats) -> None:
        kind = "eval_episode" if msg.evaluation else "episode"
        self.episodes[kind] += 1
        step = self.episodes[kind]
        self.scalar(f"{kind}/reward", msg.total_reward, step)
        for name, total in zip(msg.term_names, msg.term_totals):
            self.scalar(f"{kind}/terms/{name}", total, step)
        self.scalar(f"{kind}/length", msg.steps, step)
        self.scalar(f"{kind}/distance_m", msg.distance_m, step)
        self.scalar(f"{kind}/mean_speed_mps", msg.mean_speed_mps, step)
        self.scalar(f"{kind}/phase", msg.phase, step)
        reason = msg.termination_reason or "unknown"
        self.reasons[kind][reason] += 1
        for name, count in self.reasons[kind].items():
            self.scalar(f"{kind}/termination/{name}", count, step)
        self.diag.count("episodes")
        if msg.env_id == 0:
            self.finish_video(msg)

    def on_evaluation(self, msg: EvaluationResult) -> None:
        self.evaluations += 1
        step = self.evaluations
        for name in ("goal_rate", "collision_free_rate", "sidewalk_free_rate", "mean_reward", "phase",
                     "episodes"):
            self.scalar(f"evaluation/{name}", getattr(msg, name), step)
        self.scalar("evaluation/passed", 1.0 if msg.passed else 0.0, step)
        self.scalar(f"evaluation/phase_{msg.phase}/goal_rate", msg.goal_rate, step)
        self.diag.count("evaluations")

    def on_status(self, msg: CurriculumStatus) -> None:
        if self.cfg.video_evaluation:  # evaluation episodes run while the curriculum says so
            self.views[self.video_view].want("video", bool(msg.evaluating))
        if msg.total_episodes == self.last_status_total:
            return  # latched re-sends and pause/resume changes: nothing new to plot
        self.last_status_total = msg.total_episodes
        step = int(msg.total_episodes)
        self.scalar("curriculum/phase", msg.phase, step)
        self.scalar("curriculum/episodes_in_phase", msg.episodes_in_phase, step)
        self.scalar("curriculum/total_episodes", msg.total_episodes, step)
        self.diag.count("status_updates")

    def on_training(self, msg: TrainingStats) -> None:
        step = int(msg.env_steps)
        for name in TRAINING_FIELDS:
            self.scalar(f"training/{name}", getattr(msg, name), step)
        if msg.updates_per_s > 0:
            self.scalar("training/env_steps_per_update", msg.env_steps_per_s / msg.updates_per_s, step)
        self.diag.count("training_stats")

    # --- images and video -------------------------------------------------------------------------------
    def on_image(self, kind: str, data: bytes) -> None:
        if "image" in self.views[kind].reasons:
            image = self.decode_image(data)
            if image is not None:
                self.views[kind].want("image", False)
                self.image_counts[kind] += 1
                self.writer.add_image(f"images/{kind}", image, self.image_counts[kind], dataformats="HWC")
                self.diag.count(f"images_{kind}")
        if self.cfg.video_evaluation and kind == self.video_view and "video" in self.views[kind].reasons:
            stamp = mcap_io.cdr_stamp_ns(data)
            if stamp is not None:
                self.frames.add(stamp, bytes(data))
                self.diag.count("video_frames")

    def decode_image(self, data: bytes) -> np.ndarray | None:
        try:
            msg = deserialize_message(data, Image)
            image = conv.image_array(msg)
        except Exception:  # noqa: BLE001 - a malformed image is counted, never fatal
            self.diag.count("bad_images")
            return None
        if msg.encoding == "mono8":
            image = np.repeat(image, 3, axis=2)
        elif msg.encoding in ("bgr8", "bgra8"):
            image = image[..., 2::-1]
        return np.ascontiguousarray(image[..., :3])

    def finish_video(self, msg: EpisodeStats) -> None:
        raw = self.frames.take_until(msg.header.stamp.sec * conv.NANOSECONDS + msg.header.stamp.nanosec)
        if not msg.evaluation or not self.cfg.video_evaluation:
            return
        frames = [f for f in (self.decode_image(d) for d in raw) if f is not None]
        if len({f.shape for f in frames}) > 1:
            frames = [f for f in frames if f.shape == frames[-1].shape]
        if not frames:
            self.diag.count("videos_without_frames")
            return
        gif = gif_bytes(frames, self.cfg.video_fps, self.cfg.video_max_size_px)
        from PIL import Image as PILImage

        width, height = PILImage.open(io.BytesIO(gif)).size
        self.videos += 1
        self.writer._get_file_writer().add_summary(gif_summary("video/evaluation_episode", gif, height, width),
                                                   self.videos)
        self.diag.count("videos")

    # --- MCAP ---------------------------------------------------------------------------------------------
    def start_recording(self) -> None:
        recorded = mcap_io.env_sensor_topics(0, self.cfg.role_name)
        situation = recorded[-1].name
        self.recorder = mcap_io.EpisodeRecorder(self.cfg.mcap_dir, "env_0", recorded, situation,
                                                self.cfg.mcap_compression, self.cfg.mcap_chunk_size_bytes,
                                                self.cfg.mcap_every_n_episodes)
        profiles = {"sensor": qos.EVENTS, "events": qos.EVENTS, "latched": qos.LATCHED, "clock": qos.EVENTS}
        for spec in recorded:
            if spec.name == situation:
                continue
            self.create_subscription(mcap_io.message_class(spec.type_name), spec.name,
                                     lambda data, topic=spec.name: self.on_record(topic, data),
                                     profiles[spec.qos], raw=True)
        self.situation_topic = situation
        self.situation_subscription = None
        self.wait_timer = self.create_timer(self.cfg.mcap_wait_period_s, self.subscribe_situation)
        self.subscribe_situation()

    def subscribe_situation(self) -> None:
        """The episode boundaries: subscribed once the stack's own consumers are (see the parameter)."""
        if self.situation_subscription is not None:
            return
        if self.count_subscribers(self.situation_topic) < self.cfg.mcap_wait_for_subscribers:
            return
        self.wait_timer.cancel()
        self.situation_subscription = self.create_subscription(EgoSituation, self.situation_topic,
                                                               self.on_record_situation, qos.EVENTS, raw=True)

    def on_record(self, topic: str, data: bytes) -> None:
        self.recorder.on_message(topic, data, time.time_ns())
        self.diag.count("recorded_messages")

    def on_record_situation(self, data: bytes) -> None:
        try:
            situation = deserialize_message(data, EgoSituation)
        except Exception:  # noqa: BLE001
            self.diag.count("bad_situations")
            return
        try:
            closed = self.recorder.on_situation(data, time.time_ns(), situation.episode_id, situation.episode_step,
                                                situation.evaluation, situation.phase)
        except (mcap_io.McapIoError, OSError) as exc:
            self.diag.count("write_errors")
            self.get_logger().error(f"MCAP recording: {exc}", throttle_duration_sec=10.0)
            return
        self.diag.count("recorded_ticks")
        if closed is not None:
            self.diag.count("recorded_episodes")
            self.diag.values["last_recording"] = str(closed)

    def on_shutdown(self) -> None:
        if self.recorder is not None:
            self.recorder.close()
        self.writer.close()


def main(args: list[str] | None = None) -> int:
    return run_node(TrainingMonitorNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
