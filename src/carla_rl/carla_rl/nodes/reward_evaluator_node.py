"""reward_evaluator: the reward of every tick of every env, episode statistics, evaluation runs.

Per env it syncs odometry + situation + the tick's announced collision / lane-invasion events,
computes the reward with :class:`carla_rl.reward.RewardCalculator` (weights: config/reward.yaml),
publishes <env>/step_reward with the per-term breakdown and termination reason, and at episode end
/carla_rl/episode_stats. ``/carla_rl/evaluate`` runs N evaluation episodes: it switches the policy to
evaluation mode (no exploration), aggregates the evaluation episodes of that phase and publishes
/carla_rl/evaluation_result.

One evaluator serves every env, or several (``env_ids``: one per container of composition ``halves``)
each a disjoint share. Exactly one of them leads the evaluations (``lead_evaluation``): it serves
/carla_rl/evaluate, switches the policy's mode, and counts the evaluation episodes of its own envs as
they end and the other evaluators' from /carla_rl/episode_stats (:class:`carla_rl.reward.EnvShare`).
"""

from __future__ import annotations

from dataclasses import dataclass

from nav_msgs.msg import Odometry as OdometryMsg
from std_srvs.srv import SetBool

from carla_rl.nodes.support import ros_conversions as conv
from carla_rl.contract import topics
from carla_rl.contract.config import ConfigError, param
from carla_rl.nodes.support import qos_profiles as qos
from carla_rl.nodes.support.diagnostics import DiagnosticsReporter
from carla_rl.nodes.support.intra_process import ComposableNode
from carla_rl.nodes.support.node_runner import run_node
from carla_rl.nodes.support.ros_parameters import declare_config, declare_phases
from carla_rl.nodes.support.service_calls import ResentRequests
from carla_rl.preprocess import StepSynchronizer
from carla_rl.reward import (EnvShare, EpisodeStats, EpisodeStatsAccumulator, EvaluationAggregator,
                             EvaluationResult, RewardCalculator, RewardConfig)
from carla_rl_interfaces.msg import CollisionEvent, EgoSituation
from carla_rl_interfaces.msg import EpisodeStats as EpisodeStatsMsg
from carla_rl_interfaces.msg import EvaluationResult as EvaluationResultMsg
from carla_rl_interfaces.msg import LaneInvasionEvent, StepReward
from carla_rl_interfaces.srv import Evaluate

EVENT_COUNT_FIELDS = {"collision": "collision_events", "lane_invasion": "lane_invasion_events"}


@dataclass(frozen=True)
class RewardNodeConfig:
    num_envs: int = param(1, "Number of environments (namespaces /env_0 ...)", low=1, high=1024,
                          read_only=True)
    env_ids: list[int] = param(default_factory=list, description="The envs this evaluator scores (several "
                               "evaluators: disjoint shares); empty = every env 0..num_envs-1", low=0,
                               high=1023, read_only=True)
    score_envs: bool = param(True, "Score envs of its own (env_ids); False: none, only lead the evaluations "
                             "(the learner host's evaluator when worker hosts score their envs)", read_only=True)
    lead_evaluation: bool = param(True, "Serve /carla_rl/evaluate and switch the policy's evaluation mode; "
                                  "count the evaluation episodes of every env (the other evaluators' from "
                                  "/carla_rl/episode_stats). Exactly one evaluator of a graph leads",
                                  read_only=True)
    role_name: str = param(topics.DEFAULT_ROLE_NAME, "Ego role name in the bridge topics", read_only=True)
    diagnostics_period_s: float = param(1.0, "Heartbeat / counters period", low=0.05, high=60.0,
                                        runtime=True)
    service_resend_s: float = param(2.0, "A switch of the policy's evaluation mode unanswered this long is "
                                         "sent again; one waiting for the service to come up is sent within "
                                         "this long of it", low=0.1, high=600.0)


class EnvReward:
    """Reward state of one env."""

    def __init__(self, env_id: int, config: RewardConfig, max_pending: int, publisher) -> None:
        self.env_id = env_id
        self.publisher = publisher  # <env>/step_reward
        self.calculator = RewardCalculator(config)
        self.stats = EpisodeStatsAccumulator()
        self.sync = StepSynchronizer(("odometry", "situation"), event_count_fields=EVENT_COUNT_FIELDS,
                                     announcer="situation", max_pending_steps=max_pending)
        self.episode_id: int | None = None
        self.done = False
        self.end: tuple[bool, bool, str] = (False, False, "")  # terminated, truncated, reason
        self.last_key = -1


def evaluation_msg(result: EvaluationResult, stamp) -> EvaluationResultMsg:
    return EvaluationResultMsg(stamp=stamp, phase=int(result.phase), episodes=int(result.episodes),
                               goal_rate=float(result.goal_rate),
                               collision_free_rate=float(result.collision_free_rate),
                               sidewalk_free_rate=float(result.sidewalk_free_rate),
                               mean_reward=float(result.mean_reward), passed=bool(result.passed))


