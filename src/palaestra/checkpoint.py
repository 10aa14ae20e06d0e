"""Checkpoints: atomic torch saves, rotation, and ``run_logs/training_status.json``.

Every file is written to a temporary name in the same folder and moved into place with
`os.replace`, so a kill during a save leaves the previous `checkpoint.pt` intact. Loading uses
``weights_only=True``: a checkpoint holds only state dicts, numbers and strings.
"""
from __future__ import annotations

import json
import os
import re
import time
from typing import Any, Dict, List, Mapping, Optional

import torch

from palaestra.exception import CheckpointError

LATEST = "checkpoint.pt"


def atomic_torch_save(obj: Any, path: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:  # killed or failed mid-write: the previous file stays as it was
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_text(text: str, path: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def file_stem(behavior_name: str) -> str:
    """A behavior name as a file name: Gymnasium ids may hold a namespace (`palaestra/Basic-v0`,
    `ALE/Pong-v5`), which the behavior's folder keeps as nested folders, and ML-Agents names may
    hold `?team=0`; the step checkpoints inside the folder take the last part, characters that
    are not safe in file names on every system replaced by `_`."""
    return re.sub(r"[^\w.\-]+", "_", behavior_name.rsplit("/", 1)[-1]) or "behavior"


def state_of(modules: Mapping[str, Any]) -> Dict[str, Any]:
    return {name: module.state_dict() for name, module in modules.items()}


def load_checkpoint(path: str) -> Dict[str, Any]:
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"checkpoint {path} cannot be read: {exc}") from exc


def restore_modules(modules: Mapping[str, Any], saved: Mapping[str, Any], path: str,
                    only_weights: bool = False) -> None:
    """Load saved state into modules. `only_weights` skips optimizer state (initialize-from)."""
    for name, module in modules.items():
        if only_weights and not isinstance(module, torch.nn.Module):
            continue
        if name not in saved:
            raise CheckpointError(f"checkpoint {path} has no '{name}' (has: {sorted(saved)}); "
                                  "was it written by a different trainer type?")
        try:
            module.load_state_dict(saved[name])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"checkpoint {path}: '{name}' does not fit this network "
                                  f"(changed network_settings?): {exc}") from exc


class CheckpointManager:
    """Step checkpoints ``<behavior>-<step>.pt`` (keeping the newest `keep`) and the latest
    ``checkpoint.pt`` of one behavior, plus its entry in training_status.json."""

    def __init__(self, behavior_dir: str, behavior_name: str, keep: int,
                 status_path: Optional[str] = None) -> None:
        self.dir = behavior_dir
        self.name = behavior_name
        self.keep = keep
        self.status_path = status_path
        os.makedirs(behavior_dir, exist_ok=True)
        self.checkpoints: List[Dict[str, Any]] = self._read_status().get("checkpoints", [])

    @property
    def latest_path(self) -> str:
        return os.path.join(self.dir, LATEST)

    def save(self, modules: Mapping[str, Any], step: int, extra: Mapping[str, Any],
             reward: Optional[float] = None) -> str:
        payload = {"modules": state_of(modules), "step": int(step), **extra}
        path = os.path.join(self.dir, f"{file_stem(self.name)}-{step}.pt")
        atomic_torch_save(payload, path)
        atomic_torch_save(payload, self.latest_path)
        self.checkpoints = [c for c in self.checkpoints if c["steps"] != step]
        self.checkpoints.append({"steps": int(step), "file_path": path, "reward": reward,
                                 "creation_time": time.time()})
        while len(self.checkpoints) > self.keep:
            old = self.checkpoints.pop(0)
            if os.path.exists(old["file_path"]):
                os.remove(old["file_path"])
        self._write_status()
        return path

    def _read_status(self) -> Dict[str, Any]:
        if self.status_path is None or not os.path.isfile(self.status_path):
            return {}
        with open(self.status_path, encoding="utf-8") as fh:
            return json.load(fh).get(self.name, {})

    def _write_status(self) -> None:
        if self.status_path is None:
            return
        data: Dict[str, Any] = {}
        if os.path.isfile(self.status_path):
            with open(self.status_path, encoding="utf-8") as fh:
                data = json.load(fh)
        data.setdefault("metadata", {}).update(
            {"stats_format_version": "0.3.0", "torch_version": torch.__version__})
        data[self.name] = {"checkpoints": self.checkpoints,
                           "final_checkpoint": self.checkpoints[-1] if self.checkpoints else None}
        os.makedirs(os.path.dirname(self.status_path), exist_ok=True)
        atomic_write_text(json.dumps(data, indent=2), self.status_path)
