"""Learner tests: CPU, one thread, deterministic seeds."""

import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
SRC = Path(__file__).resolve().parents[2] / "src" / "carla_rl"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

import torch  # noqa: E402

torch.set_num_threads(1)
