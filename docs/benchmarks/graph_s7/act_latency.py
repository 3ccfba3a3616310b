# Act latency of the policy's acting copy (FrozenQNetwork) per batch size, one torch thread, best of 3 x 60 calls.
# Run from the repository root: . .venv/bin/activate && . install/setup.bash && OMP_NUM_THREADS=1 python3 docs/benchmarks/graph_s7/act_latency.py [label]
import time, numpy as np, torch, sys
from pathlib import Path
from carla_rl.learner.agent_config import ObservationSpec, load_agent_config
from carla_rl.learner.dqn_agent import DQNAgent
torch.set_num_threads(1)
cfg = load_agent_config(Path('config/agent.yaml'))
agent = DQNAgent(ObservationSpec(4,84,84,40), 6, cfg, device='cpu', seed=0)
agent.policy.load_weights(agent.online.state_dict())
res = {}
for rep in range(3):
    for b in (1, 4, 8, 16):
        f = np.random.randint(0,255,(b,4,84,84),dtype=np.uint8); v = np.zeros((b,40),np.float32); m = np.ones((b,6),bool)
        for _ in range(5): agent.act(f, v, explore=True, action_mask=m)
        t=time.perf_counter(); n=60
        for _ in range(n): agent.act(f, v, explore=True, action_mask=m)
        res.setdefault(b, []).append((time.perf_counter()-t)/n*1e3)
print(sys.argv[1] if len(sys.argv) > 1 else '', {b: round(min(v), 3) for b, v in res.items()})
