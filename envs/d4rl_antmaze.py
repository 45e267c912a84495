"""D4RL v2 antmaze evaluation environments, rebuilt on the `mujoco` bindings and the gymnasium API.

`d4rl` itself needs mujoco-py (MuJoCo 2.x) and cannot be installed here, so this module re-implements what
`gym.make('antmaze-*-v2')` builds: `NormalizedBoxEnv(AntMazeEnv(...))` under a gym TimeLimit. It is written from
d4rl 1.1 (PyPI sdist, identical to github.com/Farama-Foundation/D4RL HEAD for the files cited); each constant names its
origin as `file:line` under d4rl/locomotion/ (and gym 0.23.1's gym/envs/mujoco/mujoco_env.py for the MuJoCo base
class that d4rl's AntEnv inherits). No d4rl code is imported or copied.

Semantics, per step: the action a in [-1, 1]^8 becomes the motor control 30 a (NormalizedBoxEnv), the ant is
simulated for 5 MuJoCo steps of 0.02 s (RK4), the observation is qpos[:15] ++ qvel[:14] (29-D: torso xyz, torso
quaternion wxyz, 8 joint angles, torso linear and angular velocity, 8 joint velocities; joints in XML order hip_1,
ankle_1, ..., hip_4, ankle_4, while the action order is the actuators' hip_4, ankle_4, hip_1, ...), the sparse reward is
1.0 when the torso xy lies within 0.5 of the goal (after the step) and 0.0 otherwise, and the episode TERMINATES
then (d4rl's eval=True: `done` at the goal). Truncation after 700 (umaze) / 1000 steps. Every reset draws a new goal
(v2_resets): the goal cell's centre + U(0, 1) + U(0, 0.5) per coordinate (maze scaling 4), and the ant starts at
the reset cell, xy ~ (0, 0), with qpos noise U(-0.1, 0.1) and qvel noise 0.1 N(0, 1).

Not bit-identical with d4rl: MuJoCo 3+ instead of the MuJoCo 2.x of mujoco-py (same model, but the collision and
solver code changed between versions), and one numpy Generator (gymnasium's `np_random`) instead of d4rl's two RNG
streams (env.np_random for the reset noise, the global np.random for the goal).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import gymnasium
import mujoco
import numpy as np
from gymnasium import spaces
from gymnasium.envs.registration import EnvSpec
from gymnasium.wrappers import TimeLimit

# ------------------------------------------------------------------------------------------------ constants

RESET, GOAL = 'r', 'g'  # cell markers: maze_env.py:26-27 (RESET = R = 'r', GOAL = G = 'g')
_R, _G = RESET, GOAL

# The evaluation maps of the v2 registrations (__init__.py:329, 346 -> U_MAZE_TEST; 363, 380 -> BIG_MAZE_TEST; 397,
# 414 -> HARDEST_MAZE_TEST). Rows are y (row i -> y = 4 i - 4), columns x. 1 = wall block, 0 = free.
U_MAZE_TEST = (  # maze_env.py:56-60
    (1, 1, 1, 1, 1),
    (1, _R, 0, 0, 1),
    (1, 1, 1, 0, 1),
    (1, _G, 0, 0, 1),
    (1, 1, 1, 1, 1),
)
BIG_MAZE_TEST = (  # maze_env.py:62-69
    (1, 1, 1, 1, 1, 1, 1, 1),
    (1, _R, 0, 1, 1, 0, 0, 1),
    (1, 0, 0, 1, 0, 0, 0, 1),
    (1, 1, 0, 0, 0, 1, 1, 1),
    (1, 0, 0, 1, 0, 0, 0, 1),
    (1, 0, 1, 0, 0, 1, 0, 1),
    (1, 0, 0, 0, 1, 0, _G, 1),
    (1, 1, 1, 1, 1, 1, 1, 1),
)
HARDEST_MAZE_TEST = (  # maze_env.py:71-79
    (1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1),
    (1, _R, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1),
    (1, 0, 1, 1, 0, 1, 0, 1, 0, 1, 0, 1),
    (1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1),
    (1, 0, 1, 1, 1, 1, 0, 1, 1, 1, 0, 1),
    (1, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1),
    (1, 1, 0, 1, 0, 1, 0, 1, 0, 1, 1, 1),
    (1, 0, 0, 1, 0, 0, 0, 1, 0, _G, 0, 1),
    (1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1),
)

# name: (maze map, max_episode_steps), from the six v2 registrations in __init__.py (maps at the lines above;
# max_episode_steps at 327, 344, 361, 378, 412 (large-play), 395 (large-diverse)).
TASKS: dict[str, tuple[tuple, int]] = {
    'antmaze-umaze-v2': (U_MAZE_TEST, 700),
    'antmaze-umaze-diverse-v2': (U_MAZE_TEST, 700),
    'antmaze-medium-play-v2': (BIG_MAZE_TEST, 1000),
    'antmaze-medium-diverse-v2': (BIG_MAZE_TEST, 1000),
    'antmaze-large-play-v2': (HARDEST_MAZE_TEST, 1000),
    'antmaze-large-diverse-v2': (HARDEST_MAZE_TEST, 1000),
}
ANTMAZE_NAMES = tuple(TASKS)
HORIZONS = {name: horizon for name, (_, horizon) in TASKS.items()}

MAZE_SIZE_SCALING = 4.0  # 'maze_size_scaling': 4.0 in every v2 registration (__init__.py:334, 351, 368, 385, 402, 419)
MAZE_HEIGHT = 0.5  # MazeEnv's default maze_height (maze_env.py:140); no registration overrides it
SUCCESS_RADIUS = 0.5  # sparse reward and eval termination: |xy - goal| <= 0.5 (goal_reaching_env.py:42, 46)
FRAME_SKIP = 5  # MujocoEnv.__init__(self, file_path, 5) (ant.py:53); x timestep 0.02 (assets/ant.xml:3) = 0.1 s
CTRL_LIMIT = 30.0  # every motor has ctrlrange="-30.0 30.0", gear 1 (assets/ant.xml:72-79)
OBS_QPOS_DIM = 15  # qpos.flat[:15] (ant.py:94, expose_all_qpos=True by AntMazeEnv's default, ant.py:169)
OBS_QVEL_DIM = 14  # qvel.flat[:14] (ant.py:95); eval=True: no goal direction appended (goal_reaching_env.py:31-35)
OBS_DIM = OBS_QPOS_DIM + OBS_QVEL_DIM
ACTION_DIM = 8  # eight <motor> actuators (assets/ant.xml:72-79)
RESET_QPOS_NOISE = 0.1  # qpos = init_qpos + U(-.1, .1) (ant.py:121-122)
RESET_QVEL_NOISE = 0.1  # qvel = init_qvel + randn * .1 (ant.py:123)
# The goal: cell centre + U(0, 0.25 s) (maze_env.py:232-233, _rowcol_to_xy with add_random_noise=True, called by
# goal_sampler at maze_env.py:251) + U(0, 0.5) * 0.25 s (maze_env.py:253-254), then max(., 0) (maze_env.py:256).
GOAL_CELL_NOISE = 0.25 * MAZE_SIZE_SCALING  # 1.0
GOAL_EXTRA_NOISE = 0.5 * 0.25 * MAZE_SIZE_SCALING  # 0.5
GOAL_NOISE_MAX = GOAL_CELL_NOISE + GOAL_EXTRA_NOISE  # 1.5: the goal lies in [centre, centre + 1.5]^2

# The initial qpos of gym's MujocoEnv is the model's qpos0 (gym 0.23.1 mujoco_env.py:65: sim.data.qpos after
# loading), i.e. torso at (0, 0, 0.75) (the torso body pos, assets/ant.xml:21), unit quaternion, all joint angles 0.
# The <numeric name="init_qpos"> of assets/ant.xml:5 (z 0.55, bent ankles) is never read by d4rl or gym.
INIT_QPOS = np.array([0.0, 0.0, 0.75, 1.0, 0.0, 0.0, 0.0] + [0.0] * 8)
INIT_QVEL = np.zeros(OBS_QVEL_DIM)  # gym 0.23.1 mujoco_env.py:66

# The ant model: the physics of d4rl/locomotion/assets/ant.xml (line numbers in the comments), without its textures,
# materials and light (rendering only) and without the unused init_qpos numeric. Walls are added by `maze_xml`.
ANT_XML = """
<mujoco model="ant">
  <!-- ant.xml:2; coordinate="local" dropped: the only mode MuJoCo 3 knows -->
  <compiler inertiafromgeom="true" angle="degree"/>
  <option timestep="0.02" integrator="RK4"/>  <!-- ant.xml:3 -->
  <default>  <!-- ant.xml:7-10 -->
    <joint limited="true" armature="1" damping="1"/>
    <geom condim="3" conaffinity="0" margin="0.01" friction="1 0.5 0.5" solref=".02 1" solimp=".8 .8 .01"
          rgba="0.8 0.6 0.4 1" density="5.0"/>
  </default>
  <worldbody>
    <geom name="floor" pos="0 0 0" size="40 40 40" type="plane" conaffinity="1" condim="3"
          rgba="0.8 0.9 0.8 1"/>  <!-- ant.xml:20 -->
    <body name="torso" pos="0 0 0.75">  <!-- ant.xml:21-68 -->
      <geom name="torso_geom" type="sphere" size="0.25" pos="0 0 0" rgba="0.3 0.9 0.5 1"/>
      <joint name="root" type="free" limited="false" pos="0 0 0" axis="0 0 1" margin="0.01" armature="0"
             damping="0"/>
      <body name="front_left_leg" pos="0 0 0">
        <geom name="aux_1_geom" type="capsule" size="0.08" fromto="0.0 0.0 0.0 0.2 0.2 0.0"/>
        <body name="aux_1" pos="0.2 0.2 0">
          <joint name="hip_1" type="hinge" pos="0.0 0.0 0.0" axis="0 0 1" range="-30 30"/>
          <geom name="left_leg_geom" type="capsule" size="0.08" fromto="0.0 0.0 0.0 0.2 0.2 0.0"/>
          <body pos="0.2 0.2 0">
            <joint name="ankle_1" type="hinge" pos="0.0 0.0 0.0" axis="-1 1 0" range="30 70"/>
            <geom name="left_ankle_geom" type="capsule" size="0.08" fromto="0.0 0.0 0.0 0.4 0.4 0.0"/>
          </body>
        </body>
      </body>
      <body name="front_right_leg" pos="0 0 0">
        <geom name="aux_2_geom" type="capsule" size="0.08" fromto="0.0 0.0 0.0 -0.2 0.2 0.0"/>
        <body name="aux_2" pos="-0.2 0.2 0">
          <joint name="hip_2" type="hinge" pos="0.0 0.0 0.0" axis="0 0 1" range="-30 30"/>
          <geom name="right_leg_geom" type="capsule" size="0.08" fromto="0.0 0.0 0.0 -0.2 0.2 0.0"/>
          <body pos="-0.2 0.2 0">
            <joint name="ankle_2" type="hinge" pos="0.0 0.0 0.0" axis="1 1 0" range="-70 -30"/>
            <geom name="right_ankle_geom" type="capsule" size="0.08" fromto="0.0 0.0 0.0 -0.4 0.4 0.0"/>
          </body>
        </body>
      </body>
      <body name="back_leg" pos="0 0 0">
        <geom name="aux_3_geom" type="capsule" size="0.08" fromto="0.0 0.0 0.0 -0.2 -0.2 0.0"/>
        <body name="aux_3" pos="-0.2 -0.2 0">
          <joint name="hip_3" type="hinge" pos="0.0 0.0 0.0" axis="0 0 1" range="-30 30"/>
          <geom name="back_leg_geom" type="capsule" size="0.08" fromto="0.0 0.0 0.0 -0.2 -0.2 0.0"/>
          <body pos="-0.2 -0.2 0">
            <joint name="ankle_3" type="hinge" pos="0.0 0.0 0.0" axis="-1 1 0" range="-70 -30"/>
            <geom name="third_ankle_geom" type="capsule" size="0.08" fromto="0.0 0.0 0.0 -0.4 -0.4 0.0"/>
          </body>
        </body>
      </body>
      <body name="right_back_leg" pos="0 0 0">
        <geom name="aux_4_geom" type="capsule" size="0.08" fromto="0.0 0.0 0.0 0.2 -0.2 0.0"/>
        <body name="aux_4" pos="0.2 -0.2 0">
          <joint name="hip_4" type="hinge" pos="0.0 0.0 0.0" axis="0 0 1" range="-30 30"/>
          <geom name="rightback_leg_geom" type="capsule" size="0.08" fromto="0.0 0.0 0.0 0.2 -0.2 0.0"/>
          <body pos="0.2 -0.2 0">
            <joint name="ankle_4" type="hinge" pos="0.0 0.0 0.0" axis="1 1 0" range="30 70"/>
            <geom name="fourth_ankle_geom" type="capsule" size="0.08" fromto="0.0 0.0 0.0 0.4 -0.4 0.0"/>
          </body>
        </body>
      </body>
    </body>
  </worldbody>
  <actuator>  <!-- ant.xml:71-80, in this order (it is the order of the action dimensions) -->
    <motor joint="hip_4" ctrlrange="-30.0 30.0" ctrllimited="true"/>
    <motor joint="ankle_4" ctrlrange="-30.0 30.0" ctrllimited="true"/>
    <motor joint="hip_1" ctrlrange="-30.0 30.0" ctrllimited="true"/>
    <motor joint="ankle_1" ctrlrange="-30.0 30.0" ctrllimited="true"/>
    <motor joint="hip_2" ctrlrange="-30.0 30.0" ctrllimited="true"/>
    <motor joint="ankle_2" ctrlrange="-30.0 30.0" ctrllimited="true"/>
    <motor joint="hip_3" ctrlrange="-30.0 30.0" ctrllimited="true"/>
    <motor joint="ankle_3" ctrlrange="-30.0 30.0" ctrllimited="true"/>
  </actuator>
