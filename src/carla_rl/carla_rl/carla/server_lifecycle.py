"""CARLA server lifecycle for the direct client: connect, health check, reconnect with back-off,
restart through a configured shell command, town selection, synchronous settings and pacing.

A connection failure raises :class:`CarlaConnectionError` whose message is one line: the address and
what to check. Nothing in here prints a traceback for the expected failures.
"""

from __future__ import annotations

import logging
import shlex
import subprocess
import time
from dataclasses import dataclass
from typing import Any, Callable

from carla_rl.carla.carla_config import CarlaConfig

LOG = logging.getLogger(__name__)


class CarlaConnectionError(RuntimeError):
    """The CARLA server could not be reached or stopped answering (one-line, actionable message)."""


def connection_hint(config: CarlaConfig, reason: str) -> str:
    """The one-line error for an unreachable server."""
    reason = " ".join(str(reason).split()) or "no answer"
    return (f"cannot reach the CARLA server at {config.address} ({reason}); check that CARLA 0.9.16 is "
            f"running (e.g. `docker compose -f docker/compose.yaml up carla`), that ports {config.port} and "
            f"{config.port + 1} are reachable, and carla_client.carla.host/port in config/carla.yaml")


def backoff_delays(first_s: float, max_s: float, attempts: int) -> list[float]:
    """Waits between ``attempts`` connection attempts: doubling from ``first_s``, capped at ``max_s``."""
    delays, delay = [], first_s
    for _ in range(max(attempts - 1, 0)):
        delays.append(min(delay, max_s))
        delay = delay * 2 if delay > 0 else 0.0
    return delays


@dataclass
class HealthStatus:
    ok: bool
    server_version: str = ""
    frame: int = -1
    reason: str = ""


class Pacer:
    """Real-time pacing: with ``time_scale`` s > 0 a tick of ``dt`` sim seconds takes >= dt / s wall s."""

    def __init__(self, fixed_delta_s: float, time_scale: float,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self.period = fixed_delta_s / time_scale if time_scale > 0 else 0.0
        self._clock, self._sleep = clock, sleep
        self._next: float | None = None

    def wait(self) -> float:
        """Sleep until the next tick is due; returns the time slept."""
        if self.period <= 0:
            return 0.0
        now = self._clock()
        if self._next is None or now > self._next + self.period:  # first tick, or far behind: resync
            self._next = now + self.period
            return 0.0
        slept = max(self._next - now, 0.0)
        if slept:
            self._sleep(slept)
        self._next += self.period
        return slept


class ServerLifecycle:
    """Owns the ``carla.Client`` and the synchronous world settings.

    ``client_factory(host, port)`` builds the client (``carla.Client`` by default; tests inject doubles).
    """

    def __init__(self, config: CarlaConfig, client_factory: Callable[[str, int], Any] | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 run_command: Callable[[str], int] | None = None):
        self.config = config
        self._client_factory = client_factory or _carla_client
        self._sleep = sleep
        self._run_command = run_command or _run_shell
        self.client: Any = None
        self.world: Any = None
        self.restarts = 0
        self.reconnects = 0
        self.pacer = Pacer(config.fixed_delta_seconds, config.time_scale)

    # -- connection ------------------------------------------------------------------------------

    def _try_connect(self, timeout_s: float) -> Any:
        client = self._client_factory(self.config.host, self.config.port)
        client.set_timeout(timeout_s)
        client.get_server_version()  # raises RuntimeError on timeout
        client.set_timeout(self.config.timeout_s)
        return client

    def connect(self, attempts: int | None = None) -> Any:
        """Connect with back-off; raises :class:`CarlaConnectionError` after the last attempt."""
        attempts = attempts or self.config.reconnect_attempts
        cfg = self.config
        delays = backoff_delays(cfg.reconnect_backoff_s, cfg.reconnect_backoff_max_s, attempts)
        last = ""
        for i in range(attempts):
            try:
                self.client = self._try_connect(self.config.connect_timeout_s)
                self.world = self.client.get_world()
                return self.client
            except (RuntimeError, OSError) as exc:  # libcarla raises RuntimeError on timeouts
                last = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                LOG.warning("CARLA connect attempt %d/%d to %s failed: %s", i + 1, attempts,
                            self.config.address, last)
                if i < len(delays):
                    self._sleep(delays[i])
        self.client = self.world = None
        raise CarlaConnectionError(connection_hint(self.config, last))

    def health_check(self) -> HealthStatus:
        """Server version + world snapshot within ``health_timeout_s``."""
        if self.client is None:
            return HealthStatus(False, reason="not connected")
        try:
            self.client.set_timeout(self.config.health_timeout_s)
            version = self.client.get_server_version()
            world = self.client.get_world()
            frame = int(world.get_snapshot().frame)
            return HealthStatus(True, server_version=str(version), frame=frame)
        except (RuntimeError, OSError) as exc:
            return HealthStatus(False, reason=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        finally:
            try:
                self.client.set_timeout(self.config.timeout_s)
            except (RuntimeError, OSError, AttributeError):
                pass

    def restart_server(self) -> None:
        """Run ``restart_command`` (if configured) and wait for the server to answer again."""
        if not self.config.restart_command:
            raise CarlaConnectionError(connection_hint(
                self.config, "server crashed or hung and carla_client.restart_command is empty"))
        LOG.warning("restarting the CARLA server: %s", self.config.restart_command)
        rc = self._run_command(self.config.restart_command)
        if rc != 0:
            raise CarlaConnectionError(connection_hint(
                self.config, f"restart_command exited with status {rc}"))
        self.restarts += 1
        deadline_attempts = max(int(self.config.restart_wait_s / max(self.config.connect_timeout_s, 0.1)), 1)
        self.connect(attempts=deadline_attempts)

    def recover(self) -> None:
        """After a failed RPC: reconnect; if the server does not answer, restart it."""
        self.reconnects += 1
        try:
            self.connect()
        except CarlaConnectionError:
            self.restart_server()

    # -- world -----------------------------------------------------------------------------------

    def ensure_town(self, town: str) -> Any:
        """Load ``town`` unless it is already loaded (map names look like 'Carla/Maps/Town03')."""
        current = self.world.get_map().name.split("/")[-1]
        if current != town:
            LOG.info("loading CARLA town %s (was %s)", town, current)
            self.world = self.client.load_world(town)
        return self.world

    def apply_synchronous(self, enabled: bool = True) -> None:
        settings = self.world.get_settings()
        settings.synchronous_mode = enabled
        settings.fixed_delta_seconds = self.config.fixed_delta_seconds if enabled else None
        settings.no_rendering_mode = self.config.no_rendering_mode
        self.world.apply_settings(settings)

    def close(self) -> None:
        """Give the server back in asynchronous mode (so a later client is not frozen)."""
        if self.world is not None:
            try:
                self.apply_synchronous(False)
            except (RuntimeError, OSError):
                pass
        self.client = self.world = None


def _carla_client(host: str, port: int) -> Any:
    try:
        import carla
    except ImportError as exc:  # pragma: no cover - the wheel is a requirement
        raise CarlaConnectionError(f"the CARLA client is not installed ({exc}); "
                                   f"pip install carla==0.9.16") from None
    return carla.Client(host, port)


def _run_shell(command: str) -> int:
    return subprocess.run(shlex.split(command), check=False).returncode
