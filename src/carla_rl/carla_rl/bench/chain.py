"""``carla-rl bench chain``: the messaging floor of the machine, to read ``bench graph`` against.

For scale, a bare three-process rclpy chain on a 2-core machine is said to make ~1,200 agent steps/s
with one env and 1,600 with four. Machines of the same kind differ (the graph's figures in
docs/BENCHMARKS.md moved by ~1.5-1.7x between two CPU models), so this runs that chain here: source,
relay and responder (carla_rl.nodes.support.bench_chain) as three processes, per env in lockstep, no simulation.
This driver starts them, takes the source's report and adds the machine's description.
"""

from __future__ import annotations

import json
import subprocess
import sys

from carla_rl.nodes.support.bench_chain import MATCH_TIMEOUT_S, ROLES


def run_chain_benchmark(envs: int, seconds: float) -> dict:
    """Start relay, responder and source as processes; the source's report, with the machine."""
    from carla_rl.bench.graph import machine_description

    deadline_s = MATCH_TIMEOUT_S + seconds + 60.0
    command = [sys.executable, "-m", "carla_rl.nodes.support.bench_chain", "--envs", str(envs),
               "--seconds", str(seconds), "--deadline", str(deadline_s), "--role"]
    helpers = [subprocess.Popen(command + [role], stdout=subprocess.DEVNULL) for role in ROLES[1:]]
    try:
        source = subprocess.run(command + ["source"], capture_output=True, text=True, timeout=deadline_s + 30)
    finally:
        for helper in helpers:
            helper.terminate()
        for helper in helpers:
            try:
                helper.wait(timeout=10)
            except subprocess.TimeoutExpired:
                helper.kill()
                helper.wait()
    if source.returncode != 0:
        raise RuntimeError(f"bench chain: the source process failed ({source.returncode}): "
                           f"{source.stderr.strip()[-500:]}")
    result = json.loads(source.stdout.strip().splitlines()[-1])
    result.update(machine_description())
    return result
