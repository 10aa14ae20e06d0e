"""Checkpoints: atomic saves, rotation, fallback on damage, and ``run_logs/training_status.json``.

One save is one unit: the trainer's buffer (if any) goes to ``buffer-<step>.npz`` first, then the
step checkpoint ``<behavior>-<step>.pt`` and ``checkpoint.pt``, which name that buffer file, then
the status file; only then are older files rotated away. Every file is written through
`palaestra.atomic`, so a kill at any moment leaves a complete older unit. Loading uses
``weights_only=True``: a checkpoint holds only state dicts, tensors, numbers and strings.

Nothing read back from disk decides what gets deleted: rotation lists the behavior's folder for
the names palaestra gives its own files, and never follows a path stored in a state file.
"""
from __future__ import annotations

import io
import json
import logging
import os
import re
import time
import zipfile
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch

from palaestra.atomic import atomic_write_bytes, atomic_write_text, remove_stale_temp_files
from palaestra.exception import CheckpointError

logger = logging.getLogger("palaestra")

LATEST = "checkpoint.pt"
# training_status.json lists keep_checkpoints entries per behavior: kilobytes.
_MAX_STATUS_BYTES = 16 * 2 ** 20
_BUFFER = re.compile(r"^buffer-(\d+)\.npz$")


def atomic_torch_save(obj: Any, path: str) -> None:
    atomic_write_bytes(_serialise(obj), path)


def _serialise(obj: Any) -> bytes:
    data = io.BytesIO()
    torch.save(obj, data)
    return data.getvalue()


def file_stem(behavior_name: str) -> str:
    """A behavior name as a file name: Gymnasium ids may hold a namespace (`palaestra/Basic-v0`,
    `ALE/Pong-v5`), which the behavior's folder keeps as nested folders, and ML-Agents names may
    hold `?team=0`; the step checkpoints inside the folder take the last part, characters that
    are not safe in file names on every system replaced by `_`."""
    return re.sub(r"[^\w.\-]+", "_", behavior_name.rsplit("/", 1)[-1]) or "behavior"


def state_of(modules: Mapping[str, Any]) -> Dict[str, Any]:
    return {name: module.state_dict() for name, module in modules.items()}


# Above any step count a run can reach (settings' MAX_STEPS): a larger one is not palaestra's.
_MAX_STEP = 10 ** 15


def _check_archive(path: str) -> None:
    """torch.save writes an uncompressed zip; a compressed member (a "zip bomb": a few MB that
    expand to gigabytes while torch reads them) or one larger than the file is refused before
    torch allocates anything."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} cannot be read: it is damaged or not a "
                              f"palaestra checkpoint ({exc})") from None
    size = os.path.getsize(path)
    for member in members:
        if member.compress_type != zipfile.ZIP_STORED or member.file_size > size:
            raise CheckpointError(f"checkpoint {path} holds a compressed entry "
                                  f"({member.filename}), which palaestra never writes; it is "
                                  "not read")


def load_checkpoint(path: str) -> Dict[str, Any]:
    """The payload of a checkpoint file, or a CheckpointError that says what is wrong with it
    (and never suggests loading it unsafely)."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path} does not exist, or is not a file")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): it is not a file "
                              "palaestra wrote, or the disk lost it")
    _check_archive(path)
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for damaged archives
        text = str(exc)
        found = re.search(r"unsupported GLOBAL (\S+)", text)
        if found:
            raise CheckpointError(
                f"checkpoint {path} holds a Python object ({found.group(1)}) besides tensors, "
                "numbers and strings, which palaestra never writes; it is not loaded, because "
                "unpickling it could run code") from None
        reason = "its data cannot be unpickled" if "Weights only" in text else \
            (text.strip().split(". ")[0] if text.strip() else type(exc).__name__)
        raise CheckpointError(f"checkpoint {path} cannot be read: it is damaged or not a "
                              f"palaestra checkpoint ({reason})") from None
    if not (isinstance(saved, dict) and isinstance(saved.get("modules"), dict)
            and type(saved.get("step")) is int and 0 <= saved["step"] <= _MAX_STEP):
        raise CheckpointError(f"checkpoint {path} is not a palaestra checkpoint (it needs "
                              f"'modules' and a whole 'step' from 0 to {_MAX_STEP})")
    return saved


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
        except (RuntimeError, ValueError, KeyError, TypeError, AttributeError,
                IndexError) as exc:
            detail = " ".join(str(exc).split())
            detail = detail if len(detail) <= 300 else detail[:297] + "..."
            raise CheckpointError(f"checkpoint {path}: '{name}' does not fit this network "
                                  f"(changed network_settings?): {detail}") from None


