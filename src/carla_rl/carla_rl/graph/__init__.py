"""The one declaration of the training graph: which nodes, in which namespaces, with which
parameter files, parameter overrides and remappings. The ``carla-rl`` CLI (through the supervisor)
and the launch files (``launch/*.launch.py``) both build their processes from :func:`build_graph`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from carla_rl.contract import topics
from carla_rl.contract.config import agent_params_files, device_type

PACKAGE = "carla_rl"
SIMULATORS = ("embedded", "carla", "bridge")
# Process layout of the nodes (all nodes, topics and parameters stay the same; see nodes/component_container.py):
#   none     every node its own process
#   per_env  one container per env: its simulator + preprocessor
#   envs     one container: every env's simulator + preprocessor, and the reward evaluator
#   all      one container: the envs' nodes, the reward evaluator, the policy and the curriculum manager
#            (no DDS in the tick's path; one process, so the learner shares its interpreter with the envs)
#   halves   two containers (one per core), each with its share of the envs (simulators + preprocessors)
#            and a reward evaluator scoring them (env_ids); the first also hosts the policy, the curriculum
#            manager and the evaluator that leads the evaluations. The second share's observations, rewards
#            and commands cross DDS as one sample per group of envs and tick each way, through a pair of
#            batch_link nodes (its envs take those three topics under <env>/link/, remapped). One env: as
#            all. Each DDS sample between processes costs ~0.45 ms of CPU on the 2-core dev machine
#            (2026-11-26, commit 6273e09); against per-env messages (2026-11-26, commit 4ed36bf): the same
#            steps/s with the learner paused, 9-15 % less CPU per env step, +7-10 % with the learner running
COMPOSITIONS = ("none", "per_env", "envs", "all", "halves")
CONTAINER_EXECUTABLE = "component_container"
COMPONENT_FLAG = "--component"  # one per hosted node on a container's command line
COMPOSABLE_SIMULATORS = ("embedded",)  # the CARLA-side nodes run alone
LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")
HALVES_FIRST_SHARE = 0.25        # halves: the share of the envs beside the policy (rounded down, >= 1); the
                                 # policy's work makes up the rest of that core (N = 16, 2 link groups, single
                                 # runs: 0.125 707, 0.25 912, 0.375 863 steps/s; 2026-11-26, eb573d5).
                                 # They are the last env ids: the policy publishes commands in env
                                 # order, so the other container's batch goes out before the policy's
                                 # own envs step
HALVES_NAMESPACE = "/half_1"     # halves: namespace of the second container and its reward evaluator
# Roles (carla-rl train --role, carla-rl worker; the launch argument ``role``): where the graph's nodes run
#   all      the whole graph on this host
#   learner  everything but the envs: policy, curriculum manager, monitor and the evaluator that leads the
#            evaluations; the envs (num_envs in all) join from worker hosts
#   worker   only envs: num_envs of them, global ids worker_index*num_envs ... (so workers never collide),
#            each a simulator + preprocessor, and (reward_on worker) a reward evaluator scoring them
ROLES = ("all", "learner", "worker")
REWARD_HOSTS = ("worker", "learner")
WORKER_COMPOSITIONS = ("none", "per_env", "envs")   # a worker hosts envs only: no policy to share a process with
LEARNER_COMPOSITIONS = ("none", "per_env", "envs", "all")  # no envs here: all = the policy, curriculum
                                                    # manager and lead evaluator in one; the others a process each
MAX_ENVS_PER_HOST = 64
MAX_ENVS = 1024                                     # the policy's num_envs range (nodes/dqn_policy_node.py)
WORKER_NAMESPACE = "/worker_{index}"                # a worker's reward evaluator and container: unique names
HALVES_ACT_THREADS = 1           # halves: the policy's composed_act_threads (the other container needs the
                                 # second core; N = 8: 502 steps/s with 1, 404 with 2; 2026-11-26, 6273e09)


@dataclass(frozen=True)
class GraphOptions:
    """What a user chooses; each field is a CLI flag and a launch argument of the same name."""

    num_envs: int = 1
    simulator: str = "embedded"       # embedded | carla (direct client) | bridge (carla-ros-bridge)
    device: str = "cpu"
    save_dir: str = "runs/latest"
    load_model_from: str = ""
    seed: int = 0
    phase: int = 1                    # initial phase (a resumed run takes the saved one)
    time_scale: float = 0.0           # 0 = as fast as possible
    training: bool = True             # False: evaluation only (no learning, no exploration)
    batch_size: int = 0               # 0 = config/agent.yaml
    num_episodes: int = 0             # 0 = until the curriculum finishes
    num_eval_episodes: int = 0        # 0 = per-phase config
    town: str = ""                    # CARLA town (carla / bridge simulators)
    log_level: str = "info"
    save_sensor_data: bool = False    # record each episode's sensor topics to MCAP
    enable_profiler: bool = False
    monitor: bool = True              # TensorBoard writer node
    config_dir: str = ""              # default: the package's config directory
    composition: str = "envs"         # none | per_env | envs | all | halves (COMPOSITIONS)
    role: str = "all"                 # all | learner | worker (ROLES)
    worker_index: int = 0             # worker: this host's envs are worker_index*num_envs ... + num_envs - 1
    reward_on: str = "worker"         # learner / worker roles: where worker-hosted envs are scored
    discovery: str = ""               # graph.discovery: "" = from the environment, else by role

    def validate(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, got {self.role!r}")
        limit = MAX_ENVS if self.role == "learner" else MAX_ENVS_PER_HOST
        if not 1 <= self.num_envs <= limit:
            raise ValueError(f"num_envs must be in 1..{limit}, got {self.num_envs}")
        if self.worker_index < 0 or (self.worker_index and self.role != "worker"):
            raise ValueError(f"worker_index must be >= 0 and is for role worker only, got {self.worker_index} "
                             f"(role {self.role})")
        if self.role == "worker" and (self.worker_index + 1) * self.num_envs > MAX_ENVS:
            raise ValueError(f"worker {self.worker_index} with {self.num_envs} envs reaches env id "
                             f"{(self.worker_index + 1) * self.num_envs - 1}; env ids end at {MAX_ENVS - 1}")
        if self.reward_on not in REWARD_HOSTS:
            raise ValueError(f"reward_on must be one of {', '.join(REWARD_HOSTS)}, got {self.reward_on!r}")
        allowed = {"worker": WORKER_COMPOSITIONS, "learner": LEARNER_COMPOSITIONS}.get(self.role, COMPOSITIONS)
        if self.composition not in allowed:
            raise ValueError(f"composition {self.composition!r} does not apply to role {self.role}; use one of "
                             f"{', '.join(allowed)}")
        if self.discovery:
            from carla_rl.graph.discovery import parse

            parse(self.discovery)  # ValueError: what is wrong with it
        if self.simulator not in SIMULATORS:
            raise ValueError(f"simulator must be one of {', '.join(SIMULATORS)}, got {self.simulator!r}")
        if self.composition not in COMPOSITIONS:
            raise ValueError(f"composition must be one of {', '.join(COMPOSITIONS)}, got {self.composition!r}")
        if self.log_level not in LOG_LEVELS:
            raise ValueError(f"log_level must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}")
        device_type(self.device)  # ValueError: device must be cpu or cuda[:N]
        if self.time_scale < 0:
            raise ValueError(f"time_scale must be >= 0, got {self.time_scale}")
        if self.phase < 1:
            raise ValueError(f"phase must be >= 1, got {self.phase}")
        for name in ("batch_size", "num_episodes", "num_eval_episodes", "seed"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


# every GraphOptions field: (CLI flag of `carla-rl train`, description); launch arguments use the field name
OPTION_FLAGS: dict[str, tuple[str, str]] = {
    "num_envs": ("--parallel-envs", "Environments stepped in parallel, each in namespace /env_<i>"),
    "simulator": ("--simulator", "embedded | carla (direct client) | bridge (carla-ros-bridge adapter)"),
    "device": ("--device", "torch device of the policy: cpu or cuda[:N]"),
    "save_dir": ("--save-dir", "Run directory: checkpoints, TensorBoard logs, node logs"),
    "load_model_from": ("--load-model-from", "Checkpoint to resume (weights, optimizer, replay, phase)"),
    "seed": ("--seed", "Base seed"),
    "phase": ("--phase", "Initial curriculum phase"),
    "time_scale": ("--time-scale", "0 = as fast as possible; 1 = real time"),
    "training": ("", "Learn (train) or only evaluate (eval); set by the subcommand / launch file"),
    "batch_size": ("--batch-size", "Learner batch size (0 = config/agent.yaml)"),
    "num_episodes": ("--num-episodes", "Stop after N training episodes (0 = until the curriculum ends)"),
    "num_eval_episodes": ("--num-eval-episodes", "Episodes per evaluation (0 = per-phase config)"),
    "town": ("--town", "CARLA town for the carla / bridge simulators"),
    "log_level": ("--log-level", "ROS log level of every node"),
    "save_sensor_data": ("--save-sensor-data", "Record each episode's sensor topics to MCAP"),
    "enable_profiler": ("--enable-profiler", "Profile every node (cProfile)"),
    "monitor": ("", "Start the TensorBoard writer node"),
    "config_dir": ("--config", "Config directory (default: the package's share/carla_rl/config)"),
    "role": ("--role", "all (the whole graph on this host) | learner (everything but the envs, which join "
             "from worker hosts: carla-rl worker)"),
    "worker_index": ("", "carla-rl worker --worker-index: this host's index; its envs are "
                     "worker_index*N ... worker_index*N+N-1"),
    "reward_on": ("--reward-on", "learner / worker roles: where the envs of worker hosts are scored: worker "
                  "(a reward evaluator per worker host; default) | learner (one evaluator beside the policy)"),
    "discovery": ("--discovery", "DDS discovery: localhost | subnet | server:HOST:PORT | peers:HOST,HOST "
                  "(default: the environment, else localhost, or subnet for the learner and worker roles)"),
    "composition": ("--composition", "Process layout: none (a process per node) | per_env (an env's simulator "
                    "+ preprocessor share one) | envs (every env's, plus the reward evaluator, share one) | all "
                    "(those, the policy and the curriculum manager share one) | halves (two: each with a "
                    "share of the envs and a reward evaluator for them; the policy and the curriculum manager in "
                    "the first; the second's ticks cross as a batch per group of envs through two batch_link nodes)"),
}


def options_from_strings(values: dict[str, str]) -> GraphOptions:
    """GraphOptions from launch-argument strings (each field converted to its declared type)."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(GraphOptions)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(GraphOptions):
        if f.name not in values:
            continue
        text, tp = str(values[f.name]), hints[f.name]
        try:
            if tp is bool:
                if text.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(text)
                kwargs[f.name] = text.lower() in ("true", "1")
            else:
                kwargs[f.name] = tp(text)
        except ValueError:
            raise ValueError(f"launch argument {f.name}:={text!r} is not a valid {tp.__name__}") from None
    options = GraphOptions(**kwargs)
    options.validate()
    return options


