"""Every hyperparameter of the learner in one documented place.

``AgentConfig`` is read from the ``agent:`` block of ``config/agent.yaml`` (ROS 2 params layout:
``dqn_policy: ros__parameters: agent: ...``) by :func:`load_agent_config`. Each field is declared
with :func:`carla_rl.contract.config.param` (default, description, range), so the same metadata documents
the YAML, validates it and can feed ``ParameterDescriptor``\\ s in the ROS node.

Network presets: the default network (``cpu``) is sized for a 2-core CPU; ``nature`` is the
Nature-DQN encoder (32/64/64 channels, 512 hidden) meant for a GPU. See :func:`network_preset`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from carla_rl.contract.config import (ConfigError, agent_params_files, deep_merge, from_mapping, node_parameters,
                             param, to_mapping)

NODE_NAME = "dqn_policy"
SECTION = "agent"


@dataclass(frozen=True)
class ObservationSpec:
    """Shape of one observation: a uint8 frame stack [S, H, W] plus a float32 vector [V]."""

    frame_stack: int = 4
    height: int = 84
    width: int = 84
    vector_size: int = 0

    @classmethod
    def coerce(cls, value: Any) -> "ObservationSpec":
        """Accept an ObservationSpec, a mapping of its fields, or a (S, H, W[, V]) tuple."""
        if isinstance(value, ObservationSpec):
            return value
        if isinstance(value, Mapping):
            return cls(**value)
        if isinstance(value, (tuple, list)) and len(value) in (3, 4):
            return cls(*(int(v) for v in value))
        raise ValueError(f"state_size: expected ObservationSpec, mapping or (S, H, W, V), "
                         f"got {value!r}")


@dataclass
class NetworkConfig:
    """Encoder (conv over stacked frames + MLP over vector features) and head sizes."""

    conv_channels: list[int] = param(default_factory=lambda: [16, 32, 32],
                                     description="output channels of each conv layer", low=1)
    conv_kernels: list[int] = param(default_factory=lambda: [8, 4, 3],
                                    description="kernel size of each conv layer", low=1)
    conv_strides: list[int] = param(default_factory=lambda: [4, 2, 2],
                                    description="stride of each conv layer", low=1)
    vector_hidden: list[int] = param(default_factory=lambda: [64],
                                     description="hidden sizes of the MLP over vector features",
                                     low=1)
    hidden_size: int = param(256, "hidden units of each head (value / advantage)",
                             low=1, high=8192)

    def validate(self) -> None:
        n = len(self.conv_channels)
        if n == 0 or len(self.conv_kernels) != n or len(self.conv_strides) != n:
            raise ConfigError("network: conv_channels, conv_kernels and conv_strides must be "
                              "non-empty lists of the same length")


NETWORK_PRESETS: dict[str, dict[str, Any]] = {
    # ~5x cheaper than Nature on CPU; 84x84 -> 20x20 -> 9x9 -> 4x4x32 = 512 features.
    "cpu": {"conv_channels": [16, 32, 32], "conv_kernels": [8, 4, 3], "conv_strides": [4, 2, 2],
            "vector_hidden": [64], "hidden_size": 256},
    # Mnih et al. 2015: 84x84 -> 20x20x32 -> 9x9x64 -> 7x7x64 = 3136 features, 512 hidden.
    "nature": {"conv_channels": [32, 64, 64], "conv_kernels": [8, 4, 3], "conv_strides": [4, 2, 1],
               "vector_hidden": [128], "hidden_size": 512},
}


def network_preset(name: str) -> NetworkConfig:
    """A named network preset (``cpu`` or ``nature``)."""
    if name not in NETWORK_PRESETS:
        raise ConfigError(f"network preset {name!r} unknown; known: {', '.join(NETWORK_PRESETS)}")
    return from_mapping(NetworkConfig, NETWORK_PRESETS[name], f"preset {name}")


@dataclass
class ReplayConfig:
    """Replay memory (frames stored once) and prioritized sampling."""

    capacity: int = param(100_000, "transitions kept (ring); 1M at 84x84 needs ~7.3 GB RAM",
                          low=1, high=10_000_000)
    prioritized: bool = param(True, "prioritized experience replay (Schaul et al. 2016)")
    alpha: float = param(0.6, "priority exponent (0 = uniform)", low=0.0, high=1.0)
    beta_start: float = param(0.4, "importance-sampling exponent at the first update",
                              low=0.0, high=1.0)
    beta_anneal_updates: int = param(100_000, "updates over which beta is annealed to 1",
                                     low=1)
    priority_eps: float = param(1e-6, "added to |TD| / loss so no priority is zero",
                                low=0.0, high=1.0)
    n_step: int = param(3, "multi-step return length", low=1, high=20)


@dataclass
class ExplorationConfig:
    """Epsilon-greedy schedule (used only when noisy nets are off)."""

    epsilon_start: float = param(1.0, "epsilon at the first env step", low=0.0, high=1.0)
    epsilon_end: float = param(0.02, "epsilon after the decay", low=0.0, high=1.0)
    epsilon_decay_steps: int = param(250_000, "env steps of the linear decay", low=1)
    eval_epsilon: float = param(0.0, "epsilon when acting with explore=False", low=0.0, high=1.0)


@dataclass
class AgentConfig:
    """Rainbow-style DQN: all hyperparameters of the learner (see config/agent.yaml)."""

    network: NetworkConfig = param(default_factory=NetworkConfig,
                                   description="encoder and head sizes")
    replay: ReplayConfig = param(default_factory=ReplayConfig, description="replay memory")
    exploration: ExplorationConfig = param(default_factory=ExplorationConfig,
                                           description="epsilon-greedy schedule")
    dueling: bool = param(True, "dueling value/advantage heads (Wang et al. 2016)")
    double: bool = param(True, "double-DQN target: online net selects, target net evaluates")
    noisy: bool = param(True, "factorised noisy linear layers in the heads (replaces epsilon)")
    noisy_sigma0: float = param(0.5, "initial noise scale sigma0 of factorised noisy layers",
                                low=0.0, high=10.0)
    distributional: bool = param(True, "C51 categorical value distribution (Bellemare et al.)")
    n_atoms: int = param(51, "atoms of the C51 support", low=2, high=1001)
    v_min: float = param(-10.0, "lowest return of the C51 support", low=-1e6, high=1e6)
    v_max: float = param(10.0, "highest return of the C51 support", low=-1e6, high=1e6)
    gamma: float = param(0.99, "discount factor", low=0.0, high=1.0)
    reward_scale: float = param(0.01, "rewards are multiplied by this before they are stored, so that "
                                "returns fit the C51 support [v_min, v_max] (the seed's rewards reach "
                                "-1000 / +300)", low=1e-6, high=1e6)
    lr: float = param(5e-4, "Adam learning rate (2-core CPU: ~10-25 updates/s; 5e-4 learned fastest in the sweep of docs/BENCHMARKS.md)", low=0.0, high=1.0)
    adam_eps: float = param(1.5e-4, "Adam epsilon", low=0.0, high=1.0)
    batch_size: int = param(32, "transitions per gradient step", low=1, high=65536)
    learning_starts: int = param(5_000, "env steps (random actions) before the first update",
                                 low=0)
    train_frequency: int = param(4, "env steps per round of gradient steps", low=1)
    gradient_steps: int = param(1, "gradient steps per round (replay ratio = "
                                   "gradient_steps * batch_size / train_frequency)", low=1)
    target_update: str = param("hard", "target network update: 'hard' copy or 'soft' Polyak",
                               choices=("hard", "soft"))
    target_update_interval: int = param(250, "updates between hard target copies", low=1)
    tau: float = param(0.005, "Polyak factor of soft target updates", low=0.0, high=1.0)
    huber_delta: float = param(1.0, "Huber loss threshold (scalar, non-C51 head)",
                               low=0.0, high=1e6)
    grad_clip_norm: float = param(10.0, "max global gradient norm (0 = no clipping)",
                                  low=0.0, high=1e6)
    mixed_precision: str = param("off", "autocast on CUDA, of the fast path's update and of "
                                        "acting: 'off', 'bf16' or 'fp16' (fp16 uses a GradScaler "
                                        "and runs the update without a graph); ignored on CPU",
                                 choices=("off", "bf16", "fp16"))
    cuda_graphs: bool = param(True, "the fast path on CUDA: the update as fast_algorithm.py "
                                    "computes it, sampled on the device and captured (sampling "
                                    "included) in a CUDA graph; off, and always on CPU, the "
                                    "reference update of algorithm.py runs, which reads none of "
                                    "the switches below")
    compile: bool = param(False, "fast path: torch.compile the loss (forward passes + targets; "
                                 "compiles on the first updates)")
    tf32_matmul: bool = param(True, "CUDA: float32 matmuls on TF32 tensor cores (cuDNN "
                                    "convolutions already are); process-wide setting")
    channels_last: bool = param(True, "NHWC convolutions on the fast path (cuDNN's native "
                                      "layout)")
    space_to_depth: bool = param(True, "fast path: run the first conv (stride s dividing "
                                       "kernel k) as the equal k/s x k/s stride-1 conv over "
                                       "s x s space-to-depth blocks, same weights reshaped "
                                       "(tensor-core friendly)")
    space_to_depth_later_convs: bool = param(True, "fast path with space_to_depth: also "
                                                   "every later conv whose stride divides its "
                                                   "kernel (e.g. 4x4 stride 2 as 2x2 stride 1 "
                                                   "over 2x2 blocks; cuDNN's input gradient of a "
                                                   "strided conv waits for a memset)")
    parallel_next_passes: bool = param(True, "fast path: run the two no-grad next-state "
                                             "passes (online selection, target evaluation) on "
                                             "side CUDA streams, concurrent with the online "
                                             "pass")
    grouped_next_passes: bool = param(True, "fast path with parallel_next_passes and "
                                            "double: the online selection and the target "
                                            "evaluation as one pass with both networks' layers "
                                            "side by side (grouped convs, batched matmuls), on "
                                            "one side stream")
    compile_mode: str = param("default", "torch.compile mode of the compiled parts (with "
                                         "compile); 'max-autotune-no-cudagraphs' autotunes "
                                         "(compiles for minutes)",
                              choices=("default", "max-autotune-no-cudagraphs"))
    compile_combo_kernels: bool = param(True, "with compile: inductor's combo kernels (independent "
                                              "small kernels, e.g. the weight preparations of the "
                                              "layers, launched as one)")
    compile_optimizer: bool = param(True, "fast path with compile: also torch.compile "
                                          "gradient clipping + Adam (foreach Adam instead of "
                                          "the fused kernel; same math)")
    flat_optimizer: bool = param(True, "fast path with compile_optimizer: parameters, "
                                       "gradients and Adam's moments in one flat buffer each, "
                                       "so that clipping + Adam take a few kernels over whole "
                                       "buffers (same math; learner/flat_adam.py)")
    compile_replay: bool = param(True, "fast path with compile: also torch.compile the "
                                       "on-device prioritized sampling and priority update")
    compile_noise: bool = param(True, "fast path with compile: also torch.compile the "
                                      "noisy-net resampling of both networks (same "
                                      "distribution, fewer kernels)")
    updates_per_graph: int = param(1, "gradient steps captured back to back in one CUDA graph "
                                      "(cuda_graphs only; one replay = this many updates, which "
                                      "saves the per-replay host work; must divide "
                                      "target_update_interval)", low=1, high=256)
    prefetch_next_batch: bool = param(True, "fast path, updates_per_graph > 1: each update "
                                             "after the first of a replay draws its batch beside "
                                             "the previous update's backward pass (after that "
                                             "update's priority update, as in order) and its "
                                             "noise beside the previous optimizer step")
    sample_conv_input: bool = param(True, "on-device replay: a sample holds its frame stacks as "
                                          "the first conv's input (scaled, space-to-depth blocks, "
                                          "compute dtype) instead of uint8, so that with "
                                          "prefetch_next_batch the conversion runs beside the "
                                          "previous update's backward pass, not at the head of "
                                          "the forward passes")

    def validate(self) -> None:
        if self.v_max <= self.v_min:
            raise ConfigError("v_max must be greater than v_min")
        if self.exploration.epsilon_end > self.exploration.epsilon_start:
            raise ConfigError("exploration.epsilon_end must not exceed epsilon_start")
        if self.target_update == "hard" and self.target_update_interval % self.updates_per_graph:
            raise ConfigError(f"updates_per_graph ({self.updates_per_graph}) must divide "
                              f"target_update_interval ({self.target_update_interval})")

    @property
    def torch_compile_options(self) -> dict[str, Any]:
        """``options`` for ``torch.compile``: inductor's settings for ``compile_mode``, plus
        combo kernels with ``compile_combo_kernels`` (imports inductor: call when compiling)."""
        from torch._inductor import list_mode_options

        options = dict(list_mode_options(self.compile_mode))
        if self.compile_combo_kernels:
            options["combo_kernels"] = True
        return options

    def with_network_preset(self, name: str) -> "AgentConfig":
        """A copy of this config with network preset ``name`` (``cpu`` or ``nature``)."""
        return dataclasses.replace(self, network=network_preset(name))


# The fields that choose how an update runs on CUDA, not what it computes: the switches of the
# fast path (cuda_graphs selects it; the reference update reads none of them), in the order of
# AgentConfig.
FAST_PATH_FIELDS = ("mixed_precision", "cuda_graphs", "compile", "tf32_matmul", "channels_last",
                    "space_to_depth", "space_to_depth_later_convs", "parallel_next_passes",
                    "grouped_next_passes", "compile_mode", "compile_combo_kernels",
                    "compile_optimizer", "flat_optimizer", "compile_replay", "compile_noise",
                    "updates_per_graph", "prefetch_next_batch", "sample_conv_input")
# Switches that lost their A/B and were removed; configs stored in older checkpoints may still
# name them (dropped on load, as they only chose how an update ran).
RETIRED_FIELDS = ("merge_online_passes", "cudnn_benchmark")


def agent_config_from_mapping(data: Mapping[str, Any], where: str = SECTION) -> AgentConfig:
    """Validated :class:`AgentConfig` from a plain mapping (as stored in a checkpoint)."""
    return from_mapping(AgentConfig, data, where)


def agent_config_to_mapping(config: AgentConfig) -> dict[str, Any]:
    """Plain nested mapping of ``config`` (lists, numbers, strings, bools only)."""
    return to_mapping(config)


def load_agent_config(path: str | Path, node_name: str = NODE_NAME,
                      overlays: tuple[str | Path, ...] = ()) -> AgentConfig:
    """Read the ``agent:`` block of ``node_name`` in params file ``path``, with the ``agent:`` blocks
    of ``overlays`` (params files, in order) merged over it key by key, as rcl merges params files."""
    merged: dict[str, Any] = {}
    for source in (path, *overlays):
        params = node_parameters(Path(source), node_name)
        block = params.get(SECTION)
        if block is None:
            if source == path:
                raise ConfigError(f"{path}: {node_name}: missing key '{SECTION}'")
            continue
        if not isinstance(block, Mapping):
            raise ConfigError(f"{source}: {node_name}.{SECTION}: expected a mapping")
        merged = deep_merge(merged, block)
    where = " over ".join(str(p) for p in reversed((path, *overlays)))
    try:
        return agent_config_from_mapping(merged, SECTION)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {node_name}: {exc}") from None


def load_device_agent_config(config_dir: str | Path, device: str) -> AgentConfig:
    """The agent config a run on ``device`` trains with: ``agent.yaml`` of ``config_dir``, with the
    device type's preset over it (``agent_cuda.yaml`` on CUDA;
    :data:`carla_rl.contract.config.AGENT_DEVICE_PRESET_FILES`).
    The ROS graph hands the policy node the same files in the same order."""
    files = [Path(config_dir) / name for name in agent_params_files(device)]
    for path in files:
        if not path.is_file():
            raise ConfigError(f"{path}: missing (the agent config of device {device!r} is "
                              f"{' + '.join(p.name for p in files)})")
    return load_agent_config(files[0], overlays=tuple(files[1:]))
