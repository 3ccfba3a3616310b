"""Every value of config/*.yaml reaches the node it is written for, as rcl itself resolves parameter files.

The graph passes each node its config files (``--params-file``) under its own name and namespace. rcl
applies a node-keyed block only where the key matches the node's full name: a bare ``<node>:`` key
reaches ``/<node>`` but not ``/env_0/<node>``. These tests build each node of the graph the way its
process does (the same ``--ros-args``) and compare the parameters rcl hands it with the YAML blocks
the pure-Python loader reads for that node name (``carla_rl.contract.config.node_parameters``).
"""

from pathlib import Path

import pytest

from carla_rl.contract.config import flatten, node_parameters
from carla_rl.graph import COMPOSITIONS, GraphOptions, build_graph, build_sim_graph, ros_arguments, \
    write_overrides_file

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"


def rcl_parameters(context, spec, params_dir: Path) -> dict:
    """The parameter overrides rcl gives the node of ``spec`` from its command-line arguments."""
    from rclpy.node import Node

    args = ros_arguments(spec, CONFIG_DIR, None, write_overrides_file(spec, params_dir))
    node = Node(spec.name, context=context, cli_args=args, start_parameter_services=False,
                automatically_declare_parameters_from_overrides=True)
    try:
        assert node.get_fully_qualified_name() == spec.fqn
        return {name: p.value for name, p in node.get_parameters_by_prefix("").items()}
    finally:
        node.destroy_node()


def yaml_parameters(spec) -> dict:
    """What the config files (merged in order) and the graph's overrides hold for the node."""
    expected: dict = {}
    for name in spec.params_files:
        expected.update(flatten(node_parameters(CONFIG_DIR / name, spec.name)))
    expected.update(spec.parameters)
    return expected


def mismatches(expected: dict, got: dict) -> dict:
    out = {}
    for key, value in expected.items():
        have = got.get(key, "<missing>")
        if isinstance(value, (list, tuple)) and not isinstance(have, str):
            have = list(have)  # rcl hands arrays as array.array / list
        if have != value:
            out[key] = (value, have)
    return out


@pytest.mark.parametrize("composition", COMPOSITIONS)
def test_every_node_of_the_training_graph_gets_its_yaml_block(context, tmp_path, composition):
    specs = build_graph(GraphOptions(num_envs=3, composition=composition))
    assert any(spec.namespace for spec in specs)  # the case that bare node keys miss
    checked = 0
    for spec in specs:
        expected = yaml_parameters(spec)
        assert expected, f"{spec.fqn}: no config block in {spec.params_files}"
        wrong = mismatches(expected, rcl_parameters(context, spec, tmp_path))
        assert not wrong, f"{spec.fqn}: YAML value vs what rcl gave the node: {wrong}"
        checked += 1
    assert checked == len(specs)


@pytest.mark.parametrize("simulator", ["carla", "bridge"])
def test_carla_side_nodes_get_their_yaml_block(context, tmp_path, simulator):
    specs = build_graph(GraphOptions(num_envs=2, simulator=simulator))
    carla_side = [spec for spec in specs if spec.role == "simulator"]
    assert carla_side and all(spec.namespace for spec in carla_side)
    for spec in carla_side:
        wrong = mismatches(yaml_parameters(spec), rcl_parameters(context, spec, tmp_path))
        assert not wrong, f"{spec.fqn}: YAML value vs what rcl gave the node: {wrong}"


def test_sim_only_graph_gets_its_yaml_block(context, tmp_path):
    for spec in build_sim_graph(GraphOptions(num_envs=1)):
        wrong = mismatches(yaml_parameters(spec), rcl_parameters(context, spec, tmp_path))
        assert not wrong, f"{spec.fqn}: YAML value vs what rcl gave the node: {wrong}"
