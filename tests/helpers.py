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
