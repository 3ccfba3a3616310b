"""The curriculum's phase state machine and its persistence.

Training episodes are counted per phase; evaluations are scheduled every
``evaluate_every_episodes`` and at the end of the phase's budget; a passing evaluation advances
to the next phase (after the last one the curriculum is finished). Passed phases are kept:
:meth:`CurriculumState.next_episode_phase` sends ``review_share`` of the training episodes to
them (round robin), and every ``review_every_evaluations``-th evaluation of the current phase is
followed by one evaluation of each passed phase (reported, and holding back the advance only with
``review_blocks_advance``). Operator phase requests are
held as ``pending_phase`` and applied at the next episode boundary. The state round-trips
through :meth:`CurriculumState.to_dict` / :meth:`from_dict` and is saved atomically, so a resumed
run continues in the same phase with the same counters.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Mapping, Sequence

from carla_rl.contract.atomic_file import atomic_write_bytes
from carla_rl.contract.config import ConfigError
from carla_rl.curriculum.config import BudgetExhaustedPolicy, CurriculumConfig
from carla_rl.reward.evaluation import EvaluationResult
from carla_rl.reward.stats import EpisodeStats
from carla_rl.contract.scenario import PhaseConfig, ScenarioConfig

STATE_FORMAT = "carla_rl.curriculum_state"
STATE_VERSION = 1
NO_PENDING_PHASE = 0


class CurriculumStateError(ValueError):
    """A saved curriculum state cannot be used; the message names the file and the problem."""


class DecisionKind(StrEnum):
    EVALUATE = "evaluate"              # run ``episodes`` evaluation episodes of ``phase`` now (the
                                       # current phase, or a passed one being re-evaluated)
    PHASE_CHANGED = "phase_changed"    # publish the scenario of ``phase`` (applied at resets)
    SAVE = "save"                      # persist the state now
    FINISHED = "finished"              # num_episodes reached: stop training


@dataclass(frozen=True)
class Decision:
    """Something the curriculum manager node must do after an episode ended."""

    kind: DecisionKind
    phase: int
    message: str
    episodes: int = 0


@dataclass
class CurriculumStatusData:
    """Mirror of carla_rl_interfaces/CurriculumStatus (without the header)."""

    phase: int
    phase_name: str
    num_phases: int
    episodes_in_phase: int
    episode_budget: int
    total_episodes: int
    pending_phase: int
    paused: bool
    evaluating: bool
    last_evaluation: EvaluationResult
    history: list[EvaluationResult] = field(default_factory=list)
    finished: bool = False
    passed_phases: list[int] = field(default_factory=list)
    review_episodes: int = 0


class CurriculumState:
    """Phase state machine over the phase table (``load_phase_table`` or ``load_phases``)."""

    def __init__(self, phases: Sequence[PhaseConfig | ConfigError],
                 config: CurriculumConfig) -> None:
        if not phases:
            raise ConfigError("the curriculum has no phases")
        self.phases = list(phases)
        self.config = config
        start_error = self.phase_error(config.initial_phase)
        if start_error:
            raise ConfigError(f"initial_phase: {start_error}")
        self.phase = config.initial_phase
        self.episodes_in_phase = 0
        self.total_episodes = 0
        self.pending_phase = NO_PENDING_PHASE
        self.paused = config.pause_on_start
        self.finished = False
        self.evaluating = False
        self.history: list[EvaluationResult] = []
        self.last_message = ""
        self.next_evaluation_at = self._first_evaluation_at()
        self._episodes_since_save = 0
        # passed phases: kept in training (review episodes) and re-evaluated
        self.passed_phases: set[int] = set()
        self.review_failed: set[int] = set()     # passed phases whose latest re-evaluation failed
        self.review_queue: list[int] = []        # passed phases waiting for their re-evaluation
        self.reviewing = NO_PENDING_PHASE        # the passed phase being re-evaluated now
        self.evaluations_in_phase = 0
        self.review_episodes = 0                 # finished training episodes of passed phases
        self._episodes_assigned = 0
        self._reviews_assigned = 0
        self._review_cursor = 0
        self._reviews_while_failing = 0          # reviews assigned while a passed phase was failing
        self._failed_reviews_assigned = 0        # ... and those of them given to the failing phases
        self._failed_review_cursor = 0

    # -- queries --------------------------------------------------------------------------------
    @property
    def num_phases(self) -> int:
        return len(self.phases)

    @property
    def phase_config(self) -> PhaseConfig:
        return self._valid_phase(self.phase)

    @property
    def scenario(self) -> ScenarioConfig:
        return self.phase_config.scenario

    @property
    def budget_exhausted(self) -> bool:
        return self.episodes_in_phase >= self.phase_config.episode_budget

    def phase_error(self, phase: int) -> str:
        """'' when ``phase`` can be entered, else why not (naming the valid range)."""
        if isinstance(phase, bool) or not isinstance(phase, int) or not (
                1 <= phase <= self.num_phases):
            return f"phase {phase} does not exist: valid phases are 1..{self.num_phases}"
        entry = self.phases[phase - 1]
        if isinstance(entry, ConfigError):
            return (f"phase {phase} has an invalid configuration ({entry}); valid phases are "
                    f"1..{self.num_phases} with a valid configuration")
        return ""

    def evaluation_due(self) -> bool:
        """An evaluation is scheduled and not running (nothing is due while paused/finished)."""
        return (not self.paused and not self.finished and not self.evaluating
                and self.pending_phase == NO_PENDING_PHASE
                and self.episodes_in_phase >= self.next_evaluation_at)

    @property
    def review_phases(self) -> list[int]:
        """Passed phases other than the current one, ascending."""
        return sorted(p for p in self.passed_phases if p != self.phase and not self.phase_error(p))

    def next_episode_phase(self) -> int:
        """Phase of an env's next episode. During an evaluation: the evaluated phase. Otherwise
        ``review_share`` of the calls (deterministically: the k-th review comes at call
        ceil(k / share)) give a passed phase, round robin; the others the current phase. While passed
        phases fail their re-evaluation, ``review_failed_share`` of the reviews go to them."""
        if self.evaluating:
            return self.reviewing or self.phase
        candidates = self.review_phases
        share = self.config.review_share
        if self.finished or not candidates or share <= 0.0:
            return self.phase
        self._episodes_assigned += 1
        if self._reviews_assigned >= int(share * self._episodes_assigned + 1e-9):
            return self.phase
        self._reviews_assigned += 1
        failing = [p for p in candidates if p in self.review_failed]
        if failing:   # spread like the reviews themselves: the k-th at review ceil(k / share) while failing
            self._reviews_while_failing += 1
            due = int(self.config.review_failed_share * self._reviews_while_failing + 1e-9)
            if self._failed_reviews_assigned < due:
                self._failed_reviews_assigned += 1
                phase = failing[self._failed_review_cursor % len(failing)]
                self._failed_review_cursor += 1
                return phase
        phase = candidates[self._review_cursor % len(candidates)]
        self._review_cursor += 1
        return phase

    def status(self) -> CurriculumStatusData:
        return CurriculumStatusData(
            phase=self.phase, phase_name=self.scenario.name, num_phases=self.num_phases,
            episodes_in_phase=self.episodes_in_phase,
            episode_budget=self.phase_config.episode_budget,
            total_episodes=self.total_episodes, pending_phase=self.pending_phase,
            paused=self.paused, evaluating=self.evaluating,
            last_evaluation=self.history[-1] if self.history else EvaluationResult(),
            history=list(self.history), finished=self.finished,
            passed_phases=sorted(self.passed_phases), review_episodes=self.review_episodes)

    # -- events ---------------------------------------------------------------------------------
    def on_episode_end(self, stats: EpisodeStats) -> list[Decision]:
        """Count a finished training episode and say what to do next.

        Evaluation episodes are ignored (they reach :meth:`on_evaluation` through the evaluator).
        An episode that ran in another phase (still on the old scenario) counts in
        ``total_episodes`` only. When an evaluation becomes due an EVALUATE decision is returned
        and the state is marked ``evaluating`` until :meth:`on_evaluation` or
        :meth:`cancel_evaluation`.
        """
        if stats.evaluation:
            return []
        self.total_episodes += 1
        if stats.phase == self.phase:
            self.episodes_in_phase += 1
        elif stats.phase in self.passed_phases:
            self.review_episodes += 1
        self._episodes_since_save += 1
        decisions: list[Decision] = []
        if (self.config.num_episodes and not self.finished
                and self.total_episodes >= self.config.num_episodes):
            self.finished = True
            self.last_message = f"{self.total_episodes} training episodes done: run finished"
            decisions.append(Decision(DecisionKind.FINISHED, self.phase, self.last_message))
        phase_change = self.apply_pending_at_boundary()
        if phase_change is not None:
            decisions.append(phase_change)
        elif self.evaluation_due():
            decisions.append(self.begin_evaluation())
        elif self.review_queue and not (self.evaluating or self.paused or self.finished):
            decisions.append(self.begin_review())
        if phase_change is not None or self._episodes_since_save >= self.config.save_every_episodes:
            self._episodes_since_save = 0
            decisions.append(Decision(DecisionKind.SAVE, self.phase, "save curriculum state"))
        return decisions

    def begin_evaluation(self) -> Decision:
        """Mark an evaluation of the current phase as running (also used for manual requests)."""
        self.evaluating = True
        episodes = self.config.eval_episodes_override or self.phase_config.eval_episodes
        self.last_message = (f"evaluating phase {self.phase} ({self.scenario.name}) over "
                             f"{episodes} episodes after {self.episodes_in_phase} training "
                             f"episodes")
        return Decision(DecisionKind.EVALUATE, self.phase, self.last_message, episodes)

    def begin_review(self) -> Decision:
        """Mark the re-evaluation of the next queued passed phase as running."""
        phase = self.review_queue.pop(0)
        self.evaluating = True
        self.reviewing = phase
        config = self._valid_phase(phase)
        episodes = self.config.eval_episodes_override or config.eval_episodes
        self.last_message = (f"re-evaluating passed phase {phase} ({config.scenario.name}) over "
                             f"{episodes} episodes")
        return Decision(DecisionKind.EVALUATE, phase, self.last_message, episodes)

    def cancel_evaluation(self) -> None:
        """The evaluation could not run; it stays due and is re-issued at the next episode end."""
        if self.reviewing:
            self.review_queue.insert(0, self.reviewing)
            self.reviewing = NO_PENDING_PHASE
        self.evaluating = False

    def on_evaluation(self, result: EvaluationResult) -> bool:
        """Record an evaluation result; returns True when the phase advanced (or the last phase
        was passed and the curriculum finished). A result of the passed phase being re-evaluated
        is recorded (history, ``review_failed``) and never advances."""
        if self.reviewing and result.phase == self.reviewing:
            return self._on_review(result)
        if result.phase != self.phase:
            self.last_message = (f"ignored evaluation of phase {result.phase}: the curriculum is "
                                 f"in phase {self.phase}")
            return False
        self.evaluating = False
        self.history.append(result)
        del self.history[:-self.config.history_length]
        self.evaluations_in_phase += 1
        every = self.config.review_every_evaluations
        if every and self.evaluations_in_phase % every == 0:
            self.review_queue = [p for p in self.review_phases if p not in self.review_queue] + [
                p for p in self.review_queue if p != self.phase]
        held = sorted(self.review_failed & set(self.review_phases))
        if result.passed and self.config.review_blocks_advance and held:
            self.review_queue = held + [p for p in self.review_queue if p not in held]
            self.next_evaluation_at = self.episodes_in_phase + max(
                1, self.config.evaluate_every_episodes or self.config.reevaluate_every_episodes)
            self.last_message = (f"phase {self.phase} passed its evaluation, but passed phase(s) "
                                 f"{held} failed their latest re-evaluation "
                                 f"(review_blocks_advance): re-evaluating them, next evaluation after "
                                 f"{self.next_evaluation_at} training episodes")
            return False
        if result.passed:
            self.passed_phases.add(self.phase)
            self.review_failed.discard(self.phase)
            return self._advance(f"phase {self.phase} passed its evaluation")
        if not self.budget_exhausted:
            self.next_evaluation_at = self._scheduled_evaluation_after(self.episodes_in_phase)
            self.last_message = (f"phase {self.phase} failed its evaluation; next one after "
                                 f"{self.next_evaluation_at} training episodes")
            return False
        policy = BudgetExhaustedPolicy(self.config.on_budget_exhausted)
        if policy is BudgetExhaustedPolicy.ADVANCE:
            return self._advance(f"phase {self.phase} failed its evaluation with its budget "
                                 f"spent; advancing anyway (on_budget_exhausted: advance)")
        self.next_evaluation_at = self.episodes_in_phase + self.config.reevaluate_every_episodes
        if policy is BudgetExhaustedPolicy.PAUSE:
            self.paused = True
            self.last_message = (f"phase {self.phase} failed its evaluation with its budget "
                                 f"spent; curriculum paused (on_budget_exhausted: pause)")
        else:
            self.last_message = (f"phase {self.phase} failed its evaluation with its budget "
                                 f"spent; training on, next evaluation after "
                                 f"{self.next_evaluation_at} training episodes")
        return False

    def _on_review(self, result: EvaluationResult) -> bool:
        self.evaluating = False
        self.reviewing = NO_PENDING_PHASE
        self.history.append(result)
        del self.history[:-self.config.history_length]
        if result.passed:
            self.review_failed.discard(result.phase)
        else:
            self.review_failed.add(result.phase)
        self.last_message = (f"passed phase {result.phase} re-evaluated: goal rate "
                             f"{result.goal_rate:.2f} -> {'held' if result.passed else 'failed'}")
        return False

    def request_phase(self, phase: int) -> tuple[bool, str]:
        """Operator request (SetPhase): the phase starts at the next episode boundary."""
        error = self.phase_error(phase)
        if error:
            return False, error
        name = self._valid_phase(phase).scenario.name
        if phase == self.phase and self.pending_phase == NO_PENDING_PHASE:
            return True, f"already in phase {phase} ({name})"
        self.pending_phase = NO_PENDING_PHASE if phase == self.phase else phase
        if self.pending_phase == NO_PENDING_PHASE:
            return True, f"pending change cancelled; staying in phase {phase} ({name})"
        return True, f"phase {phase} ({name}) starts at the next episode boundary"

    def apply_pending_at_boundary(self) -> Decision | None:
        """Enter the pending phase, if any (call at an episode boundary)."""
        if self.pending_phase == NO_PENDING_PHASE:
            return None
        target = self.pending_phase
        self.pending_phase = NO_PENDING_PHASE
        error = self.phase_error(target)
        if error:  # the table changed under us; keep the current phase
            self.last_message = f"pending phase dropped: {error}"
            return None
        self._enter(target)
        self.finished = False
        self.last_message = f"entered phase {target} ({self.scenario.name}) on request"
        return Decision(DecisionKind.PHASE_CHANGED, target, self.last_message)

    def set_paused(self, paused: bool) -> str:
        self.paused = paused
        self.last_message = "curriculum paused" if paused else "curriculum resumed"
        return self.last_message

    # -- persistence ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "num_phases": self.num_phases,
            "phase": self.phase,
            "episodes_in_phase": self.episodes_in_phase,
            "total_episodes": self.total_episodes,
            "pending_phase": self.pending_phase,
            "paused": self.paused,
            "finished": self.finished,
            "next_evaluation_at": self.next_evaluation_at,
            "history": [result.to_dict() for result in self.history],
            "passed_phases": sorted(self.passed_phases),
            "review_failed": sorted(self.review_failed),
            "evaluations_in_phase": self.evaluations_in_phase,
            "review_episodes": self.review_episodes,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], phases: Sequence[PhaseConfig | ConfigError],
                  config: CurriculumConfig, where: str = "curriculum state") -> "CurriculumState":
        """Restore a saved state; a running evaluation is not restored (it becomes due again)."""
        if not isinstance(data, Mapping):
            raise CurriculumStateError(f"{where}: expected a JSON object")
        if data.get("format") != STATE_FORMAT or data.get("version") != STATE_VERSION:
            raise CurriculumStateError(
                f"{where}: not a {STATE_FORMAT} version {STATE_VERSION} file "
                f"(format {data.get('format')!r}, version {data.get('version')!r})")
        counters = {}
        for key in ("phase", "episodes_in_phase", "total_episodes", "pending_phase",
                    "next_evaluation_at"):
            value = data.get(key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise CurriculumStateError(f"{where}: {key}: expected a non-negative integer, "
                                           f"got {value!r}")
            counters[key] = value
        flags = {}
        for key in ("paused", "finished"):
            if not isinstance(data.get(key), bool):
                raise CurriculumStateError(f"{where}: {key}: expected true/false, "
                                           f"got {data.get(key)!r}")
            flags[key] = data[key]
        history_data = data.get("history")
        if not isinstance(history_data, list):
            raise CurriculumStateError(f"{where}: history: expected a list")
        try:
            history = [EvaluationResult.from_dict(item) for item in history_data]
        except (TypeError, ValueError) as exc:
            raise CurriculumStateError(f"{where}: history: {exc}") from None
        state = cls(phases, config)
        # passed phases: absent from older files, which knew only the phases before the current one
        review = {}
        for key, default in (("passed_phases", list(range(1, counters["phase"]))),
                             ("review_failed", [])):
            value = data.get(key, default)
            if not isinstance(value, list) or any(
                    isinstance(p, bool) or not isinstance(p, int) or state.phase_error(p)
                    for p in value):
                raise CurriculumStateError(f"{where}: {key}: expected a list of valid phases, "
                                           f"got {value!r}")
            review[key] = set(value)
        for key in ("evaluations_in_phase", "review_episodes"):
            value = data.get(key, 0)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise CurriculumStateError(f"{where}: {key}: expected a non-negative integer, "
                                           f"got {value!r}")
            review[key] = value
        phase_error = state.phase_error(counters["phase"])
        if phase_error:
            raise CurriculumStateError(f"{where}: phase: {phase_error}")
        pending = counters["pending_phase"]
        if pending != NO_PENDING_PHASE and state.phase_error(pending):
            raise CurriculumStateError(f"{where}: pending_phase: {state.phase_error(pending)}")
        state.phase = counters["phase"]
        state.episodes_in_phase = counters["episodes_in_phase"]
        state.total_episodes = counters["total_episodes"]
        state.pending_phase = pending
        state.next_evaluation_at = counters["next_evaluation_at"]
        state.paused = flags["paused"]
        state.finished = flags["finished"]
        state.history = history[-config.history_length:]
        state.passed_phases = review["passed_phases"]
        state.review_failed = review["review_failed"] & state.passed_phases
        state.evaluations_in_phase = review["evaluations_in_phase"]
        state.review_episodes = review["review_episodes"]
        return state

    def save(self, path: Path) -> None:
        """Write the state atomically: temp file in the same folder, fsync, rename, fsync folder."""
        atomic_write_bytes(path, json.dumps(self.to_dict(), indent=2, sort_keys=True).encode())

    @classmethod
    def load(cls, path: Path, phases: Sequence[PhaseConfig | ConfigError],
             config: CurriculumConfig) -> "CurriculumState":
        path = Path(path)
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise CurriculumStateError(f"{path}: curriculum state file not found") from None
        except OSError as exc:
            raise CurriculumStateError(f"{path}: cannot read: {exc}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CurriculumStateError(f"{path}: corrupt curriculum state (invalid JSON at line "
                                       f"{exc.lineno}, column {exc.colno}: {exc.msg})") from None
        return cls.from_dict(data, phases, config, where=str(path))

    @classmethod
    def load_or_create(cls, path: Path | None, phases: Sequence[PhaseConfig | ConfigError],
                       config: CurriculumConfig) -> "CurriculumState":
        """Resume from ``path`` when ``config.resume`` and the file exists, else start fresh."""
        if path is not None and config.resume and Path(path).exists():
            return cls.load(path, phases, config)
        return cls(phases, config)

    # -- internals ------------------------------------------------------------------------------
    def _valid_phase(self, phase: int) -> PhaseConfig:
        entry = self.phases[phase - 1]
        if isinstance(entry, ConfigError):
            raise entry
        return entry

    def set_config(self, config: CurriculumConfig) -> None:
        """A changed schedule (run-time parameters): a new evaluation cadence reschedules the next
        regular evaluation of the phase from the episodes run so far."""
        old, self.config = self.config, config
        if (config.evaluate_every_episodes != old.evaluate_every_episodes and not self.evaluating
                and self.episodes_in_phase < self.phase_config.episode_budget):
            self.next_evaluation_at = self._scheduled_evaluation_after(self.episodes_in_phase)

    def _first_evaluation_at(self) -> int:
        return self._scheduled_evaluation_after(0)

    def _scheduled_evaluation_after(self, episodes: int) -> int:
        """The next evaluation point after ``episodes``: the next multiple of K, capped at the
        budget (K = 0: the budget)."""
        budget = self.phase_config.episode_budget
        every = self.config.evaluate_every_episodes
        if every == 0:
            return budget
        return min((episodes // every + 1) * every, budget)

    def _enter(self, phase: int) -> None:
        self.phase = phase
        self.episodes_in_phase = 0
        self.evaluations_in_phase = 0
        self.evaluating = False
        self.reviewing = NO_PENDING_PHASE
        self.review_queue = [p for p in self.review_queue if p != phase]
        self.next_evaluation_at = self._first_evaluation_at()
        if self.pending_phase == phase:
            self.pending_phase = NO_PENDING_PHASE

    def _advance(self, why: str) -> bool:
        if self.phase == self.num_phases:
            self.finished = True
            self.last_message = f"{why}; curriculum finished"
            return True
        error = self.phase_error(self.phase + 1)
        if error:
            self.paused = True
            self.last_message = f"{why} but cannot advance: {error}; curriculum paused"
            return False
        self._enter(self.phase + 1)
        self.last_message = f"{why}; entered phase {self.phase} ({self.scenario.name})"
        return True
