"""`palaestra play`: a trained policy acting in its environment, with no trainer and no
updates: the returns of a number of episodes, and a video of them where asked.

The policy comes from `palaestra.load_policy` (a run folder, a behavior folder, a `.pt`
checkpoint or an `.onnx` export); the environment from `--env`, or from the run's resolved
`configuration.yaml` (found in the run folder the model lies in). Returns are counted as the
training summary counts "Environment/Cumulative Reward": every reward an agent received from
its episode's first decision to its end, one value per finished episode.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from palaestra.exception import EnvironmentSetupError, PalaestraError

logger = logging.getLogger("palaestra")

RECORD_FORMATS = (".gif", ".mp4")


@dataclass
class PlayResult:
    """Each behavior's finished episodes: their returns and lengths (in decisions), in the
    order they ended; `frames`: the number of frames written to the recording."""

    returns: Dict[str, List[float]] = field(default_factory=dict)
    lengths: Dict[str, List[int]] = field(default_factory=dict)
    steps: int = 0
    frames: int = 0
    interrupted: bool = False

    def lines(self) -> List[str]:
        out = []
        for name, returns in self.returns.items():
            if not returns:
                out.append(f"{name}: no episode finished in {self.steps} steps.")
                continue
            r = np.asarray(returns)
            lengths = np.asarray(self.lengths[name])
            out.append(f"{name}: {len(r)} episodes. Mean return {r.mean():.3f}, std {r.std():.3f}"
                       f" (min {r.min():.3f}, max {r.max():.3f}). Mean length "
                       f"{lengths.mean():.1f} decisions.")
        return out


def resolve_model(target: str, results_dir: str = "results") -> str:
    """A path as given, or a run id under `results_dir`."""
    if os.path.exists(target):
        return target
    candidate = os.path.join(results_dir, target)
    if os.path.sep not in target.strip(os.path.sep) and os.path.isdir(candidate):
        return candidate
    raise PalaestraError(f"palaestra play {target}: neither a file or folder nor a run id in "
                         f"{results_dir}/ (tried {target} and {candidate}); give a run id, a "
                         "run or behavior folder, a .pt checkpoint or an .onnx file.")


def find_run_config(model: str) -> Optional[str]:
    """The `configuration.yaml` of the run `model` belongs to: in it, or in a folder above it
    (a behavior folder or a checkpoint lies one to three levels down)."""
    folder = os.path.abspath(model if os.path.isdir(model) else os.path.dirname(model))
    for _ in range(4):
        candidate = os.path.join(folder, "configuration.yaml")
        if os.path.isfile(candidate) and os.path.isdir(os.path.join(folder, "run_logs")):
            return candidate
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return None


def env_from_run(config_path: Optional[str]) -> Tuple[Optional[str], Any]:
    """(env_path, env_args) from a run's resolved configuration."""
    if config_path is None:
        return None, None
    from palaestra.yaml_reader import read_yaml

    data = read_yaml(config_path)
    env = data.get("env_settings") if isinstance(data, dict) else None
    if not isinstance(env, dict):
        return None, None
    return env.get("env_path"), env.get("env_args")


def is_run_folder(model: str) -> bool:
    """Whether `model` is a run's folder (not one of its behaviors or files)."""
    config = find_run_config(model) if os.path.isdir(model) else None
    return config is not None and os.path.dirname(config) == os.path.abspath(model)


def load_policies(model: str, behavior_specs: Dict[str, Any], behavior: Optional[str],
                  seed: int) -> Dict[str, Any]:
    """A `LoadedPolicy` for every behavior of the environment: from each behavior's folder
    when `model` is a run folder, else `model` for the one behavior named (or the only one)."""
    from palaestra.inference import load_policy
    from palaestra.paths import behavior_parts, join_inside

    names = list(behavior_specs)
    if behavior is not None and behavior not in behavior_specs:
        raise PalaestraError(f"--behavior {behavior}: the environment has {', '.join(names)}")
    if is_run_folder(model):
        chosen = [behavior] if behavior else names
        policies = {name: load_policy(join_inside(model, behavior_parts(name)), seed=seed)
                    for name in chosen}
    else:
        target = behavior or (names[0] if len(names) == 1 else None)
        if target is None:
            raise PalaestraError(f"{model} is one behavior's policy; the environment has "
                                 f"{len(names)} ({', '.join(names)}): name it with --behavior, "
                                 "or give the run folder to play them all.")
        policies = {target: load_policy(model, seed=seed)}
    missing = [n for n in names if n not in policies]
    if missing and behavior is None:
        raise PalaestraError(f"no policy for behavior(s) {', '.join(missing)} of the "
                             "environment; give the run folder, which holds them all.")
    if missing:
        logger.info("Behaviors not played act at random: %s", ", ".join(missing))
    for name, policy in policies.items():
        _check_fits(name, policy, behavior_specs[name])
    return policies


