"""Checkpoints are atomic, rotate, and load with weights_only=True."""
import json

import pytest
import torch

from palaestra import CheckpointError
from palaestra.checkpoint import CheckpointManager, load_checkpoint, restore_modules


def _modules():
    torch.manual_seed(0)
    return {"Policy": torch.nn.Linear(3, 2)}


def test_save_rotates_and_records_status(tmp_path):
    status = tmp_path / "run_logs" / "training_status.json"
    manager = CheckpointManager(str(tmp_path / "B"), "B", keep=2, status_path=str(status))
    for step in (10, 20, 30):
        manager.save(_modules(), step, {"trainer_type": "ppo"}, reward=float(step))
    files = sorted(p.name for p in (tmp_path / "B").iterdir())
    assert files == ["B-20.pt", "B-30.pt", "checkpoint.pt"]
    data = json.loads(status.read_text())
    assert [c["steps"] for c in data["B"]["checkpoints"]] == [20, 30]
    assert data["B"]["final_checkpoint"]["reward"] == 30.0
    assert load_checkpoint(str(tmp_path / "B" / "checkpoint.pt"))["step"] == 30
    # a new manager (a resumed run) picks up the list and keeps rotating
    again = CheckpointManager(str(tmp_path / "B"), "B", keep=2, status_path=str(status))
    again.save(_modules(), 40, {})
    assert not (tmp_path / "B" / "B-20.pt").exists()


def test_a_crash_while_saving_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    manager = CheckpointManager(str(tmp_path), "B", keep=5)
    manager.save(_modules(), 1, {})
    real_save = torch.save

    def dying_save(obj, fh, *args, **kwargs):
        fh.write(b"partial garbage")
        raise KeyboardInterrupt  # killed mid-write

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        manager.save(_modules(), 2, {})
    monkeypatch.setattr(torch, "save", real_save)
    assert load_checkpoint(manager.latest_path)["step"] == 1
    assert not (tmp_path / "B-2.pt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["B-1.pt", "checkpoint.pt"]


def test_checkpoints_hold_only_plain_data_and_load_with_weights_only(tmp_path):
    manager = CheckpointManager(str(tmp_path), "B", keep=5)
    path = manager.save(_modules(), 5, {"trainer_type": "ppo"})
    saved = torch.load(path, weights_only=True)
    assert saved["trainer_type"] == "ppo" and saved["step"] == 5
    target = torch.nn.Linear(3, 2)
    restore_modules({"Policy": target}, saved["modules"], path)
    assert torch.equal(target.weight, _modules()["Policy"].weight)


def test_restore_reports_missing_and_mismatched_modules(tmp_path):
    manager = CheckpointManager(str(tmp_path), "B", keep=5)
    manager.save(_modules(), 5, {})
    saved = load_checkpoint(manager.latest_path)["modules"]
    with pytest.raises(CheckpointError, match="has no 'Critic'"):
        restore_modules({"Critic": torch.nn.Linear(3, 2)}, saved, "x.pt")
    with pytest.raises(CheckpointError, match="does not fit this network"):
        restore_modules({"Policy": torch.nn.Linear(4, 2)}, saved, "x.pt")


def test_unreadable_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "checkpoint.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(str(bad))
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(str(tmp_path / "missing.pt"))
