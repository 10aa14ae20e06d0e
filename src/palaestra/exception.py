"""Errors a user can act on. Each says what was wrong, where, and what is allowed."""
from __future__ import annotations

from typing import Any, Optional


class PalaestraError(Exception):
    """Base of palaestra's own errors."""


class TrainerConfigError(PalaestraError):
    """A configuration that cannot run: bad key, value, type, or unknown trainer type.

    `key` and `value` are kept separately so that the loader, which knows the file and the full
    key path, can prefix them; `str()` gives the finished sentence.
    """

    def __init__(self, message: str, *, key: Optional[str] = None, value: Any = None,
                 allowed: Optional[str] = None) -> None:
        self.message = message
        self.key = key
        self.value = value
        self.allowed = allowed
        super().__init__(self._render())

    def _render(self) -> str:
        parts = [self.message]
        if self.key is not None:
            parts.insert(0, f"{self.key}:")
            parts.append(f"(got {self.value!r})")
        if self.allowed:
            allowed = self.allowed if isinstance(self.allowed, str) else \
                ", ".join(map(str, self.allowed))
            parts.append(f"Allowed: {allowed}.")
        return " ".join(parts)


class EnvironmentSetupError(PalaestraError):
    """An environment that cannot be made or stepped (unknown id, unsupported space)."""



class CheckpointError(PalaestraError):
    """A run directory or checkpoint that cannot be used as asked (exists, missing, corrupt)."""


class TrainerNotReadyError(PalaestraError):
    """A trainer's `policy` or `optimizer` read before `add_policy` gave it one: typed as always
    present so that plugins need no None checks, so the early read has to fail loudly."""


class NonFiniteError(PalaestraError):
    """Training produced NaN or infinite losses or weights; the run stops without saving them."""