</mujoco>
"""


# ------------------------------------------------------------------------------------------------ maze geometry


def find_cell(maze_map, marker: str) -> tuple[int, int]:
    """(row, col) of the first cell holding `marker` (RESET or GOAL), scanning rows then columns."""
    for i, row in enumerate(maze_map):
        for j, cell in enumerate(row):
            if cell == marker:
                return i, j
    raise ValueError(f'no {marker!r} cell in the maze map')


def torso_offset(maze_map) -> np.ndarray:
    """The world shift that puts the reset cell at xy (0, 0): (col, row) of RESET x scaling (maze_env.py:270-277;
    every wall and every cell position subtracts it, maze_env.py:185-186, 229-230). (4, 4) for the three maps."""
    i, j = find_cell(maze_map, RESET)
    return np.array([j * MAZE_SIZE_SCALING, i * MAZE_SIZE_SCALING])


def cell_to_xy(maze_map, rowcol) -> np.ndarray:
    """World xy of a cell: x = col s - torso_x, y = row s - torso_y (maze_env.py:227-230). It is the centre of the
    cell's wall block, hence of the free cell; the goal noise is added on the positive side only."""
    i, j = rowcol
    return np.array([j * MAZE_SIZE_SCALING, i * MAZE_SIZE_SCALING]) - torso_offset(maze_map)


