"""`WorkerEnv`: a run's environment copies spread over worker processes, as one `BaseEnv`.

For simulators slow enough that one core is the limit (a physics engine, a game, an external
program: milliseconds a step), not for palaestra's built-in numpy scenes, which step thousands
of agents in microseconds and would only pay the round trip (docs/scale-out.md).

`num_envs` copies are split into `num_workers` contiguous shares; worker w builds its share with
``make_environment(env_path, env_args, k_w, seed_w)`` in a ``spawn``ed process (never ``fork``:
the training process has torch's threads). ``seed_w = seed + first copy of w`` (+ ``num_envs``
per restart of w): Gymnasium and PettingZoo copies seed themselves ``seed + copy``, so each copy
gets the seed it gets in-process and a run is the in-process run; a built-in scene draws all its
copies from one generator, so there a run is reproducible for a given seed and number of
workers. Observations and actions cross through shared memory (`shared_blocks`), the rest of
a step (ids, rewards, masks, groups) over a pipe. `step` sends every worker its actions and
returns; the next `get_steps` waits for all of them, so they step at the same time while the
trainer works. Agent and group ids are made unique over workers as over Unity instances
(`globalise_ids`: id * W + w, by each worker as it sends them) and each behavior's batches are
concatenated in worker order.

A worker that dies, or that does not answer a step within `timeout` seconds
(`env_settings.timeout_step`), is killed and started again with fresh copies (seeded anew, so
they do not replay), and its agents' unfinished episodes end as interrupted with their last
observation, as `UnityEnvironment` does for a lost build: no trajectory mixes two lives of a
worker. Restarts follow ML-Agents' quota (`max_lifetime_restarts`, `restarts_rate_limit_n` per
`restarts_rate_limit_period_s`, per worker); past it the run stops with the error Unity's quota
raises, after the trainers saved. A hang during `reset` is not retried: it stops the run with
`EnvironmentTimeout`, as the watchdog stops an in-process environment (`palaestra.watchdog`).
An exception inside a worker's environment stops the run as it would in-process, raised here
as a palaestra error carrying the worker's traceback.
"""
from __future__ import annotations

import logging
import math
import multiprocessing
import os
import select
import time
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple

import numpy as np

from palaestra.envs.base import (ActionTuple, BaseEnv, BehaviorSpec, DecisionSteps,
                                 TerminalSteps, concat_decisions, concat_terminals)
from palaestra.envs.restarts import RestartQuota
from palaestra.envs.shared_blocks import block_prefix
from palaestra.envs.worker_handle import START_TEXT, TIMEOUT_TEXT, WorkerHandle, WorkerLost
from palaestra.envs.worker_process import WorkerRecipe
from palaestra.exception import EnvironmentSetupError, PalaestraError
from palaestra.watchdog import EnvironmentTimeout

logger = logging.getLogger("palaestra")

_CLOSE_GRACE_S = 5.0  # a worker closing its copies is waited for this long, then killed


@dataclass(frozen=True)
class WorkerSettings:
    """How many workers, how long one may take, and how often one may be restarted (the
    `env_settings` keys of the same names; `timeout` is `timeout_step`, for one reset or step,
    None: no limit; `start_timeout` is `timeout_wait`, for a new process to import what it
    needs and make its copies, which on a busy machine takes far longer than a step)."""

    num_workers: int
    timeout: Optional[float] = 600.0
    max_lifetime_restarts: int = 10
    restarts_rate_limit_n: int = 1
    restarts_rate_limit_period_s: float = 60.0
    start_timeout: float = 60.0
    ready_only: bool = False  # `worker_sync: ready`: a step takes the workers that answered

    @classmethod
    def from_env_settings(cls, env: Any) -> "WorkerSettings":
        return cls(env.num_workers, env.timeout_step or None, env.max_lifetime_restarts,
                   env.restarts_rate_limit_n, float(env.restarts_rate_limit_period_s),
                   float(env.timeout_wait), env.worker_sync.value == "ready")


def worker_seed(seed: Optional[int], first_copy: int, life: int, num_envs: int
                ) -> Optional[int]:
    """The seed of a worker whose share starts at copy `first_copy`, in its `life`-th life (0
    for the first start): in-process seeding continued (copy c is seeded seed + c), and a new
    range of seeds for each restart, so fresh copies never replay old episodes."""
    if seed is None or seed < 0:
        return None
    return seed + first_copy + life * num_envs


