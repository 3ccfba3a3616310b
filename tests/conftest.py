"""Test-wide settings: DDS isolation (a private ROS_DOMAIN_ID per run, localhost discovery),
single-threaded math, headless displays. scripts/run_tests.sh sets the same; this covers plain
`pytest` runs too."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("ROS_DOMAIN_ID", str((os.getpid() % 100) + 1))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("FASTDDS_BUILTIN_TRANSPORTS", "LARGE_DATA")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("CARLA_RL_CONFIG_DIR", str(ROOT / "config"))
sys.path.insert(0, str(ROOT / "tests"))

try:  # keep torch from grabbing both cores in every test process
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover - torch is a hard requirement, reported by the tests that use it
    pass
