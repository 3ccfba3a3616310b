# The in-process benchmark alone, with or without the allocator settings (CARLA_RL_MALLOC_TUNING=0|1), N envs, 10 s:
#   . .venv/bin/activate && . install/setup.bash && OMP_NUM_THREADS=1 CARLA_RL_MALLOC_TUNING=1 python3 docs/benchmarks/graph_s8/inprocess_ab.py 16
import os, sys, json
from pathlib import Path
from carla_rl.allocator import tune_allocator
applied = tune_allocator()
import torch
torch.set_num_threads(1)
from carla_rl.graph_benchmark import run_inprocess
n = int(sys.argv[1])
print(json.dumps({"envs": n, "tuned": applied, "inprocess_steps_per_s": round(run_inprocess(n, 10.0, 2, Path("config")), 1)}))