def check_alike(known: Mapping[str, BehaviorSpec], specs: Mapping[str, BehaviorSpec],
                first: bool, where: str, reference: str) -> None:
    """A new worker's (or Ray actor's) behaviors against those of the first one, `known`:
    the same set (`first`: at the start) or, after a restart, the same spaces for those it has
    (a behavior may appear later, as agents spawn)."""
    seen = {name: known.get(name) for name in specs}
    if seen != dict(specs) or (first and set(specs) != set(known)):
        raise EnvironmentSetupError(
            f"{where} made an environment with other behaviors or spaces than {reference} had "
            f"({', '.join(specs)} vs {', '.join(known)}): every copy must be alike.")


class _Readiness:
    """Which of the busy workers' pipes and exits can be read now. On POSIX one `select.poll`
    holds every running worker's pipe and exit for the whole run, where
    `multiprocessing.connection.wait` builds and fills a new selector for each call (28 us for
    eight workers on a 2-core EPYC, against 1 us for a kept one; a step makes several calls),
    and a `selectors` selector adds a layer of Python to each call (~8% of the training
    process's Python per step reply there, py-spy). Elsewhere (Windows, whose pipes cannot be
    polled) it is `wait`.

    A worker that is not busy has nothing to say; if its pipe or exit becomes readable anyway
    (it ended between steps), it is left out until it is sent its next command, when the
    read finds out what happened: a kept poll would otherwise report it at every call."""

    def __init__(self) -> None:
        self.poll: Optional[Any] = select.poll() if os.name == "posix" else None
        self.owners: Dict[int, Tuple[WorkerHandle, bool]] = {}  # fd: (worker, its pipe?)
        self.quiet: Set[WorkerHandle] = set()

    @staticmethod
    def _fds(worker: WorkerHandle) -> List[Tuple[int, bool]]:
        """Its pipe's and its exit's descriptors, each with whether it is the pipe."""
        return [(x if isinstance(x, int) else x.fileno(), x is worker.conn)
                for x in worker.waitables]

    def add(self, worker: WorkerHandle) -> None:
        if self.poll is not None:
            for fd, pipe in self._fds(worker):
                self.poll.register(fd, select.POLLIN)
                self.owners[fd] = (worker, pipe)

    def remove(self, worker: WorkerHandle) -> None:
        """Before the worker's pipe is closed (a closed descriptor's number is reused)."""
        if self.poll is not None and worker not in self.quiet and worker.process is not None:
            for fd, _ in self._fds(worker):
                self.poll.unregister(fd)
                del self.owners[fd]
        self.quiet.discard(worker)

    def ready(self, busy: List[WorkerHandle], timeout: Optional[float]
              ) -> Dict[WorkerHandle, bool]:
        """The workers of `busy` with something to read within `timeout` seconds (None: no
        limit), each with whether its pipe is readable (False: only its exit is); may be
        empty before the timeout when only a worker that was not busy stirred."""
        if self.poll is None:
            found = set(wait([x for w in busy for x in w.waitables], timeout))
            return {w: w.conn in found for w in busy if found.intersection(w.waitables)}
        for worker in [w for w in self.quiet if w.busy_since is not None]:
            self.quiet.discard(worker)
            self.add(worker)
        out: Dict[WorkerHandle, bool] = {}
        for fd, _ in self.poll.poll(None if timeout is None else math.ceil(timeout * 1000)):
            owner = self.owners.get(fd)
            if owner is None:  # the other end of a worker set aside just now
                continue
            worker, pipe = owner
            if worker.busy_since is None:
                if worker not in self.quiet:
                    self.remove(worker)
                    self.quiet.add(worker)
            else:
                out[worker] = out.get(worker, False) or pipe
        return out

    def close(self) -> None:
        self.owners.clear()


