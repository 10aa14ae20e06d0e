"""Event files read back in TensorBoard, in the order the runs wrote them."""
import os
import time

from palaestra.tensorboard_events import EventFileWriter

from helpers import scalars


def test_scalars_read_back(tmp_path):
    writer = EventFileWriter(str(tmp_path))
    for step in (10, 20, 30):
        writer.add_scalar("Environment/Cumulative Reward", step / 10, step)
    writer.close()
    assert scalars(str(tmp_path))["Environment/Cumulative Reward"] == [
        (10, 1.0), (20, 2.0), (30, 3.0)]


def test_a_later_file_sorts_after_an_earlier_one_even_within_one_second(tmp_path):
    # An interrupted run from another process (larger pid) in the same second, or a stamp
    # from a clock now behind: the resumed run's file must still be read second.
    now = int(time.time())
    earlier = tmp_path / f"events.out.tfevents.{now + 5:010d}.host.99999999"
    first = EventFileWriter(str(tmp_path))
    first.add_scalar("x", 1.0, 1)
    first.close()
    os.rename(first.path, earlier)
    second = EventFileWriter(str(tmp_path))
    second.add_scalar("x", 2.0, 2)
    second.close()
    assert sorted(os.listdir(tmp_path)) == [earlier.name, os.path.basename(second.path)]
    assert scalars(str(tmp_path))["x"] == [(1, 1.0), (2, 2.0)]


def test_two_writers_in_one_process_and_second_get_two_files(tmp_path):
    a = EventFileWriter(str(tmp_path))
    b = EventFileWriter(str(tmp_path))
    a.close()
    b.close()
    assert a.path != b.path and sorted([a.path, b.path]) == [a.path, b.path]


# ------------------------------------------------------------ resume: no duplicated steps

def _summary(value):
    from palaestra.stats import StatsSummary

    return {"x": StatsSummary(value, 0.0, 1, value)}


def _server_scalars(logdir):
    """What TensorBoard's server shows: its plugin-side accumulator (the one `scalars` uses is
    the older one; the two treat session-start marks differently)."""
    from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    acc = EventAccumulator(logdir)
    acc.Reload()
    return [(e.step, float(tensor_util.make_ndarray(e.tensor_proto)))
            for e in acc.Tensors("x")]


def test_a_resumed_session_replaces_the_interrupted_runs_later_steps(tmp_path):
    from palaestra.stats import TensorboardWriter

    first = TensorboardWriter(str(tmp_path))
    first.on_start("B", 100, 0)
    for step in range(1, 11):  # the interrupted run got to 10, its checkpoint is at 6
        first.write_stats("B", _summary(float(step)), step)
    first.close()
    second = TensorboardWriter(str(tmp_path))
    second.on_start("B", 100, 6)
    assert len(os.listdir(tmp_path / "B")) == 2  # the resumed session's file exists at once
    for step in range(6, 13):
        second.write_stats("B", _summary(100.0 + step), step)
    second.close()
    expected = [(s, float(s)) for s in range(1, 6)] + [(s, 100.0 + s) for s in range(6, 13)]
    assert scalars(str(tmp_path / "B"))["x"] == expected
    assert _server_scalars(str(tmp_path / "B")) == expected


def test_a_resume_keeps_the_point_at_the_checkpoint_step(tmp_path):
    # A trainer resumed at step 6 summarises next at a later step: the interrupted run's point
    # at 6 (training up to the checkpoint) is history, not a stale duplicate.
    from palaestra.stats import TensorboardWriter

    first = TensorboardWriter(str(tmp_path))
    first.on_start("B", 100, 0)
    for step in (2, 4, 6, 8):
        first.write_stats("B", _summary(float(step)), step)
    first.close()
    second = TensorboardWriter(str(tmp_path))
    second.on_start("B", 100, 6)
    second.write_stats("B", _summary(110.0), 10)
    second.close()
    expected = [(2, 2.0), (4, 4.0), (6, 6.0), (10, 110.0)]
    assert scalars(str(tmp_path / "B"))["x"] == expected
    assert _server_scalars(str(tmp_path / "B")) == expected


def test_a_resume_after_a_run_without_session_marks_drops_stale_steps_too(tmp_path):
    # event files of an older palaestra hold no session-start mark
    from palaestra.stats import TensorboardWriter

    old = EventFileWriter(str(tmp_path))
    for step in (3, 6, 9):
        old.add_scalar("x", float(step), step)
    old.close()
    resumed = TensorboardWriter(str(tmp_path.parent))
    resumed.on_start(tmp_path.name, 100, 6)
    resumed.write_stats(tmp_path.name, _summary(109.0), 9)
    resumed.close()
    expected = [(3, 3.0), (6, 6.0), (9, 109.0)]
    assert scalars(str(tmp_path))["x"] == expected
    assert _server_scalars(str(tmp_path)) == expected


def test_the_first_event_declares_file_version_2(tmp_path):
    # TensorBoard honours session-start marks only from brain.Event:2 on
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    writer = EventFileWriter(str(tmp_path))
    writer.add_session_start(1)
    writer.close()
    events = list(EventFileLoader(writer.path).Load())
    assert events[0].file_version == "brain.Event:2"
    assert events[1].session_log.status == events[1].session_log.START and events[1].step == 1
