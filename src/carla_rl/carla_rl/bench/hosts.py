"""``carla-rl bench hosts``: the learner and worker roles across hosts, shown on one machine.

Three network namespaces stand for three hosts (a learner and two workers), each with a veth pair to a
bridge; multicast is blocked (the bridge floods no multicast, IGMP snooping on, and no namespace may join
a multicast group), so DDS discovery must go through a Fast DDS Discovery Server on the learner host or
static peers. DDS runs over UDPv4 only (shared memory would carry the data between namespaces of one
machine past the links). The run:

1. the learner host starts the discovery server (``server``), a probe (nodes/support/hosts_probe.py) and
   ``carla-rl train --role learner --parallel-envs 2N``; once its policy subscribes,
2. worker 0 starts (``carla-rl worker --worker-index 0 --envs N``): its discovery time is its start -> the
   first observation of its envs on the learner host; ``phase_s`` of steps/s with one worker host,
3. worker 1 starts likewise; ``phase_s`` with two worker hosts,
4. worker 0's link goes down for ``outage_s`` (the policy goes on with worker 1's envs),
5. the link comes back: worker 0 rejoins (link up -> its first observation again); ``phase_s`` after.

Figures: env steps/s acted on by the policy (its commands, counted by the probe), bytes on each host's link
(/sys/class/net/<veth>/statistics, both directions) per env step, discovery and rejoin times, env steps
during the outage. Needs root and ``ip`` (iproute2) with network namespaces; every namespace, link and
process it made is removed at the end, also after an error or Ctrl-C.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from carla_rl.graph.discovery import DEFAULT_SERVER_PORT, parse, server_command

SUBNET = "10.213.{net}.{host}"
STARTUP_TIMEOUT_S = 240.0      # a process's start to its first observation / subscription, 2 shared cores
STOP_TIMEOUT_S = 20.0          # SIGINT -> this long -> SIGKILL
SETTLE_S = 3.0                 # after a worker's first observation, before a window is measured


class HostsError(RuntimeError):
    """The benchmark cannot run here, or a host did not come up (the message says which and where its log is)."""


def machine_refusal() -> str | None:
    """Why network namespaces cannot be made here (None: they can)."""
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is missing"
    if shutil.which("bridge") is None:
        return "the bridge command (iproute2) is missing"
    tag = os.getpid() % 100000
    probe, bridge, veth = f"crlprobe{tag}", f"crlpbr{tag}", f"crlpv{tag}"
    steps = (["ip", "netns", "add", probe], ["ip", "link", "add", bridge, "type", "bridge"],
             ["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", probe])
    try:
        for step in steps:
            result = subprocess.run(step, capture_output=True, text=True)
            if result.returncode != 0:
                return f"{' '.join(step[:3])} failed: {result.stderr.strip()}"
        return None
    finally:
        subprocess.run(["ip", "link", "del", veth], capture_output=True)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True)
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)


def _ip(*args: str, netns: str = "") -> None:
    command = ["ip", *(["-n", netns] if netns else []), *args]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise HostsError(f"{' '.join(command)}: {result.stderr.strip()}")


@dataclass
class Host:
    name: str        # network namespace
    address: str
    veth: str        # the host-side end, on the bridge (its counters: everything the host sent and received)

    def snmp(self, table: str, counter: str) -> int:
        """A counter of the host's /proc/net/snmp (its namespace's): e.g. Udp RcvbufErrors (datagrams
        dropped for a full socket receive buffer: each lost sample costs a DDS retransmission), Ip
        ReasmOKs (datagrams reassembled from fragments: samples larger than the MTU)."""
        text = subprocess.run(["ip", "netns", "exec", self.name, "cat", "/proc/net/snmp"], capture_output=True,
                              text=True).stdout
        rows = [line.split()[1:] for line in text.splitlines() if line.startswith(f"{table}:")]
        if len(rows) < 2 or counter not in rows[0]:
            return 0
        return int(rows[1][rows[0].index(counter)])

    def link_bytes(self) -> int:
        stats = Path("/sys/class/net") / self.veth / "statistics"
        return int((stats / "rx_bytes").read_text()) + int((stats / "tx_bytes").read_text())


class Network:
    """A bridge and one namespace per host, multicast blocked; :meth:`close` removes them."""

    def __init__(self, names: list[str]) -> None:
        tag = os.getpid() % 100000
        self.bridge = f"crlbr{tag}"
        net = tag % 250
        self.hosts = [Host(f"crl{tag}_{n}", SUBNET.format(net=net, host=i + 1), f"crl{tag}v{i}")
                      for i, n in enumerate(names)]
        self.made: list[str] = []

    def open(self) -> "Network":
        _ip("link", "add", self.bridge, "type", "bridge", "mcast_snooping", "1", "mcast_querier", "0")
        self.made.append(f"link:{self.bridge}")
        _ip("link", "set", self.bridge, "multicast", "off", "up")
        for host in self.hosts:
            _ip("netns", "add", host.name)
            self.made.append(f"netns:{host.name}")
            _ip("link", "add", host.veth, "type", "veth", "peer", "name", "eth0", "netns", host.name)
            _ip("link", "set", host.veth, "master", self.bridge, "multicast", "off", "up")
            subprocess.run(["bridge", "link", "set", "dev", host.veth, "mcast_flood", "off"], capture_output=True)
            _ip("addr", "add", f"{host.address}/24", "dev", "eth0", netns=host.name)
            _ip("link", "set", "eth0", "multicast", "off", "up", netns=host.name)
            _ip("link", "set", "lo", "up", netns=host.name)
            # no multicast group can be joined: multicast discovery finds nobody, even on the host itself
            subprocess.run(["ip", "netns", "exec", host.name, "sysctl", "-q", "-w",
                            "net.ipv4.igmp_max_memberships=0"], capture_output=True)
        return self

    def set_link(self, host: Host, up: bool) -> None:
        _ip("link", "set", host.veth, "up" if up else "down")

    def close(self) -> None:
        for item in reversed(self.made):
            kind, name = item.split(":", 1)
            if kind == "netns":  # what still runs in it was started by this benchmark
                pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout
                for pid in pids.split():
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except (ProcessLookupError, ValueError):
                        pass
                subprocess.run(["ip", "netns", "del", name], capture_output=True)
            else:
                subprocess.run(["ip", "link", "del", name], capture_output=True)
        self.made.clear()


@dataclass
class Started:
    label: str
    process: subprocess.Popen
    log: Path


@dataclass
class Probe:
    """The learner host's probe: its JSON lines, and waits on them."""

    process: subprocess.Popen
    records: list = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def start_reading(self) -> None:
        def read() -> None:
            for line in self.process.stdout:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                with self.changed:
                    self.records.append(record)
                    self.changed.notify_all()
            with self.changed:
                self.changed.notify_all()

        threading.Thread(target=read, daemon=True).start()

    def send(self, line: str) -> None:
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def wait_for(self, match, timeout_s: float, what: str, since: float = 0.0) -> dict:
        deadline = time.monotonic() + timeout_s
        with self.changed:
            while True:
                for record in self.records:
                    if record.get("t", 0.0) >= since and match(record):
                        return record
                left = deadline - time.monotonic()
                if left <= 0 or self.process.poll() is not None:
                    raise HostsError(f"{what}: not seen within {timeout_s:.0f} s")
                self.changed.wait(left)

    def next_stats(self, after: float, timeout_s: float = 30.0) -> dict:
        return self.wait_for(lambda r: r["kind"] == "stats", timeout_s, "the probe's count of acted steps",
                             since=after)

    def steps_after(self, t: float, envs=None) -> int:
        """The env steps acted on by the first count after ``t`` (of every env, or of ``envs``)."""
        record = self.next_stats(t)
        return record["env_steps"] if envs is None else sum(record["per_env"][e] for e in envs)

    def steps_at(self, t: float, envs=None) -> int:
        """The env steps the policy acted on by time ``t`` (the last count before it): of every env, or
        of ``envs``."""
        with self.changed:
            before = [r for r in self.records if r["kind"] == "stats" and r["t"] <= t]
        if not before:
            return 0
        return before[-1]["env_steps"] if envs is None else sum(before[-1]["per_env"][e] for e in envs)


