"""The Ray actors of a run: connecting to Ray, starting the actors, replacing lost ones.

`RayFleet.start` connects (``local``: Ray started in this process; ``auto`` or ``HOST:PORT``:
a running cluster; a process that already called `ray.init` keeps its own connection), splits
``num_envs`` copies into contiguous shares as `WorkerEnv` does, and starts one `RolloutActor`
per share, seeded as worker processes are (`worker_seed`). It stands where the environment
stands for the rest of the run: `behavior_specs`, `close`.

An actor lost with its process or node (`ray.exceptions.RayActorError`), or one that does not
answer a chunk in time, is replaced by a fresh actor with a new range of seeds, within the
restart quota of worker processes and Unity builds (`max_lifetime_restarts`,
`restarts_rate_limit_n` per `restarts_rate_limit_period_s`, per actor); past it the run stops
with `EnvironmentSetupError` (after the trainers saved). An environment that fails to build or
raises is not retried: its error stops the run, with the actor's traceback.

`close` asks the actors to close their copies, kills them after a grace period (`ray.kill`),
and shuts Ray down (or, on a cluster, disconnects) only if this run connected.
"""
from __future__ import annotations

import builtins
import logging
import os
import socket
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional

from palaestra.envs.base import BehaviorSpec
from palaestra.envs.restarts import RestartQuota
from palaestra.envs.workers import check_alike, worker_seed
from palaestra.exception import EnvironmentSetupError, PalaestraError

logger = logging.getLogger("palaestra")

_CLOSE_GRACE_S = 5.0  # actors closing their copies are waited for this long, then killed
_REACH_S = 10.0  # how long a cluster's head may take to accept a connection
_RAY_HINT = 'pip install "palaestra[ray]" (or pip install ray) on every machine of the cluster'


@dataclass(frozen=True)
class FleetSettings:
    """What the fleet reads from `env_settings` (and its `ray` block): the copies, the actors,
    and the restart quota shared with worker processes. `timeout`: seconds one step may take
    (`timeout_step`; None: no limit); a chunk may take `timeout * chunk_steps`."""

    env_path: str
    env_args: Any
    num_envs: int
    seed: Optional[int]
    address: str = "local"
    num_actors: Optional[int] = None
    chunk_steps: int = 64
    cpus_per_actor: float = 1.0
    num_cpus: Optional[int] = None
    timeout: Optional[float] = 600.0
    max_lifetime_restarts: int = 10
    restarts_rate_limit_n: int = 1
    restarts_rate_limit_period_s: float = 60.0
    start_timeout: float = 60.0  # an actor placed, started and its copies made (timeout_wait)

    @classmethod
    def from_env_settings(cls, env: Any) -> "FleetSettings":
        ray = env.ray
        return cls(env.env_path, env.env_args, env.num_envs, env.seed, ray.address,
                   ray.num_actors, ray.chunk_steps, ray.cpus_per_actor, ray.num_cpus,
                   env.timeout_step or None, env.max_lifetime_restarts,
                   env.restarts_rate_limit_n, float(env.restarts_rate_limit_period_s),
                   float(env.timeout_wait))

    @property
    def chunk_timeout(self) -> Optional[float]:
        return None if self.timeout is None else self.timeout * self.chunk_steps


@dataclass
class ActorSlot:
    """One share of the copies and the actor now holding it (`life` 0 for the first, +1 per
    replacement), where it runs, and when it was replaced."""

    index: int
    first: int
    copies: int
    handle: Any = None
    life: int = 0
    node: str = ""
    address: str = ""
    restarts: List[float] = field(default_factory=list)

    @property
    def where(self) -> str:
        last = self.first + self.copies - 1
        copies = f"copy {self.first}" if self.copies == 1 else f"copies {self.first}-{last}"
        node = f" on node {self.node[:12]} ({self.address})" if self.node else ""
        return f"Ray actor {self.index} ({copies}){node}"


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise EnvironmentSetupError(f"env_settings.ray asks for Ray, which is not installed: "
                                    f"{_RAY_HINT}.") from None
    return ray


