"""The learner's clipping + Adam step alone on the GPU, against alternatives (session 11).

Usage (repository root, CUDA): PYTHONPATH=src/carla_rl python3 docs/benchmarks/learner_s11/optimizer_step_micro.py

Parameters and random gradients of the default network (as the CUDA-graph path lays them out,
channels-last convolutions); each variant runs 10 steps per CUDA graph replay; prints us per step:
- ``compiled_foreach``: DQNAlgorithm's step with compile_optimizer (one copy of all gradients and
  a norm, then clipping + foreach Adam compiled), what the fast path runs;
- ``fused``: foreach norm clipping + torch.optim.Adam(fused=True);
- ``flat_compiled``: the same copy and norm, then clipping + Adam written over flat buffers
  (parameters, moments) compiled: a lower bound for keeping the parameters in one flat buffer."""

import dataclasses
import json
import sys

import torch

from carla_rl.learner.agent_config import AgentConfig
from carla_rl.learner.dqn_agent import DQNAgent, _flat_in_memory_order
from carla_rl.learner.replay_buffer import ObservationSpec

STEPS_PER_REPLAY = 10
REPLAYS = 200


def time_step(step) -> float:
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(STEPS_PER_REPLAY):
            step()
    for _ in range(10):
        graph.replay()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(REPLAYS):
        graph.replay()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) * 1000 / (REPLAYS * STEPS_PER_REPLAY)


def main() -> dict:
    cfg = dataclasses.replace(AgentConfig(), cuda_graphs=True, compile=True, compile_optimizer=True,
                              mixed_precision="bf16", learning_starts=0, batch_size=256)
    agent = DQNAgent(ObservationSpec(4, 84, 84, 16), 6, cfg, device=torch.device("cuda"))
    algorithm = agent.algorithm
    params = [p for p in algorithm.network.parameters()]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-2
    results = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
               "parameters": len(params), "elements": sum(p.numel() for p in params)}
    results["compiled_foreach_us"] = time_step(algorithm._clip_and_step)

    copies = [p.detach().clone().requires_grad_() for p in params]
    for c, p in zip(copies, params):
        c.grad = p.grad.clone()
    fused = torch.optim.Adam(copies, lr=cfg.lr, eps=cfg.adam_eps, fused=True, capturable=True)

    def fused_step():
        torch.nn.utils.clip_grad_norm_(copies, cfg.grad_clip_norm, foreach=True)
        fused.step()
    results["fused_us"] = time_step(fused_step)

    n = results["elements"]
    flat = torch.cat([_flat_in_memory_order(p.detach()) for p in params]).clone()
    exp_avg, exp_avg_sq = torch.zeros_like(flat), torch.zeros_like(flat)
    count = torch.zeros((), device=flat.device)
    beta1, beta2 = 0.9, 0.999
    grads = [p.grad for p in params]

    @torch.compile
    def flat_adam(grad, norm):
        grad = grad * (cfg.grad_clip_norm / (norm + 1e-6)).clamp(max=1.0)
        count.add_(1)
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        step_size = cfg.lr / (1 - beta1 ** count)
        denom = (exp_avg_sq.sqrt() / (1 - beta2 ** count).sqrt()) + cfg.adam_eps
        flat.sub_(step_size * exp_avg / denom)  # torch.optim.Adam's update (no weight decay)

    def flat_step():
        grad = torch.cat([_flat_in_memory_order(g) for g in grads])
        flat_adam(grad, torch.linalg.vector_norm(grad))
    results["flat_compiled_us"] = time_step(flat_step)
    assert flat.numel() == n
    return results


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
    sys.exit(0)
