"""`carla-rl bench hosts` short: a learner host and two worker hosts (network namespaces, multicast
blocked, discovery through a Fast DDS Discovery Server) train together; one worker's link goes down and
the policy goes on with the other's envs; the link comes back and the worker rejoins; nothing is left."""

import os
import subprocess

import pytest

from carla_rl.bench.hosts import machine_refusal, run_hosts_benchmark

REFUSAL = machine_refusal()


@pytest.mark.skipif(REFUSAL is not None, reason=f"needs network namespaces: {REFUSAL}")
def test_workers_join_leave_and_rejoin_a_learner_on_another_host(tmp_path):
    result = run_hosts_benchmark(envs_per_worker=1, discovery="server", phase_s=5.0, outage_s=6.0,
                                 domain_id=int(os.environ["ROS_DOMAIN_ID"]), save_dir=tmp_path / "hosts")
    assert set(result["discovery_s"]) == {"worker0", "worker1"}
    assert all(0 < s < 240 for s in result["discovery_s"].values())
    one, two = result["one_worker"], result["two_workers"]
    assert one["env_steps"] > 0 and one["worker_link_bytes"]["worker0"] > 0
    assert two["env_steps"] > 0 and two["worker_link_bytes"]["worker1"] > 0
    assert one["learner_link_bytes_per_env_step"] > 0
    down = result["worker0_link_down"]
    assert down["worker_link_bytes"]["worker0"] == 0  # the link was really down
    assert down["env_steps_while_down"] > 0           # the policy went on with worker 1's env
    # and on none of worker 0's (at most the one tick in flight when the link went down: lockstep)
    assert down["worker0_env_steps_while_down"] <= 1
    assert down["worker_link_bytes"]["worker1"] > 0
    assert result["rejoin_s"] >= 0                     # worker 0's observations reached the learner again
    assert result["after_rejoin"]["worker_link_bytes"]["worker0"] > 0
    tag = str(os.getpid() % 100000)
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"crl{tag}_" not in left
    assert f"crlbr{tag}" not in subprocess.run(["ip", "link", "show"], capture_output=True, text=True).stdout
