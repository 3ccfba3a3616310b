"""Topic and service names of the stack, one place (the contract of docs/ARCHITECTURE.md).

Per-env names are relative: they resolve inside the env's namespace (``/env_<i>``). The simulator
boundary follows the CARLA ROS bridge (``carla/<role_name>/...``); stack-wide services and latched
topics are absolute under ``/carla_rl``.
"""

from __future__ import annotations

DEFAULT_ROLE_NAME = "ego_vehicle"


def carla_topic(role_name: str, name: str) -> str:
    return f"carla/{role_name}/{name}"


# simulator -> (bridge contract; relative to the env namespace)
CAMERA = "semantic_bev/image"          # sensor_msgs/Image, CARLA semantic palette, rgb8
LIDAR = "lidar"                        # sensor_msgs/PointCloud2 (x, y, z, intensity)
RADAR = "radar_front"                  # sensor_msgs/PointCloud2 (range, azimuth, elevation, velocity)
ODOMETRY = "odometry"                  # nav_msgs/Odometry
SPEEDOMETER = "speedometer"            # std_msgs/Float32
COLLISION = "collision"                # carla_rl_interfaces/CollisionEvent
LANE_INVASION = "lane_invasion"        # carla_rl_interfaces/LaneInvasionEvent
SITUATION = "situation"                # carla_rl_interfaces/EgoSituation (last message of a tick)
ROUTE = "waypoints"                    # nav_msgs/Path (latched; the bridge's waypoint topic name)
CLOCK = "clock"                        # rosgraph_msgs/Clock (resolves to /clock without a namespace)
MARKERS = "markers"                    # visualization_msgs/MarkerArray (dynamic actors, lights)
MAP_MARKERS = "map_markers"            # visualization_msgs/MarkerArray (latched: roads, lanes)
TOPDOWN_IMAGE = "topdown/image"        # sensor_msgs/Image, human-oriented render (low rate)
RESET_SERVICE = "reset_episode"        # carla_rl_interfaces/ResetEpisode
LOAD_SCENARIO_SERVICE = "load_scenario"  # carla_rl_interfaces/LoadScenario

# stack nodes (relative to the env namespace)
OBSERVATION = "observation"            # carla_rl_interfaces/Observation
STEP_REWARD = "step_reward"            # carla_rl_interfaces/StepReward
VEHICLE_COMMAND = "vehicle_command"    # carla_rl_interfaces/VehicleCommand (the CARLA adapter turns it
                                       # into carla_msgs/CarlaEgoVehicleControl on .../vehicle_control_cmd)

# batch link (composition halves; carla_rl.graph.batch_link): the envs of a container apart from the policy
# publish and take the three names above under <env>/link/, and their container's link exchanges them
# with the policy's link as one sample per tick on these (relative to the links' namespace)
LINK_PREFIX = "link"
ENV_STEP_BATCH = "env_step_batch"      # carla_rl_interfaces/EnvStepBatch (envs' link -> policy's link)
VEHICLE_COMMAND_BATCH = "vehicle_command_batch"  # carla_rl_interfaces/VehicleCommandBatch (the answer)


def linked(name: str) -> str:
    """The name under which an env apart from the policy publishes or takes a per-env topic."""
    return f"{LINK_PREFIX}/{name}"


# stack-wide (absolute)
SCENARIO = "/carla_rl/scenario"                    # ScenarioConfig, latched
CURRICULUM_STATUS = "/carla_rl/curriculum_status"  # CurriculumStatus, latched
EPISODE_STATS = "/carla_rl/episode_stats"          # EpisodeStats
EVALUATION_RESULT = "/carla_rl/evaluation_result"  # EvaluationResult
TRAINING_STATS = "/carla_rl/training_stats"        # TrainingStats
SET_PHASE_SERVICE = "/carla_rl/set_phase"          # SetPhase
GET_STATUS_SERVICE = "/carla_rl/get_status"        # GetStatus
EVALUATE_NOW_SERVICE = "/carla_rl/evaluate_now"    # std_srvs/Trigger (curriculum: run an evaluation)
EVALUATE_SERVICE = "/carla_rl/evaluate"            # Evaluate (reward_evaluator runs the episodes)
PAUSE_SERVICE = "/carla_rl/pause"                  # std_srvs/Trigger
RESUME_SERVICE = "/carla_rl/resume"                # std_srvs/Trigger
SAVE_CHECKPOINT_SERVICE = "/carla_rl/save_checkpoint"      # SaveCheckpoint
SET_EVALUATION_MODE_SERVICE = "/carla_rl/set_evaluation_mode"  # std_srvs/SetBool
SET_LEARNING_SERVICE = "/carla_rl/set_learning"    # std_srvs/SetBool (learner thread on/off)


def env_namespace(env_id: int) -> str:
    return f"/env_{env_id}"

# /diagnostics: a node that is about to be busy for long (the learner's first torch.compile, which can starve
# its process's executor for tens of seconds) says so in each status: the value of this key [s] is how long
# the supervisor should accept silence from it after that status (capped by max_expected_silence_s).
EXPECTED_SILENCE_KEY = "expected_silence_s"
