"""Every carla-rl command of the distributed Kubernetes manifests (per worker pod ordinal, after $(VAR)
expansion) and of compose.distributed.yaml parses with the real parser (carla_rl.cli.parser), and the
parsed values are the ones the env-id checks read from the text.

The manifests use the multi-host roles: ``carla-rl worker --worker-index I --envs N`` and
``carla-rl train --role learner``. Until those are in the parser, these tests fail, naming what is missing."""

from __future__ import annotations

import argparse
import shlex

import pytest
import yaml

from deploy_checks import COMPOSE_DISTRIBUTED, DISTRIBUTED, compose_commands, flag, k8s_commands, load_kustomization
from carla_rl.cli.parser import build_parser

# subcommand -> flags the deployment files pass to it
EXPECTED_CLI = {
    "train": {"--role", "--parallel-envs", "--device", "--save-dir", "--no-progress"},
    "worker": {"--worker-index", "--envs"},
}


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def _missing_cli() -> list[str]:
    subs = _subparsers(build_parser())
    missing = []
    for sub, flags in EXPECTED_CLI.items():
        if sub not in subs:
            missing.append(f"`carla-rl {sub}`")
            continue
        missing += [f"`carla-rl {sub} {f}`" for f in sorted(flags - set(subs[sub]._option_string_actions))]
    return missing


def _all_commands():
    commands = k8s_commands(load_kustomization(DISTRIBUTED))
    commands += compose_commands(yaml.safe_load(COMPOSE_DISTRIBUTED.read_text()))
    return [c for c in commands if c.argv[:1] == ["carla-rl"]]


def _parse(argv: list[str], capsys) -> argparse.Namespace:
    try:
        return build_parser().parse_args(argv[1:])
    except SystemExit:
        pytest.fail(f"{shlex.join(argv)} does not parse: {capsys.readouterr().err.strip()}")


def test_the_parser_has_the_commands_the_deployment_files_use():
    missing = _missing_cli()
    assert not missing, (f"carla_rl.cli.parser lacks {', '.join(missing)}: docker/k8s/distributed and "
                         "docker/compose.distributed.yaml call the multi-host roles; this passes once they are merged")


def test_expected_cli_covers_every_flag_the_files_pass():
    for c in _all_commands():
        passed = {a.split("=", 1)[0] for a in c.argv[2:] if a.startswith("--")}
        assert passed <= EXPECTED_CLI.get(c.argv[1], set()), f"{c.owner}: {shlex.join(c.argv)}"


def test_every_command_parses_with_the_real_parser(capsys):
    missing = _missing_cli()
    assert not missing, f"carla_rl.cli.parser lacks {', '.join(missing)} (see the test above)"
    for c in _all_commands():
        args = _parse(c.argv, capsys)
        if c.argv[1] == "worker":
            assert (args.worker_index, args.envs) == (int(flag(c.argv, "--worker-index")), int(flag(c.argv, "--envs")))
            if c.ordinal is not None:
                assert args.worker_index == c.ordinal, c.owner
        else:
            assert args.role == "learner" and args.parallel_envs == int(flag(c.argv, "--parallel-envs"))
            assert args.device == "cuda" and args.save_dir.startswith("/runs/")


def test_a_misspelt_flag_does_not_parse(capsys):
    argv = ["carla-rl", "train", "--paralel-envs", "8"]
    with pytest.raises(SystemExit):
        build_parser().parse_args(argv[1:])
    assert "--paralel-envs" in capsys.readouterr().err
