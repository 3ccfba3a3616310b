"""Curriculum manager settings (``curriculum_manager`` block of config/curriculum.yaml) and the
phase table (the ``/**`` block, read by ``carla_rl.contract.scenario``)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from carla_rl.contract.config import ConfigError, from_mapping, node_parameters, param
from carla_rl.contract.scenario import PhaseConfig, load_phases

NODE_NAME = "curriculum_manager"
# Keys of the shared /** block that belong to the phase table, not to CurriculumConfig.
PHASE_TABLE_KEYS = ("num_phases", "phases")


class BudgetExhaustedPolicy(StrEnum):
    """What happens when a phase's episode budget is used up and its evaluation failed."""

    KEEP_TRAINING = "keep_training"     # train on, re-evaluate every reevaluate_every_episodes
    PAUSE = "pause"                     # pause the curriculum until an operator acts
    ADVANCE = "advance"                 # move on to the next phase anyway


@dataclass(frozen=True)
class CurriculumConfig:
    """Evaluation schedule and persistence of the phase state machine."""

    initial_phase: int = param(1, "Phase of a fresh run (a resumed run keeps its saved phase)",
                               low=1, high=1000)
    num_episodes: int = param(0, "Training episodes of the whole run, then the curriculum is "
                              "finished; 0 = until the last phase is passed", low=0,
                              high=1_000_000_000)
    eval_episodes_override: int = param(0, "Episodes per evaluation for every phase; 0 = each "
                                        "phase's eval_episodes", low=0, high=10_000)
    evaluate_every_episodes: int = param(25, "Evaluate after every K training episodes of a phase "
                                         "(and always at the end of its budget); 0 = only at the "
                                         "end of the budget", low=0, high=10_000_000, runtime=True)
    on_budget_exhausted: str = param(BudgetExhaustedPolicy.KEEP_TRAINING.value,
                                     "After a failed evaluation at or past the budget",
                                     choices=tuple(p.value for p in BudgetExhaustedPolicy))
    reevaluate_every_episodes: int = param(25, "Past the budget (keep_training): training "
                                           "episodes between re-evaluations", low=1,
                                           high=10_000_000, runtime=True)
    pause_on_start: bool = param(False, "Start paused: episodes are counted but nothing is "
                                 "evaluated or advanced until resumed")
    history_length: int = param(100, "Evaluation results kept in the state (oldest dropped)",
                                low=1, high=100_000)
    state_file: str = param("curriculum_state.json", "Persistent state, relative to the run "
                            "directory; empty = do not persist")
    resume: bool = param(True, "Continue from state_file when it exists")
    save_every_episodes: int = param(1, "Save the state after every N counted training episodes "
                                     "(and after every phase change)", low=1, high=100_000,
                                     runtime=True)
    review_share: float = param(0.2, "Share of training episodes run in phases already passed (round "
                                "robin over them; the rest in the current phase): one policy must keep "
                                "every phase it passed. Trained on the current phase alone, the agent "
                                "that had passed phases 1-5 later reached the goal in 0.4 of phase 2's "
                                "and none of phase 3's evaluation episodes. 0 = current phase only",
                                low=0.0, high=0.9, runtime=True)
    review_failed_share: float = param(0.5, "Share of the review episodes given to passed phases whose latest "
                                       "re-evaluation failed (round robin over them; the rest round robin "
                                       "over every passed phase): a phase that is slipping is trained "
                                       "back first. 0 = no preference", low=0.0, high=1.0, runtime=True)
    review_every_evaluations: int = param(4, "After every K-th evaluation of the current phase, each "
                                          "passed phase is evaluated once more (reported like any "
                                          "evaluation, by its phase); 0 = never", low=0,
                                          high=100_000,
                                          runtime=True)
    review_blocks_advance: bool = param(False, "A passed phase whose latest re-evaluation failed holds "
                                        "back the advance out of the current phase until it passes "
                                        "again (false: re-evaluations only report)")
    evaluation_timeout_s: float = param(1800.0, "ROS graph: an evaluation without a result this long after "
                                        "its request is given up and requested again at the next episode "
                                        "end (the evaluator restarted, or its answer was lost); 0 = wait "
                                        "forever", low=0.0, high=1e6)


def load_curriculum_config(path: Path) -> CurriculumConfig:
    """CurriculumConfig from the ``curriculum_manager`` block (the phase table keys are skipped)."""
    params = {key: value for key, value in node_parameters(path, NODE_NAME).items()
              if key not in PHASE_TABLE_KEYS}
    try:
        return from_mapping(CurriculumConfig, params, "")
    except ConfigError as exc:
        raise ConfigError(f"{path}: {NODE_NAME}: {exc}") from None


def load_phase_table(path: Path) -> list[PhaseConfig | ConfigError]:
    """Phases 1..num_phases of ``curriculum.yaml``, each validated on its own.

    Unlike :func:`carla_rl.contract.scenario.load_phases` a broken phase does not fail the whole table: its
    entry is the :class:`ConfigError` (naming file and key), so the manager can refuse to enter
    it and still run the others. A broken table layout (num_phases, missing or extra phases)
    raises.
    """
    return load_phases(path, tolerant=True)
