"""`carla-rl train`: every flag acts on both backends (`--backend ros|gym`), or the command refuses it
with a one-line reason. The backends' entry points are replaced by recorders, so no graph or env runs."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from carla_rl.cli import commands
from carla_rl.cli.main import build_parser
from carla_rl.graph import GraphOptions

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"

# flag -> (value given, the value each backend must receive); checked on both backends below
HONOURED = {
    "--parallel-envs": ("3", 3),
    "--device": ("cuda:1", "cuda:1"),  # torch is told a CUDA device exists
    "--save-dir": ("RUN", "RUN"),
    "--load-model-from": ("CKPT", "CKPT"),
    "--num-episodes": ("7", 7),
    "--num-eval-episodes": ("4", 4),
    "--phase": ("3", 3),
    "--batch-size": ("64", 64),
    "--seed": ("5", 5),
    "--time-limit-s": ("9", 9.0),
    "--no-progress": (None, True),
}
# flags that only the ROS graph can honour: refused by the gym backend (a non-default value)
ROS_ONLY = {
    "--simulator": ("carla", "the gym backend runs the embedded simulator only"),
    "--time-scale": ("1", "steps as fast as possible only"),
    "--enable-pygame-display": (None, "the live view subscribes to the ROS graph's topics"),
    "--save-sensor-data": (None, "records the ROS graph's sensor topics"),
    "--enable-profiler": (None, "profiles the ROS graph's node processes"),
    "--composition": ("none", "lays out the ROS graph's processes"),
    "--role": ("learner", "steps every env in its own process"),
    "--reward-on": ("learner", "places the ROS graph's reward evaluators on hosts"),
    "--discovery": ("subnet", "uses no DDS"),
}
NEEDS_CARLA = {"--town"}  # refused on both backends with the embedded simulator


def _train_flags() -> set[str]:
    parser = build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    return {a.option_strings[-1] for a in train._actions if a.option_strings} - {"--help", "-h"}


def test_every_train_flag_is_classified():
    """A new flag must be added to one of the tables (and so be tested on both backends)."""
    assert _train_flags() == set(HONOURED) | set(ROS_ONLY) | NEEDS_CARLA | {"--backend"}


def _argv(tmp_path: Path, flag: str, value: str | None) -> list[str]:
    if value == "RUN":
        value = str(tmp_path / "run")
    if value == "CKPT":
        ckpt = tmp_path / "old" / "checkpoints" / "final.pt"
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        ckpt.write_bytes(b"")
        value = str(ckpt)
    return [flag] + ([value] if value is not None else [])


def _expected(tmp_path: Path, value: str | None, expected):
    if value == "RUN":
        return str((tmp_path / "run").resolve())
    if value == "CKPT":
        return str((tmp_path / "old" / "checkpoints" / "final.pt").resolve())
    return expected


@pytest.fixture
def recorders(monkeypatch):
    """Replace both backends' entry points; returns what each received."""
    import carla_rl.training.vector_training as vector_training

    calls = {}

    class Summary:
        def to_dict(self):
            return {}

    def fake_train_vector(config_dir, num_envs, device, seconds, save_dir, **kwargs):
        calls["gym"] = dict(kwargs, num_envs=num_envs, device=device, seconds=seconds, save_dir=str(save_dir))
        return Summary()

    def fake_run_graph(options, config_dir, progress=True, display=False, stop_after_s=0.0):
        calls["ros"] = {"options": options, "progress": progress, "display": display,
                        "stop_after_s": stop_after_s}
        return 0

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(vector_training, "train_vector", fake_train_vector)
    monkeypatch.setattr(commands, "run_graph", fake_run_graph)
    return calls


def _run(argv: list[str]) -> int:
    args = build_parser().parse_args(["train", *argv])
    return commands.run_train(args, CONFIG_DIR)


# what each backend received for a flag: GraphOptions fields (ros) and train_vector's arguments (gym)
ROS_FIELD = {"--parallel-envs": "num_envs", "--device": "device", "--save-dir": "save_dir",
             "--load-model-from": "load_model_from", "--num-episodes": "num_episodes",
             "--num-eval-episodes": "num_eval_episodes", "--phase": "phase", "--batch-size": "batch_size",
             "--seed": "seed"}
GYM_ARG = {"--parallel-envs": "num_envs", "--device": "device", "--save-dir": "save_dir",
           "--load-model-from": "load_model_from", "--num-episodes": "num_episodes",
           "--num-eval-episodes": "num_eval_episodes", "--phase": "phase", "--batch-size": "batch_size",
           "--seed": "seed", "--time-limit-s": "seconds"}