def goal_base_xy(name: str) -> np.ndarray:
    """The noise-free goal of a task (the GOAL cell's xy): umaze (0, 8), medium (20, 20), large (32, 24)."""
    maze_map = TASKS[name][0]
    return cell_to_xy(maze_map, find_cell(maze_map, GOAL))


def maze_xml(maze_map) -> str:
    """ANT_XML with one box per wall cell appended to the worldbody, as MazeEnv.__init__ does (maze_env.py:177-196):
    centre (x, y, h s / 2), half sizes (s / 2, s / 2, h s / 2) = (2, 2, 1) m, contype = conaffinity = 1, the other
    contact parameters from the geom defaults. Only cells equal to 1 are walls (RESET / GOAL cells are free)."""
    root = ET.fromstring(ANT_XML)
    worldbody = root.find('worldbody')
    offset = torso_offset(maze_map)
    half = MAZE_HEIGHT / 2 * MAZE_SIZE_SCALING
    for i, row in enumerate(maze_map):
        for j, cell in enumerate(row):
            if cell == 1:
                x, y = j * MAZE_SIZE_SCALING - offset[0], i * MAZE_SIZE_SCALING - offset[1]
                ET.SubElement(
                    worldbody,
                    'geom',
                    name=f'block_{i}_{j}',
                    pos=f'{x:f} {y:f} {half:f}',
                    size=f'{0.5 * MAZE_SIZE_SCALING:f} {0.5 * MAZE_SIZE_SCALING:f} {half:f}',
                    type='box',
                    contype='1',
                    conaffinity='1',
                    rgba='0.7 0.5 0.3 1.0',
                )
    return ET.tostring(root, encoding='unicode')