class CheckpointManager:
    """Step checkpoints ``<behavior>-<step>.pt`` (keeping the newest `keep`), the latest
    ``checkpoint.pt`` and its buffer file of one behavior, plus its entry in
    training_status.json."""

    def __init__(self, behavior_dir: str, behavior_name: str, keep: int,
                 status_path: Optional[str] = None) -> None:
        self.dir = behavior_dir
        self.name = behavior_name
        self.keep = keep
        self.status_path = status_path
        self._step_file = re.compile(rf"^{re.escape(file_stem(behavior_name))}-(\d+)\.pt$")
        self._step_onnx = re.compile(rf"^{re.escape(file_stem(behavior_name))}-(\d+)\.onnx$")
        os.makedirs(behavior_dir, exist_ok=True)
        # A kill during a save leaves its temporary file: the save is redone, the file is junk.
        removed = remove_stale_temp_files(behavior_dir)
        if status_path is not None:
            removed += remove_stale_temp_files(os.path.dirname(status_path))
        if removed:
            logger.info("%s: removed %d unfinished file(s) of an interrupted save", self.name,
                        removed)

    @property
    def latest_path(self) -> str:
        return os.path.join(self.dir, LATEST)

    # -- files on disk -----------------------------------------------------------------------
    def step_checkpoints(self) -> List[Tuple[int, str]]:
        """(step, path) of this behavior's step checkpoints on disk, oldest first."""
        found = []
        for name in os.listdir(self.dir):
            match = self._step_file.match(name)
            path = os.path.join(self.dir, name)
            if match and os.path.isfile(path) and not os.path.islink(path):
                found.append((int(match.group(1)), path))
        return sorted(found)

    def has_checkpoint(self) -> bool:
        return os.path.isfile(self.latest_path) or bool(self.step_checkpoints())

    def buffer_path(self, name: str) -> str:
        """The buffer file a checkpoint names, only if the name is one palaestra gives (a
        plain name in this folder; whether it is a plain file is load_columns' check)."""
        if not isinstance(name, str) or not _BUFFER.match(name):
            raise CheckpointError(f"a checkpoint in {self.dir} names the buffer file {name!r}, "
                                  "which is not a name palaestra writes")
        return os.path.join(self.dir, name)

    # -- saving ------------------------------------------------------------------------------
    def save(self, modules: Mapping[str, Any], step: int, extra: Mapping[str, Any],
             reward: Optional[float] = None, buffer: Any = None, latest_only: bool = False
             ) -> str:
        """Save one unit; `buffer` (anything with `save(path)` and rows) goes in
        ``buffer-<step>.npz``. `latest_only` writes only checkpoint.pt (the run's first
        checkpoint, which is not a step checkpoint users keep)."""
        payload: Dict[str, Any] = {"modules": state_of(modules), "step": int(step), **extra}
        if buffer is not None and len(buffer):
            name = f"buffer-{int(step)}.npz"
            buffer.save(os.path.join(self.dir, name))
            payload["buffer_file"] = name
        data = _serialise(payload)
        path = self.latest_path
        if not latest_only:
            path = os.path.join(self.dir, f"{file_stem(self.name)}-{step}.pt")
            atomic_write_bytes(data, path)
        atomic_write_bytes(data, self.latest_path)
        if not latest_only:
            self._write_status(step, path, reward)
        self._rotate(payload.get("buffer_file"))
        return path

    def onnx_paths(self, step: int) -> Tuple[str, str]:
        """Where a step's ONNX export goes (beside its `.pt`) and the behavior's latest one
        (`<behavior>.onnx` beside the behavior's folder, inside the run's: ML-Agents' layout)."""
        parent, folder = os.path.split(os.path.normpath(self.dir))
        return (os.path.join(self.dir, f"{file_stem(self.name)}-{int(step)}.onnx"),
                os.path.join(parent, f"{folder}.onnx"))

    def _rotate(self, buffer_in_use: Optional[str]) -> None:
        for _, path in self.step_checkpoints()[:-self.keep]:
            os.remove(path)
        kept = {step for step, _ in self.step_checkpoints()}
        for name in os.listdir(self.dir):
            onnx = self._step_onnx.match(name)
            path = os.path.join(self.dir, name)
            if (_BUFFER.match(name) and name != buffer_in_use) or \
                    (onnx and int(onnx.group(1)) not in kept and not os.path.isdir(path)):
                os.remove(path)

    # -- loading -----------------------------------------------------------------------------
    def load_latest(self) -> Tuple[str, Dict[str, Any]]:
        """The newest readable checkpoint: checkpoint.pt, or a newer step checkpoint (a kill
        between the two files of a save), or, if checkpoint.pt is damaged, the newest step
        checkpoint that reads, with a warning naming what was skipped. Unreadable step
        checkpoints newer than the one chosen are renamed `<name>.unreadable` (kept for the
        user): left in place, they would count as the newest in rotation, which would then
        delete the checkpoints this run writes."""
        errors: List[str] = []
        skipped: List[str] = []
        best: Optional[Tuple[str, Dict[str, Any]]] = None
        try:
            best = (self.latest_path, load_checkpoint(self.latest_path))
        except CheckpointError as exc:
            errors.append(str(exc))
        for step, path in reversed(self.step_checkpoints()):
            if best is not None and step <= best[1]["step"]:
                break
            try:
                best = (path, load_checkpoint(path))
                break
            except CheckpointError as exc:
                errors.append(str(exc))
                skipped.append(path)
        if best is None:
            raise CheckpointError(f"no readable checkpoint of {self.name} in {self.dir}: "
                                  + _summarise(errors))
        for path in skipped:
            os.replace(path, f"{path}.unreadable")
        if errors:
            logger.warning("%s: %s; resuming from %s (step %d) instead%s", self.name,
                           _summarise(errors), best[0], best[1]["step"],
                           f" ({len(skipped)} unreadable step checkpoint(s) renamed "
                           "*.pt.unreadable)" if skipped else "")
        return best

    # -- training_status.json ----------------------------------------------------------------
    def _read_status(self) -> Dict[str, Any]:
        """The status file's content, or {} (with a warning) if it is missing or damaged: it
        is bookkeeping for people and tools, rebuilt from the files on disk."""
        path = self.status_path
        if path is None or not os.path.lexists(path):
            return {}
        try:
            if os.path.islink(path) or not os.path.isfile(path):
                raise ValueError("it is not a plain file")
            if os.path.getsize(path) > _MAX_STATUS_BYTES:
                raise ValueError(f"larger than {_MAX_STATUS_BYTES // 2 ** 20} MiB")
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
            if not isinstance(data, dict):
                raise ValueError("the top level is not a mapping")
            return data
        except (OSError, ValueError, RecursionError) as exc:
            logger.warning("%s cannot be read (%s): writing it anew", path, exc)
            if os.path.isdir(path) and not os.path.islink(path):
                try:  # moved aside inside run_logs (kept for the user), so it can be written
                    os.rename(path, f"{path}.not-a-file-{int(time.time())}")
                except OSError:
                    logger.warning("%s stays a folder: the status is not written", path)
                    self.status_path = None
            return {}

    def _write_status(self, step: int, path: str, reward: Optional[float]) -> None:
        if self.status_path is None:
            return
        data = self._read_status()
        on_disk = {s for s, _ in self.step_checkpoints()}
        entry = data.get(self.name)
        old = entry.get("checkpoints", []) if isinstance(entry, dict) else []
        kept: List[Dict[str, Any]] = [
            {"steps": c["steps"], "file_path": os.path.join(
                self.dir, f"{file_stem(self.name)}-{c['steps']}.pt"),
             "reward": c.get("reward") if isinstance(c.get("reward"), (int, float)) else None,
             "creation_time": c.get("creation_time")
             if isinstance(c.get("creation_time"), (int, float)) else None}
            for c in old if isinstance(c, dict) and isinstance(c.get("steps"), int)
            and c["steps"] in on_disk and c["steps"] != step]
        kept.append({"steps": int(step), "file_path": path, "reward": reward,
                     "creation_time": time.time()})
        kept = sorted(kept, key=lambda c: c["steps"])[-self.keep:]
        meta = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
        meta.update({"stats_format_version": "0.3.0", "torch_version": torch.__version__})
        data["metadata"] = meta
        data[self.name] = {"checkpoints": kept, "final_checkpoint": kept[-1]}
        os.makedirs(os.path.dirname(self.status_path), exist_ok=True)
        atomic_write_text(json.dumps(data, indent=2), self.status_path)


def _summarise(errors: List[str], shown: int = 3) -> str:
    """The first few reasons, and how many more: a folder of 400 junk files is one line."""
    more = f"; and {len(errors) - shown} more unreadable" if len(errors) > shown else ""
    return "; ".join(errors[:shown]) + more