@dataclass(frozen=True)
class NodeSpec:
    """One process of the graph."""

    name: str
    executable: str
    namespace: str = ""
    params_files: tuple[str, ...] = ()         # file names inside the config directory
    parameters: dict[str, Any] = field(default_factory=dict)  # overrides, dotted names
    remappings: tuple[tuple[str, str], ...] = ()
    role: str = ""
    critical: bool = False                      # the graph cannot go on without it (restart it)
    container: str = ""                         # fqn of the component container hosting it; "" = own process

    @property
    def fqn(self) -> str:
        ns = self.namespace.rstrip("/")
        return f"{ns}/{self.name}"


@dataclass(frozen=True)
class ProcessSpec:
    """One process of the graph: a node alone, or a component container hosting several."""

    name: str
    namespace: str
    components: tuple[NodeSpec, ...]

    @property
    def fqn(self) -> str:
        return f"{self.namespace.rstrip('/')}/{self.name}"

    @property
    def is_container(self) -> bool:
        return bool(self.components[0].container)

    @property
    def executable(self) -> str:
        return CONTAINER_EXECUTABLE if self.is_container else self.components[0].executable

    @property
    def critical(self) -> bool:
        return any(c.critical for c in self.components)

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(c.role for c in self.components)


def group_processes(specs: list[NodeSpec]) -> list[ProcessSpec]:
    """The processes of a graph, in the order of their first node: a node alone, or its container."""
    processes: list[ProcessSpec] = []
    containers: dict[str, int] = {}
    for spec in specs:
        if not spec.container:
            processes.append(ProcessSpec(spec.name, spec.namespace, (spec,)))
            continue
        if spec.container in containers:
            i = containers[spec.container]
            processes[i] = replace(processes[i], components=processes[i].components + (spec,))
            continue
        namespace, _, name = spec.container.rpartition("/")
        containers[spec.container] = len(processes)
        processes.append(ProcessSpec(name, namespace, (spec,)))
    return processes


