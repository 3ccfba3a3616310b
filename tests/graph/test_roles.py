"""The learner and worker roles: a graph spread over hosts is the one-host graph's nodes, split between
a learner (everything but the envs) and workers (only envs), with env ids, seeds and node names that never
collide; worker.launch.py builds what `carla-rl worker` runs; discovery is set in one place."""

import dataclasses
from pathlib import Path

import pytest

import launch_stubs
from carla_rl.cli import commands
from carla_rl.cli import main as cli
from carla_rl.contract.seeds import training_seed
from carla_rl.graph import GraphOptions, build_graph, group_processes
from carla_rl.graph import discovery
from carla_rl.graph.launch_support import discovery_environment
from test_launch_matches_cli import CONFIG_DIR, load_launch, resolve

TOTAL, PER_WORKER = 4, 2


def spread(reward_on: str = "worker", composition: str = "none"):
    learner = build_graph(GraphOptions(num_envs=TOTAL, role="learner", reward_on=reward_on, composition="none"))
    workers = [build_graph(GraphOptions(num_envs=PER_WORKER, role="worker", worker_index=i, reward_on=reward_on,
                                        composition=composition)) for i in range(TOTAL // PER_WORKER)]
    return learner, workers


@pytest.mark.parametrize("reward_on", ["worker", "learner"])
def test_learner_and_workers_run_the_one_host_graphs_envs_and_nodes(reward_on):
    learner, workers = spread(reward_on)
    one_host = build_graph(GraphOptions(num_envs=TOTAL, composition="none"))
    env_roles = ("simulator", "preprocessor")
    assert not [s for s in learner if s.role in env_roles]
    spread_envs = sorted((s.fqn, s.parameters.get("shell.env_id", s.parameters.get("env_id")))
                         for w in workers for s in w if s.role in env_roles)
    assert spread_envs == sorted((s.fqn, s.parameters.get("shell.env_id", s.parameters.get("env_id")))
                                 for s in one_host if s.role in env_roles)
    for worker in workers:  # a worker runs envs only (and, reward_on worker, their evaluator)
        assert {s.role for s in worker} == ({"simulator", "preprocessor", "reward"} if reward_on == "worker"
                                            else {"simulator", "preprocessor"})
    assert {s.role for s in learner} == {"policy", "reward", "curriculum", "monitor"}
    policy = next(s for s in learner if s.role == "policy")
    assert policy.parameters["num_envs"] == TOTAL
    everything = [s.fqn for s in learner] + [s.fqn for w in workers for s in w]
    assert len(everything) == len(set(everything)), "node names collide between hosts"


def test_each_env_is_scored_once_and_one_evaluator_leads():
    learner, workers = spread("worker")
    lead = next(s for s in learner if s.role == "reward")
    assert lead.parameters == {"num_envs": TOTAL, "score_envs": False}  # leads (the default), scores none
    scored = []
    for i, worker in enumerate(workers):
        reward = next(s for s in worker if s.role == "reward")
        assert reward.namespace == f"/worker_{i}"
        assert reward.parameters["lead_evaluation"] is False
        scored += reward.parameters["env_ids"]
        assert max(reward.parameters["env_ids"]) < reward.parameters["num_envs"]
    assert sorted(scored) == list(range(TOTAL))
    learner, workers = spread("learner")  # one evaluator beside the policy scores every env
    assert next(s for s in learner if s.role == "reward").parameters == {"num_envs": TOTAL}


def test_workers_env_ids_and_seeds_never_collide():
    ids, seeds = [], set()
    for index in range(3):
        options = GraphOptions(num_envs=PER_WORKER, role="worker", worker_index=index, seed=7)
        sims = [s for s in build_graph(options) if s.role == "simulator"]
        ids += [s.parameters["shell.env_id"] for s in sims]
        assert all(s.parameters["shell.seed"] == 7 for s in sims)  # the base seed; per env it mixes the id
        assert all(s.parameters["shell.wait_for_controller"] for s in sims)  # they start with the policy
        seeds |= {training_seed(7, s.parameters["shell.env_id"], episode) for s in sims for episode in range(50)}
    assert ids == list(range(3 * PER_WORKER))
    assert len(seeds) == 3 * PER_WORKER * 50


def test_worker_compositions_keep_their_containers_apart():
    for composition, containers in (("envs", {"/worker_1/env_container"}),
                                    ("per_env", {"/env_2/env_container", "/env_3/env_container"}),
                                    ("none", set())):
        specs = build_graph(GraphOptions(num_envs=PER_WORKER, role="worker", worker_index=1,
                                         composition=composition))
        assert {s.container for s in specs if s.container} == containers
    specs = build_graph(GraphOptions(num_envs=TOTAL, role="learner", composition="all"))
    assert {s.fqn for s in specs if s.container == "/graph_container"} == \
        {"/dqn_policy", "/reward_evaluator", "/curriculum_manager"}


@pytest.mark.parametrize("options,message", [
    (dict(role="worker", composition="halves"), "does not apply to role worker"),
    (dict(role="worker", composition="all"), "does not apply to role worker"),
    (dict(role="learner", composition="halves"), "does not apply to role learner"),
    (dict(role="learner", worker_index=1), "for role worker only"),
    (dict(role="worker", worker_index=512, num_envs=2), "env ids end at 1023"),
    (dict(role="worker", num_envs=65), r"num_envs must be in 1..64"),
    (dict(role="learner", num_envs=1025), r"num_envs must be in 1..1024"),
    (dict(role="boss"), "role must be one of"),
    (dict(role="worker", reward_on="cloud"), "reward_on must be one of"),
    (dict(role="worker", discovery="peers:"), "peers needs at least one address"),
])
def test_bad_role_options_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        GraphOptions(**options).validate()


def test_learner_may_run_more_envs_than_one_host():
    build_graph(GraphOptions(num_envs=200, role="learner"))


@pytest.mark.parametrize("cli_argv,launch_args", [
    (["--worker-index", "1", "--envs", "2"], {"worker_index": "1", "num_envs": "2"}),
    (["--worker-index", "0", "--discovery", "peers:10.0.0.1"], {"worker_index": "0", "discovery": "peers:10.0.0.1"}),
    (["--worker-index", "2", "--envs", "3", "--composition", "per_env", "--seed", "5", "--reward-on", "learner"],
     {"worker_index": "2", "num_envs": "3", "composition": "per_env", "seed": "5", "reward_on": "learner"}),
])
def test_worker_launch_builds_the_cli_worker_graph(tmp_path, monkeypatch, cli_argv, launch_args):
    captured = {}
    monkeypatch.setattr(commands, "run_graph", lambda options, *a, **k: captured.setdefault("options", options))
    save_dir = str(tmp_path / "w")
    args = cli.build_parser().parse_args(["worker", *cli_argv, "--save-dir", save_dir])
    commands.run_worker(args, CONFIG_DIR)
    expected = group_processes(build_graph(captured["options"]))
    with launch_stubs.installed():
        actions = resolve(load_launch("worker.launch.py"),
                          {**launch_args, "save_dir": save_dir, "config_dir": str(CONFIG_DIR)})
    assert [(a.kwargs["name"], a.kwargs["namespace"], a.kwargs["executable"]) for a in actions] == \
        [(p.name, p.namespace, p.executable) for p in expected]
    for action, process in zip(actions, expected):
        if not process.is_container:
            assert action.kwargs["parameters"][-1] == process.components[0].parameters
        assert action.kwargs["additional_env"] == discovery_environment(captured["options"])
        assert bool(action.kwargs["additional_env"]) == ("discovery" in launch_args)  # none: environment as is


def test_train_launch_takes_the_learner_role(tmp_path):
    with launch_stubs.installed():
        actions = resolve(load_launch("train.launch.py"),
                          {"role": "learner", "num_envs": "6", "save_dir": str(tmp_path),
                           "config_dir": str(CONFIG_DIR), "discovery": "server:10.1.2.3:11811"})
    assert "embedded_simulator" not in [a.kwargs["executable"] for a in actions]
    policy = next(a for a in actions if a.kwargs["name"] == "dqn_policy")
    assert policy.kwargs["parameters"][-1]["num_envs"] == 6
    assert policy.kwargs["additional_env"]["ROS_DISCOVERY_SERVER"] == "10.1.2.3:11811"


def test_discovery_specs_become_environment_variables():
    assert discovery.parse("server:10.0.0.1:11811,h2").environment() == {
        "ROS_DISCOVERY_SERVER": "10.0.0.1:11811;h2:11811", "ROS_STATIC_PEERS": "",
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"}
    assert discovery.parse("peers:a, b").environment() == {
        "ROS_STATIC_PEERS": "a;b", "ROS_DISCOVERY_SERVER": "", "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    assert discovery.parse("SUBNET").environment()["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "SUBNET"
    for bad, message in (("server:h:x", "not a number"), ("localhost:1", "takes no addresses"),
                         ("peers:a;b", "not a host name"), ("dns", "expected localhost")):
        with pytest.raises(ValueError, match=message):
            discovery.parse(bad)


def test_discovery_defaults_follow_the_environment_then_the_role():
    assert discovery.resolve("", "all", {}).kind == "localhost"
    assert discovery.resolve("", "worker", {}).kind == "subnet"
    assert discovery.resolve("", "learner", {}).kind == "subnet"
    assert discovery.resolve("", "worker", {"ROS_DISCOVERY_SERVER": "h:1"}) == discovery.parse("server:h:1")
    assert discovery.resolve("", "all", {"ROS_STATIC_PEERS": "a;b"}) == discovery.parse("peers:a,b")
    kept = {"ROS_DISCOVERY_SERVER": "h:1", "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    assert discovery.resolve("", "worker", kept) is None  # all given: as it is
    assert discovery.resolve("", "worker", {"ROS_DISCOVERY_SERVER": "TCPv4:[h]:1"}) is None  # Fast DDS's own
    assert discovery.resolve("", "worker", {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}) is None
    assert discovery.resolve("peers:x", "worker", {"ROS_DISCOVERY_SERVER": "h:1"}).kind == "peers"
    with pytest.raises(ValueError, match="OFF disables"):
        discovery.resolve("", "worker", {"ROS_STATIC_PEERS": "x", "ROS_AUTOMATIC_DISCOVERY_RANGE": "OFF"})
    environ = {"ROS_DISCOVERY_SERVER": "old:1"}
    discovery.apply(discovery.parse("peers:a"), environ)
    assert environ == {"ROS_STATIC_PEERS": "a", "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}


def test_discovery_server_command_uses_the_wheels_binary(tmp_path):
    command, env = discovery.server_command("0.0.0.0", 11811)
    assert Path(command[0]).name == "fast-discovery-server" and command[1:] == ["42", "-l", "0.0.0.0",
                                                                              "-p", "11811"]
    assert "ros_fastdds.libs" in env["LD_LIBRARY_PATH"]
    with pytest.raises(FileNotFoundError, match="ros-fastdds"):
        discovery.server_command("0.0.0.0", 11811, prefix=str(tmp_path))


def test_every_new_option_is_a_launch_argument_of_both_launch_files():
    with launch_stubs.installed():
        for name in ("train.launch.py", "worker.launch.py"):
            declared = {e.name for e in load_launch(name).entities
                        if isinstance(e, launch_stubs.DeclareLaunchArgument)}
            assert {f.name for f in dataclasses.fields(GraphOptions)} <= declared, name