def _check_fits(name: str, policy: Any, spec: Any) -> None:
    got = [tuple(o.shape) for o in spec.observation_specs]
    takes = [tuple(o.shape) for o in policy.behavior_spec.observation_specs]
    a, b = policy.behavior_spec.action_spec, spec.action_spec
    if got != takes or (a.continuous_size, tuple(a.discrete_branches)) != \
            (b.continuous_size, tuple(b.discrete_branches)):
        raise PalaestraError(
            f"{policy.source} does not fit behavior {name}: the policy takes observations "
            f"{takes} and acts with {a.continuous_size} continuous / branches "
            f"{list(a.discrete_branches)}; the environment gives {got} and takes "
            f"{b.continuous_size} continuous / branches {list(b.discrete_branches)}.")


def as_action_tuple(actions: Any, spec: Any, n: int) -> Any:
    """Actions as `LoadedPolicy.act` returns them (continuous (n, c), discrete branch indices
    (n, b), a (continuous, discrete) pair for a hybrid action spec, or an `ActionTuple`) as the
    `ActionTuple` for `n` agents; ValueError if they do not have that many values."""
    from palaestra.envs.base import ActionTuple

    if isinstance(actions, ActionTuple):
        cont, disc = actions.continuous, actions.discrete
    elif spec.continuous_size and spec.discrete_branches:
        cont, disc = actions
    elif spec.continuous_size:
        cont, disc = actions, np.zeros((n, 0), np.int64)
    else:
        cont, disc = np.zeros((n, 0), np.float32), actions
    return ActionTuple(np.asarray(cont, np.float32).reshape(n, spec.continuous_size),
                       np.asarray(disc, np.int64).reshape(n, len(spec.discrete_branches)))


