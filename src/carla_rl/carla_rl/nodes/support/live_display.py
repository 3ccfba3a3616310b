"""``--enable-pygame-display``: a live bird's-eye window with a HUD, fed through the CLI's node.

Subscribes (on the node it is given) to env 0's top-down render (falling back to the semantic BEV
camera when no render came for ``topdown_stale_s``), its VehicleCommand (action, control), its
StepReward (reward terms), its odometry (speed) and the curriculum status. ``render()`` — called by
the CLI loop about every 0.2 s, never from a callback — draws the view and the HUD. Works offscreen
with ``SDL_VIDEODRIVER=dummy``; ``frame()`` returns the last rendered picture as [H, W, 3] uint8.
Keys: left / right arrows switch the shown env, Esc or closing the window hides it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from nav_msgs.msg import Odometry as OdometryMsg
from rclpy.node import Node
from sensor_msgs.msg import Image

from carla_rl.nodes.support import ros_conversions as conv
from carla_rl.contract import topics
from carla_rl.contract.config import ConfigError, default_config_dir, load_section, param
from carla_rl.nodes.support import qos_profiles as qos
from carla_rl_interfaces.msg import CurriculumStatus, StepReward, VehicleCommand

BACKGROUND = (20, 20, 24)
TEXT = (230, 230, 230)
DIM = (150, 150, 160)
POSITIVE = (110, 220, 120)
NEGATIVE = (235, 100, 90)


@dataclass(frozen=True)
class LiveDisplayConfig:
    """config/monitor.yaml, block ``live_display``."""

    view_size_px: int = param(512, "The bird's-eye view is scaled to this square", low=64, high=4096)
    hud_width_px: int = param(300, "Width of the HUD panel right of the view", low=100, high=2000)
    font_size: int = param(18, "HUD font size", low=8, high=72)
    topdown_stale_s: float = param(2.0, "No top-down frame for this long: show the semantic camera",
                                   low=0.1, high=600.0)


def load_display_config(config_dir: Path | None = None) -> LiveDisplayConfig:
    path = Path(config_dir or default_config_dir()) / "monitor.yaml"
    if not path.is_file():
        return LiveDisplayConfig()
    return load_section(path, "live_display", LiveDisplayConfig)


@dataclass
class EnvView:
    """What the HUD shows of one env (the latest messages)."""

    image: np.ndarray | None = None
    image_source: str = ""
    image_time: float = -math.inf
    camera: np.ndarray | None = None
    action: int | None = None
    throttle: float = 0.0
    steer: float = 0.0
    brake: float = 0.0
    q_value: float = math.nan
    speed_mps: float = 0.0
    reward: float = 0.0
    episode_return: float = 0.0
    episode_id: int = 0
    episode_step: int = 0
    terms: tuple[tuple[str, float], ...] = ()
    termination: str = ""


class LiveDisplay:
    def __init__(self, node: Node, num_envs: int, config: LiveDisplayConfig | None = None) -> None:
        try:
            self.cfg = config or load_display_config()
        except ConfigError as exc:
            node.get_logger().warning(f"live display: {exc}; using defaults")
            self.cfg = LiveDisplayConfig()
        import pygame

        self.pg = pygame
        self.node = node
        self.num_envs = max(1, num_envs)
        self.env_id = 0
        self.view = EnvView()
        self.phase, self.phase_name, self.num_phases = 0, "", 0
        self.status_flags = ""
        self._subscriptions = []
        self.closed = False
        self._dirty = True
        pygame.display.init()
        pygame.font.init()
        size = (self.cfg.view_size_px + self.cfg.hud_width_px, self.cfg.view_size_px)
        try:
            self.screen = pygame.display.set_mode(size)
            pygame.display.set_caption("carla_rl live view")
            self.window = True
        except pygame.error as exc:  # no display: keep rendering offscreen
            node.get_logger().warning(f"live display: no window ({exc}); rendering offscreen")
            self.screen = pygame.Surface(size)
            self.window = False
        self.font = pygame.font.Font(None, self.cfg.font_size + 4)
        self.small = pygame.font.Font(None, self.cfg.font_size)
        node.create_subscription(CurriculumStatus, topics.CURRICULUM_STATUS, self._on_status, qos.LATCHED)
        self.select_env(0)

    # --- subscriptions --------------------------------------------------------------------------------
    def select_env(self, env_id: int) -> None:
        """Show env ``env_id`` (subscriptions move to its namespace)."""
        for sub in self._subscriptions:
            self.node.destroy_subscription(sub)
        self.env_id = env_id % self.num_envs
        self.view = EnvView()
        ns = topics.env_namespace(self.env_id)
        role = topics.DEFAULT_ROLE_NAME
        sub = self.node.create_subscription
        self._subscriptions = [
            sub(Image, f"{ns}/{topics.TOPDOWN_IMAGE}", self._on_topdown, qos.VIEWER),
            sub(Image, f"{ns}/{topics.carla_topic(role, topics.CAMERA)}", self._on_camera, qos.VIEWER),
            sub(VehicleCommand, f"{ns}/{topics.VEHICLE_COMMAND}", self._on_command, qos.VIEWER),
            sub(StepReward, f"{ns}/{topics.STEP_REWARD}", self._on_reward, qos.VIEWER),
            sub(OdometryMsg, f"{ns}/{topics.carla_topic(role, topics.ODOMETRY)}", self._on_odometry, qos.VIEWER),
        ]
        self._dirty = True

    def _on_topdown(self, msg: Image) -> None:
        image = _rgb(msg)
        if image is not None:
            self.view.image, self.view.image_source, self.view.image_time = image, "top-down", time.monotonic()
            self._dirty = True

    def _on_camera(self, msg: Image) -> None:
        image = _rgb(msg)
        if image is not None:
            self.view.camera = image
            self._dirty = True

    def _on_command(self, msg: VehicleCommand) -> None:
        v = self.view
        if msg.reset_episode:
            v.action = None
        else:
            v.action = int(msg.action_index)
            v.throttle, v.steer, v.brake = msg.control.throttle, msg.control.steer, msg.control.brake
            v.q_value = float(msg.q_value)
        self._dirty = True

    def _on_reward(self, msg: StepReward) -> None:
        v = self.view
        if (msg.episode_id, msg.episode_step) == (v.episode_id, v.episode_step) and v.terms:
            return  # the same step again
        if msg.episode_id != v.episode_id or msg.episode_step == 0:
            v.episode_return = 0.0
        v.episode_id, v.episode_step = int(msg.episode_id), int(msg.episode_step)
        v.reward = float(msg.reward)
        v.episode_return += v.reward
        v.terms = tuple(zip(msg.term_names, (float(x) for x in msg.term_values)))
        v.termination = msg.termination_reason
        self._dirty = True

    def _on_odometry(self, msg: OdometryMsg) -> None:
        t = msg.twist.twist.linear
        self.view.speed_mps = math.hypot(t.x, t.y)
        self._dirty = True

    def _on_status(self, msg: CurriculumStatus) -> None:
        self.phase, self.phase_name, self.num_phases = int(msg.phase), msg.phase_name, int(msg.num_phases)
        flags = [name for name, on in (("paused", msg.paused), ("evaluating", msg.evaluating),
                                       ("finished", msg.finished)) if on]
        self.status_flags = ", ".join(flags)
        self._dirty = True

    # --- drawing ----------------------------------------------------------------------------------------
    def render(self) -> None:
        """Handle window events and redraw (only when something changed)."""
        if self.closed:
            return
        pg = self.pg
        if self.window:
            for event in pg.event.get():
                if event.type == pg.QUIT or (event.type == pg.KEYDOWN and event.key == pg.K_ESCAPE):
                    self.close()
                    return
                if event.type == pg.KEYDOWN and event.key in (pg.K_RIGHT, pg.K_LEFT):
                    self.select_env(self.env_id + (1 if event.key == pg.K_RIGHT else -1))
        if not self._dirty:
            return
        self._dirty = False
        self.screen.fill(BACKGROUND)
        self._draw_view()
        self._draw_hud()
        if self.window:
            pg.display.flip()

    def _shown_image(self) -> tuple[np.ndarray | None, str]:
        v = self.view
        fresh = time.monotonic() - v.image_time < self.cfg.topdown_stale_s
        if v.image is not None and (fresh or v.camera is None):
            return v.image, v.image_source
        if v.camera is not None:
            return v.camera, "semantic camera"
        return None, ""

    def _draw_view(self) -> None:
        pg = self.pg
        size = self.cfg.view_size_px
        image, source = self._shown_image()
        if image is None:
            self._text("waiting for env images ...", (20, size // 2), self.font, DIM)
            return
        surface = pg.surfarray.make_surface(np.ascontiguousarray(image.swapaxes(0, 1)))
        self.screen.blit(pg.transform.scale(surface, (size, size)), (0, 0))
        self._text(source, (8, size - self.cfg.font_size - 4), self.small, TEXT)

    def hud_lines(self) -> list[tuple[str, tuple[int, int, int], bool]]:
        """The HUD, top to bottom: (text, colour, large font)."""
        v = self.view
        rows = [(f"env {self.env_id} of {self.num_envs}", TEXT, True),
                (f"phase {self.phase}/{self.num_phases} {self.phase_name}" if self.num_phases
                 else "phase - (no curriculum status)", TEXT, True)]
        if self.status_flags:
            rows.append((self.status_flags, DIM, False))
        rows += [
            (f"episode {v.episode_id} step {v.episode_step}", DIM, False),
            (f"speed {v.speed_mps * 3.6:5.1f} km/h", TEXT, True),
            ("action " + ("-" if v.action is None else str(v.action))
             + ("" if math.isnan(v.q_value) else f"  Q {v.q_value:.2f}"), TEXT, True),
            (f"throttle {v.throttle:.2f} steer {v.steer:+.2f} brake {v.brake:.2f}", DIM, False),
            (f"reward {v.reward:+.3f}  return {v.episode_return:+.2f}", TEXT, True),
        ]
        for name, value in v.terms:
            colour = POSITIVE if value > 0 else NEGATIVE if value < 0 else DIM
            rows.append((f"  {name:<16} {value:+.3f}", colour, False))
        if v.termination:
            rows.append((f"ended: {v.termination}", NEGATIVE, True))
        return rows

    def _draw_hud(self) -> None:
        x, y = self.cfg.view_size_px + 12, 10
        for text, colour, large in self.hud_lines():
            self._text(text, (x, y), self.font if large else self.small, colour)
            y += self.cfg.font_size + (4 if large else 0)

    def _text(self, text: str, pos: tuple[int, int], font, colour) -> None:
        self.screen.blit(font.render(text, True, colour), pos)

    def frame(self) -> np.ndarray:
        """The last rendered picture, [H, W, 3] uint8 RGB."""
        return np.ascontiguousarray(self.pg.surfarray.array3d(self.screen).swapaxes(0, 1))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.window:
                self.pg.display.quit()


def _rgb(msg: Image) -> np.ndarray | None:
    """sensor_msgs/Image (rgb8, bgr8, mono8, rgba8, bgra8) -> [H, W, 3] uint8, or None if malformed."""
    try:
        image = conv.image_array(msg)
    except (KeyError, ValueError):
        return None
    if msg.encoding == "mono8":
        return np.repeat(image, 3, axis=2)
    if msg.encoding in ("bgr8", "bgra8"):
        return image[..., 2::-1]
    return image[..., :3]
