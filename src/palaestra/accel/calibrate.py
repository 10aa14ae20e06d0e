"""Measure, once per machine, whether a speed path pays here, and remember the answer.

Which matrix-product library is faster depends on the processor (see `palaestra.accel.linear`:
oneDNN is twice as fast as MKL on an AVX-512 AMD EPYC, slower on an AVX2-only one), so
`accel: auto` decides by timing both on this machine, a fully connected layer's forward and
backward at the size of SAC's layers, interleaved, and keeps the answer per processor model,
torch version and thread count in `<cache>/palaestra/accel.json` (`$PALAESTRA_CACHE_DIR`, else
`$XDG_CACHE_HOME`, else `~/.cache`). A missing, unreadable or foreign file is measured again;
a cache that cannot be written is only measured again next time.
"""
from __future__ import annotations

import json
import logging
import os
import platform
import statistics
import time
from typing import Any, Callable, Dict, Optional

import torch
import torch.nn.functional as F

from palaestra.accel.linear import linear, onednn_available

logger = logging.getLogger("palaestra")

CACHE_FILE = "accel.json"
# oneDNN must be this much faster to be used: a tie goes to torch's own kernels.
MARGIN = 0.95
_MAX_CACHE_BYTES = 1 << 20


def cache_dir() -> str:
    explicit = os.environ.get("PALAESTRA_CACHE_DIR")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "palaestra")


def processor() -> str:
    """The processor's model as precisely as the system says it: on Linux the model name plus
    family/model/stepping and the vector extensions (two processors named "AMD EPYC" can be
    different generations)."""
    fields: Dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if not line.strip():
                    break  # the first processor is enough
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    if not fields:
        return f"{platform.machine()} {platform.processor()}".strip() or "unknown"
    flags = set(fields.get("flags", "").split())
    vector = "/".join(f for f in ("avx512f", "avx2", "avx", "sse4_2") if f in flags) or "none"
    return (f"{fields.get('model name', '?')}; family {fields.get('cpu family', '?')} model "
            f"{fields.get('model', '?')} stepping {fields.get('stepping', '?')}; {vector}")


def machine_key() -> str:
    return f"{processor()} | torch {torch.__version__} | {torch.get_num_threads()} threads"


def _time_layer(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
                x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn(x, w, b)
        out.backward(torch.ones_like(out))
    return (time.perf_counter() - start) / repeats


def measure_onednn(size: int = 256, rounds: int = 7, repeats: int = 10) -> Dict[str, float]:
    """Median seconds of a `size`-wide layer's forward and backward on `size` rows, through
    torch's own kernels and through oneDNN, rounds interleaved so that a slow phase of the
    machine hits both."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(size, size, generator=gen, requires_grad=True)
    w = torch.randn(size, size, generator=gen, requires_grad=True)
    b = torch.zeros(size, requires_grad=True)
    plain, onednn = [], []
    for fn in (F.linear, linear):  # warm-up: first calls allocate and pick kernels
        _time_layer(fn, x, w, b, 2)
    for _ in range(rounds):
        plain.append(_time_layer(F.linear, x, w, b, repeats))
        onednn.append(_time_layer(linear, x, w, b, repeats))
    return {"torch_s": statistics.median(plain), "onednn_s": statistics.median(onednn)}


def _read_cache(path: str) -> Dict[str, Any]:
    try:
        if os.path.islink(path) or os.path.getsize(path) > _MAX_CACHE_BYTES:
            return {}
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(path: str, data: Dict[str, Any]) -> None:
    from palaestra.atomic import atomic_write_text

    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        atomic_write_text(json.dumps(data, indent=1, sort_keys=True), path)
    except OSError as exc:
        logger.debug("accel: cannot write %s (%s); measured again next time", path, exc)


def onednn_pays(folder: Optional[str] = None) -> bool:
    """Whether oneDNN's products beat torch's own here (measured once per machine key)."""
    if not onednn_available():
        return False
    path = os.path.join(folder or cache_dir(), CACHE_FILE)
    data = _read_cache(path)
    key = machine_key()
    entry = data.get(key)
    if isinstance(entry, dict) and isinstance(entry.get("onednn_linear"), bool):
        return bool(entry["onednn_linear"])
    times = measure_onednn()
    pays = times["onednn_s"] < MARGIN * times["torch_s"]
    logger.info("accel: a 256-wide layer takes %.0f us through oneDNN, %.0f us through torch's "
                "kernels on this machine: %s (remembered in %s)", times["onednn_s"] * 1e6,
                times["torch_s"] * 1e6, "oneDNN" if pays else "torch's kernels", path)
    data[key] = {"onednn_linear": pays, **{k: round(v, 8) for k, v in times.items()},
                 "measured": time.strftime("%Y-%m-%d %H:%M:%S")}
    _write_cache(path, data)
    return pays