class HostsBenchmark:
    def __init__(self, envs_per_worker: int, discovery: str, reward_on: str, phase_s: float, outage_s: float,
                 domain_id: int, save_dir: Path, config_dir: Path) -> None:
        if discovery not in ("server", "peers"):
            raise HostsError(f"discovery {discovery!r}: server or peers")
        self.envs = envs_per_worker
        self.discovery = discovery
        self.reward_on = reward_on
        self.phase_s = phase_s
        self.outage_s = outage_s
        self.save_dir = Path(save_dir)
        self.config_dir = Path(config_dir)
        self.network = Network(["learner", "worker0", "worker1"])
        self.learner, *self.workers = self.network.hosts
        self.started: list[Started] = []
        self.probe: Probe | None = None
        env = {k: v for k, v in os.environ.items()
               if k not in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DISCOVERY_SERVER", "ROS_STATIC_PEERS")}
        domain = domain_id if domain_id >= 0 else int(os.environ.get("ROS_DOMAIN_ID", "0") or 0)
        env.update({"ROS_DOMAIN_ID": str(domain), "FASTDDS_BUILTIN_TRANSPORTS": "UDPv4", "PYTHONUNBUFFERED": "1",
                    "OMP_NUM_THREADS": "1"})
        self.env = env

    # --- processes ------------------------------------------------------------------------------
    def discovery_spec(self, host: Host) -> str:
        if self.discovery == "server":
            return f"server:{self.learner.address}:{DEFAULT_SERVER_PORT}"
        others = [self.learner.address] if host is not self.learner else [w.address for w in self.workers]
        return "peers:" + ",".join(others)

    def spawn(self, host: Host, label: str, command: list[str], extra_env: dict[str, str] | None = None,
              pipes: bool = False) -> subprocess.Popen:
        log = self.save_dir / f"{label}.log"
        env = {**self.env, **(extra_env or {})}
        full = ["ip", "netns", "exec", host.name, *command]
        if pipes:
            process = subprocess.Popen(full, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=open(log, "ab"), text=True, start_new_session=True)
        else:
            process = subprocess.Popen(full, env=env, stdin=subprocess.DEVNULL, stdout=open(log, "ab"),
                                       stderr=subprocess.STDOUT, start_new_session=True)
        self.started.append(Started(label, process, log))
        return process

    def cli(self, host: Host, label: str, *args: str) -> subprocess.Popen:
        return self.spawn(host, label, [sys.executable, "-m", "carla_rl.cli.main", "--config",
                                        str(self.config_dir), *args, "--discovery", self.discovery_spec(host),
                                        "--reward-on", self.reward_on, "--no-progress",
                                        "--save-dir", str(self.save_dir / label)])

    def start_worker(self, index: int) -> float:
        self.join_bytes_start = self.workers[index].link_bytes()
        t0 = time.monotonic()
        self.cli(self.workers[index], f"worker{index}", "worker", "--worker-index", str(index),
                 "--envs", str(self.envs))
        return t0

    def first_observation(self, env_id: int, since: float, what: str) -> float:
        self.probe.send(f"watch {env_id}")
        record = self.probe.wait_for(lambda r: r["kind"] == "first_observation" and r["env"] == env_id,
                                     STARTUP_TIMEOUT_S, f"{what}: the first observation of env {env_id} at the "
                                     f"learner host (logs: {self.save_dir})", since=since)
        return record["t"]

    def stop_all(self) -> None:
        for started in reversed(self.started):
            if started.process.poll() is None:
                try:
                    os.killpg(started.process.pid, signal.SIGINT)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for started in self.started:
            try:
                started.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(started.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                started.process.wait()

    # --- measuring --------------------------------------------------------------------------------
    def window(self, seconds: float) -> dict:
        """Steps/s of the policy and bytes per env step on every link over ``seconds`` (aligned to its
        stats records)."""
        first = self.probe.next_stats(time.monotonic())
        start = {h.name: h.link_bytes() for h in self.network.hosts}
        drops = {h.name: h.snmp("Udp", "RcvbufErrors") for h in self.network.hosts}
        reassembled = self.learner.snmp("Ip", "ReasmOKs")
        last = self.probe.next_stats(first["t"] + seconds, timeout_s=seconds + 30.0)
        end = {h.name: h.link_bytes() for h in self.network.hosts}
        reassembled = self.learner.snmp("Ip", "ReasmOKs") - reassembled
        drops = {name: h.snmp("Udp", "RcvbufErrors") - drops[h.name]
                 for name, h in zip(("learner", "worker0", "worker1"), self.network.hosts)}
        steps = last["env_steps"] - first["env_steps"]
        elapsed = last["t"] - first["t"]
        learner_bytes = end[self.learner.name] - start[self.learner.name]
        return {"seconds": round(elapsed, 1), "env_steps": steps,
                "env_steps_per_s": round(steps / elapsed, 1) if elapsed > 0 else 0.0,
                "learner_link_bytes_per_s": round(learner_bytes / elapsed) if elapsed > 0 else 0,
                "learner_link_bytes_per_env_step": round(learner_bytes / steps) if steps else None,
                "worker_link_bytes": {f"worker{i}": end[w.name] - start[w.name] for i, w in enumerate(self.workers)},
                "udp_receive_buffer_drops": drops,
                # large datagrams (observations) the learner host received per env step: > 1 = resent
                "learner_reassembled_datagrams_per_env_step": round(reassembled / steps, 2) if steps else None,
                "load_average_1min": round(os.getloadavg()[0], 2)}  # the machine's, other work included

    def run(self) -> dict:
        self.save_dir.mkdir(parents=True, exist_ok=True)
        self.network.open()
        result: dict = {"envs_per_worker": self.envs, "discovery": self.discovery, "reward_on": self.reward_on,
                        "transport": "UDPv4", "multicast": "blocked", "phase_s": self.phase_s,
                        "outage_s": self.outage_s, "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
                        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        server = None
        if self.discovery == "server":
            command, extra = server_command(self.learner.address, DEFAULT_SERVER_PORT)
            server = self.spawn(self.learner, "discovery_server", command, extra)
        probe_env = dict(parse(self.discovery_spec(self.learner)).environment())
        # a discovery server tells a client only of the endpoints matching its own: the probe sees the
        # policy's subscriptions (its readiness) as a super client, as ros2 CLI tools must
        probe_env["ROS_SUPER_CLIENT"] = "TRUE" if self.discovery == "server" else ""
        probe = self.spawn(self.learner, "probe", [sys.executable, "-m", "carla_rl.nodes.support.hosts_probe",
                                                       "--envs", str(2 * self.envs)],
                           {k: v for k, v in probe_env.items() if v}, pipes=True)
        self.probe = Probe(probe)
        self.probe.start_reading()
        self.probe.wait_for(lambda r: r["kind"] == "ready", STARTUP_TIMEOUT_S, "the probe")
        t_learner = time.monotonic()
        self.cli(self.learner, "learner", "train", "--role", "learner", "--parallel-envs", str(2 * self.envs),
                 "--composition", "all")
        self.probe.send("subscribed /env_0/observation")
        up = self.probe.wait_for(lambda r: r["kind"] == "subscribed", STARTUP_TIMEOUT_S,
                                 f"the learner's policy (log: {self.save_dir / 'learner.log'})")
        result["learner_start_s"] = round(up["t"] - t_learner, 1)
        discovery = {}
        t0 = self.start_worker(0)
        discovery["worker0"] = round(self.first_observation(0, t0, "worker 0") - t0, 2)
        join_bytes = {"worker0": self.workers[0].link_bytes() - self.join_bytes_start}
        time.sleep(SETTLE_S)  # the first steps after the policy built its agent are not typical
        result["one_worker"] = self.window(self.phase_s)
        t1 = self.start_worker(1)
        discovery["worker1"] = round(self.first_observation(self.envs, t1, "worker 1") - t1, 2)
        join_bytes["worker1"] = self.workers[1].link_bytes() - self.join_bytes_start
        time.sleep(SETTLE_S)
        result["two_workers"] = self.window(self.phase_s)
        result["discovery_s"] = discovery  # worker process start -> first observation at the learner host
        result["join_bytes"] = join_bytes  # on the worker's link from its start to that first observation
        t_down = time.monotonic()
        self.network.set_link(self.workers[0], up=False)
        outage = self.window(self.outage_s)
        t_up = time.monotonic()
        self.network.set_link(self.workers[0], up=True)
        # from the first count after the link went down to the last before it came up
        outage["env_steps_while_down"] = self.probe.steps_at(t_up) - self.probe.steps_after(t_down)
        outage["worker0_env_steps_while_down"] = (self.probe.steps_at(t_up, range(self.envs))
                                                  - self.probe.steps_after(t_down, range(self.envs)))
        result["worker0_link_down"] = outage
        result["rejoin_s"] = round(self.first_observation(0, t_up, "worker 0 after its link came back") - t_up, 2)
        time.sleep(SETTLE_S)
        result["after_rejoin"] = self.window(self.phase_s)
        if server is not None:  # its CPU over the whole run: two joins, a lost and a found worker
            result["discovery_server_cpu_s"] = round(_cpu_seconds(server.pid), 2)
        return result

    def close(self) -> None:
        try:
            self.stop_all()
        finally:
            self.network.close()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _interrupt(_signum, _frame) -> None:
    raise KeyboardInterrupt


def run_hosts_benchmark(envs_per_worker: int = 1, discovery: str = "server", reward_on: str = "worker",
                        phase_s: float = 20.0, outage_s: float = 30.0, domain_id: int = -1,
                        save_dir: Path = Path("runs/bench_hosts"), config_dir: Path | None = None) -> dict:
    """Run the benchmark (see the module docstring); raises HostsError where it cannot run."""
    refusal = machine_refusal()
    if refusal:
        raise HostsError(f"bench hosts: {refusal}")
    if config_dir is None:
        from carla_rl.contract.config import default_config_dir

        config_dir = default_config_dir()
    bench = HostsBenchmark(envs_per_worker, discovery, reward_on, phase_s, outage_s, domain_id, save_dir,
                           config_dir)
    previous = signal.signal(signal.SIGTERM, _interrupt)  # stopped from outside: still clean up
    try:
        return bench.run()
    finally:
        bench.close()
        signal.signal(signal.SIGTERM, previous)
