"""How the graph's DDS participants find each other: one setting (``--discovery`` of ``carla-rl train``,
``carla-rl worker``; launch argument ``discovery``) turned into the environment of every node process.

- ``localhost``      this host only (``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``; the CLI's default)
- ``subnet``         multicast on the local network (``SUBNET``)
- ``server:H:P[,H:P...]``  Fast DDS Discovery Server(s): every participant is a client of the server(s)
                     at H:P (``ROS_DISCOVERY_SERVER``); start one with ``carla-rl discovery-server``
- ``peers:A[,B...]`` static unicast peers (``ROS_STATIC_PEERS``, hosts or addresses of the other hosts;
                     participants on one host still find each other over localhost)
- ``""`` (default)   the environment decides: ``ROS_DISCOVERY_SERVER`` or ``ROS_STATIC_PEERS`` when set
                     (as ``server:``/``peers:`` with their addresses; with ``ROS_AUTOMATIC_DISCOVERY_RANGE``
                     also set, all is left as it is), else ``localhost`` for a whole graph on one host
                     (role ``all``) and ``subnet`` for the learner and worker roles

Verified on network namespaces with multicast blocked (``carla-rl bench hosts``): a discovery server
and static peers both work with ``ROS_AUTOMATIC_DISCOVERY_RANGE`` LOCALHOST or SUBNET (rmw_fastrtps
keeps them apart: the range limits automatic (multicast) discovery only); ``OFF`` disables them too,
so it is refused here.
"""

from __future__ import annotations

from dataclasses import dataclass

RANGE_ENV = "ROS_AUTOMATIC_DISCOVERY_RANGE"
SERVER_ENV = "ROS_DISCOVERY_SERVER"
PEERS_ENV = "ROS_STATIC_PEERS"
DEFAULT_SERVER_PORT = 11811  # Fast DDS's default discovery server port
KINDS = ("localhost", "subnet", "server", "peers")
DISCOVERY_HELP = ("DDS discovery: localhost | subnet (multicast) | server:HOST:PORT[,HOST:PORT] (Fast DDS "
                  "Discovery Server, see carla-rl discovery-server) | peers:HOST[,HOST...] (static unicast "
                  "peers); default: ROS_DISCOVERY_SERVER / ROS_STATIC_PEERS from the environment, else "
                  "localhost for a whole graph, subnet for --role learner and carla-rl worker")


@dataclass(frozen=True)
class Discovery:
    kind: str                               # one of KINDS
    addresses: tuple[str, ...] = ()         # server: "host:port" each; peers: hosts

    def environment(self) -> dict[str, str]:
        """The variables every process of the graph gets; "" = removed from the environment."""
        if self.kind == "server":
            return {SERVER_ENV: ";".join(self.addresses), PEERS_ENV: "", RANGE_ENV: "SUBNET"}
        if self.kind == "peers":
            return {PEERS_ENV: ";".join(self.addresses), SERVER_ENV: "", RANGE_ENV: "LOCALHOST"}
        return {RANGE_ENV: self.kind.upper(), SERVER_ENV: "", PEERS_ENV: ""}

    def describe(self) -> str:
        return f"{self.kind}:{','.join(self.addresses)}" if self.addresses else self.kind


def _host(text: str, what: str) -> str:
    host = text.strip()
    if not host or any(c in host for c in " ;/[]"):
        raise ValueError(f"{what}: {text!r} is not a host name or address")
    return host


def _server(text: str) -> str:
    host, sep, port = text.strip().rpartition(":")
    if not sep:
        host, port = text.strip(), str(DEFAULT_SERVER_PORT)
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"discovery server {text!r}: port {port!r} is not a number") from None
    if not 1 <= number <= 65535:
        raise ValueError(f"discovery server {text!r}: port {number} outside 1..65535")
    if ":" in host:  # IPv6 and Fast DDS's locator forms (TCPv4:[...]) are not taken here
        raise ValueError(f"discovery server {text!r}: expected HOST:PORT with an IPv4 address or a name")
    return f"{_host(host, 'discovery server')}:{number}"