class WorkerEnv(BaseEnv):
    """`num_envs` copies of `env_path` in `settings.num_workers` processes (module docstring)."""

    steps_elsewhere = True

    def __init__(self, env_path: str, env_args: Any, num_envs: int, seed: Optional[int],
                 settings: WorkerSettings) -> None:
        n = settings.num_workers
        if not 1 <= n <= num_envs:
            raise EnvironmentSetupError(
                f"env_settings.num_workers: {n} worker processes for {num_envs} environment "
                f"copies (num_envs); allowed: 1 to {num_envs} (0 steps the copies in-process).")
        self.env_path, self.env_args, self.num_envs, self.seed = env_path, env_args, num_envs, seed
        self.settings = settings
        self._context = multiprocessing.get_context("spawn")
        self._prefix = block_prefix()
        base, extra = divmod(num_envs, n)
        sizes = [base + (w < extra) for w in range(n)]
        self._workers = [WorkerHandle(w, sum(sizes[:w]), sizes[w]) for w in range(n)]
        self._specs: Dict[str, BehaviorSpec] = {}
        self._steps: Dict[str, Tuple[DecisionSteps, TerminalSteps]] = {}
        self._interrupted: Dict[int, Dict[str, TerminalSteps]] = {}
        self._batch_lost: List[int] = []  # workers restarted for the batch handed out now
        self._stats: Dict[str, List[Tuple[float, str]]] = {}
        self._batch: List[WorkerHandle] = []  # the workers of the steps handed out last
        self._collected = False
        self._readiness = _Readiness()
        try:
            for worker in self._workers:
                self._start(worker)
            for worker in self._workers:
                self._ready(worker, worker.receive(settings.start_timeout, START_TEXT))
        except WorkerLost as exc:
            self._close_quietly()
            raise EnvironmentSetupError(f"{exc} while making its copies.") from None
        except BaseException:
            self._close_quietly()
            raise

    # -- BaseEnv ------------------------------------------------------------------------------
    @property
    def behavior_specs(self) -> Mapping[str, BehaviorSpec]:
        return self._specs

    @property
    def worker_pids(self) -> List[int]:
        """The process ids of the workers now running (for tests and monitoring)."""
        return [w.process.pid for w in self._workers if w.process is not None]

    def reset(self) -> None:
        if any(w.busy_since is not None for w in self._workers):
            self._gather("step", every=True)
        self._interrupted = {}
        for worker in self._workers:
            worker.steps = {}
            worker.send(("reset",))
        self._gather("reset", every=True)

    def get_steps(self, behavior_name: str) -> Tuple[DecisionSteps, TerminalSteps]:
        if not self._collected:
            self._gather("step")
        return self._steps[behavior_name]

    def set_actions(self, behavior_name: str, actions: ActionTuple) -> None:
        """Written straight into each worker's block, split by its share of the batch."""
        if not self._collected:
            self._gather("step")
        counts = [len(w.steps[behavior_name][0]) if behavior_name in w.steps else 0
                  for w in self._batch]
        if len(actions) != sum(counts):
            raise ValueError(f"{behavior_name}: {len(actions)} actions for {sum(counts)} agents "
                             "of the last decision batch.")
        offset = 0
        for worker, n in zip(self._batch, counts):
            if n:  # a worker without agents of this behavior is not told (as in-process)
                block = worker.blocks[behavior_name]
                if block.continuous.shape[1]:
                    block.continuous[:n] = actions.continuous[offset:offset + n]
                if block.discrete.shape[1]:
                    block.discrete[:n] = actions.discrete[offset:offset + n]
                worker.actions[behavior_name] = n
                offset += n

    def step(self) -> None:
        """Every worker of the last batch steps with its actions; returns at once
        (`get_steps` waits). With `worker_sync: all` the batch is every worker."""
        if not self._collected:
            self._gather("step")
        for worker in self._batch:
            rows, worker.actions = worker.actions, {}
            worker.send_step(rows)
        self._collected = False

    def render(self) -> Optional[np.ndarray]:
        """Worker 0's `render()`: the first copy, as in-process."""
        if not self._collected:
            self._gather("step")
        worker = self._workers[0]
        if worker.busy_since is not None:  # stepping (worker_sync: ready): its step waits
            try:                            # in the next batch
                self._accept(worker, worker.receive(self.settings.timeout))
            except WorkerLost as exc:
                raise EnvironmentSetupError(f"{exc} while rendering.") from None
        worker.send(("render",))
        try:
            reply = worker.receive(self.settings.timeout)
        except WorkerLost as exc:
            raise EnvironmentSetupError(f"{exc} while rendering.") from None
        if reply[0] == "error":
            raise worker.error(reply[1])
        frame: Optional[np.ndarray] = reply[1]
        return frame

    def lost_parts(self) -> Tuple[Sequence[int], int]:
        return self._batch_lost, len(self._workers)

    def pop_stats(self) -> Mapping[str, List[Tuple[float, str]]]:
        stats, self._stats = self._stats, {}
        return stats

    def close(self) -> None:
        """Ask every worker to close its copies, then make sure each has exited: killed after
        a grace period; every shared block is unlinked. Safe to call twice. An exception of
        an environment's own `close` is raised afterwards, as it would be in-process."""
        workers = [w for w in self._workers if w.process is not None]
        failure: Optional[PalaestraError] = None
        try:
            # a worker still stepping (or starting) answers that before the close
            replies = {w.index: 1 + (w.busy_since is not None) for w in workers}
            for worker in workers:
                worker.send(("close",))
            failure = self._drain(workers, replies, time.monotonic() + _CLOSE_GRACE_S)
        finally:
            for worker in workers:
                self._readiness.remove(worker)
                worker.stop()
            self._readiness.close()
        if failure is not None:
            raise failure

    def _close_quietly(self) -> None:
        """`close` while another error is on its way (the copies' own close failing is then
        only logged)."""
        try:
            self.close()
        except PalaestraError as exc:
            logger.warning("Also failed while closing the environment workers: %s", exc)

    # -- starting and hearing back ------------------------------------------------------------
    def _start(self, worker: WorkerHandle) -> None:
        worker.start(self._context, WorkerRecipe(
            self.env_path, self.env_args, worker.copies,
            worker_seed(self.seed, worker.first, worker.life, self.num_envs),
            f"{self._prefix}w{worker.index}l{worker.life}", worker.index, len(self._workers)))
        self._readiness.add(worker)

    def _ready(self, worker: WorkerHandle, reply: Tuple[Any, ...], first: bool = True) -> None:
        """A worker's "ready": its behaviors must be those of the others (`first`: the same
        set; after a restart: the same spaces for those it has)."""
        if reply[0] == "error":
            raise worker.error(reply[1])
        specs, fps = reply[1], reply[2]
        worker.names = list(specs)
        if not self._specs:
            self._specs, self.render_fps = dict(specs), fps
            return
        check_alike(self._specs, specs, first, worker.where, "worker 0")

    def _gather(self, doing: str, every: bool = False) -> None:
        """Wait for the reply of every worker sent a reset or step (with `worker_sync: ready`
        and not `every`: of at least one, taking the others that had answered when it was
        seen: one look, so that a reply read first waits for no later one); a worker that
        died (or, in a step, did not answer in time) is restarted. Then assemble the batches
        of the workers heard from."""
        timeout = self.settings.timeout
        every = every or not self.settings.ready_only
        heard = any(w.fresh for w in self._workers)  # a step taken in, not yet handed out
        looked = False
        while True:
            if heard and not every and looked:
                break
            busy = [w for w in self._workers if w.busy_since is not None]
            if not busy:
                break
            if heard and not every:
                left: Optional[float] = 0.0  # take who has answered, wait for no one
            else:
                since = min([w.busy_since or 0.0 for w in busy])
                left = None if timeout is None else max(0.0,
                                                        since + timeout - time.monotonic())
            ready = self._readiness.ready(busy, left)
            looked = looked or bool(ready)
            if heard and not every and not ready:
                break
            now = time.monotonic()
            for worker in busy:
                readable = ready.get(worker)
                if readable is not None:
                    reply = worker.reply(readable=readable)
                    if reply is not None:
                        self._accept(worker, reply)
                    else:
                        self._restart(worker, worker.exit_text())
                    heard = True  # its step, or its fresh copies' first one
                elif timeout is not None and now - (worker.busy_since or now) >= timeout:
                    why = f"did not answer a {doing} within {timeout:g} s {TIMEOUT_TEXT}"
                    if doing == "reset":
                        raise EnvironmentTimeout(f"{worker.where} {why}: it hangs, or needs a "
                                                 "larger timeout")
                    self._restart(worker, why)
                    heard = True
        self._assemble()

    def _accept(self, worker: WorkerHandle, reply: Tuple[Any, ...]) -> None:
        """A worker's step (its ids already global): observations copied out of its blocks;
        handed out in the next batch."""
        if reply[0] == "error":
            raise worker.error(reply[1])
        _, reports, new_specs, stats = reply
        if new_specs:
            self._specs.update(new_specs)
            worker.names.extend(new_specs)
        worker.steps = {}
        worker.fresh = True
        for name, (new_block, decision, terminal) in reports.items():
            block = worker.blocks[name] if new_block is None else \
                worker.block(name, self._specs[name], new_block)
            n, ended = len(decision.agent_id), len(terminal.agent_id)
            decision.obs = [o[:n].copy() for o in block.decision_obs]
            terminal.obs = [o[:ended].copy() for o in block.terminal_obs] if ended else \
                list(block.no_terminal_obs)  # the usual step: no episode ended
            worker.steps[name] = (decision, terminal)
        for key, values in stats.items():
            self._stats.setdefault(key, []).extend(values)

    def _assemble(self) -> None:
        """Each behavior's batches of the workers heard from since the last batch, in worker
        order (a restarted worker's interrupted episodes before its fresh agents)."""
        steps = {}
        self._batch = batch = [w for w in self._workers if w.fresh]
        for worker in batch:
            worker.fresh = False
        for name, spec in self._specs.items():
            parts = [w.steps[name] for w in batch if name in w.steps]
            decisions = [decision for decision, _ in parts]
            if self._interrupted:  # in worker order, each before the worker's fresh agents
                terminals = []
                for worker in self._workers:
                    ended = self._interrupted.get(worker.index, {}).get(name)
                    if ended is not None:
                        terminals.append(ended)
                    if worker.steps.get(name) is not None and worker in batch:
                        terminals.append(worker.steps[name][1])
            else:
                terminals = [terminal for _, terminal in parts]
            steps[name] = (concat_decisions(decisions, spec), concat_terminals(terminals, spec))
        # a restarted worker's interrupted episodes ride on this batch: it is the one lost
        self._batch_lost = list(self._interrupted)
        self._steps, self._interrupted, self._collected = steps, {}, True

    def _drain(self, workers: List[WorkerHandle], replies: Dict[int, int], deadline: float
               ) -> Optional[PalaestraError]:
        """Read what closing workers still send until they exit or `deadline` (a worker
        blocked on sending a large reply would otherwise never read its close); returns the
        first failure of an environment's `close` (the last of `replies[w]` replies)."""
        failure: Optional[PalaestraError] = None
        alive = [w for w in workers if w.process.is_alive()]
        while alive and time.monotonic() < deadline:
            ready = set(wait([x for w in alive for x in w.waitables],
                             max(0.0, deadline - time.monotonic())))
            for worker in alive:
                reply = worker.reply(readable=True) if worker.conn in ready else None
                if reply is None:
                    continue
                replies[worker.index] -= 1
                if reply[0] == "error" and replies[worker.index] == 0 and failure is None:
                    failure = worker.error(reply[1])
            alive = [w for w in alive if w.process.is_alive()]
        return failure

    # -- restarts -----------------------------------------------------------------------------
    def _restart(self, worker: WorkerHandle, why: str) -> None:
        """Worker lost: its open episodes end as interrupted, fresh copies in a new process."""
        s = self.settings
        RestartQuota(s.max_lifetime_restarts, s.restarts_rate_limit_n,
                     s.restarts_rate_limit_period_s, worker.restarts).spend(worker.where, why)
        logger.warning("Restarting %s after it %s.", worker.where, why)
        self._interrupted[worker.index] = self._interrupt(worker)
        worker.process.kill()  # a hung worker too; a dead one is only reaped
        self._readiness.remove(worker)
        worker.stop()
        worker.life += 1
        self._start(worker)
        try:
            self._ready(worker, worker.receive(s.start_timeout, START_TEXT), first=False)
            worker.send(("reset",))
            self._accept(worker, worker.receive(s.timeout))
        except WorkerLost as exc:
            raise EnvironmentSetupError(f"{exc} again at once, after a restart.") from None

    def _interrupt(self, worker: WorkerHandle) -> Dict[str, TerminalSteps]:
        """The episodes of the lost worker's deciding agents, ended as interrupted with their
        last observation and no new reward (ids already global)."""
        out = {}
        for name, (decision, _) in worker.steps.items():
            if len(decision):
                n = len(decision)
                out[name] = TerminalSteps(decision.obs, np.zeros(n, np.float32),
                                          np.ones(n, bool), decision.agent_id, decision.group_id,
                                          None if decision.group_id is None else
                                          np.zeros(n, np.float32))
        worker.steps = {}
        return out
