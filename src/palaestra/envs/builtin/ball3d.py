"""3DBall and 3DBallHard: balance a ball on a tilting platform (ML-Agents' first example scene).

Each agent tilts its own square platform to keep a ball on it. The scene follows ML-Agents'
``Ball3DAgent``; the physics is written here, not Unity's, and all agents are simulated at once
with array operations (no loop over agents).

Agent (as in ML-Agents):
- actions: 2 continuous in [-1, 1], the rate of change of the platform's rotation about z and
  about x, at most ``MAX_TILT_RATE`` (100 deg/s, i.e. ML-Agents' 2 degrees per physics step).
  The tilt of each axis is clipped to ``MAX_TILT`` (25 deg).
- observations (float32): 3DBall has 8 — platform rotation about z and x (radians), the ball's
  position relative to the platform centre (x, y, z, world axes) and its velocity (x, y, z);
  3DBallHard has the first 5 (no velocity: ML-Agents' Hard variant relies on observation
  stacking or memory, here the velocity is simply missing).
- reward: +0.1 every decision while the ball is on the platform; -1 when it falls off, which
  ends the episode (terminated). After ``max_steps`` decisions (1000) the episode is truncated,
  so a perfect episode scores exactly +100.
- episode start: platform tilted uniformly in +-10 deg about each axis, ball at rest at a
  uniform offset of +-``START_OFFSET`` (0.75) from the centre along each platform axis.

Physics (own, deliberately simple): the ball is a solid sphere rolling without slipping on the
plane of the platform, so along the plane it accelerates with ``(5/7) g`` times the component of
gravity along that axis. With the platform rotated by ``R = Rz(rot_z) @ Rx(rot_x)``, gravity in
the platform frame gives

    a_x' = -(5/7) g sin(rot_z),   a_z' = (5/7) g cos(rot_z) sin(rot_x)

plus a small linear rolling resistance (``DAMPING`` 1/s). The platform is moved kinematically,
as the Unity scene does by setting its rotation, so the ball feels no centrifugal or Euler force
from its rotation and never loses contact. Integration is semi-implicit Euler with ``DT`` =
0.02 s, ``DECISION_PERIOD`` = 5 physics steps per decision (the action is held across them, as
ML-Agents' DecisionRequester with "take actions between decisions" does). The ball falls off
when its centre leaves the platform square, ``|x'| > HALF_SIZE`` or ``|z'| > HALF_SIZE`` (a
3 x 3 platform); the observation of that final step shows it beyond the edge.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np

from palaestra.envs.base import ActionSpec, ActionTuple, ObservationSpec
from palaestra.envs.builtin import register_builtin
from palaestra.envs.builtin.draw import Canvas
from palaestra.envs.vector_core import VectorCore

G = 9.81                        # m/s^2
ROLLING = 5.0 / 7.0             # solid sphere rolling without slipping: a = (5/7) g sin(tilt)
DAMPING = 0.1                   # 1/s, linear rolling resistance
DT = 0.02                       # s per physics step (Unity's fixed timestep)
DECISION_PERIOD = 5             # physics steps per decision
HALF_SIZE = 1.5                 # platform half side: the ball falls off beyond |x'|, |z'| > 1.5
BALL_HEIGHT = 0.75              # ball centre above the platform centre (radius 0.5 + 0.25)
MAX_TILT = np.deg2rad(25.0)     # rad, per axis
MAX_TILT_RATE = np.deg2rad(100.0)  # rad/s at action +-1
START_TILT = np.deg2rad(10.0)   # initial tilt: uniform in +-10 deg per axis
START_OFFSET = 0.75             # initial ball offset: uniform in +-0.75 per axis
STEP_REWARD = 0.1
FALL_REWARD = -1.0
MAX_STEPS = 1000                # decisions per episode before truncation (ML-Agents: 5000 / 5)

# Frames (`render`): two side views of one agent, 200 x 200 pixels each, 40 pixels per unit.
BALL_RADIUS = 0.5               # drawn only: BALL_HEIGHT = radius + half the platform thickness
PANEL, SCALE, PIVOT_Y, FLOOR_Y = 200, 40.0, 120.0, 185.0
BACKGROUND, FLOOR, STAND = (235, 240, 245), (190, 190, 180), (150, 150, 155)
PLATFORM, HORIZON = (70, 90, 140), (205, 210, 215)
BALL_COLOUR = (235, 110, 30)
AXIS_COLOURS = ((220, 50, 50), (50, 80, 220))  # Unity's colours of x (red) and z (blue)


@register_builtin("3DBall", 12)
class Ball3DCore(VectorCore):
    """``num_agents`` platforms with one ball each. State per agent: tilt (rot_z, rot_x), ball
    position and velocity along the platform's own x and z axes, decisions in the episode."""

    behavior_name = "3DBall"
    observation_specs = [ObservationSpec((8,), name="vector")]
    action_spec = ActionSpec.create_continuous(2)
    render_fps = int(round(1.0 / (DT * DECISION_PERIOD)))  # one frame per decision: real time

    def __init__(self, num_agents: int, max_steps: int = MAX_STEPS) -> None:
        super().__init__(num_agents)
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        self.max_steps = int(max_steps)
        n = num_agents
        # State, one row per quantity and one column per agent (contiguous rows are faster).
        self.tilt = np.zeros((2, n))        # [rot_z, rot_x], rad
        self.pos = np.zeros((2, n))         # ball along the platform's [x', z'] axes
        self.vel = np.zeros((2, n))
        self.steps = np.zeros(n, np.int64)  # decisions taken in the current episode
        # scratch arrays, reused every step
        self._rate = np.empty((2, n))
        self._s = np.empty((2, n))
        self._c = np.empty(n)
        self._abs = np.empty((2, n))
        # velocity change over DT per unit sin(tilt) (the z' row also scales with cos rot_z)
        self._acc = np.array([[-ROLLING * G * DT], [ROLLING * G * DT]])
        self._damp = 1.0 - DAMPING * DT

    # -- VectorCore ----------------------------------------------------------------------------
    def reset_agents(self, mask: np.ndarray) -> None:
        idx = np.flatnonzero(mask)
        k = len(idx)
        if k == 0:
            return
        self.tilt[:, idx] = self.rng.uniform(-START_TILT, START_TILT, (2, k))
        self.pos[:, idx] = self.rng.uniform(-START_OFFSET, START_OFFSET, (2, k))
        self.vel[:, idx] = 0.0
        self.steps[idx] = 0

    def step(self, actions: ActionTuple) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        tilt, pos, vel, s, c = self.tilt, self.pos, self.vel, self._s, self._c
        rate, acc, damp = self._rate, self._acc, self._damp
        # In-place ufuncs only (np.clip and reductions over axis 1 cost several times more).
        np.copyto(rate, actions.continuous.T)
        np.minimum(rate, 1.0, out=rate)
        np.maximum(rate, -1.0, out=rate)
        rate *= MAX_TILT_RATE * DT
        for _ in range(DECISION_PERIOD):
            tilt += rate
            np.minimum(tilt, MAX_TILT, out=tilt)
            np.maximum(tilt, -MAX_TILT, out=tilt)
            np.sin(tilt, out=s)
            np.cos(tilt[0], out=c)
            s[1] *= c
            s *= acc                      # velocity change over DT
            vel += s
            vel *= damp
            np.multiply(vel, DT, out=s)
            pos += s
        a = self._abs
        np.abs(pos, out=a)
        terminated = np.maximum(a[0], a[1]) > HALF_SIZE
        self.steps += 1
        truncated = self.steps >= self.max_steps
        reward = np.where(terminated, FALL_REWARD, STEP_REWARD)
        return reward, terminated, truncated

    def observe(self) -> List[np.ndarray]:
        return [self._world_obs(8)]

    def render(self, agent: int = 0) -> Optional[np.ndarray]:
        """Two side views of agent `agent`'s platform, 400 x 200: left, looking along z (the
        platform's x' axis tilted by rot_z, a red mark); right, looking along x (its z' axis
        tilted by rot_x, a blue mark). The ball sits on the platform at its x' resp. z'
        position, so both views move as it rolls."""
        canvas = Canvas(2 * PANEL, PANEL, BACKGROUND)
        rz, rx = self.tilt[:, agent]
        u, w = self.pos[:, agent]
        # each view: the platform axis as (horizontal, up) in that view, and the ball along it
        views = (((np.cos(rz), np.sin(rz)), u), ((np.cos(rx), -np.sin(rx)), w))
        for i, (direction, along) in enumerate(views):
            _side_view(canvas, i * PANEL, direction, float(along), AXIS_COLOURS[i])
        canvas.rect(PANEL - 1, 0, PANEL + 1, PANEL, STAND)
        return canvas.pixels

    # -- helpers -------------------------------------------------------------------------------
    def _world_obs(self, width: int) -> np.ndarray:
        """[rot_z, rot_x, ball x, y, z relative to the platform centre, velocity x, y, z] in
        world axes (the first ``width`` columns): ``R @ (x', BALL_HEIGHT, z')`` with
        ``R = Rz(rot_z) @ Rx(rot_x)``; the velocity is that of the ball along the surface."""
        rz, rx = self.tilt
        u, w = self.pos
        sb, cb, sa, ca = np.sin(rz), np.cos(rz), np.sin(rx), np.cos(rx)
        out = np.empty((self.num_agents, width), np.float32)
        out[:, 0] = rz
        out[:, 1] = rx
        out[:, 2] = cb * u + sb * (sa * w - ca * BALL_HEIGHT)
        out[:, 3] = sb * u + cb * (ca * BALL_HEIGHT - sa * w)
        out[:, 4] = sa * BALL_HEIGHT + ca * w
        if width > 5:
            vu, vw = self.vel
            out[:, 5] = cb * vu + sb * sa * vw
            out[:, 6] = sb * vu - cb * sa * vw
            out[:, 7] = ca * vw
        return out