def parse(text: str) -> Discovery:
    """``localhost`` | ``subnet`` | ``server:HOST[:PORT][,HOST[:PORT]...]`` | ``peers:HOST[,HOST...]``."""
    kind, sep, rest = text.strip().partition(":")
    kind = kind.lower()
    if kind in ("localhost", "subnet"):
        if rest:
            raise ValueError(f"discovery {text!r}: {kind} takes no addresses")
        return Discovery(kind)
    if kind not in ("server", "peers"):
        raise ValueError(f"discovery {text!r}: expected localhost, subnet, server:HOST:PORT or peers:HOST,HOST")
    items = [item for item in rest.split(",") if item.strip()]
    if not items:
        raise ValueError(f"discovery {text!r}: {kind} needs at least one address ({kind}:HOST"
                         f"{':PORT' if kind == 'server' else ''})")
    if kind == "server":
        return Discovery("server", tuple(_server(item) for item in items))
    return Discovery("peers", tuple(_host(item, "static peer") for item in items))


def resolve(text: str, role: str, environ) -> Discovery | None:
    """The discovery to apply for ``role`` (all | learner | worker): ``text`` when given, else what the
    environment already says (None: leave it as it is), else the role's default."""
    if text:
        return parse(text)
    server, peers = environ.get(SERVER_ENV, ""), environ.get(PEERS_ENV, "")
    if server or peers:
        if environ.get(RANGE_ENV, "").upper() == "OFF":
            raise ValueError(f"{RANGE_ENV}=OFF disables the discovery server and static peers too; "
                             f"unset it or set LOCALHOST / SUBNET")
        if environ.get(RANGE_ENV) or (server and peers):
            return None  # all given: as it is
        try:  # the same settings as --discovery server:... / peers:... (the range they run with)
            kind, items = ("server", server) if server else ("peers", peers)
            return parse(f"{kind}:{items.replace(';', ',')}")
        except ValueError:
            return None  # a form of Fast DDS's own (e.g. a locator with a transport): as it is
    if environ.get(RANGE_ENV):
        return None
    return Discovery("localhost" if role == "all" else "subnet")


def apply(discovery: Discovery | None, environ) -> None:
    """Write ``discovery``'s variables into ``environ`` (a process environment mapping)."""
    if discovery is None:
        return
    for name, value in discovery.environment().items():
        if value:
            environ[name] = value
        else:
            environ.pop(name, None)


SERVER_TOOL = "fast-discovery-server"  # Fast DDS's server binary (ros-fastdds wheel); `fastdds discovery`
SERVER_TOOL_MODE = "42"                 # wraps it with psutil, which the wheels do not install; its first
                                        # argument 42 selects the plain server, as `fastdds discovery` passes


def server_command(listen: str, port: int, prefix: str | None = None) -> tuple[list[str], dict[str, str]]:
    """The command line and extra environment of a Fast DDS Discovery Server listening on ``listen:port``
    (UDPv4), from the Fast DDS wheel in the Python environment at ``prefix`` (default: this one). The
    wheel's binary needs its vendored libraries (``<site-packages>/ros_fastdds.libs``) on the library path.
    Raises FileNotFoundError with what is missing."""
    import os
    import sys
    import sysconfig
    from pathlib import Path

    root = Path(prefix or sys.prefix)
    tool = root / "bin" / SERVER_TOOL
    if not tool.is_file():
        raise FileNotFoundError(f"{tool} not found: the Fast DDS discovery server comes with the ros-fastdds "
                                f"wheel (pip install ros-fastdds)")
    site = Path(sysconfig.get_paths(vars={"base": str(root), "platbase": str(root)})["purelib"])
    libs = [str(root / "lib"), str(site / "ros_fastdds.libs")]
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} outside 1..65535")
    path = os.pathsep.join(libs + [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p])
    return [str(tool), SERVER_TOOL_MODE, "-l", _host(listen, "listen address"), "-p", str(port)], \
        {"LD_LIBRARY_PATH": path}
