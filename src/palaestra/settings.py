"""Typed settings: the ML-Agents YAML schema as dataclasses.

Every field carries its ML-Agents default and a one-line doc (reused by the docs and the error
messages). Bounds live in the field metadata so that `palaestra.config` can check them while it
still knows the file and the key path; cross-field rules live in `__post_init__`.

Subclasses of `Settings` need no decorator: `__init_subclass__` turns them into dataclasses, so a
plugin's settings class reads exactly like the specification's snippet::

    class MySettings(OnPolicyHyperparamSettings):
        beta: float = 5.0e-3
"""
from __future__ import annotations

import dataclasses
import enum
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Union

from palaestra.exception import TrainerConfigError

if sys.version_info >= (3, 11):
    from typing import dataclass_transform
else:
    from typing_extensions import dataclass_transform


def setting(default: Any = dataclasses.MISSING, doc: str = "", *, factory: Any = None,
            ge: float | None = None, gt: float | None = None, le: float | None = None,
            lt: float | None = None) -> Any:
    """A dataclass field with a doc line and numeric bounds checked at load time."""
    meta = {"doc": doc, "ge": ge, "gt": gt, "le": le, "lt": lt}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


# Upper bounds of the settings that size memory, threads or work. Each is far above what any
# ML-Agents config uses (the largest shipped values: 256 units, 2 layers, buffer_size 1e6,
# time_horizon 1000, 32 copies) and far below what would exhaust a machine: a value beyond one
# is a typo (1e8 for 1e3) that would otherwise take minutes to die of MemoryError, or crash
# torch (100000 threads segfaults).
MAX_UNITS = 8192            # units per layer: one 8192x8192 layer is 256 MiB of float32
MAX_LAYERS = 64
MAX_BATCH = 1_000_000
MAX_BUFFER = 10_000_000     # a preallocated replay ring: 1e7 rows; ML-Agents' configs go to 2e6
MAX_EPOCHS = 1000
MAX_STEPS_PER_TRAJECTORY = 100_000  # time_horizon: the agent processor preallocates it per agent
MAX_KEEP_CHECKPOINTS = 1000
MAX_STEPS = 10 ** 15        # max_steps: far beyond any run, and inside numpy's int64
MAX_ENVS = 4096             # environment copies in one process
MAX_THREADS = 1024
MAX_SEED = 2 ** 31 - 1      # ML-Agents' seed is a C# int; every RNG here takes it
MIN_STEPS_PER_UPDATE = 1e-3  # 1000 gradient steps per agent step; 1e-9 would never step again


