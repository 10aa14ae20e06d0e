"""`RunContext`: what a run hands every trainer it builds."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from palaestra.accel import Accel
from palaestra.stats import StatsReporter
from palaestra.timers import Timers


@dataclass(frozen=True)
class RunContext:
    """Everything a trainer takes from the run rather than from its settings, as one object.

    Trainers were built with seven positional arguments and then wired with a second call;
    an argument added for every trainer (the accel plan) meant touching every plugin's
    constructor. Now a trainer gets ``(behavior_name, trainer_settings, run)``, and what a run
    gives grows here. The defaults are those of a trainer built by hand (a test, a notebook):
    no checkpoints, no writers, the CPU.
    """

    artifact_path: Optional[str]
    """The behavior's results folder, where its checkpoints go; None: no checkpoints."""
    seed: int = 0
    resume: bool = False
    """Continue from the checkpoint in `artifact_path` (``--resume``)."""
    training: bool = True
    stats_reporter: Optional[StatsReporter] = None
    """None: a reporter with no writers (stats are kept, never written)."""
    device: str = "cpu"
    status_path: Optional[str] = None
    """The run's training_status.json, which checkpoints are recorded in."""
    timers: Optional[Timers] = None
    """The run's timers (timers.json); None: the trainer's own."""
    accel: Optional[Accel] = None
    """The run's accel plan (`palaestra.accel`): `build` ends with its
    ``prepare_trainer(trainer)``; None: nothing accelerated."""
    env_steps_elsewhere: bool = False
    """The environment's copies simulate in other processes while the trainers work
    (`BaseEnv.steps_elsewhere`): what an unset `threaded` follows."""

    def __post_init__(self) -> None:
        if self.resume and self.artifact_path is None:
            # Only a results folder holds something to resume from.
            raise ValueError("RunContext(resume=True) needs the artifact_path to resume from")