class Recorder:
    """Frames into a GIF (Pillow, which matplotlib brings) or an MP4 (imageio-ffmpeg, the
    `palaestra[video]` extra), written to a temporary name and moved into place at the end."""

    def __init__(self, path: str, fps: float, max_frames: int) -> None:
        ext = os.path.splitext(path)[1].lower()
        if ext not in RECORD_FORMATS:
            raise PalaestraError(f"--record {path}: the file name must end in "
                                 f"{' or '.join(RECORD_FORMATS)}.")
        if ext == ".mp4":
            import importlib.util

            if importlib.util.find_spec("imageio_ffmpeg") is None:
                raise PalaestraError("--record .mp4 needs ffmpeg: pip install "
                                     "\"palaestra[video]\" (or record a .gif)") from None
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise PalaestraError(f"--record {path}: the folder {folder} does not exist.")
        self.path, self.ext, self.fps, self.max_frames = path, ext, fps, max_frames
        self.frames: List[np.ndarray] = []

    def add(self, frame: Optional[np.ndarray]) -> None:
        if frame is None or len(self.frames) >= self.max_frames:
            return
        frame = np.asarray(frame)
        if frame.dtype != np.uint8:
            frame = np.clip(frame, 0, 255).astype(np.uint8)
        if self.frames and frame.shape != self.frames[0].shape:
            return  # a window resized mid-run: a video keeps one size
        self.frames.append(frame)

    def write(self) -> int:
        """Write the video; the number of frames written."""
        from palaestra.atomic import temp_name

        if not self.frames:
            return 0
        tmp = temp_name(self.path) + self.ext
        try:
            if self.ext == ".gif":
                from PIL import Image

                images = [Image.fromarray(f) for f in self.frames]
                images[0].save(tmp, save_all=True, append_images=images[1:],
                               duration=max(20, int(round(1000 / self.fps))), loop=0)
            else:
                import imageio_ffmpeg

                h, w = self.frames[0].shape[:2]
                # yuv420p (what players expect) needs even sides: pad by one pixel if odd
                size = (w + w % 2, h + h % 2)
                writer = imageio_ffmpeg.write_frames(tmp, size, fps=self.fps, codec="libx264",
                                                     pix_fmt_out="yuv420p", macro_block_size=1)
                writer.send(None)
                for f in self.frames:
                    if (f.shape[1], f.shape[0]) != size:
                        f = np.pad(f, ((0, size[1] - h), (0, size[0] - w), (0, 0)), mode="edge")
                    writer.send(np.ascontiguousarray(f))
                writer.close()
            os.replace(tmp, self.path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return len(self.frames)


def play(model: str, *, env: Optional[str] = None, env_args: Any = None,
         behavior: Optional[str] = None, episodes: int = 10, deterministic: bool = False,
         record: Optional[str] = None, render: Optional[str] = None, seed: int = 0,
         max_steps: int = 100_000, max_frames: int = 2000, results_dir: str = "results",
         on_episode: Optional[Callable[[str, float], None]] = None) -> PlayResult:
    """Run the trained policy `model` until `episodes` episodes of every played behavior
    have ended (or `max_steps` environment steps, or Ctrl-C)."""
    if episodes < 1:
        raise PalaestraError(f"--episodes {episodes}: give at least 1.")
    if render not in (None, "human"):
        raise PalaestraError(f"--render {render}: the allowed value is human (a window, where "
                             "the environment has one); for a video use --record out.gif.")
    path = resolve_model(model, results_dir)
    recorder = None
    if record is not None:
        recorder = Recorder(record, fps=30.0, max_frames=max_frames)
    render_mode = "human" if render else ("rgb_array" if recorder else None)
    env, environment = open_environment("play", model, path, env, env_args, seed, render_mode)
    try:
        if recorder is not None:
            recorder.fps = float(getattr(environment, "render_fps", None) or 30.0)
        policies = load_policies(path, dict(environment.behavior_specs), behavior, seed)
        returns = _Returns(policies, episodes, on_episode)
        actors = {name: policy_actor(policy, environment.behavior_specs[name], deterministic)
                  for name, policy in policies.items()}
        returns.result.steps, returns.result.interrupted = run_episodes(
            environment, actors, returns, max_steps,
            _frames(recorder, environment, render is not None), seed)
    finally:
        environment.close()
    result = returns.result
    if recorder is not None:
        result.frames = recorder.write()
        if result.frames == 0:
            logger.warning("--record %s: the environment %s drew no frames (its render() "
                           "returns None); no video written", record, env)
    return result


def _frames(recorder: Optional[Recorder], environment: Any, show: bool
            ) -> Optional[Callable[[], Any]]:
    """What to do with the picture after each step: record it, show it, or nothing."""
    if recorder is not None:
        return lambda: recorder.add(environment.render())
    return environment.render if show else None


def open_environment(command: str, model: Optional[str], path: Optional[str],
                     env: Optional[str], env_args: Any, seed: int,
                     render_mode: Optional[str] = None) -> Tuple[str, Any]:
    """(the --env string, the environment, one copy): `env` if given, else the one of the run
    the model at `path` belongs to (its env_args too, unless `env_args` is given)."""
    from palaestra.envs import make_environment

    if env is None:
        env, run_args = env_from_run(find_run_config(path)) if path else (None, None)
        env_args = run_args if env_args is None else env_args
        if env is None:
            where = (f"palaestra {command} {model}: no environment: it is not inside a run "
                     "folder with a configuration.yaml naming env_settings.env_path"
                     if model else f"palaestra {command}: no environment")
            raise EnvironmentSetupError(f"{where}; give --env.")
    environment = _unity_build(env, env_args, seed, path) or \
        make_environment(env, env_args, 1, seed, render_mode=render_mode)
    return env, environment


def _unity_build(env: str, env_args: Any, seed: int, model: Optional[str]) -> Any:
    """A Unity build named by `--env` (or by the run), launched as its training did: one
    instance, with the run's env_settings (port, areas, timeout) where the model has a run.
    None for any other environment."""
    from palaestra.config import targets_unity

    if not targets_unity(env):
        return None
    from palaestra.settings import EnvironmentSettings, RunOptions
    from palaestra.unity.environment import make_unity_environment

    options = RunOptions()
    config = find_run_config(model) if model else None
    if config is not None:
        from palaestra.yaml_reader import read_yaml

        saved = read_yaml(config).get("env_settings") or {}
        for key in ("base_port", "num_areas", "timeout_wait"):
            if isinstance(saved.get(key), int) and not isinstance(saved.get(key), bool):
                setattr(options.env_settings, key, saved[key])
    settings: EnvironmentSettings = options.env_settings
    settings.env_path, settings.env_args, settings.seed, settings.num_envs = env, env_args, seed, 1
    return make_unity_environment(env, options, log_folder=None)


class EpisodeWatcher:
    """What `run_episodes` reports, behavior by behavior, at every step: `seen` gets the
    agents that need an action and those whose episode ended (before acting), `acted` the
    actions chosen; `finished` ends the loop. `play` counts returns, `palaestra record`
    writes demonstrations."""

    def seen(self, name: str, decision: Any, terminal: Any) -> None:
        """The batches of behavior `name` as `get_steps` returned them."""

    def acted(self, name: str, decision: Any, actions: Any) -> None:
        """The `ActionTuple` about to be sent for `decision` (not called for no agents)."""

    def finished(self) -> bool:
        return False


#: An actor: the decision batch of a behavior -> the `ActionTuple` to send.
Actor = Callable[[Any], Any]


def policy_actor(policy: Any, spec: Any, deterministic: bool) -> Actor:
    """A `LoadedPolicy` as an actor of the behavior with `spec`."""

    def act(decision: Any) -> Any:
        obs = decision.obs if len(decision.obs) > 1 else decision.obs[0]
        return as_action_tuple(policy.act(obs, decision.action_mask,
                                           deterministic=deterministic),
                                spec.action_spec, len(decision))

    return act


def run_episodes(env: Any, actors: Dict[str, Actor], watcher: EpisodeWatcher, max_steps: int,
                 frame: Optional[Callable[[], Any]] = None, seed: int = 0) -> Tuple[int, bool]:
    """Reset `env` and step it until `watcher.finished()` or `max_steps` steps or Ctrl-C:
    every behavior acts through its actor (one without an actor at random), `frame` is called
    after the reset and after each step. (steps taken, whether Ctrl-C stopped it)."""
    specs = env.behavior_specs
    rng = np.random.default_rng(seed)
    steps = 0
    env.reset()
    try:
        if frame is not None:
            frame()
        while not watcher.finished() and steps < max_steps:
            for name in specs:
                decision, terminal = env.get_steps(name)
                watcher.seen(name, decision, terminal)
                if len(decision) == 0:
                    continue
                actor = actors.get(name)
                actions = actor(decision) if actor is not None else \
                    specs[name].action_spec.random_action(len(decision), rng)
                watcher.acted(name, decision, actions)
                env.set_actions(name, actions)
            if watcher.finished():
                break
            env.step()
            steps += 1
            if frame is not None:
                frame()
    except KeyboardInterrupt:
        return steps, True
    return steps, False


class _Returns(EpisodeWatcher):
    """Each played behavior's returns: every reward from an agent's first decision of an
    episode to its end, one value per finished episode (the first `episodes` of them)."""

    def __init__(self, policies: Dict[str, Any], episodes: int,
                 on_episode: Optional[Callable[[str, float], None]]) -> None:
        self.result = PlayResult({name: [] for name in policies},
                                 {name: [] for name in policies})
        self.running: Dict[str, Dict[int, List[float]]] = {name: {} for name in policies}
        self.episodes, self.on_episode = episodes, on_episode

    def seen(self, name: str, decision: Any, terminal: Any) -> None:
        track = self.running.get(name)
        if track is None:
            return
        returns, lengths = self.result.returns[name], self.result.lengths[name]
        for i, agent in enumerate(terminal.agent_id.tolist()):
            total, length = track.pop(agent, [0.0, 0])
            if len(returns) < self.episodes:
                value = total + float(terminal.reward[i])
                returns.append(value)
                lengths.append(int(length))
                if self.on_episode is not None:
                    self.on_episode(name, value)
        for i, agent in enumerate(decision.agent_id.tolist()):
            entry = track.setdefault(agent, [0.0, 0])
            entry[0] += float(decision.reward[i])
            entry[1] += 1

    def finished(self) -> bool:
        return all(len(r) >= self.episodes for r in self.result.returns.values())