def env_ids(options: GraphOptions) -> list[int]:
    """The global ids of the envs this host runs: 0..num_envs-1 (role all), none (learner), or a worker's
    block worker_index*num_envs ... (ids never collide between workers; seeds derive from them)."""
    if options.role == "learner":
        return []
    first = options.worker_index * options.num_envs if options.role == "worker" else 0
    return list(range(first, first + options.num_envs))


def worker_namespace(options: GraphOptions) -> str:
    return WORKER_NAMESPACE.format(index=options.worker_index)


def env_shares(options: GraphOptions) -> list[list[int]]:
    """The envs of each reward evaluator (and, in ``halves``, of each container): one share of every env,
    or under ``halves`` with more than one env the last HALVES_FIRST_SHARE of them (beside the policy)
    and the rest (apart from it, behind the batch links). A worker: its envs; the learner: none."""
    envs = env_ids(options)
    if options.role != "all":
        return [envs] if envs else []
    if options.composition != "halves" or options.num_envs < 2 or options.simulator not in COMPOSABLE_SIMULATORS:
        return [envs]
    beside = min(max(int(options.num_envs * HALVES_FIRST_SHARE), 1), options.num_envs - 1)
    return [envs[-beside:], envs[:-beside]]


def _linked_remappings(role: str, env_ids: list[int]) -> tuple[tuple[str, str], ...]:
    """The remappings of a node whose envs reach the policy through the batch links: the simulator takes
    its commands, the preprocessor publishes its observations, the reward evaluator its rewards under
    <env>/link/ (absolute names: nodes hosted in one container share their process, not their
    namespace)."""
    names = {"simulator": (topics.VEHICLE_COMMAND,), "preprocessor": (topics.OBSERVATION,),
             "reward": (topics.STEP_REWARD,)}[role]
    return tuple((f"{topics.env_namespace(e)}/{name}", f"{topics.env_namespace(e)}/{topics.linked(name)}")
                 for e in env_ids for name in names)