@pytest.mark.parametrize("flag", sorted(HONOURED))
def test_each_honoured_flag_reaches_the_ros_graph(flag, recorders, tmp_path):
    value, expected = HONOURED[flag]
    assert _run(_argv(tmp_path, flag, value)) == 0
    got = recorders["ros"]
    expected = _expected(tmp_path, value, expected)
    if flag == "--time-limit-s":
        assert got["stop_after_s"] == expected
    elif flag == "--no-progress":
        assert got["progress"] is False
    else:
        assert getattr(got["options"], ROS_FIELD[flag]) == expected
        assert getattr(GraphOptions(), ROS_FIELD[flag]) != expected  # the flag changed something


@pytest.mark.parametrize("flag", sorted(HONOURED))
def test_each_honoured_flag_reaches_the_gym_trainer(flag, recorders, tmp_path):
    value, expected = HONOURED[flag]
    assert _run(["--backend", "gym", *_argv(tmp_path, flag, value)]) == 0
    got = recorders["gym"]
    expected = _expected(tmp_path, value, expected)
    if flag == "--no-progress":
        return  # the gym backend prints log lines, which is what --no-progress asks for
    assert got[GYM_ARG[flag]] == expected, (flag, got)


def test_gym_defaults_match_the_graph_defaults(recorders, tmp_path):
    """Without flags both backends start at phase 1 with the config's batch size and no limits."""
    assert _run(["--save-dir", str(tmp_path / "a")]) == 0
    assert _run(["--backend", "gym", "--save-dir", str(tmp_path / "a")]) == 0
    ros, gym = recorders["ros"]["options"], recorders["gym"]
    assert gym["phase"] == ros.phase == 1
    assert gym["batch_size"] == ros.batch_size == 0 and gym["num_episodes"] == ros.num_episodes == 0
    assert gym["load_model_from"] == ros.load_model_from == "" and gym["seconds"] == float("inf")


@pytest.mark.parametrize("flag", sorted(ROS_ONLY))
def test_ros_only_flags_are_refused_by_the_gym_backend_and_honoured_by_ros(flag, recorders, tmp_path):
    value, reason = ROS_ONLY[flag]
    argv = _argv(tmp_path, flag, value)
    if flag == "--simulator":
        argv += ["--town", "Town03"]
    with pytest.raises(commands.CommandError) as refused:
        _run(["--backend", "gym", *argv])
    message = str(refused.value)
    assert "\n" not in message and message.startswith(f"{flag} does not work with --backend gym")
    assert reason in message
    assert "gym" not in recorders
    assert _run(argv) == 0  # the ROS graph takes it
    options = recorders["ros"]["options"]
    if flag == "--enable-pygame-display":
        assert recorders["ros"]["display"] is True
    else:
        field = flag[2:].replace("-", "_")
        assert getattr(options, field) != getattr(GraphOptions(), field)


@pytest.mark.parametrize("backend", ["ros", "gym"])
def test_town_needs_a_carla_simulator(backend, recorders):
    with pytest.raises(commands.CommandError, match="--town needs --simulator carla or bridge"):
        _run(["--backend", backend, "--town", "Town03"])
    assert not recorders


@pytest.mark.parametrize("backend", ["ros", "gym"])
def test_bad_values_are_refused_on_both_backends(backend, recorders, tmp_path):
    with pytest.raises(commands.CommandError, match="no such file"):
        _run(["--backend", backend, "--load-model-from", str(tmp_path / "missing.pt")])
    with pytest.raises(commands.CommandError, match="device must be cpu or cuda"):
        _run(["--backend", backend, "--device", "cuda:x"])
    assert not recorders


def test_a_refused_flag_is_one_line_on_stderr(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "carla_rl.cli.main", "train", "--backend", "gym", "--time-scale", "1"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--time-scale does not work with --backend gym" in lines[0], proc.stderr


def test_the_gym_backend_starts_at_the_requested_phase_with_the_flags_curriculum_settings():
    """`--backend gym --phase 3` used to start at phase 1: the curriculum of the run starts at 3."""
    from carla_rl.training.vector_training import build_curriculum

    assert build_curriculum(CONFIG_DIR).phase == 1
    curriculum = build_curriculum(CONFIG_DIR, phase=3, num_episodes=7, num_eval_episodes=4)
    assert curriculum.phase == 3
    assert curriculum.config.num_episodes == 7 and curriculum.config.eval_episodes_override == 4


def test_the_gym_backend_resumes_the_curriculum_of_the_checkpoints_run(tmp_path):
    from carla_rl.training.vector_training import build_curriculum

    run = tmp_path / "old"
    (run / "checkpoints").mkdir(parents=True)
    saved = build_curriculum(CONFIG_DIR, phase=4)
    saved.save(run / "curriculum_state.json")
    resumed = build_curriculum(CONFIG_DIR, phase=1, load_model_from=run / "checkpoints" / "final.pt")
    assert resumed.phase == 4  # a resumed run keeps its saved phase, as the curriculum manager does
