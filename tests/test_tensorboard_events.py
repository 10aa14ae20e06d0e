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