def _container_of(options: GraphOptions, role: str, env_id: int, share: int = 0) -> str:
    """The container (fqn) hosting a node under ``options.composition``; "" = its own process.
    ``share``: the index of the node's env share (env_shares) for the reward evaluators and batch links."""
    if options.composition == "none":
        return ""
    if options.role == "learner":  # composition all: the policy, curriculum manager and lead evaluator
        in_one = options.composition == "all" and role in ("reward", "policy", "curriculum")
        return "/graph_container" if in_one else ""
    if options.simulator not in COMPOSABLE_SIMULATORS:
        return ""
    if options.role == "worker" and options.composition == "envs":
        return f"{worker_namespace(options)}/env_container"
    if options.composition == "halves":
        if role in ("simulator", "preprocessor"):
            share = next(i for i, ids in enumerate(env_shares(options)) if env_id in ids)
        if role in ("simulator", "preprocessor", "reward", "link"):
            return "/graph_container" if share == 0 else f"{HALVES_NAMESPACE}/env_container"
        return "/graph_container" if role in ("policy", "curriculum") else ""
    if options.composition == "per_env":
        return f"{topics.env_namespace(env_id)}/env_container" if role in ("simulator", "preprocessor") else ""
    if options.composition == "envs":
        return "/env_container" if role in ("simulator", "preprocessor", "reward") else ""
    return "/graph_container" if role in ("simulator", "preprocessor", "reward", "policy", "curriculum") else ""


