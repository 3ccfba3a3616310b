"""Curriculum phase state machine, evaluation schedule and persistence (no ROS)."""

from carla_rl.curriculum.config import (NODE_NAME, BudgetExhaustedPolicy, CurriculumConfig,
                                        load_curriculum_config, load_phase_table)
from carla_rl.curriculum.state import (CurriculumState, CurriculumStateError,
                                       CurriculumStatusData, Decision, DecisionKind)

__all__ = [
    "NODE_NAME", "BudgetExhaustedPolicy", "CurriculumConfig", "CurriculumState",
    "CurriculumStateError", "CurriculumStatusData", "Decision", "DecisionKind",
    "load_curriculum_config", "load_phase_table",
]