class RayFleet:
    """The actors holding a run's copies (module docstring)."""

    def __init__(self, settings: FleetSettings) -> None:
        self.settings = settings
        self.ray = import_ray()
        self.slots: List[ActorSlot] = []
        self.render_fps: Optional[float] = None
        self._specs: Dict[str, BehaviorSpec] = {}
        self._owns_ray = False
        self._print: Any = None
        self._actor_cls: Any = None

    @classmethod
    def start(cls, settings: FleetSettings) -> "RayFleet":
        fleet = cls(settings)
        try:
            fleet._connect()
            fleet._start_actors()
        except BaseException:
            fleet.close(quiet=True)
            raise
        return fleet

    @property
    def behavior_specs(self) -> Mapping[str, BehaviorSpec]:
        return self._specs

    # -- connecting -----------------------------------------------------------------------------
    def _connect(self) -> None:
        ray, s = self.ray, self.settings
        if ray.is_initialized():
            logger.info("Ray: using the connection this process already has (ray.init was "
                        "called before the run); it is left open at the end.")
            return
        quiet = {"logging_level": logging.WARNING, "log_to_driver": True}
        # ray.init swaps builtins.print for its own and ray.shutdown leaves it so: kept here to
        # put back when this run shuts the Ray it started down (a notebook's print unchanged)
        self._print = builtins.print
        if s.address == "local":
            cpus = s.num_cpus or max(1, (os.cpu_count() or 1) - 1)  # a core for the learner
            # address "local" even when RAY_ADDRESS names a cluster: a Ray of its own
            ray.init(address="local", num_cpus=cpus, include_dashboard=False, **quiet)
            logger.info("Ray: started in this process with %d CPUs (env_settings.ray.num_cpus)",
                        cpus)
        else:
            if s.address != "auto":
                _check_reachable(s.address)  # Ray itself retries for minutes
            try:
                ray.init(address=s.address, **quiet)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise EnvironmentSetupError(
                    f"env_settings.ray.address {s.address}: no Ray cluster could be joined "
                    f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). "
                    "Start one (ray start --head --port=6379; docs/scale-out.md), or use "
                    "address local.") from None
            logger.info("Ray: joined the cluster at %s (%d nodes, %g CPUs)", s.address,
                        len([n for n in ray.nodes() if n.get("Alive")]),
                        ray.cluster_resources().get("CPU", 0))
        self._owns_ray = True  # the run's own Ray, or its own connection to a cluster

    # -- the actors -----------------------------------------------------------------------------
    def _start_actors(self) -> None:
        ray, s = self.ray, self.settings
        cpus = ray.cluster_resources().get("CPU", 0.0)
        fits = int(cpus // s.cpus_per_actor)
        n = s.num_actors or max(1, min(s.num_envs, fits))
        if n > s.num_envs:
            raise EnvironmentSetupError(
                f"env_settings.ray.num_actors: {n} actors for {s.num_envs} environment copies "
                f"(num_envs); allowed: 1 to {s.num_envs}.")
        if n * s.cpus_per_actor > cpus:
            raise EnvironmentSetupError(
                f"env_settings.ray: {n} actors of {s.cpus_per_actor:g} CPUs each "
                f"(num_actors, cpus_per_actor) need {n * s.cpus_per_actor:g} CPUs; the Ray "
                f"cluster has {cpus:g}. Use fewer actors, a smaller cpus_per_actor, or more "
                "nodes (or num_cpus with address local).")
        from palaestra.scale.rollout_actor import RolloutActor

        self._actor_cls = ray.remote(num_cpus=s.cpus_per_actor, max_restarts=0)(RolloutActor)
        base, extra = divmod(s.num_envs, n)
        sizes = [base + (k < extra) for k in range(n)]
        self.slots = [ActorSlot(k, sum(sizes[:k]), sizes[k]) for k in range(n)]
        for slot in self.slots:
            self._spawn(slot)
        for slot in self.slots:
            self._describe(slot, first=True)
        logger.info("Ray: %d actors, %d copies, %d steps a chunk: %s", n, s.num_envs,
                    s.chunk_steps, "; ".join(slot.where for slot in self.slots))

    def _spawn(self, slot: ActorSlot) -> None:
        s = self.settings
        seed = worker_seed(s.seed, slot.first, slot.life, s.num_envs)
        slot.handle = self._actor_cls.remote(
            s.env_path, s.env_args, slot.copies, seed, slot.index, len(self.slots),
            list(sys.path), max(1, int(s.cpus_per_actor)))

    def _describe(self, slot: ActorSlot, first: bool) -> None:
        """Wait for the actor to have made its copies; learn its behaviors and its node.
        Its behaviors must be those of the others (`first`: the same set)."""
        try:
            specs, fps, slot.node, slot.address = self.get(
                slot.handle.describe.remote(), slot, "starting and making its copies",
                self.settings.start_timeout, "env_settings.timeout_wait / --timeout-wait")
        except ActorLost as exc:
            raise EnvironmentSetupError(str(exc)) from None
        if not self._specs:
            self._specs, self.render_fps = dict(specs), fps
            return
        check_alike(self._specs, specs, first, slot.where, "actor 0")

    def get(self, ref: Any, slot: ActorSlot, doing: str, timeout: Optional[float] = None,
            setting: str = "env_settings.timeout_step / --timeout-step") -> Any:
        """`ray.get(ref)` of an actor's call, its failures as palaestra's: `ActorLost` for a
        lost actor (or one past `timeout` seconds, by default `timeout_step`: the `setting`),
        the environment's own error (with the actor's traceback) otherwise."""
        ray = self.ray
        timeout = self.settings.timeout if timeout is None else timeout
        try:
            return ray.get(ref, timeout=timeout)
        except ray.exceptions.GetTimeoutError:
            raise ActorLost(f"{slot.where} did not finish {doing} within {timeout:g} s "
                            f"({setting})") from None
        except ray.exceptions.RayActorError as exc:
            if exc.actor_init_failed:
                raise self.error(slot, exc, "failed to make its copies:") from None
            raise ActorLost(f"{slot.where} was lost while {doing} ({_first_line(exc)})"
                            ) from None
        except ray.exceptions.ObjectLostError as exc:  # its node went with the chunk
            raise ActorLost(f"{slot.where} was lost while {doing} ({_first_line(exc)})"
                            ) from None
        except ray.exceptions.RayTaskError as exc:
            raise self.error(slot, exc, "raised") from None

    def error(self, slot: ActorSlot, exc: Any, what: str) -> PalaestraError:
        """An error raised inside an actor as a palaestra error: the same class if it was one
        (`NonFiniteError`, `EnvironmentSetupError`, ...), else an `EnvironmentSetupError`
        naming it; either way with the actor's traceback."""
        cause = getattr(exc, "cause", None)
        text = str(exc).strip()
        if isinstance(cause, PalaestraError):
            try:
                return type(cause)(f"{cause}\n{slot.where}'s traceback:\n{text}")
            except TypeError:  # a subclass with a constructor of its own
                pass
        raised = f" {type(cause).__name__}: {cause}" if cause is not None else ""
        return EnvironmentSetupError(f"{slot.where}: the environment {what}{raised}\n{text}")

    # -- replacing a lost actor ---------------------------------------------------------------
    def replace(self, slot: ActorSlot, why: str, recipes: Mapping[str, Any]) -> None:
        """A fresh actor for `slot` (new seeds), its policies built and its copies reset;
        past the restart quota, `EnvironmentSetupError`."""
        s = self.settings
        RestartQuota(s.max_lifetime_restarts, s.restarts_rate_limit_n,
                     s.restarts_rate_limit_period_s, slot.restarts).spend(slot.where, why)
        logger.warning("Replacing %s: it %s.", slot.where, why)
        self.ray.kill(slot.handle, no_restart=True)  # a hung one too; a dead one is a no-op
        slot.life += 1
        slot.node = slot.address = ""
        self._spawn(slot)
        try:
            self._describe(slot, first=False)
            self.get(slot.handle.reset.remote(dict(recipes)), slot, "resetting its copies")
        except ActorLost as exc:
            raise EnvironmentSetupError(f"{exc}, again at once, after a replacement.") from None
        logger.info("Replaced: %s", slot.where)

    # -- the end --------------------------------------------------------------------------------
    def close(self, quiet: bool = False) -> None:
        """Ask every actor to close its copies (what they still run is waited for up to a
        grace period), kill them all, and shut Ray down if this run started it. Safe to call
        twice; an environment's failing `close` is reported after the actors are gone."""
        ray = self.ray
        failure: Optional[PalaestraError] = None
        live = [slot for slot in self.slots if slot.handle is not None]
        try:
            refs = {slot.handle.close.remote(): slot for slot in live}
            done, _ = ray.wait(list(refs), num_returns=len(refs), timeout=_CLOSE_GRACE_S) \
                if refs else ([], [])
            for ref in done:
                try:
                    ray.get(ref)
                except ray.exceptions.RayTaskError as exc:
                    failure = failure or self.error(refs[ref], exc, "failed to close:")
                except ray.exceptions.RayActorError:
                    pass  # lost already: nothing to close
        finally:
            for slot in live:
                ray.kill(slot.handle, no_restart=True)
                slot.handle = None
            if self._owns_ray:
                self._owns_ray = False
                ray.shutdown()
                if self._print is not None:
                    builtins.print = self._print
        if failure is not None:
            if quiet:
                logger.warning("Also failed while closing the Ray actors: %s", failure)
            else:
                raise failure


def _check_reachable(address: str) -> None:
    """Refuse at once a HOST:PORT where nothing answers (a typo, a head not started, a
    firewall): `ray.init` would retry for minutes before saying so."""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=_REACH_S).close()
    except OSError as exc:
        raise EnvironmentSetupError(
            f"env_settings.ray.address {address}: nothing answers there ({exc}). Start the "
            "head with ray start --head --port=PORT (docs/scale-out.md), check the address "
            "and the firewall, or use address local.") from None


class ActorLost(Exception):
    """An actor died, lost its node, or did not answer in time (the message says which)."""


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    detail = [line for line in lines if "Worker exit" in line or "node" in line.lower()]
    return (detail or lines or [type(exc).__name__])[0][:200]
