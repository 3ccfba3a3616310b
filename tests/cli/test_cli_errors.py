"""`carla-rl`: bad flags and bad values give one line on stderr and exit code 2, never a traceback."""

import subprocess
import sys

import pytest

CASES = [
    (["bogus"], "invalid choice"),
    (["train", "--parallel-envs", "0"], "expected a positive integer"),
    (["train", "--parallel-envs", "two"], "expected an integer"),
    (["train", "--time-scale", "-1"], "expected a number >= 0"),
    (["train", "--simulator", "unity"], "invalid choice"),
    (["train", "--device", "tpu"], "device must be cpu or cuda"),
    (["train", "--load-model-from", "/nonexistent/ckpt.pt"], "no such file"),
    (["eval", "--phases", "x-y"], "invalid phase list"),
    (["eval", "--policy", "/nonexistent.pt", "--phases", "1", "--episodes", "1"], "not autopilot, random"),
    (["--config", "/nonexistent", "status"], "does not exist"),
    (["bench", "graph", "--envs", "0"], "expected a positive integer"),
    (["bench", "chain", "--envs", "0"], "expected a positive integer"),
    (["bench", "learner", "--trace-dir", "traces"], "--trace-dir needs --profile"),
    (["bench", "learner", "--device", "tpu"], "device must be cpu or cuda"),
    (["train", "--backend", "gym", "--enable-profiler"], "--enable-profiler does not work with --backend gym"),
    (["train", "--backend", "gym", "--town", "Town03"], "--town needs --simulator carla or bridge"),
    (["train", "--backend", "gym", "--role", "learner"], "--role does not work with --backend gym"),
    (["train", "--role", "learner", "--discovery", "server:"], "server needs at least one address"),
    (["train", "--role", "learner", "--discovery", "server:h:99999"], "port 99999 outside 1..65535"),
    (["worker", "--envs", "2"], "the following arguments are required: --worker-index"),
    (["worker", "--worker-index", "-1"], "worker_index must be >= 0"),
    (["worker", "--worker-index", "600", "--envs", "2"], "env ids end at 1023"),
    (["worker", "--worker-index", "0", "--composition", "halves"], "invalid choice"),
    (["worker", "--worker-index", "0", "--discovery", "multicast"], "expected localhost, subnet"),
]


@pytest.mark.parametrize("argv,needle", CASES)
def test_one_line_error(argv, needle, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "carla_rl.cli.main", *argv], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode in (1, 2), proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert needle in lines[0], lines[0]
    assert "Traceback" not in proc.stderr


def test_help_lists_every_subcommand():
    proc = subprocess.run([sys.executable, "-m", "carla_rl.cli.main", "--help"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0
    for command in ("train", "eval", "sim", "set-phase", "status", "bench", "record", "replay"):
        assert command in proc.stdout
    train = subprocess.run([sys.executable, "-m", "carla_rl.cli.main", "train", "--help"], capture_output=True,
                           text=True, timeout=60).stdout
    for flag in ("--log-level", "--num-episodes", "--save-dir", "--load-model-from", "--enable-pygame-display",
                 "--save-sensor-data", "--time-scale", "--batch-size", "--town", "--num-eval-episodes",
                 "--device", "--parallel-envs", "--enable-profiler"):
        assert flag in train or flag == "--log-level", flag