def build_graph(options: GraphOptions) -> list[NodeSpec]:
    """The nodes of a training (or evaluation) run."""
    options.validate()
    specs: list[NodeSpec] = []
    sim_exec, sim_files = {
        "embedded": ("embedded_simulator", ("sim.yaml", "curriculum.yaml")),
        "carla": ("carla_client", ("carla.yaml", "curriculum.yaml")),
        "bridge": ("carla_bridge_adapter", ("carla.yaml", "curriculum.yaml")),
    }[options.simulator]
    shares = env_shares(options)
    linked = set(shares[1]) if len(shares) > 1 else set()  # envs behind the batch links
    for env_id in env_ids(options):
        ns = topics.env_namespace(env_id)
        remap = env_id in linked
        sim_params: dict[str, Any] = {"shell.env_id": env_id, "shell.seed": options.seed,
                                      "shell.initial_phase": options.phase,
                                      "shell.time_scale": float(options.time_scale)}
        if options.save_sensor_data and env_id == 0 and options.monitor:
            # the recorder subscribes to the situation too: start ticking once it listens (episode 0 recorded)
            sim_params["shell.required_subscribers"] = 3
        if options.town and options.simulator != "embedded":
            sim_params["carla.town"] = options.town
        if options.role == "worker" and options.simulator in ("embedded", "carla"):
            sim_params["shell.wait_for_controller"] = True  # start with the learner: whole first episodes
        specs.append(NodeSpec(name=sim_exec, executable=sim_exec, namespace=ns, params_files=sim_files,
                              parameters=sim_params, role="simulator",
                              remappings=_linked_remappings("simulator", [env_id]) if remap else (),
                              container=_container_of(options, "simulator", env_id)))
        specs.append(NodeSpec(name="sensor_preprocessor", executable="sensor_preprocessor", namespace=ns,
                              params_files=("sim.yaml", "preprocess.yaml", "curriculum.yaml"),
                              parameters={"env_id": env_id}, role="preprocessor",
                              remappings=_linked_remappings("preprocessor", [env_id]) if remap else (),
                              container=_container_of(options, "preprocessor", env_id)))
    if options.role == "worker":
        return specs + _reward_specs(options, shares)
    policy_params: dict[str, Any] = {"num_envs": options.num_envs, "device": options.device,
                                     "save_dir": options.save_dir, "seed": options.seed,
                                     "training": options.training,
                                     "load_model_from": options.load_model_from}
    if options.batch_size:
        policy_params["agent.batch_size"] = options.batch_size
    if len(shares) > 1:
        policy_params["composed_act_threads"] = HALVES_ACT_THREADS
    # agent.yaml, then the device's preset over it (agent_cuda.yaml on CUDA), as the gym backend loads them
    specs.append(NodeSpec(name="dqn_policy", executable="dqn_policy",
                          params_files=("sim.yaml", *agent_params_files(options.device)),
                          parameters=policy_params, role="policy", critical=True,
                          container=_container_of(options, "policy", 0)))
    specs += _reward_specs(options, shares)
    if linked:  # one batch link beside the envs apart from the policy, one beside the policy
        for side, share in (("envs", 1), ("policy", 0)):
            specs.append(NodeSpec(name=f"batch_link_{side}", executable="batch_link", namespace=HALVES_NAMESPACE,
                                  params_files=("graph.yaml",),
                                  parameters={"side": side, "env_ids": sorted(linked)}, role="link",
                                  critical=True, container=_container_of(options, "link", 0, share=share)))
    curriculum_params: dict[str, Any] = {"save_dir": options.save_dir, "initial_phase": options.phase,
                                         "load_from": options.load_model_from,
                                         "num_episodes": options.num_episodes,
                                         "training": options.training}
    if options.num_eval_episodes:
        curriculum_params["eval_episodes_override"] = options.num_eval_episodes
    specs.append(NodeSpec(name="curriculum_manager", executable="curriculum_manager",
                          params_files=("curriculum.yaml",), parameters=curriculum_params,
                          role="curriculum", critical=True, container=_container_of(options, "curriculum", 0)))
    if options.monitor:
        specs.append(NodeSpec(name="training_monitor", executable="training_monitor",
                              params_files=("monitor.yaml",),
                              parameters={"log_dir": str(Path(options.save_dir) / "tensorboard"),
                                          "num_envs": options.num_envs, "agent_device": options.device,
                                          "record_mcap": options.save_sensor_data,
                                          "mcap_dir": str(Path(options.save_dir) / "recordings")},
                              role="monitor"))
    return specs


