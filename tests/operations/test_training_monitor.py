"""training_monitor writes TensorBoard event files: scalars, images, an evaluation GIF, hparams."""

from __future__ import annotations

import io

import pytest

rclpy = pytest.importorskip("rclpy")

from PIL import Image as PILImage  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from carla_rl.contract import topics  # noqa: E402
from carla_rl.nodes.support import qos_profiles as qos  # noqa: E402
from carla_rl_interfaces.msg import (CurriculumStatus, EpisodeStats, EvaluationResult,  # noqa: E402
                                     TrainingStats)
from ops_helpers import DiagnosticsCounters, solid_image, stamp  # noqa: E402
from ros_testing import CONFIG_DIR, NodeProcess, spin_until  # noqa: E402

CAMERA = f"/env_0/{topics.carla_topic(topics.DEFAULT_ROLE_NAME, topics.CAMERA)}"
TOPDOWN = f"/env_0/{topics.TOPDOWN_IMAGE}"
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)]


def publish_until(node, publish, predicate, attempts: int = 5, timeout: float = 3.0) -> bool:
    """Publish, wait for the effect; again if a best-effort sample was lost."""
    for _ in range(attempts):
        publish()
        if spin_until(node, predicate, timeout):
            return True
    return False


def episode(env_id: int, evaluation: bool, t: float, reward: float, reason: str) -> EpisodeStats:
    msg = EpisodeStats(env_id=env_id, episode_id=3, phase=2, evaluation=evaluation, steps=40,
                       total_reward=reward, termination_reason=reason, distance_m=55.0, mean_speed_mps=4.5)
    msg.header.stamp = stamp(t)
    msg.term_names = ["progress", "collision"]
    msg.term_totals = [reward + 1.0, -1.0]
    return msg


