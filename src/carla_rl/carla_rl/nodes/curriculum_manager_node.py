"""curriculum_manager: the 10-phase curriculum, advanced by evaluation, steerable over services.

Publishes the scenario of the current phase (latched; simulators apply it at their next episode
boundary) and its status (latched). Counts training episodes from /carla_rl/episode_stats, asks
reward_evaluator for evaluations on schedule (/carla_rl/evaluate), advances on a passing
/carla_rl/evaluation_result, and persists its state next to the checkpoints so a resumed run goes on
in the same phase with the same counters. Services: set_phase, get_status, evaluate_now, pause, resume.

Passed phases are kept (CurriculumConfig.review_share, review_every_evaluations): when an env's
episode ends, the core picks the phase of that env's next episode, and an env that must change phase
gets its scenario through <env>/load_scenario (applied at its next episode boundary); a re-evaluation
of a passed phase loads that phase into every env first.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from std_srvs.srv import SetBool, Trigger

from carla_rl.nodes.support import ros_conversions as conv
from carla_rl.contract import topics
from carla_rl.contract.config import ConfigError, param
from carla_rl.curriculum import (CurriculumConfig, CurriculumState, CurriculumStateError, Decision,
                                 DecisionKind)
from carla_rl.nodes.support import qos_profiles as qos
from carla_rl.nodes.support.diagnostics import DiagnosticsReporter
from carla_rl.nodes.support.intra_process import ComposableNode
from carla_rl.nodes.support.node_runner import run_node
from carla_rl.nodes.support.ros_parameters import declare_config, declare_phases
from carla_rl.nodes.support.service_calls import ResentRequests
from carla_rl.reward import EvaluationResult
from carla_rl_interfaces.msg import CurriculumStatus
from carla_rl_interfaces.msg import EpisodeStats as EpisodeStatsMsg
from carla_rl_interfaces.msg import EvaluationResult as EvaluationResultMsg
from carla_rl_interfaces.msg import ScenarioConfig as ScenarioConfigMsg
from carla_rl_interfaces.srv import Evaluate, GetStatus, LoadScenario, SaveCheckpoint, SetPhase


EVALUATION_CHECK_PERIOD_S = 5.0  # longest between two looks at a running evaluation's age


@dataclass(frozen=True)
class CurriculumNodeConfig:
    save_dir: str = param("runs/latest", "Run directory: the state file and checkpoints live here",
                          read_only=True)
    load_from: str = param("", "Checkpoint being resumed; its run directory's state file is loaded",
                           read_only=True)
    training: bool = param(True, "False: evaluation-only run (no schedule, no advancement)", read_only=True)
    diagnostics_period_s: float = param(1.0, "Heartbeat / counters period", low=0.05, high=60.0,
                                        runtime=True)
    service_resend_s: float = param(2.0, "A learning on/off request to the policy unanswered this long is sent "
                                         "again; one waiting for the service to come up (so too a checkpoint "
                                         "request) is sent within this long of it", low=0.1, high=600.0)


def result_from_msg(msg: EvaluationResultMsg) -> EvaluationResult:
    return EvaluationResult(phase=msg.phase, episodes=msg.episodes, goal_rate=msg.goal_rate,
                            collision_free_rate=msg.collision_free_rate,
                            sidewalk_free_rate=msg.sidewalk_free_rate, mean_reward=msg.mean_reward,
                            passed=msg.passed, stamp_s=conv.time_seconds(msg.stamp))


def result_msg(result: EvaluationResult) -> EvaluationResultMsg:
    return EvaluationResultMsg(stamp=conv.time_msg(result.stamp_s), phase=int(result.phase),
                               episodes=int(result.episodes), goal_rate=float(result.goal_rate),
                               collision_free_rate=float(result.collision_free_rate),
                               sidewalk_free_rate=float(result.sidewalk_free_rate),
                               mean_reward=float(result.mean_reward), passed=bool(result.passed))


class CurriculumManagerNode(ComposableNode):
    def __init__(self, **node_options) -> None:  # alone, or composed: see nodes/component_container.py
        super().__init__("curriculum_manager", **node_options)
        self.cfg = declare_config(self, CurriculumNodeConfig, apply=self.apply_node_config)
        self.cur_cfg = declare_config(self, CurriculumConfig, apply=self.apply_curriculum_config)
        self.phases = declare_phases(self, tolerant=True)
        self.state_path = self._state_path(Path(self.cfg.save_dir))
        resume_path = self.state_path
        if self.cfg.load_from:
            resume_path = self._state_path(Path(self.cfg.load_from).resolve().parent.parent)
        if self.cur_cfg.resume and resume_path is not None and resume_path.is_file():
            try:
                self.state = CurriculumState.load(resume_path, self.phases, self.cur_cfg)
            except CurriculumStateError as exc:  # one line, the file is left as it is
                raise ConfigError(f"cannot resume the curriculum: {exc}") from None
            self.get_logger().info(f"resumed curriculum from {resume_path}: phase {self.state.phase}, "
                                   f"{self.state.total_episodes} episodes")
        else:
            self.state = CurriculumState(self.phases, self.cur_cfg)
        self.diag = DiagnosticsReporter(self, self.cfg.diagnostics_period_s)
        self.scenario_pub = self.create_publisher(ScenarioConfigMsg, topics.SCENARIO, qos.LATCHED)
        self.status_pub = self.create_publisher(CurriculumStatus, topics.CURRICULUM_STATUS, qos.LATCHED)
        self.create_subscription(EpisodeStatsMsg, topics.EPISODE_STATS, self.on_episode, qos.EVENTS)
        self.create_subscription(EvaluationResultMsg, topics.EVALUATION_RESULT, self.on_evaluation, qos.EVENTS)
        self.create_service(SetPhase, topics.SET_PHASE_SERVICE, self.on_set_phase)
        self.create_service(GetStatus, topics.GET_STATUS_SERVICE, self.on_get_status)
        self.create_service(Trigger, topics.EVALUATE_NOW_SERVICE, self.on_evaluate_now)
        self.create_service(Trigger, topics.PAUSE_SERVICE, lambda req, res: self.on_pause(True, res))
        self.create_service(Trigger, topics.RESUME_SERVICE, lambda req, res: self.on_pause(False, res))
        self.evaluate_client = self.create_client(Evaluate, topics.EVALUATE_SERVICE)
        self.learning_client = self.create_client(SetBool, topics.SET_LEARNING_SERVICE)
        self.checkpoint_client = self.create_client(SaveCheckpoint, topics.SAVE_CHECKPOINT_SERVICE)
        # kept until the policy answers: it may not be up yet, or restarting (service_calls.ResentRequests)
        self.learning_requests = ResentRequests(self.learning_client, self.cfg.service_resend_s)
        # a save can take seconds (with the replay): held until the service is up, then sent once
        self.checkpoint_requests = ResentRequests(self.checkpoint_client, resend_s=None)
        self.create_timer(self.cfg.service_resend_s, self.resend_requests)
        self.learning_requested = True  # what the policy was last asked for (it starts learning)
        self.best_goal_rate: dict[int, float] = {}
        # envs seen in the episode statistics: their load_scenario clients, the phase each was last given
        # (absent: the current phase, from the latched scenario topic) and the one it should run next
        self.scenario_clients: dict[int, object] = {}
        self.env_phase: dict[int, int] = {}
        self.env_wanted: dict[int, int] = {}
        self.evaluation_requested_at: float | None = None  # monotonic time of the running evaluation's request
        if self.cur_cfg.evaluation_timeout_s > 0.0:
            self.create_timer(min(self.cur_cfg.evaluation_timeout_s / 4.0, EVALUATION_CHECK_PERIOD_S),
                              self.check_evaluation_timeout)
        self.publish_scenario(self.state.phase)
        self.publish_status()

    def apply_node_config(self, cfg: CurriculumNodeConfig) -> None:
        self.cfg = cfg
        self.diag.set_period(cfg.diagnostics_period_s)

    def apply_curriculum_config(self, cfg: CurriculumConfig) -> None:
        """A run-time parameter of the schedule was set: the state machine goes on under it."""
        self.cur_cfg = cfg
        self.state.set_config(cfg)

    def _state_path(self, run_dir: Path) -> Path | None:
        return run_dir / self.cur_cfg.state_file if self.cur_cfg.state_file else None

    # --- publishing ---------------------------------------------------------------------------------
    def publish_scenario(self, phase: int) -> None:
        self.scenario_pub.publish(conv.scenario_msg(phase, self.phases[phase - 1].scenario))
        self.env_phase.clear()  # every simulator takes the latched scenario at its next reset
        self.env_wanted.clear()

    def scenario_client(self, env_id: int):
        """The <env>/load_scenario client of an env (created when the env is first seen)."""
        if env_id not in self.scenario_clients:
            self.scenario_clients[env_id] = self.create_client(
                LoadScenario, f"{topics.env_namespace(env_id)}/{topics.LOAD_SCENARIO_SERVICE}")
        return self.scenario_clients[env_id]

    def steer_env(self, env_id: int, phase: int) -> None:
        """Have env ``env_id``'s next episode run in ``phase``: its scenario is loaded now, or (the
        service not up yet) by the resend timer."""
        self.env_wanted[env_id] = phase
        self.send_scenario(env_id)

    def send_scenario(self, env_id: int) -> None:
        phase = self.env_wanted.get(env_id)
        if phase is None or self.env_phase.get(env_id, self.state.phase) == phase:
            return
        client = self.scenario_client(env_id)
        if not client.service_is_ready():
            self.diag.count("scenario_loads_waiting")
            return
        scenario = conv.scenario_msg(phase, self.phases[phase - 1].scenario)
        client.call_async(LoadScenario.Request(scenario=scenario, apply_now=False))
        self.env_phase[env_id] = phase
        self.diag.count("scenario_loads")

    def status_msg(self) -> CurriculumStatus:
        data = self.state.status()
        msg = CurriculumStatus()
        msg.header.stamp = self.get_clock().now().to_msg()
        for name in ("phase", "phase_name", "num_phases", "episodes_in_phase", "episode_budget",
                     "total_episodes", "pending_phase", "paused", "evaluating", "finished"):
            setattr(msg, name, type(getattr(msg, name))(getattr(data, name)))
        msg.last_evaluation = result_msg(data.last_evaluation)
        msg.history = [result_msg(r) for r in data.history]
        return msg

    def publish_status(self) -> None:
        self.status_pub.publish(self.status_msg())
        self.sync_learning()

    def sync_learning(self, force: bool = False) -> None:
        """Ask the policy to stop learning while the curriculum is paused, however it got paused
        (the pause service, pause_on_start, a resumed paused state, on_budget_exhausted: pause,
        a phase it cannot enter), and to learn again once resumed. ``force``: ask even if that
        was the last request (an explicit pause / resume)."""
        learning = not self.state.paused
        if force or learning != self.learning_requested:
            self.learning_requested = learning
            # kept until the policy answers (it may not be up yet)
            self.learning_requests.submit("learning", SetBool.Request(data=learning))

    def save_state(self) -> None:
        if self.state_path is not None:
            self.state_path.parent.mkdir(parents=True, exist_ok=True)
            self.state.save(self.state_path)

    # --- events -------------------------------------------------------------------------------------
    def on_episode(self, msg: EpisodeStatsMsg) -> None:
        if not self.cfg.training:
            return
        self.scenario_client(int(msg.env_id))
        for decision in self.state.on_episode_end(conv.episode_stats_from_msg(msg)):
            self.apply(decision)
        self.steer_env(int(msg.env_id), self.state.next_episode_phase())
        self.publish_status()

    def apply(self, decision: Decision) -> None:
        # a save follows every episode end (several a second with many envs): DEBUG; evaluations, phase
        # changes and the end of training at INFO
        log = self.get_logger()
        (log.debug if decision.kind == DecisionKind.SAVE else log.info)(decision.message)
        if decision.kind == DecisionKind.EVALUATE:
            self.request_evaluation(decision)
        elif decision.kind == DecisionKind.PHASE_CHANGED:
            self.publish_scenario(decision.phase)
        elif decision.kind == DecisionKind.SAVE:
            self.save_state()

    def request_evaluation(self, decision: Decision) -> None:
        if not self.evaluate_client.service_is_ready():
            self.state.cancel_evaluation()
            self.diag.count("evaluations_unavailable")
            return
        for env_id in list(self.scenario_clients):  # a passed phase re-evaluated: every env goes there
            self.steer_env(env_id, decision.phase)
        self.evaluation_requested_at = time.monotonic()
        future = self.evaluate_client.call_async(Evaluate.Request(phase=decision.phase,
                                                                  episodes=decision.episodes))

        def done(f) -> None:
            response = f.result()
            if response is None or not response.accepted:
                self.state.cancel_evaluation()
                self.get_logger().warn(f"evaluation not started: {getattr(response, 'message', 'no answer')}")
                self.publish_status()

        future.add_done_callback(done)

    def check_evaluation_timeout(self) -> None:
        started = self.evaluation_requested_at
        if not self.state.evaluating or started is None:
            return
        waited = time.monotonic() - started
        if waited <= self.cur_cfg.evaluation_timeout_s:
            return
        self.state.cancel_evaluation()
        self.evaluation_requested_at = None
        self.diag.count("evaluations_timed_out")
        self.get_logger().warn(f"no evaluation result {waited:.0f} s after the request (timeout "
                               f"{self.cur_cfg.evaluation_timeout_s:.0f} s): requested again at the next episode end")
        self.publish_status()

    def on_evaluation(self, msg: EvaluationResultMsg) -> None:
        result = result_from_msg(msg)
        phase_before = self.state.phase
        if result.passed or result.goal_rate > self.best_goal_rate.get(result.phase, -1.0):
            self.best_goal_rate[result.phase] = max(result.goal_rate, self.best_goal_rate.get(result.phase, -1.0))
            self.save_checkpoint(f"best_phase_{result.phase}")
        reviewed = self.state.reviewing == result.phase
        advanced = self.state.on_evaluation(result) if self.cfg.training else False
        self.get_logger().info(self.state.last_message)
        if reviewed:
            for env_id in list(self.scenario_clients):  # back to training
                self.steer_env(env_id, self.state.next_episode_phase())
        if advanced:
            self.save_checkpoint(f"phase_complete_{phase_before}")
            if self.state.phase != phase_before:
                self.publish_scenario(self.state.phase)
        self.save_state()
        self.publish_status()

    def save_checkpoint(self, tag: str) -> None:
        self.checkpoint_requests.submit(tag, SaveCheckpoint.Request(path="", tag=tag))

    def resend_requests(self) -> None:
        for env_id in list(self.env_wanted):
            self.send_scenario(env_id)
        for name, requests in (("learning", self.learning_requests), ("checkpoint", self.checkpoint_requests)):
            requests.poll()
            self.diag.values[f"{name}_requests_pending"] = str(len(requests.pending))
            self.diag.values[f"{name}_requests_resent"] = str(requests.counts["resent"])

    # --- services -----------------------------------------------------------------------------------
    def on_set_phase(self, request: SetPhase.Request, response: SetPhase.Response):
        response.success, response.message = self.state.request_phase(int(request.phase))
        if response.success and self.state.pending_phase:
            self.publish_scenario(self.state.pending_phase)  # simulators apply it at their next reset
        self.publish_status()
        return response

    def on_get_status(self, request: GetStatus.Request, response: GetStatus.Response):
        response.status = self.status_msg()
        return response

    def on_evaluate_now(self, request: Trigger.Request, response: Trigger.Response):
        if self.state.evaluating:
            response.success, response.message = False, "an evaluation is already running"
            return response
        if not self.evaluate_client.service_is_ready():
            response.success = False
            response.message = f"{topics.EVALUATE_SERVICE} is not available (is reward_evaluator running?)"
            return response
        decision = self.state.begin_evaluation()
        self.request_evaluation(decision)
        self.publish_status()
        response.success, response.message = True, decision.message
        return response

    def on_pause(self, paused: bool, response: Trigger.Response):
        response.message = self.state.set_paused(paused)
        self.sync_learning(force=True)
        self.publish_status()
        self.save_state()
        response.success = True
        return response


def main(args: list[str] | None = None) -> int:
    return run_node(CurriculumManagerNode, args)


COMPONENT = CurriculumManagerNode  # for component_container

if __name__ == "__main__":
    raise SystemExit(main())
