"""The curriculum manager keeps passed phases in training over the graph: with phases 1 and 2 passed,
the episode statistics of env 0 make it load passed phases into that env (<env>/load_scenario, applied
at its next episode) for review_share of the episodes, and the current phase again after them."""

import json

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy missing: run through `make test`")

from carla_rl.nodes.support import ros_conversions as conv  # noqa: E402
from carla_rl.contract import topics  # noqa: E402
from carla_rl.contract.config import load_section  # noqa: E402
from carla_rl.curriculum import CurriculumConfig, CurriculumState, load_phase_table  # noqa: E402
from carla_rl.reward import EpisodeStats  # noqa: E402
from carla_rl.nodes.support import qos_profiles as qos  # noqa: E402
from carla_rl_interfaces.msg import CurriculumStatus  # noqa: E402
from carla_rl_interfaces.msg import EpisodeStats as EpisodeStatsMsg  # noqa: E402
from carla_rl_interfaces.srv import LoadScenario  # noqa: E402
from ros_testing import CONFIG_DIR, NodeProcess, spin_until  # noqa: E402

TIMEOUT_S = 60.0


@pytest.mark.ros
def test_review_episodes_are_loaded_into_the_env(tmp_path, ros_node):
    config_file = CONFIG_DIR / "curriculum.yaml"
    config = load_section(config_file, "curriculum_manager", CurriculumConfig, ignore=("num_phases", "phases"))
    state = CurriculumState(load_phase_table(config_file), config)
    state.phase, state.passed_phases = 3, {1, 2}
    state.save(tmp_path / config.state_file)                       # resumed: in phase 3, 1 and 2 passed
    loaded = []

    def on_load(request, response):
        loaded.append((request.scenario.phase, request.apply_now))
        response.success = True
        return response

    ros_node.create_service(LoadScenario, f"{topics.env_namespace(0)}/{topics.LOAD_SCENARIO_SERVICE}", on_load)
    statuses = []
    ros_node.create_subscription(CurriculumStatus, topics.CURRICULUM_STATUS, statuses.append, qos.LATCHED)
    stats_pub = ros_node.create_publisher(EpisodeStatsMsg, topics.EPISODE_STATS, qos.EVENTS)
    overrides = {"save_dir": str(tmp_path), "review_share": 0.5, "evaluate_every_episodes": 0}
    # share 0.5 over passed phases 1, 2 (round robin): the env's next phases after episodes 1..8
    next_phases = [3, 1, 3, 2, 3, 1, 3, 2]
    with NodeProcess.node("curriculum_manager", ["--params-file", str(config_file)], tmp_path,
                          overrides=overrides) as proc:
        assert spin_until(ros_node, lambda: stats_pub.get_subscription_count() > 0, TIMEOUT_S), proc.output()
        phase = 3
        for episode, expected in enumerate(next_phases, start=1):
            stats = EpisodeStats(env_id=0, episode_id=episode, phase=phase, steps=10, termination_reason="timeout")
            stats_pub.publish(conv.episode_stats_msg(stats, conv.time_msg(float(episode))))
            assert spin_until(ros_node, lambda: statuses and statuses[-1].total_episodes >= episode,
                              TIMEOUT_S), (episode, proc.output())
            if expected != phase:  # a change of phase is loaded into the env (a repeat is not)
                assert spin_until(ros_node, lambda: loaded and loaded[-1][0] == expected, TIMEOUT_S), (
                    episode, loaded, proc.output())
                phase = expected
        assert proc.alive(), proc.output()
    assert [p for p, _ in loaded] == [1, 3, 2, 3, 1, 3, 2], loaded
    assert not any(now for _, now in loaded)                       # applied at the env's next episode
    saved = json.loads((tmp_path / config.state_file).read_text())
    assert (saved["review_episodes"], saved["episodes_in_phase"]) == (3, 5)