# ------------------------------------------------------------------------------------------------ environment


class AntMazeEnv(gymnasium.Env):
    """One D4RL v2 antmaze task (without the time limit: see `make_antmaze_env`). Actions in [-1, 1]^8."""

    metadata = {'render_modes': []}

    def __init__(self, name: str, seed: int | None = None):
        if name not in TASKS:
            raise ValueError(f'unknown D4RL antmaze task {name!r}; valid: {", ".join(ANTMAZE_NAMES)}')
        self.name = name
        self.maze_map = maze_map = TASKS[name][0]
        self.model = mujoco.MjModel.from_xml_string(maze_xml(maze_map))
        self.data = mujoco.MjData(self.model)
        assert (self.model.nq, self.model.nv, self.model.nu) == (OBS_QPOS_DIM, OBS_QVEL_DIM, ACTION_DIM)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(ACTION_DIM,), dtype=np.float32)
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(OBS_DIM,), dtype=np.float64)
        # NormalizedBoxEnv maps [-1, 1] onto the wrapped env's action space, gym's float32 Box of the ctrlranges
        # (wrappers.py:142-143, 155-159; gym 0.23.1 mujoco_env.py:76-80).
        self._ctrl_low = self.model.actuator_ctrlrange[:, 0].astype(np.float32)
        self._ctrl_high = self.model.actuator_ctrlrange[:, 1].astype(np.float32)
        self._goal_cell = find_cell(maze_map, GOAL)
        self.dt = self.model.opt.timestep * FRAME_SKIP
        if seed is not None:
            super().reset(seed=seed)
        self.target_goal = self.sample_goal()  # d4rl sets a goal at construction too (ant.py:183)

    # --- goal
    def sample_goal(self) -> np.ndarray:
        """A goal in the GOAL cell, drawn as MazeEnv.goal_sampler does (maze_env.py:236-258), in its draw order."""
        rng = self.np_random
        cells = [self._goal_cell]  # each *_TEST map has one GOAL cell, so the choice is always it (maze_env.py:249-250)
        x, y = cell_to_xy(self.maze_map, cells[int(rng.integers(len(cells)))])
        x += rng.uniform(0.0, GOAL_CELL_NOISE)  # maze_env.py:232
        y += rng.uniform(0.0, GOAL_CELL_NOISE)  # maze_env.py:233
        x += rng.uniform(0.0, 0.5) * 0.25 * MAZE_SIZE_SCALING  # maze_env.py:253
        y += rng.uniform(0.0, 0.5) * 0.25 * MAZE_SIZE_SCALING  # maze_env.py:254
        return np.array([max(x, 0.0), max(y, 0.0)])  # maze_env.py:256

    # --- state
    def get_xy(self) -> np.ndarray:
        return self.data.qpos[:2].copy()  # ant.py:139-140: the free joint's x, y (the torso position)

    def _get_obs(self) -> np.ndarray:
        return np.concatenate([self.data.qpos.flat[:OBS_QPOS_DIM], self.data.qvel.flat[:OBS_QVEL_DIM]])

    def set_state(self, qpos, qvel) -> None:
        """Set qpos / qvel and recompute the derived quantities, like mujoco-py's set_state + forward (gym 0.23.1
        mujoco_env.py:121-128). The solver warm start is cleared, so the next step depends on the state alone."""
        self.data.qpos[:] = qpos
        self.data.qvel[:] = qvel
        self.data.qacc_warmstart[:] = 0.0
        mujoco.mj_forward(self.model, self.data)

    def _goal_distance(self) -> float:
        return float(np.linalg.norm(self.get_xy() - self.target_goal))

    # --- gymnasium API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """A new goal (v2_resets, ant.py:186-202: set_target() before the MuJoCo reset; `options={'target_goal':
        xy}` fixes it instead, like set_target(xy)), then the ant at INIT_QPOS / INIT_QVEL plus noise (ant.py:120-134;
        non_zero_reset is False in every v2 registration, so the xy noise is the U(-0.1, 0.1) of qpos)."""
        super().reset(seed=seed)
        goal = (options or {}).get('target_goal')
        self.target_goal = self.sample_goal() if goal is None else np.asarray(goal, dtype=np.float64).copy()
        mujoco.mj_resetData(self.model, self.data)  # sim.reset() (gym 0.23.1 mujoco_env.py:114)
        qpos = INIT_QPOS + self.np_random.uniform(-RESET_QPOS_NOISE, RESET_QPOS_NOISE, size=self.model.nq)
        qvel = INIT_QVEL + self.np_random.standard_normal(self.model.nv) * RESET_QVEL_NOISE
        self.set_state(qpos, qvel)
        return self._get_obs(), {'success': self._goal_distance() <= SUCCESS_RADIUS}

    def step(self, action):
        a = np.asarray(action)
        ctrl = np.clip(
            self._ctrl_low + (a + 1.0) * 0.5 * (self._ctrl_high - self._ctrl_low), self._ctrl_low, self._ctrl_high
        )  # wrappers.py:156-159
        self.data.ctrl[:] = ctrl  # gym 0.23.1 mujoco_env.py:138-140
        mujoco.mj_step(self.model, self.data, nstep=FRAME_SKIP)
        success = self._goal_distance() <= SUCCESS_RADIUS  # after the step (goal_reaching_env.py:38-47)
        reward = 1.0 if success else 0.0  # reward_type 'sparse' (goal_reaching_env.py:41-42)
        # eval=True in every v2 registration: done at the goal (goal_reaching_env.py:45-47). AntEnv's own healthy-z
        # `done` (ant.py:79-82) is discarded by GoalReachingEnv.step.
        return self._get_obs(), reward, success, False, {'success': success}


def make_antmaze_env(name: str, seed: int | None = None) -> gymnasium.Env:
    """The D4RL v2 evaluation env `name` (e.g. 'antmaze-large-play-v2') with its time limit (700 / 1000 steps).
    `seed` seeds the env's generator (reset(seed=...) reseeds it); `env.unwrapped.target_goal` is the current goal."""
    env = AntMazeEnv(name, seed=seed)
    horizon = HORIZONS[name]
    # A spec as gymnasium.make would give it (gymnasium.make(env.spec) rebuilds the same env, unseeded).
    env.spec = EnvSpec(
        id=name, entry_point='envs.d4rl_antmaze:AntMazeEnv', max_episode_steps=horizon, kwargs={'name': name}
    )
    env = TimeLimit(env, max_episode_steps=horizon)
    if seed is not None:
        env.action_space.seed(seed)
    return env


def set_state_from_obs(env: gymnasium.Env, obs) -> None:
    """Put the ant in the state of a 29-D observation. Exact: the observation holds the full qpos (15) and qvel (14)
    (the walls are static geoms, so the model has no other degrees of freedom)."""
    obs = np.asarray(obs, dtype=np.float64)
    if obs.shape != (OBS_DIM,):
        raise ValueError(f'expected a ({OBS_DIM},) antmaze observation, got shape {obs.shape}')
    env.unwrapped.set_state(obs[:OBS_QPOS_DIM], obs[OBS_QPOS_DIM:])


# ------------------------------------------------------------------------------------------------ data in d4rl's layout

# The observation's groups, for per-group error reports (ant.py:92-96 with the free joint first in qpos / qvel).
OBS_GROUPS = {
    'torso_xyz': slice(0, 3),
    'torso_quat': slice(3, 7),
    'joint_angles': slice(7, 15),
    'torso_linvel': slice(15, 18),
    'torso_angvel': slice(18, 21),
    'joint_vel': slice(21, 29),
}


GENERATED_ATTR = 'tiltbench_generated'  # the hdf5 attribute that marks a file written by `write_dataset`


def write_dataset(path: str, name: str, num_episodes: int, episode_length: int = 1000, seed: int = 0) -> None:
    """Write an antmaze dataset in the layout of D4RL's v2 hdf5 files by running this env with a smoothed random
    policy: observations (N, 29) float32, actions (N, 8) float32, rewards (N,) (the sparse reward of the goal in
    infos/goal), terminals (N,) all False and timeouts (N,) True at each episode's last step (the v2 files' episode
    ends), infos/goal (N, 2), infos/qpos (N, 15), infos/qvel (N, 14). Like d4rl's data collection, episodes do not end
    at the goal. For tests and smoke runs: its numbers mean nothing next to the real files."""
    import h5py

    env = AntMazeEnv(name, seed=seed)
    rng = np.random.default_rng(seed)
    cols = {k: [] for k in ('observations', 'actions', 'rewards', 'goal', 'qpos', 'qvel')}
    for _ in range(num_episodes):
        obs, _ = env.reset()
        a = np.zeros(ACTION_DIM)
        for _ in range(episode_length):
            cols['qpos'].append(env.data.qpos.copy())
            cols['qvel'].append(env.data.qvel.copy())
            cols['goal'].append(env.target_goal.copy())
            a = np.clip(0.8 * a + 0.5 * rng.standard_normal(ACTION_DIM), -1.0, 1.0)
            cols['observations'].append(obs)
            cols['actions'].append(a.astype(np.float32))
            obs, reward, _, _, _ = env.step(a.astype(np.float32))
            cols['rewards'].append(reward)
    n = num_episodes * episode_length
    timeouts = np.zeros(n, dtype=bool)
    timeouts[episode_length - 1 :: episode_length] = True
    with h5py.File(path, 'w') as f:
        f.attrs[GENERATED_ATTR] = (
            f'{num_episodes} episodes of {episode_length} steps, smoothed random policy, seed {seed}'
        )
        f['observations'] = np.asarray(cols['observations'], np.float32)
        f['actions'] = np.asarray(cols['actions'], np.float32)
        f['rewards'] = np.asarray(cols['rewards'], np.float32)
        f['terminals'] = np.zeros(n, dtype=bool)
        f['timeouts'] = timeouts
        f['infos/goal'] = np.asarray(cols['goal'], np.float32)
        f['infos/qpos'] = np.asarray(cols['qpos'])
        f['infos/qvel'] = np.asarray(cols['qvel'])
