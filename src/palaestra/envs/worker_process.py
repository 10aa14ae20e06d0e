"""The environment worker: one process holding a contiguous share of a run's environment copies.

It is started by `palaestra.envs.workers.WorkerEnv` with a `WorkerRecipe` (strings and plain
arguments, so it pickles under the ``spawn`` start method: nothing of the training process, torch
included, is inherited) and builds its copies with `make_environment`. Then it answers commands
over its pipe: ``reset``, ``step`` (the actions are in the shared blocks, the command says how
many rows per behavior), ``render`` and ``close``. Each reset or step is answered with the step's
metadata (ids, rewards, masks, groups, interrupted flags: `DecisionSteps` / `TerminalSteps` with
their observations left out), the names of blocks it had to grow, and the environment's stats;
the observations themselves are written into the shared blocks (`shared_blocks`). A reply with
only steps (the usual one) is encoded rather than pickled (`worker_messages`).

An exception of the environment is answered with its type, message and traceback (the training
process raises it as a palaestra error). The worker ignores Ctrl-C (the terminal sends it to the
whole process group; the training process decides what a stop means) and exits at once when the
training process goes away: a thread waits on a second pipe, the "lifeline", that nobody writes
to, and its end of file means the parent died or gave the worker up.
"""
from __future__ import annotations

import os
import signal
import threading
import traceback
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from palaestra.envs import worker_messages as messages
from palaestra.envs.base import ActionTuple, BaseEnv, BehaviorSpec, globalise_ids
from palaestra.envs.shared_blocks import StepBlock, fitting


@dataclass(frozen=True)
class WorkerRecipe:
    """What a worker needs to build its copies: ``make_environment(env_path, env_args,
    num_envs, seed)``. `blocks` prefixes the names of its shared blocks; it is worker `part`
    of `parts`, and sends its agents' ids as ids unique over them (`globalise_ids`)."""

    env_path: str
    env_args: Any
    num_envs: int
    seed: Optional[int]
    blocks: str
    part: int = 0
    parts: int = 1


@dataclass(frozen=True)
class ErrorReport:
    """An exception raised in a worker, as text (the exception object itself may not pickle):
    its class's module and name, its message, ``Type: message`` (`describe_error`) and the
    worker's traceback."""

    module: str
    name: str
    message: str
    description: str
    traceback: str


# One behavior's step: (the block's new (name, capacity) if it was replaced, decision steps,
# terminal steps); sent without their observations, which are in the block.
BehaviorReport = Tuple[Optional[Tuple[str, int]], Any, Any]


def worker_main(recipe: WorkerRecipe, commands: Connection, replies: Connection,
                lifeline: Connection) -> None:
    """The worker process's entry point (a module-level function, as ``spawn`` needs): it
    reads `commands` and answers on `replies` (`worker_messages.Channel`)."""
    conn = messages.Channel(commands, replies)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(lifeline,), name="palaestra-lifeline",
                     daemon=True).start()
    try:
        from palaestra.envs import make_environment

        env = make_environment(recipe.env_path, recipe.env_args, recipe.num_envs, recipe.seed)
        specs = dict(env.behavior_specs)
    except BaseException as exc:  # noqa: BLE001 - reported to the training process
        messages.send(conn, ("error", _report(exc)))
        _wait_for_close(conn)
        return
    messages.send(conn, ("ready", specs, env.render_fps))
    _Server(env, recipe, conn).serve()


def _exit_with_parent(lifeline: Connection) -> None:
    try:
        lifeline.recv()
    except (EOFError, OSError):
        pass
    os._exit(1)  # the training process is gone (or gave this worker up): nothing to finish


def _report(exc: BaseException) -> ErrorReport:
    from palaestra.describe import describe_error

    cls = type(exc)
    description = describe_error(exc)
    return ErrorReport(cls.__module__, cls.__qualname__, description.partition(": ")[2],
                       description, traceback.format_exc())


def _wait_for_close(conn: messages.Channel) -> None:
    """After a failure to build: wait for the training process to say close (or go away)."""
    try:
        while messages.receive(conn, [])[0] != "close":
            pass
        messages.send(conn, ("closed",))
    except (EOFError, OSError):
        return


