"""The launch files and the `carla-rl` CLI build the same graph from carla_rl.graph: same nodes,
namespaces, parameter files and parameter overrides; and every executable exists in the package."""

import dataclasses
import importlib.util
import os
import shutil
from pathlib import Path

import pytest

import launch_stubs
from carla_rl.cli import main as cli, commands
import yaml

from carla_rl.contract.config import flatten, unflatten
from carla_rl.graph import COMPOSITIONS, OPTION_FLAGS, GraphOptions, build_graph, group_processes
from carla_rl.graph.supervisor import node_command

ROOT = Path(__file__).resolve().parents[2]
LAUNCH_DIR = ROOT / "launch"
CONFIG_DIR = ROOT / "config"


def load_launch(name: str):
    spec = importlib.util.spec_from_file_location(name.replace(".", "_"), LAUNCH_DIR / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_launch_description()


def resolve(description, overrides: dict[str, str]):
    """Launch-argument defaults + command-line overrides -> the Node actions, as ros2 launch does."""
    configs = {e.name: e.default_value for e in description.entities
               if isinstance(e, launch_stubs.DeclareLaunchArgument)}
    configs.update(overrides)
    nodes = []
    for entity in description.entities:
        if isinstance(entity, launch_stubs.OpaqueFunction):
            nodes += entity.run(configs)
    return nodes


def cli_specs(argv: list[str]):
    args = cli.build_parser().parse_args(["train", *argv])
    return build_graph(commands._graph_options(args, training=True))


def _sections(argv: list[str]) -> dict[str, list[str]]:
    """A container's ``--component EXE --ros-args ... --`` sections, keyed by the hosted node's fqn."""
    out = {}
    for i, arg in enumerate(argv):
        if arg == "--component":
            end = argv.index("--", i + 2)
            ros_args = argv[i + 2:end]
            remaps = dict(ros_args[j + 1].split(":=") for j, a in enumerate(ros_args) if a == "-r")
            out[f"{remaps.get('__ns', '')}/{remaps['__node']}"] = ros_args
    return out


def _check_node_args(ros_args: list[str], spec, files: list[str]) -> None:
    """The files, then the overrides as a node-keyed params file, as the CLI's process gets them."""
    given = [ros_args[i + 1] for i, a in enumerate(ros_args) if a == "--params-file"]
    assert given[:len(files)] == files
    if spec.parameters:
        overrides = yaml.safe_load(Path(given[-1]).read_text())
        assert overrides == {spec.fqn: {"ros__parameters": unflatten(spec.parameters)}}
        assert flatten(overrides[spec.fqn]["ros__parameters"]) == spec.parameters


@pytest.mark.parametrize("cli_argv,launch_args", [
    ([], {}),
    (["--parallel-envs", "3", "--seed", "7", "--phase", "2", "--batch-size", "64", "--num-episodes", "40"],
     {"num_envs": "3", "seed": "7", "phase": "2", "batch_size": "64", "num_episodes": "40"}),
    (["--parallel-envs", "2", "--composition", "per_env"], {"num_envs": "2", "composition": "per_env"}),
    (["--parallel-envs", "2", "--composition", "none"], {"num_envs": "2", "composition": "none"}),
    (["--parallel-envs", "2", "--composition", "all"], {"num_envs": "2", "composition": "all"}),
    (["--parallel-envs", "3", "--composition", "halves"], {"num_envs": "3", "composition": "halves"}),
])
def test_train_launch_builds_the_cli_graph(tmp_path, cli_argv, launch_args):
    save_dir = str(tmp_path / "run")
    expected = group_processes(cli_specs(cli_argv + ["--save-dir", save_dir]))
    with launch_stubs.installed():
        actions = resolve(load_launch("train.launch.py"),
                          {**launch_args, "save_dir": save_dir, "config_dir": str(CONFIG_DIR)})
    assert [(n.kwargs["name"], n.kwargs["namespace"], n.kwargs["executable"]) for n in actions] == \
        [(p.name, p.namespace, p.executable) for p in expected]
    for action, process in zip(actions, expected):
        assert action.kwargs["package"] == "carla_rl"
        # the CLI runs the same process: same executable, same nodes with the same files and overrides
        argv = node_command(process, CONFIG_DIR, "info", tmp_path / "params")
        assert argv[2] == f"carla_rl.nodes.{process.executable}_node"
        if not process.is_container:
            spec = process.components[0]
            files, overrides = action.kwargs["parameters"][:-1], action.kwargs["parameters"][-1]
            assert files == [str(CONFIG_DIR / f) for f in spec.params_files]
            assert overrides == spec.parameters
            assert action.kwargs["remappings"] == list(spec.remappings)
            _check_node_args(argv[argv.index("--ros-args"):], spec, files)
            continue
        launched, run = _sections(action.kwargs["arguments"]), _sections(argv)
        assert list(launched) == list(run) == [c.fqn for c in process.components]
        for spec in process.components:
            files = [str(CONFIG_DIR / f) for f in spec.params_files]
            _check_node_args(launched[spec.fqn], spec, files)
            _check_node_args(run[spec.fqn], spec, files)


def test_compositions_host_the_same_nodes():
    """Composition changes the processes, never the nodes: same names, namespaces and parameters."""
    base = GraphOptions(num_envs=3)
    nodes = {c: [dataclasses.replace(s, container="") for s in build_graph(dataclasses.replace(base, composition=c))]
             for c in COMPOSITIONS}
    assert nodes["none"] == nodes["per_env"] == nodes["envs"] == nodes["all"]
    counts = {c: len(group_processes(build_graph(dataclasses.replace(base, composition=c)))) for c in COMPOSITIONS}
    # none: 3 sims + 3 preprocessors + policy, reward, curriculum, monitor; per_env: 3 containers + 4;
    # envs: one container (sims, preprocessors, reward) + policy, curriculum, monitor;
    # all: one container (those, the policy and the curriculum manager) + monitor;
    # halves: two containers (each with its envs and a reward evaluator) + monitor
    assert counts == {"none": 10, "per_env": 7, "envs": 4, "all": 2, "halves": 3}
    # halves: the same nodes, except that the reward evaluator is two, over disjoint shares of the envs, the
    # policy acts on one thread (the other container has the second core), two batch links carry the second
    # share's ticks, and that share's simulators, preprocessors and evaluator use the links' topic names
    others = {c: [dataclasses.replace(s, remappings=()) for s in nodes[c] if s.role not in ("reward", "policy", "link")]
              for c in ("all", "halves")}
    assert others["halves"] == others["all"]
    policy = {c: next(s for s in nodes[c] if s.role == "policy") for c in ("all", "halves")}
    assert policy["halves"].parameters == {**policy["all"].parameters, "composed_act_threads": 1}
    rewards = [s for s in nodes["halves"] if s.role == "reward"]
    assert [(s.fqn, s.parameters) for s in rewards] == [
        ("/reward_evaluator", {"num_envs": 3, "env_ids": [2], "lead_evaluation": True}),
        ("/half_1/reward_evaluator", {"num_envs": 3, "env_ids": [0, 1], "lead_evaluation": False})]
    assert rewards[0].remappings == ()
    assert rewards[1].remappings == (("/env_0/step_reward", "/env_0/link/step_reward"),
                                     ("/env_1/step_reward", "/env_1/link/step_reward"))
    remapped = {(s.fqn, s.remappings) for s in nodes["halves"] if s.role in ("simulator", "preprocessor")}
    assert remapped == {("/env_0/embedded_simulator", (("/env_0/vehicle_command", "/env_0/link/vehicle_command"),)),
                        ("/env_1/embedded_simulator", (("/env_1/vehicle_command", "/env_1/link/vehicle_command"),)),
                        ("/env_2/embedded_simulator", ()),
                        ("/env_0/sensor_preprocessor", (("/env_0/observation", "/env_0/link/observation"),)),
                        ("/env_1/sensor_preprocessor", (("/env_1/observation", "/env_1/link/observation"),)),
                        ("/env_2/sensor_preprocessor", ())}
    links = [s for s in build_graph(dataclasses.replace(base, composition="halves")) if s.role == "link"]
    assert [(s.fqn, s.executable, s.parameters, s.container) for s in links] == [
        ("/half_1/batch_link_envs", "batch_link", {"side": "envs", "env_ids": [0, 1]}, "/half_1/env_container"),
        ("/half_1/batch_link_policy", "batch_link", {"side": "policy", "env_ids": [0, 1]}, "/graph_container")]
    assert not [s for c in COMPOSITIONS if c != "halves" for s in nodes[c] if s.role == "link"]
    assert [s.parameters for s in nodes["all"] if s.role == "reward"] == [{"num_envs": 3}]
    carla = group_processes(build_graph(dataclasses.replace(base, simulator="carla")))
    assert not any(p.is_container for p in carla)  # the CARLA-side nodes run alone


@pytest.mark.parametrize("num_envs,shares", [(1, [[0]]), (2, [[1], [0]]), (4, [[3], [0, 1, 2]]),
                                             (8, [[6, 7], [0, 1, 2, 3, 4, 5]])])
def test_halves_hosts_each_share_with_its_reward_evaluator(num_envs, shares):
    """Every env's simulator and preprocessor share a container with the reward evaluator scoring it; the
    policy and the curriculum manager are beside the lead evaluator, with the last env ids; one env: one
    container, as in all, and no batch link."""
    specs = build_graph(GraphOptions(num_envs=num_envs, composition="halves"))
    rewards = [s for s in specs if s.role == "reward"]
    assert [s.parameters.get("env_ids", list(range(num_envs))) for s in rewards] == shares
    assert sum(s.parameters.get("lead_evaluation", True) for s in rewards) == 1
    for reward in rewards:
        envs = reward.parameters.get("env_ids", list(range(num_envs)))
        hosted = [s for s in specs if s.container == reward.container]
        assert sorted({s.namespace for s in hosted if s.role in ("simulator", "preprocessor")}) == \
            sorted(f"/env_{i}" for i in envs)
    lead = next(s for s in rewards if s.parameters.get("lead_evaluation", True))
    assert {s.role for s in specs if s.container == lead.container} >= {"policy", "curriculum"}
    assert len({s.container for s in specs if s.container}) == len(shares)
    assert len([s for s in specs if s.role == "link"]) == (2 if len(shares) > 1 else 0)


def test_eval_launch_is_the_graph_without_training(tmp_path):
    with launch_stubs.installed():
        nodes = resolve(load_launch("eval.launch.py"), {"save_dir": str(tmp_path), "config_dir": str(CONFIG_DIR)})
    policy = next(n for n in nodes if n.kwargs["name"] == "dqn_policy")
    assert policy.kwargs["parameters"][-1]["training"] is False


def test_sim_and_carla_launch_files_resolve(tmp_path):
    with launch_stubs.installed():
        sim_nodes = resolve(load_launch("sim.launch.py"), {"config_dir": str(CONFIG_DIR)})
        carla_nodes = resolve(load_launch("carla.launch.py"), {"config_dir": str(CONFIG_DIR),
                                                                "save_dir": str(tmp_path)})
    assert [n.kwargs["executable"] for n in sim_nodes] == ["embedded_simulator"]
    assert sim_nodes[0].kwargs["parameters"][-1]["shell.autopilot"] is True
    assert "carla_bridge_adapter" in [n.kwargs["executable"] for n in carla_nodes]
    assert "embedded_simulator" not in [n.kwargs["executable"] for n in carla_nodes]


def test_every_option_is_a_cli_flag_and_a_launch_argument():
    parser = cli.build_parser()
    train_flags = {opt for a in parser._subparsers._group_actions[0].choices["train"]._actions
                   for opt in a.option_strings} | {opt for a in parser._actions for opt in a.option_strings}
    with launch_stubs.installed():
        declared = {e.name for e in load_launch("train.launch.py").entities
                    if isinstance(e, launch_stubs.DeclareLaunchArgument)}
    for f in dataclasses.fields(GraphOptions):
        flag, description = OPTION_FLAGS[f.name]
        assert description
        assert f.name in declared, f"launch argument {f.name} missing"
        if flag:
            assert flag in train_flags, f"CLI flag {flag} missing"


def test_every_executable_exists_in_the_installed_package():
    options = GraphOptions(num_envs=2)
    executables = {s.executable for s in build_graph(options)} | {"component_container"}
    executables |= {s.executable for s in build_graph(dataclasses.replace(options, simulator="carla"))}
    executables |= {s.executable for s in build_graph(dataclasses.replace(options, simulator="bridge"))}
    prefix = Path(os.environ.get("COLCON_PREFIX_PATH", str(ROOT / "install")).split(os.pathsep)[0])
    for exe in sorted(executables):
        assert importlib.util.find_spec(f"carla_rl.nodes.{exe}_node") is not None, exe
        installed = prefix / "lib" / "carla_rl" / exe
        assert installed.exists(), f"{installed} missing (launch_ros looks there)"
        assert shutil.which(exe), f"{exe} not on PATH after sourcing install/setup.bash"


@pytest.mark.parametrize("device,files", [("cpu", ("sim.yaml", "agent.yaml")),
                                          ("cuda", ("sim.yaml", "agent.yaml", "agent_cuda.yaml")),
                                          ("cuda:1", ("sim.yaml", "agent.yaml", "agent_cuda.yaml"))])
def test_device_chooses_the_policys_agent_files_in_cli_and_launch(tmp_path, monkeypatch, device, files):
    """`--device cuda` / device:=cuda give the policy node agent_cuda.yaml over agent.yaml, and those files
    hold the config the gym backend and `bench learner` load for the device."""
    import torch

    from carla_rl.contract.config import node_parameters
    from carla_rl.learner.agent_config import agent_config_from_mapping, load_device_agent_config

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    save_dir = str(tmp_path / "run")
    policy = next(s for s in cli_specs(["--device", device, "--save-dir", save_dir]) if s.role == "policy")
    assert policy.params_files == files
    with launch_stubs.installed():
        actions = resolve(load_launch("train.launch.py"),
                          {"device": device, "save_dir": save_dir, "config_dir": str(CONFIG_DIR),
                           "composition": "none"})
    launched = next(a for a in actions if a.kwargs["name"] == "dqn_policy")
    assert launched.kwargs["parameters"][:-1] == [str(CONFIG_DIR / f) for f in files]
    merged: dict = {}
    for name in files[1:]:  # as rcl applies them: a later file's key wins
        for key, value in flatten(node_parameters(CONFIG_DIR / name, "dqn_policy")).items():
            merged[key] = value
    agent = agent_config_from_mapping(unflatten(merged)["agent"])
    assert agent == load_device_agent_config(CONFIG_DIR, device)