class RewardEvaluatorNode(ComposableNode):
    def __init__(self, **node_options) -> None:  # alone, or composed: see nodes/component_container.py
        super().__init__("reward_evaluator", **node_options)
        self.cfg = declare_config(self, RewardNodeConfig, apply=self.apply_config)
        self.reward_cfg = declare_config(self, RewardConfig)
        self.phases = declare_phases(self)
        self.diag = DiagnosticsReporter(self, self.cfg.diagnostics_period_s, warn_on=("dropped_ticks",),
                                        before_publish=self.report_readers)
        try:
            self.share = EnvShare(self.cfg.env_ids, self.cfg.num_envs, own=self.cfg.score_envs)
        except ValueError as exc:
            raise ConfigError(f"node '{self.get_name()}' parameters: {exc}") from None
        self.envs = []
        role = self.cfg.role_name
        for env_id in self.share.env_ids:
            ns = topics.env_namespace(env_id)
            env = EnvReward(env_id, self.reward_cfg, self.reward_cfg.sync_max_pending_steps,
                            self.create_publisher(StepReward, f"{ns}/{topics.STEP_REWARD}", qos.SENSOR))
            self.envs.append(env)
            sub = self.create_subscription

            def carla(name: str, ns: str = ns) -> str:
                return f"{ns}/{topics.carla_topic(role, name)}"

            sub(OdometryMsg, carla(topics.ODOMETRY), lambda m, e=env: self.on_sample(e, "odometry", m), qos.SENSOR)
            sub(EgoSituation, carla(topics.SITUATION), lambda m, e=env: self.on_sample(e, "situation", m),
                qos.SENSOR)
            sub(CollisionEvent, carla(topics.COLLISION), lambda m, e=env: self.on_sample(e, "collision", m),
                qos.EVENTS)
            sub(LaneInvasionEvent, carla(topics.LANE_INVASION),
                lambda m, e=env: self.on_sample(e, "lane_invasion", m), qos.EVENTS)
        self.stats_pub = self.create_publisher(EpisodeStatsMsg, topics.EPISODE_STATS, qos.EVENTS)
        self.eval_pub = None
        self.evaluation: EvaluationAggregator | None = None
        if not self.cfg.lead_evaluation:
            return
        self.eval_pub = self.create_publisher(EvaluationResultMsg, topics.EVALUATION_RESULT, qos.EVENTS)
        self.create_service(Evaluate, topics.EVALUATE_SERVICE, self.on_evaluate)
        self.mode_client = self.create_client(SetBool, topics.SET_EVALUATION_MODE_SERVICE)
        # kept until the policy answers (service_calls.ResentRequests): a lost "off" would leave it acting
        # greedily and storing nothing
        self.mode_requests = ResentRequests(self.mode_client, self.cfg.service_resend_s,
                                            on_answer=lambda *_: self.diag.count("mode_switches"))
        self.create_timer(self.cfg.service_resend_s, self.mode_requests.poll)
        if not self.share.covers_all:  # the other evaluators' episodes
            self.create_subscription(EpisodeStatsMsg, topics.EPISODE_STATS, self.on_remote_episode, qos.EVENTS)
        # No evaluation runs in a new evaluator, but the policy may still be in evaluation mode: a previous
        # evaluator (before a restart) switched it on and never off. Switched off once the policy is up.
        self.set_policy_evaluation_mode(False)

    # --- per tick -----------------------------------------------------------------------------------

    def apply_config(self, cfg: RewardNodeConfig) -> None:
        """A run-time parameter was set (the heartbeat period)."""
        self.cfg = cfg
        self.diag.set_period(cfg.diagnostics_period_s)

    def report_readers(self) -> None:
        """Who listens (volatile topics: a message sent before its reader matched is not seen by it): the
        policy counts on the step rewards; the curriculum, the monitor and, across evaluators, the lead on
        the episode statistics and evaluation results."""
        self.diag.values["episode_stats_readers"] = str(self.stats_pub.get_subscription_count())
        if self.envs:  # the policy reads every env's step rewards: the fewest readers an env has
            self.diag.values["step_reward_readers"] = str(min(env.publisher.get_subscription_count()
                                                              for env in self.envs))
        if self.eval_pub is not None:
            self.diag.values["evaluation_result_readers"] = str(self.eval_pub.get_subscription_count())

    def on_sample(self, env: EnvReward, kind: str, msg) -> None:
        key = conv.stamp_nanoseconds(msg.header.stamp)
        if kind == "situation" and key <= env.last_key:
            env.sync.reset()  # the simulator restarted: its clock went back
            env.last_key = -1  # forget the old clock, or every new tick would look like a restart
            self.diag.count("simulator_restarts")
        bundle = env.sync.add(kind, key, msg)
        if bundle is None:
            return
        env.last_key = key
        self.on_tick(env, bundle.messages["situation"], bundle.messages["odometry"], bundle.events)

    def on_tick(self, env: EnvReward, situation_msg: EgoSituation, odom_msg: OdometryMsg, events) -> None:
        situation = conv.situation_from_msg(situation_msg)
        odometry = conv.odometry_from_msg(odom_msg)
        speed = float((odometry.vx ** 2 + odometry.vy ** 2) ** 0.5)
        reward = StepReward(env_id=env.env_id, step_id=situation.step_id, episode_id=situation.episode_id,
                            episode_step=situation.episode_step)
        reward.header = situation_msg.header
        if situation.episode_step == 0 or situation.episode_id != env.episode_id:
            if not 1 <= situation.phase <= len(self.phases):
                self.diag.count("unknown_phase")
                return
            env.calculator.reset(self.phases[situation.phase - 1].scenario, situation)
            env.stats.start(env.env_id, situation.episode_id, situation.phase, situation.evaluation)
            env.episode_id, env.done = situation.episode_id, False
            reward.term_names = list(env.calculator.term_names)
            reward.term_values = conv.float32_sequence([0.0] * len(reward.term_names))
            env.publisher.publish(reward)  # the first tick of an episode earns nothing
            return
        if env.done:
            # the simulator stepped past the end (the reset command came after its control timeout):
            # say "ended" again, so the policy answers with a reset; nothing is scored or counted
            self.diag.count("ticks_after_episode_end")
            reward.term_names = list(env.calculator.term_names)
            reward.term_values = conv.float32_sequence([0.0] * len(reward.term_names))
            reward.terminated, reward.truncated, reward.termination_reason = env.end
            env.publisher.publish(reward)
            return
        collisions = [conv.collision_from_msg(m) for m in events.get("collision", [])]
        invasions = [conv.lane_invasion_from_msg(m) for m in events.get("lane_invasion", [])]
        result = env.calculator.step(situation, odometry, speed, collisions, invasions)
        env.stats.add(result, situation, odometry, speed)
        reward.reward = float(result.reward)
        reward.term_names = list(result.terms)
        reward.term_values = conv.float32_sequence(list(result.terms.values()))
        reward.terminated, reward.truncated = result.terminated, result.truncated
        reward.termination_reason = result.reason
        env.publisher.publish(reward)
        if result.done:
            env.done = True
            env.end = (result.terminated, result.truncated, result.reason)
            self.finish_episode(env, situation_msg.header.stamp)

    def finish_episode(self, env: EnvReward, stamp) -> None:
        stats = env.stats.finish()
        self.stats_pub.publish(conv.episode_stats_msg(stats, stamp))
        self.diag.count("episodes")
        self.count_evaluation_episode(stats, stamp)

    def on_remote_episode(self, msg: EpisodeStatsMsg) -> None:
        """An episode that another evaluator finished (the lead's own come back here too: skipped)."""
        if msg.evaluation and self.evaluation is not None and self.share.is_remote(msg.env_id):
            self.count_evaluation_episode(conv.episode_stats_from_msg(msg), msg.header.stamp)

    def count_evaluation_episode(self, stats: EpisodeStats, stamp) -> None:
        if self.evaluation is not None and stats.evaluation and self.evaluation.add(stats):
            if self.evaluation.complete:
                result = self.evaluation.result(stamp_s=conv.time_seconds(stamp))
                self.evaluation = None
                self.eval_pub.publish(evaluation_msg(result, self.get_clock().now().to_msg()))
                self.set_policy_evaluation_mode(False)
                self.get_logger().info(
                    f"evaluation phase {result.phase}: goal {result.goal_rate:.2f}, collision-free "
                    f"{result.collision_free_rate:.2f}, sidewalk-free {result.sidewalk_free_rate:.2f} -> "
                    f"{'passed' if result.passed else 'not passed'}")

    # --- evaluation --------------------------------------------------------------------------------
    def on_evaluate(self, request: Evaluate.Request, response: Evaluate.Response):
        phase = int(request.phase)
        if not 1 <= phase <= len(self.phases):
            response.accepted = False
            response.message = f"phase {phase} does not exist: valid phases are 1..{len(self.phases)}"
            return response
        if self.evaluation is not None:
            response.accepted = False
            response.message = f"an evaluation of phase {self.evaluation.phase} is already running"
            return response
        if not self.mode_client.service_is_ready():
            response.accepted = False
            response.message = f"the policy's {topics.SET_EVALUATION_MODE_SERVICE} service is not available"
            return response
        phase_cfg = self.phases[phase - 1]
        episodes = int(request.episodes) or phase_cfg.eval_episodes
        self.evaluation = EvaluationAggregator(phase, phase_cfg.thresholds, episodes)
        self.set_policy_evaluation_mode(True)  # supersedes a start-up "off" still pending
        response.accepted = True
        response.message = f"evaluating phase {phase} over {episodes} episodes"
        return response

    def set_policy_evaluation_mode(self, on: bool) -> None:
        self.mode_requests.submit("evaluation_mode", SetBool.Request(data=on))


COMPONENT = RewardEvaluatorNode  # for component_container


def main(args: list[str] | None = None) -> int:
    return run_node(RewardEvaluatorNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