@dataclass_transform()  # tells type checkers what __init_subclass__ does: keyword constructors
class Settings:
    """Base of every settings class: subclasses become dataclasses automatically."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        dataclass(cls)

    def __post_init__(self) -> None:
        """Nothing here; it exists so that every subclass's `__post_init__` can (and should)
        call `super().__post_init__()`: a dataclass runs only the most derived one, and some
        bases (OffPolicyHyperparamSettings) fill in defaults in theirs."""

    def as_dict(self) -> Dict[str, Any]:
        """Plain YAML-ready values (enums as their strings), as written to configuration.yaml."""
        return _unstructure(self)


def _unstructure(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _unstructure(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {_unstructure(k): _unstructure(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_unstructure(v) for v in value]
    return value


class ScheduleType(enum.Enum):
    CONSTANT = "constant"
    LINEAR = "linear"


class EncoderType(enum.Enum):
    FULLY_CONNECTED = "fully_connected"
    MATCH3 = "match3"
    SIMPLE = "simple"
    NATURE_CNN = "nature_cnn"
    RESNET = "resnet"


class ConditioningType(enum.Enum):
    HYPER = "hyper"
    NONE = "none"


class Activation(enum.Enum):
    """palaestra extension: ML-Agents always uses swish; CleanRL/SB3 ports want tanh."""

    SWISH = "swish"
    TANH = "tanh"
    RELU = "relu"


class RewardSignalType(enum.Enum):
    """The name of a reward signal under `reward_signals:`. ML-Agents' four are members; a
    plugin's signal (entry-point group ``palaestra.reward_signal``) gets a member of its own
    name on first use, so `key.value` works for every key (the config loader checks the name
    against the installed signals)."""

    EXTRINSIC = "extrinsic"
    CURIOSITY = "curiosity"
    RND = "rnd"
    GAIL = "gail"

    @classmethod
    def _missing_(cls, value: object) -> Optional["RewardSignalType"]:
        if not (isinstance(value, str) and value.isidentifier()):
            return None
        member = object.__new__(cls)
        member._name_ = value.upper()
        member._value_ = value
        return cls._value2member_map_.setdefault(value, member)  # type: ignore[return-value]


class MemorySettings(Settings):
    sequence_length: int = setting(64, "Steps per training sequence of a recurrent network.",
                                   ge=1, le=MAX_STEPS_PER_TRAJECTORY)
    memory_size: int = setting(128, "Size of the recurrent state (even).", gt=0, le=MAX_UNITS)

    def __post_init__(self) -> None:
        if self.memory_size % 2:
            raise TrainerConfigError("memory_size must be divisible by 2", key="memory_size",
                                     value=self.memory_size)


class NetworkSettings(Settings):
    normalize: bool = setting(False, "Running mean/variance normalisation of vector observations.")
    hidden_units: int = setting(128, "Units per hidden layer.", ge=1, le=MAX_UNITS)
    num_layers: int = setting(2, "Hidden layers after the observation encoders.", ge=1,
                              le=MAX_LAYERS)
    vis_encode_type: EncoderType = setting(EncoderType.SIMPLE, "Encoder for visual observations.")
    memory: Optional[MemorySettings] = setting(None, "Recurrent memory (LSTM); null for none.")
    goal_conditioning_type: ConditioningType = setting(
        ConditioningType.HYPER, "How goal observations condition the network.")
    deterministic: bool = setting(False, "Act with the distribution's mode instead of sampling.")
    activation: Activation = setting(Activation.SWISH, "Hidden-layer activation (palaestra).")


class RewardSignalSettings(Settings):
    gamma: float = setting(0.99, "Discount factor.", ge=0.0, le=1.0)
    strength: float = setting(1.0, "Multiplier of this signal's reward.")
    network_settings: NetworkSettings = setting(factory=NetworkSettings,
                                                doc="Network of a learned reward signal.")


class LearnedRewardSignalSettings(RewardSignalSettings):
    """A signal with a network of its own. `encoding_size` is ML-Agents' deprecated spelling
    of `network_settings.hidden_units` (used as such when network_settings is not given)."""

    learning_rate: float = setting(3.0e-4, "Learning rate of the signal's network.", gt=0.0)
    encoding_size: Optional[int] = setting(None, "Deprecated: network_settings.hidden_units.",
                                           ge=1, le=MAX_UNITS)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.network_settings.memory is not None:
            raise TrainerConfigError("a reward signal's network has no memory; remove it",
                                     key="network_settings.memory",
                                     value=self.network_settings.memory.as_dict())


class CuriositySettings(LearnedRewardSignalSettings):
    """Intrinsic curiosity (Pathak et al. 2017): reward = the forward model's error."""


class RNDSettings(LearnedRewardSignalSettings):
    """Random network distillation (Burda et al. 2018): reward = the predictor's error."""

    learning_rate: float = setting(1.0e-4, "Learning rate of the predictor network.", gt=0.0)


class GAILSettings(LearnedRewardSignalSettings):
    """Generative adversarial imitation (Ho & Ermon 2016), optionally with VAIL's
    bottleneck (Peng et al. 2018): reward = how expert-like the discriminator finds a step."""

    use_actions: bool = setting(False, "The discriminator sees actions too, not only states.")
    use_vail: bool = setting(False, "Variational discriminator bottleneck.")
    demo_path: str = setting("", "A .demo file or a folder of them (required).")
    absorbing_state: bool = setting(
        False, "palaestra extension: an episode's real end is an absorbing state whose reward "
               "(that of the last step) continues forever, so that ending as the expert does "
               "is worth more than stalling (after Kostrikov et al. 2019).")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.demo_path:
            raise TrainerConfigError("demo_path is required: a .demo file or a folder of them",
                                     key="demo_path", value=self.demo_path)


