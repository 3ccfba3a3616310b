# The cost of a per-tick float buffer with glibc's default malloc thresholds and with carla_rl.allocator's:
# `frames.float() / 255` for B stacked 4 x 84 x 84 uint8 frames, one torch thread, best of 5 x 200 calls.
# Run from the repository root (each setting in its own process, since mallopt is process-wide):
#   . .venv/bin/activate && . install/setup.bash
#   CARLA_RL_MALLOC_TUNING=0 python3 docs/benchmarks/graph_s8/alloc_latency.py
#   CARLA_RL_MALLOC_TUNING=1 python3 docs/benchmarks/graph_s8/alloc_latency.py
import os, time
import torch
from carla_rl.allocator import tune_allocator

applied = tune_allocator()
torch.set_num_threads(1)
result = {}
for batch in (4, 8, 16, 32):
    frames = torch.randint(0, 255, (batch, 4, 84, 84), dtype=torch.uint8)
    for _ in range(10):
        frames.float() / 255
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(200):
            frames.float() / 255
        best = min(best, (time.perf_counter() - start) / 200 * 1e3)
    result[batch] = round(best, 3)
print(f"tuned={applied} (CARLA_RL_MALLOC_TUNING={os.environ.get('CARLA_RL_MALLOC_TUNING', '1')}) ms per call:", result)