def _reward_specs(options: GraphOptions, shares: list[list[int]]) -> list[NodeSpec]:
    """The reward evaluators: one per env share (role all; the first leads the evaluations); on a worker
    one scoring its envs (reward_on worker) or none; on the learner the lead evaluator, scoring every
    env (reward_on learner) or none of its own (their scores come from the workers' evaluators)."""
    files = ("sim.yaml", "reward.yaml", "curriculum.yaml")

    def spec(params: dict[str, Any], namespace: str = "", share: int = 0, remappings=()) -> NodeSpec:
        return NodeSpec(name="reward_evaluator", executable="reward_evaluator", namespace=namespace,
                        params_files=files, parameters=params, role="reward", critical=True,
                        remappings=remappings, container=_container_of(options, "reward", 0, share=share))

    if options.role == "worker":
        if options.reward_on != "worker":
            return []
        ids = shares[0]
        return [spec({"num_envs": ids[-1] + 1, "env_ids": ids, "lead_evaluation": False},
                     namespace=worker_namespace(options))]
    if options.role == "learner":
        params: dict[str, Any] = {"num_envs": options.num_envs}
        if options.reward_on == "worker":
            params["score_envs"] = False
        return [spec(params)]
    specs = []
    for i, ids in enumerate(shares):
        reward_params: dict[str, Any] = {"num_envs": options.num_envs}
        if len(shares) > 1:  # the first leads the evaluations (lead_evaluation defaults to True)
            reward_params.update({"env_ids": ids, "lead_evaluation": i == 0})
        specs.append(spec(reward_params, namespace="" if i == 0 else HALVES_NAMESPACE, share=i,
                          remappings=_linked_remappings("reward", ids) if i > 0 else ()))
    return specs


def build_sim_graph(options: GraphOptions, autopilot: bool = True) -> list[NodeSpec]:
    """The simulator alone (for rviz2 / the live view): env 0, no controller needed."""
    options.validate()
    return [NodeSpec(name="embedded_simulator", executable="embedded_simulator",
                     namespace=topics.env_namespace(0), params_files=("sim.yaml", "curriculum.yaml"),
                     parameters={"shell.env_id": 0, "shell.seed": options.seed, "shell.initial_phase": options.phase,
                                 "shell.time_scale": float(options.time_scale), "shell.required_subscribers": 0,
                                 "shell.autopilot": autopilot},
                     role="simulator")]


def overrides_params_file(spec: NodeSpec) -> dict[str, Any]:
    """The spec's parameter overrides as a params file keyed by the node's full name.

    Not ``-p name:=value``: rcl treats command-line parameters like a ``/**`` entry, and a
    node-specific entry in the config files (``<node>: ros__parameters: ...``) would win over it.
    launch_ros does the same for a Node's parameter dicts: a node-keyed file after the others.
    """
    from carla_rl.contract.config import unflatten

    return {spec.fqn: {"ros__parameters": unflatten(spec.parameters)}}


def ros_arguments(spec: NodeSpec, config_dir: Path, log_level: str | None = "info",
                  overrides_file: Path | None = None) -> list[str]:
    """``--ros-args`` of a spec: its config files, then ``overrides_file`` (written by the caller from
    :func:`overrides_params_file`), remaps and log level (None: none; the process-wide setting)."""
    args = ["--ros-args", "-r", f"__node:={spec.name}"]
    if spec.namespace:
        args += ["-r", f"__ns:={spec.namespace}"]
    for path in spec.params_files:
        args += ["--params-file", str(Path(config_dir) / path)]
    if spec.parameters:
        if overrides_file is None:
            raise ValueError(f"{spec.fqn}: parameter overrides need an overrides file")
        args += ["--params-file", str(overrides_file)]
    for src, dst in spec.remappings:
        args += ["-r", f"{src}:={dst}"]
    if log_level is not None:
        args += ["--log-level", log_level]
    return args


def process_arguments(process: ProcessSpec, config_dir: Path, log_level: str, params_dir: Path) -> list[str]:
    """The command-line arguments of a process (after the executable): a node's ``--ros-args``, or a
    container's ``--component EXE --ros-args ... --`` section per hosted node, then its log level."""
    if not process.is_container:
        spec = process.components[0]
        return ros_arguments(spec, config_dir, log_level, write_overrides_file(spec, params_dir))
    args: list[str] = []
    for spec in process.components:
        args += [COMPONENT_FLAG, spec.executable,
                 *ros_arguments(spec, config_dir, None, write_overrides_file(spec, params_dir)), "--"]
    return args + ["--ros-args", "--log-level", log_level]


def write_overrides_file(spec: NodeSpec, directory: Path) -> Path | None:
    """Write the spec's overrides params file into ``directory``; None when it has no overrides."""
    import yaml

    if not spec.parameters:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (spec.fqn.strip("/").replace("/", "__") + ".params.yaml")
    path.write_text(yaml.safe_dump(overrides_params_file(spec), sort_keys=False))
    return path
