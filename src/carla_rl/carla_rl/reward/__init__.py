"""Reward terms, episode statistics and evaluation metrics for reward_evaluator (no ROS)."""

from carla_rl.reward.calculator import (TERM_NAMES, RewardCalculator, StepRewardResult,
                                        TerminationReason)
from carla_rl.reward.config import RewardConfig
from carla_rl.reward.evaluation import (EnvShare, EvaluationAggregator, EvaluationResult,
                                        meets_thresholds)
from carla_rl.reward.stats import EpisodeStats, EpisodeStatsAccumulator

NODE_NAME = "reward_evaluator"

__all__ = [
    "NODE_NAME", "TERM_NAMES", "EnvShare", "EpisodeStats", "EpisodeStatsAccumulator", "EvaluationAggregator",
    "EvaluationResult", "RewardCalculator", "RewardConfig", "StepRewardResult",
    "TerminationReason", "meets_thresholds",
]