# The settings class of each built-in signal; a plugin's come from its entry point.
BUILTIN_REWARD_SIGNAL_SETTINGS: Dict[str, type] = {
    "extrinsic": RewardSignalSettings, "curiosity": CuriositySettings, "rnd": RNDSettings,
    "gail": GAILSettings}


class BehavioralCloningSettings(Settings):
    """Behavioral cloning from demonstrations beside RL, as ML-Agents' `behavioral_cloning`."""

    demo_path: str = setting("", "A .demo file or a folder of them (required).")
    steps: int = setting(0, "Agent steps over which the cloning learning rate decays to 0 "
                            "(0: never decays).", ge=0)
    strength: float = setting(1.0, "Cloning learning rate relative to the policy's.", ge=0.0)
    samples_per_update: int = setting(0, "Demonstration samples per update (0: all).", ge=0)
    num_epoch: Optional[int] = setting(None, "Passes over them per update (null: 3).", ge=1,
                                       le=MAX_EPOCHS)
    batch_size: Optional[int] = setting(None, "Samples per gradient step (null: the "
                                              "trainer's batch_size).", ge=1, le=MAX_BATCH)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.demo_path:
            raise TrainerConfigError("demo_path is required: a .demo file or a folder of them",
                                     key="demo_path", value=self.demo_path)


class HyperparamSettings(Settings):
    batch_size: int = setting(1024, "Experiences per gradient step.", ge=1, le=MAX_BATCH)
    buffer_size: int = setting(10240, "Experiences collected before an update (on-policy) "
                                      "or kept in replay (off-policy).", ge=1, le=MAX_BUFFER)
    learning_rate: float = setting(3.0e-4, "Initial learning rate.", gt=0.0)
    learning_rate_schedule: ScheduleType = setting(ScheduleType.CONSTANT,
                                                   "constant, or linear decay to max_steps.")


class OnPolicyHyperparamSettings(HyperparamSettings):
    num_epoch: int = setting(3, "Passes over the update buffer per update.", ge=1, le=MAX_EPOCHS)


class OffPolicyHyperparamSettings(HyperparamSettings):
    batch_size: int = setting(128, "Experiences per gradient step.", ge=1, le=MAX_BATCH)
    buffer_size: int = setting(50000, "Replay buffer capacity in experiences.", ge=1,
                               le=MAX_BUFFER)
    buffer_init_steps: int = setting(0, "Experiences collected before the first update.", ge=0)
    steps_per_update: float = setting(1.0, "Agent steps per gradient step.",
                                      ge=MIN_STEPS_PER_UPDATE)
    save_replay_buffer: bool = setting(False, "Save the replay buffer with checkpoints.")
    reward_signal_steps_per_update: Optional[float] = setting(
        None, "Agent steps per reward-signal update; defaults to steps_per_update.",
        ge=MIN_STEPS_PER_UPDATE)

    def __post_init__(self) -> None:
        if self.reward_signal_steps_per_update is None:
            self.reward_signal_steps_per_update = self.steps_per_update