def _side_view(canvas: Canvas, left: float, direction: Tuple[float, float], along: float,
               mark: Tuple[int, int, int]) -> None:
    """One panel: a stand, the platform (a quad along the unit vector `direction`, given as
    (horizontal, up) in scene units) and the ball `along` units from its centre, on top."""
    cx = left + PANEL / 2.0
    dx, dy = direction
    nx, ny = -dy, dx  # the platform's normal: the direction turned by +90 degrees

    def screen(a: float, n: float) -> Tuple[float, float]:
        """(pixel x, pixel y) of the point `a` along the platform and `n` along its normal."""
        return cx + SCALE * (a * dx + n * nx), PIVOT_Y - SCALE * (a * dy + n * ny)

    canvas.rect(left, FLOOR_Y, left + PANEL, PANEL, FLOOR)
    canvas.line(left, PIVOT_Y, left + PANEL, PIVOT_Y, 1.0, HORIZON)
    canvas.rect(cx - 5, PIVOT_Y, cx + 5, FLOOR_Y, STAND)
    canvas.line(left + 10, 10, left + 40, 10, 4.0, mark)
    half_thickness = BALL_HEIGHT - BALL_RADIUS
    canvas.polygon([screen(a, n) for a, n in ((-HALF_SIZE, -half_thickness),
                                              (HALF_SIZE, -half_thickness),
                                              (HALF_SIZE, half_thickness),
                                              (-HALF_SIZE, half_thickness))], PLATFORM)
    bx, by = screen(along, BALL_HEIGHT)
    canvas.circle(bx, by, SCALE * BALL_RADIUS, BALL_COLOUR)


@register_builtin("3DBallHard", 12)
class Ball3DHardCore(Ball3DCore):
    """3DBall without the ball's velocity in the observation (5 values)."""

    behavior_name = "3DBallHard"
    observation_specs = [ObservationSpec((5,), name="vector")]

    def observe(self) -> List[np.ndarray]:
        return [self._world_obs(5)]