@pytest.mark.ros
def test_monitor_writes_scalars_images_video_and_hparams(ros_node, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log_dir = tmp_path / "tb"
    args = ["--params-file", str(CONFIG_DIR / "monitor.yaml"), "-p", f"log_dir:={log_dir}",
            "-p", "topdown_period_s:=600.0", "-p", "camera_period_s:=0.3", "-p", "flush_period_s:=0.5",
            "-p", "diagnostics_period_s:=0.1", "-p", f"agent_params_file:={CONFIG_DIR / 'agent.yaml'}"]
    node = ros_node
    diag = DiagnosticsCounters(node, "/training_monitor")
    pubs = {
        "episode": node.create_publisher(EpisodeStats, topics.EPISODE_STATS, qos.EVENTS),
        "evaluation": node.create_publisher(EvaluationResult, topics.EVALUATION_RESULT, qos.EVENTS),
        "status": node.create_publisher(CurriculumStatus, topics.CURRICULUM_STATUS, qos.LATCHED),
        "training": node.create_publisher(TrainingStats, topics.TRAINING_STATS, qos.EVENTS),
        "topdown": node.create_publisher(Image, TOPDOWN, qos.SENSOR),
        "camera": node.create_publisher(Image, CAMERA, qos.SENSOR),
    }
    monitor = NodeProcess.node("training_monitor", args, tmp_path)
    try:
        assert spin_until(node, lambda: all(p.get_subscription_count() > 0 for p in pubs.values())
                          and diag.seen, 30.0), monitor.output()
        pubs["status"].publish(CurriculumStatus(phase=2, phase_name="curvy", num_phases=10, episodes_in_phase=5,
                                                total_episodes=7, evaluating=True))  # video frames wanted
        assert spin_until(node, lambda: diag.count("status_updates") >= 1, 30.0), monitor.output()
        pubs["training"].publish(TrainingStats(updates=10, env_steps=1000, replay_size=900, loss=0.5, mean_q=1.5,
                                               td_error=0.25, beta=0.4, grad_norm=2.0, epsilon=0.1,
                                               updates_per_s=3.0, env_steps_per_s=120.0))
        pubs["episode"].publish(episode(1, False, 5.0, 12.5, "goal_reached"))
        for i, colour in enumerate(COLOURS):  # an evaluation episode of env 0: frames at 10.0 .. 10.4 s
            assert publish_until(node, lambda: pubs["topdown"].publish(solid_image(colour, 32, 10.0 + 0.1 * i)),
                                 lambda: diag.count("video_frames") >= i + 1), monitor.output()
        assert publish_until(node, lambda: pubs["camera"].publish(solid_image((7, 8, 9), 16, 10.0)),
                             lambda: diag.count("images_semantic_bev") >= 1), monitor.output()
        pubs["episode"].publish(episode(0, True, 10.45, -3.0, "collision"))
        pubs["evaluation"].publish(EvaluationResult(phase=2, episodes=1, goal_rate=0.0, collision_free_rate=0.0,
                                                    sidewalk_free_rate=1.0, mean_reward=-3.0, passed=False))
        assert spin_until(node, lambda: diag.count("episodes") >= 2 and diag.count("videos") >= 1
                          and diag.count("evaluations") >= 1 and diag.count("training_stats") >= 1
                          and diag.count("status_updates") >= 1 and diag.count("images_topdown") >= 1,
                          30.0), (diag.values, monitor.output())
    finally:
        code = monitor.stop()
    assert code == 0, monitor.log_path.read_text()

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()
    expected = {"episode/reward", "episode/terms/progress", "episode/terms/collision", "episode/length",
                "episode/distance_m", "episode/mean_speed_mps", "episode/phase", "episode/termination/goal_reached",
                "eval_episode/reward", "eval_episode/termination/collision",
                "evaluation/goal_rate", "evaluation/collision_free_rate", "evaluation/sidewalk_free_rate",
                "evaluation/passed", "curriculum/phase", "curriculum/episodes_in_phase",
                "training/loss", "training/mean_q", "training/td_error", "training/beta", "training/grad_norm",
                "training/epsilon", "training/updates_per_s", "training/env_steps_per_s", "training/replay_size"}
    assert expected <= set(tags["scalars"]), sorted(expected - set(tags["scalars"]))
    assert acc.Scalars("episode/terms/progress")[0].value == pytest.approx(13.5)
    assert acc.Scalars("training/loss")[0].step == 1000
    assert acc.Scalars("curriculum/phase")[0].value == 2.0
    assert {"images/topdown", "images/semantic_bev", "video/evaluation_episode"} <= set(tags["images"])
    camera = PILImage.open(io.BytesIO(acc.Images("images/semantic_bev")[0].encoded_image_string))
    assert camera.convert("RGB").getpixel((0, 0)) == (7, 8, 9)
    video = acc.Images("video/evaluation_episode")[0]
    assert video.encoded_image_string[:6] == b"GIF89a"
    gif = PILImage.open(io.BytesIO(video.encoded_image_string))
    assert gif.n_frames == len(COLOURS)
    colours = []
    for i in range(gif.n_frames):
        gif.seek(i)
        colours.append(gif.convert("RGB").getpixel((1, 1)))
    assert colours == COLOURS
    from tensorboard.plugins.hparams import plugin_data_pb2

    hparams = acc.PluginTagToContent("hparams")
    assert "_hparams_/experiment" in hparams
    start = plugin_data_pb2.HParamsPluginData.FromString(hparams["_hparams_/session_start_info"])
    values = start.session_start_info.hparams
    from carla_rl.learner.agent_config import AgentConfig

    assert values["lr"].number_value == pytest.approx(AgentConfig().lr)  # config/agent.yaml = the defaults
    assert values["network.conv_channels"].string_value == "[16, 32, 32]"
    assert values["replay.prioritized"].number_value == 1.0  # torch stores bools as numbers


@pytest.mark.ros
def test_topdown_is_subscribed_only_when_needed(ros_node, tmp_path):
    """The simulator renders the top-down view only while subscribed: one frame per image period,
    and during evaluations (video)."""
    node = ros_node
    args = ["--params-file", str(CONFIG_DIR / "monitor.yaml"), "-p", f"log_dir:={tmp_path / 'tb'}",
            "-p", "topdown_period_s:=600.0", "-p", "camera_period_s:=0.0", "-p", "log_hparams:=false",
            "-p", "diagnostics_period_s:=0.1"]
    diag = DiagnosticsCounters(node, "/training_monitor")
    topdown = node.create_publisher(Image, TOPDOWN, qos.SENSOR)
    status = node.create_publisher(CurriculumStatus, topics.CURRICULUM_STATUS, qos.LATCHED)
    monitor = NodeProcess.node("training_monitor", args, tmp_path)
    try:
        assert spin_until(node, lambda: topdown.get_subscription_count() == 1 and diag.seen, 30.0), monitor.output()
        assert publish_until(node, lambda: topdown.publish(solid_image((1, 1, 1), 8, 1.0)),
                             lambda: diag.count("images_topdown") >= 1), monitor.output()
        assert spin_until(node, lambda: topdown.get_subscription_count() == 0, 30.0), monitor.output()
        status.publish(CurriculumStatus(phase=1, num_phases=10, evaluating=True))
        assert spin_until(node, lambda: topdown.get_subscription_count() == 1, 30.0), monitor.output()
        status.publish(CurriculumStatus(phase=1, num_phases=10, evaluating=False, total_episodes=1))
        assert spin_until(node, lambda: topdown.get_subscription_count() == 0, 30.0), monitor.output()
    finally:
        code = monitor.stop()
    assert code == 0, monitor.log_path.read_text()


def test_hparams_of_a_cuda_run_are_the_cuda_preset_over_agent_yaml():
    """The policy node of a CUDA run reads agent_cuda.yaml over agent.yaml; the hparams say so."""
    from carla_rl.contract.config import agent_params_files
    from carla_rl.learner.agent_config import AgentConfig
    from carla_rl.nodes.training_monitor_node import agent_hparams

    cpu = agent_hparams(*(CONFIG_DIR / name for name in agent_params_files("cpu")))
    cuda = agent_hparams(*(CONFIG_DIR / name for name in agent_params_files("cuda")))
    assert cpu["batch_size"] == AgentConfig().batch_size and "compile" not in cpu
    assert cuda["batch_size"] == 256 and cuda["compile"] is True and cuda["updates_per_graph"] == 8
    assert cuda["lr"] == cpu["lr"] and cuda["network.conv_channels"] == cpu["network.conv_channels"]