class TrainerSettings(Settings):
    """One behavior's settings. `hyperparameters` holds the trainer type's own settings class."""

    trainer_type: str = setting("ppo", "Registered trainer type (see `palaestra trainers`).")
    hyperparameters: Any = setting(None, "The trainer type's hyperparameters.")
    network_settings: NetworkSettings = setting(factory=NetworkSettings, doc="Policy network.")
    reward_signals: Dict[RewardSignalType, RewardSignalSettings] = setting(
        factory=lambda: {RewardSignalType.EXTRINSIC: RewardSignalSettings()},
        doc="Reward signals by name.")
    init_path: Optional[str] = setting(None, "Checkpoint to initialise this behavior from.")
    keep_checkpoints: int = setting(5, "Step checkpoints kept on disk.", ge=1,
                                    le=MAX_KEEP_CHECKPOINTS)
    checkpoint_interval: int = setting(500000, "Agent steps between checkpoints.", ge=1)
    even_checkpoints: bool = setting(
        False, "Ignore checkpoint_interval: keep_checkpoints checkpoints spread evenly over "
               "max_steps (every max_steps / keep_checkpoints steps), as ML-Agents does.")
    max_steps: int = setting(500000, "Agent steps (all agents, all copies) to train for.", ge=0,
                             le=MAX_STEPS)
    time_horizon: int = setting(64, "Steps per agent before a trajectory is cut.", ge=1,
                                le=MAX_STEPS_PER_TRAJECTORY)
    summary_freq: int = setting(50000, "Agent steps between summaries.", ge=1)
    threaded: Optional[bool] = setting(
        None, "Off-policy trainers: spread each batch of gradient steps over the following "
              "environment steps, so that copies simulating in other processes (worker "
              "processes, Unity builds) step during them, as ML-Agents' threaded lets the "
              "environment step while the model updates. Unset (null): on exactly where the "
              "copies simulate in other processes. On-policy trainers update at once either way.")
    behavioral_cloning: Optional[BehavioralCloningSettings] = setting(
        None, "Behavioral cloning from demonstrations beside RL; null for none.")

    def checkpoint_every(self) -> int:
        """Agent steps between checkpoints. Read when training starts, not at load time, so
        that `--max-steps` changes it too under `even_checkpoints`."""
        if self.even_checkpoints:
            return max(1, self.max_steps // self.keep_checkpoints)
        return self.checkpoint_interval

    def __post_init__(self) -> None:
        memory = self.network_settings.memory
        batch = getattr(self.hyperparameters, "batch_size", None)
        if memory is not None and batch is not None and memory.sequence_length > batch:
            raise TrainerConfigError("sequence_length must not exceed batch_size",
                                     key="network_settings.memory.sequence_length",
                                     value=memory.sequence_length)
        if not self.reward_signals:  # nothing to learn from: every trajectory would fail
            raise TrainerConfigError("at least one reward signal is needed (built in: "
                                     "extrinsic, curiosity, rnd, gail)",
                                     key="reward_signals", value=self.reward_signals)


class WorkerSync(enum.Enum):
    """palaestra extension: how a step waits for environment worker processes. `all`: every
    step waits for every worker (lockstep: a run is reproducible for a seed and number of
    workers); `ready`: a step takes the workers that have answered and the others keep
    stepping (faster when steps take uneven times; not reproducible)."""

    ALL = "all"
    READY = "ready"


class RaySettings(Settings):
    """palaestra extension (docs/scale-out.md): the copies stepped by Ray actors, on this
    machine or the nodes of a cluster. Each actor holds a share of the copies and its own copy
    of the policies and collects `chunk_steps` steps per call; the trainers stay in the
    training process, which replays the steps. The block present (even empty) means Ray."""

    address: str = setting(
        "local", "Where Ray runs (--ray-address): local (started in the training process, on "
                 "this machine), auto (the cluster `ray start` made this machine part of) or "
                 "HOST:PORT of a cluster's head.")
    num_actors: Optional[int] = setting(
        None, "Actors the copies are spread over (--ray-actors), 1 to num_envs; null: one per "
              "copy, as many as the cluster's CPUs hold (CPUs / cpus_per_actor).",
        ge=1, le=MAX_ENVS)
    chunk_steps: int = setting(
        64, "Steps an actor collects per call (--ray-chunk-steps); acting lags learning by at "
            "most one chunk.", ge=1, le=MAX_STEPS_PER_TRAJECTORY)
    cpus_per_actor: float = setting(1.0, "CPUs Ray reserves for each actor (a fraction "
                                         "shares a core).", gt=0.0, le=MAX_THREADS)
    num_cpus: Optional[int] = setting(
        None, "With address local: the CPUs of the Ray started in-process (null: this "
              "machine's cores but one, left to the trainers).", ge=1, le=MAX_THREADS)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not ray_address_ok(self.address):
            raise TrainerConfigError(
                "not a Ray address; allowed: local, auto or HOST:PORT of a Ray cluster's head "
                "(e.g. 10.0.0.5:6379, port 1 to 65535)", key="address", value=self.address)
        if self.num_cpus is not None and self.address != "local":
            raise TrainerConfigError(
                "num_cpus sizes the Ray this run starts itself (address local); a cluster's "
                "nodes say their CPUs with ray start --num-cpus", key="num_cpus",
                value=self.num_cpus)


def ray_address_ok(address: str) -> bool:
    """local, auto, or HOST:PORT (a host name or address, a port from 1 to 65535)."""
    if address in ("local", "auto"):
        return True
    host, sep, port = address.rpartition(":")
    return bool(sep and host.strip("[]") and not any(c.isspace() or c in "/@" for c in host)
                and port.isdigit() and 1 <= int(port) <= 65535)


class EnvironmentSettings(Settings):
    env_path: Optional[str] = setting(None, "Gymnasium id, built-in name, or module:factory.")
    env_args: Optional[Union[Dict[str, Any], List[str]]] = setting(
        None, "Keyword arguments for the environment (a mapping, or 'key=value' strings).")
    base_port: int = setting(5005, "Port of the first Unity build (base_port + i for the "
                                   "others; the Editor uses 5004).", ge=1, le=65535)
    num_envs: int = setting(1, "Environment copies stepped together.", ge=1, le=MAX_ENVS)
    num_workers: int = setting(
        0, "Worker processes the copies are spread over (palaestra extension): 0 steps them in "
           "the training process; W >= 1 runs W processes, for simulators slow enough to need "
           "several cores (docs/scale-out.md). Not for Unity builds.", ge=0, le=MAX_ENVS)
    worker_sync: WorkerSync = setting(
        WorkerSync.ALL, "With num_workers: all (every step waits for every worker, "
                        "reproducible) or ready (a step takes the workers that have answered; "
                        "palaestra extension, docs/scale-out.md).")
    num_areas: int = setting(1, "Training areas per Unity instance.", ge=1)
    timeout_wait: int = setting(60, "Seconds to wait for Unity to connect or answer, or for "
                                    "an environment worker to start.", ge=1)
    timeout_step: Optional[float] = setting(
        600.0, "Seconds one reset or step of the environment may take before the run stops "
               "with a message (palaestra extension); null or 0 waits forever.", ge=0.0)
    seed: int = setting(-1, "Random seed; -1 picks one.", le=MAX_SEED)
    max_lifetime_restarts: int = setting(10, "Restarts of one crashed Unity build or "
                                             "environment worker over the run (-1: no limit).",
                                         ge=-1)
    restarts_rate_limit_n: int = setting(1, "Restarts of one Unity build or environment worker "
                                            "per period (-1: no limit).", ge=-1)
    restarts_rate_limit_period_s: int = setting(60, "The period of restarts_rate_limit_n, in "
                                                    "seconds.", ge=1)
    ray: Optional[RaySettings] = setting(
        None, "Step the copies in Ray actors, on this machine or a cluster (palaestra "
              "extension, docs/scale-out.md); null: no Ray.")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_workers > self.num_envs:
            raise TrainerConfigError(
                f"more worker processes than environment copies (num_envs: {self.num_envs}); "
                f"allowed: 0 (the copies in the training process) to {self.num_envs}",
                key="num_workers", value=self.num_workers)
        if self.ray is not None and self.num_workers:
            raise TrainerConfigError(
                "Ray actors step their copies themselves: use num_workers (processes on this "
                "machine) or ray (actors on a cluster), not both", key="num_workers",
                value=self.num_workers)
        actors = self.ray.num_actors if self.ray is not None else None
        if actors is not None and actors > self.num_envs:
            raise TrainerConfigError(
                f"more Ray actors than environment copies (num_envs: {self.num_envs}); "
                f"allowed: 1 to {self.num_envs}", key="ray.num_actors", value=actors)


class EngineSettings(Settings):
    """Unity engine settings, sent to Unity builds and the Editor (ML-Agents' engine
    configuration channel and launch arguments); other environments ignore them, with one
    warning where they differ from the defaults."""

    width: int = setting(84, "Window width of a build.")
    height: int = setting(84, "Window height of a build.")
    quality_level: int = setting(5, "QualitySettings.SetQualityLevel.")
    time_scale: float = setting(20.0, "Time.timeScale (Unity clamps it to 1..100).")
    target_frame_rate: int = setting(-1, "Application.targetFrameRate.")
    capture_frame_rate: int = setting(60, "Time.captureFramerate.")
    no_graphics: bool = setting(False, "Start builds with -nographics -batchmode.")
    no_graphics_monitor: bool = setting(False, "No graphics for every build but the first.")


class CheckpointSettings(Settings):
    run_id: str = setting("ppo", "Name of the run; results go to results_dir/run_id.")
    initialize_from: Optional[str] = setting(None, "Run id whose weights start this run.")
    load_model: bool = setting(False, "Deprecated alias of resume.")
    resume: bool = setting(False, "Continue the run from its latest checkpoint.")
    force: bool = setting(False, "Overwrite an existing run of the same id.")
    train_model: bool = setting(False, "Accepted, unused.")
    inference: bool = setting(False, "Run the trained policy (--resume or --initialize-from) "
                                     "without updating it or writing anything.")
    results_dir: str = setting("results", "Folder holding all runs.")

    @property
    def write_path(self) -> str:
        import os

        return os.path.join(self.results_dir, self.run_id)


class AccelMode(enum.Enum):
    """palaestra extension: `auto` uses the speed paths of `palaestra.accel` that pay on this
    machine; `off` runs plain torch everywhere."""

    AUTO = "auto"
    OFF = "off"


class TorchSettings(Settings):
    device: Optional[str] = setting(None, "torch device (cpu, cuda, cuda:1 ...); null picks cpu.")
    num_threads: Optional[int] = setting(
        None, "CPU threads for torch (palaestra extension); null means 1 with accel auto "
              "(fastest for the small networks of vector tasks) and torch's default with "
              "accel off.", ge=1, le=MAX_THREADS)
    accel: AccelMode = setting(
        AccelMode.AUTO, "Speed paths (palaestra extension): auto uses those measured to pay "
                        "on this machine (docs/architecture.md, palaestra.accel); off runs plain "
                        "torch.")


class RunOptions(Settings):
    behaviors: Dict[str, TrainerSettings] = setting(factory=dict, doc="Settings per behavior.")
    default_settings: Optional[TrainerSettings] = setting(
        None, "Settings for behaviors not named under behaviors.")
    env_settings: EnvironmentSettings = setting(factory=EnvironmentSettings)
    engine_settings: EngineSettings = setting(factory=EngineSettings)
    environment_parameters: Optional[Dict[str, Any]] = setting(
        None, "ML-Agents environment parameters: accepted, not applied (a warning says so).")
    checkpoint_settings: CheckpointSettings = setting(factory=CheckpointSettings)
    torch_settings: TorchSettings = setting(factory=TorchSettings)
    debug: bool = setting(False, "Verbose logging.")

    def behavior_settings(self, name: str) -> TrainerSettings:
        """Settings of `name`, falling back to default_settings as ML-Agents does. A Unity
        team's name (`Soccer?team=1`) takes its behavior's settings (`Soccer`), as there."""
        import copy

        if name in self.behaviors:
            return self.behaviors[name]
        brain = name.partition("?team=")[0]
        if brain != name and brain in self.behaviors:
            self.behaviors[name] = copy.deepcopy(self.behaviors[brain])
            return self.behaviors[name]
        if self.default_settings is not None:
            self.behaviors[name] = copy.deepcopy(self.default_settings)
            return self.behaviors[name]
        known = ", ".join(sorted(self.behaviors)) or "none"
        raise TrainerConfigError(
            f"The behavior name {name} has not been specified in the trainer configuration "
            f"(behaviors configured: {known}). Add an entry for {name} under 'behaviors:', "
            "or set 'default_settings:'.")