class _Server:
    """Answers the training process's commands for one environment (see the module
    docstring)."""

    def __init__(self, env: BaseEnv, recipe: WorkerRecipe, conn: messages.Channel) -> None:
        self.env = env
        self.conn = conn
        self.prefix = recipe.blocks
        self.part, self.parts = recipe.part, recipe.parts
        self.specs: Dict[str, BehaviorSpec] = dict(env.behavior_specs)
        # each behavior's index in the order reported (at "ready", then as they appear): the
        # training process keeps the same list to read encoded step replies
        self.order = {name: i for i, name in enumerate(self.specs)}
        self.blocks: Dict[str, StepBlock] = {}
        self.made = 0  # blocks made so far: each gets a new name

    def serve(self) -> None:
        conn = self.conn
        while True:
            try:
                command = messages.receive(conn, [])
            except (EOFError, OSError):
                return
            what = command[0]
            if what == "close":
                self._close()
                return
            try:
                if what == "reset":
                    self.env.reset()
                    reply: Tuple[Any, ...] = self._steps()
                elif what == "step":
                    self._set_actions(command[1])
                    self.env.step()
                    reply = self._steps()
                elif what == "render":
                    reply = ("frame", self.env.render())
                else:
                    raise ValueError(f"unknown worker command {what!r}")
            except BaseException as exc:  # noqa: BLE001 - reported to the training process
                reply = ("error", _report(exc))
            try:
                if reply[0] == "steps":
                    if self._plain(reply):
                        try:  # the encoding leaves the observations out
                            messages.send_steps(conn, [
                                (self.order[name], decision, terminal)
                                for name, (_, decision, terminal) in reply[1].items()],
                                self.part, self.parts)
                            continue
                        except messages.NotEncodable:
                            pass  # pickled below
                    reply = _without_obs(reply, self.part, self.parts)
                messages.send(conn, reply)
            except OSError:  # the training process is gone
                return
            except Exception as exc:  # noqa: BLE001 - a reply that does not pickle (stats, a
                messages.send(conn, ("error", _report(exc)))  # frame): nothing was sent yet

    def _set_actions(self, rows: Mapping[str, int]) -> None:
        for name, n in rows.items():
            block = self.blocks[name]
            self.env.set_actions(name, ActionTuple(block.continuous[:n].copy(),
                                                   block.discrete[:n].copy()))

    def _steps(self) -> Tuple[Any, ...]:
        """Every behavior's step: observations into the blocks, the rest into the reply (the
        steps themselves, which still hold the observations: left out when sent)."""
        new_specs = {name: spec for name, spec in self.env.behavior_specs.items()
                     if name not in self.specs}
        self.specs.update(new_specs)
        for name in new_specs:
            self.order[name] = len(self.order)
        reports: Dict[str, BehaviorReport] = {}
        for name, spec in self.specs.items():
            decision, terminal = self.env.get_steps(name)
            block, new = fitting(self.blocks.get(name), spec, max(len(decision), len(terminal)),
                                 f"{self.prefix}_{self.made}")
            if new:
                self.made += 1
                self.blocks[name] = block
            _write(block.decision_obs, decision.obs, len(decision))
            _write(block.terminal_obs, terminal.obs, len(terminal))
            reports[name] = ((block.name, block.capacity) if new else None, decision, terminal)
        return ("steps", reports, new_specs, dict(self.env.pop_stats()))

    @staticmethod
    def _plain(reply: Tuple[Any, ...]) -> bool:
        """A step reply with nothing but steps: no new block, no new behavior, no stats."""
        _, reports, new_specs, stats = reply
        return not new_specs and not stats and all(new is None for new, _, _ in reports.values())

    def _close(self) -> None:
        try:
            self.env.close()
        except BaseException as exc:  # noqa: BLE001 - reported; the worker ends either way
            messages.send(self.conn, ("error", _report(exc)))
        else:
            messages.send(self.conn, ("closed",))
        for block in self.blocks.values():
            block.close()  # the training process unlinks them


def _without_obs(reply: Tuple[Any, ...], part: int, parts: int) -> Tuple[Any, ...]:
    """A step reply to pickle: copies of its steps without their observations (they are in
    the blocks), with ids made global as `send_steps` makes them."""
    kind, reports, new_specs, stats = reply
    return (kind, {name: (new, globalise_ids(replace(decision, obs=[]), part, parts),
                          globalise_ids(replace(terminal, obs=[]), part, parts))
                   for name, (new, decision, terminal) in reports.items()}, new_specs, stats)


def _write(arrays: List[np.ndarray], obs: List[np.ndarray], n: int) -> None:
    for out, values in zip(arrays, obs):
        out[:n] = values
