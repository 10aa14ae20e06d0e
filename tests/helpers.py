"""Shared test helpers: run the CLI in-process and read TensorBoard scalars back."""
import os
from typing import Dict, List, Tuple

from palaestra.cli import main

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS_DIR)


def learn(*args: str) -> int:
    os.environ["PALAESTRA_NO_PROGRESS"] = "1"
    return main(["learn", *args])


def scalars(behavior_dir: str) -> Dict[str, List[Tuple[int, float]]]:
    """All scalar series of a behavior's event files, as (step, value) lists."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(behavior_dir)
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


_PLANS: dict = {}


def run_context(artifact_path, **kwargs):
    """A RunContext for trainers built by hand, with this session's accel plan
    (PALAESTRA_TEST_ACCEL: auto or off), so that they are tested both ways."""
    from palaestra import Accel, RunContext
    from conftest import TEST_ACCEL

    if TEST_ACCEL not in _PLANS:
        _PLANS[TEST_ACCEL] = Accel.from_mode(TEST_ACCEL)
    return RunContext(artifact_path=None if artifact_path is None else str(artifact_path),
                      accel=_PLANS[TEST_ACCEL], **kwargs)
