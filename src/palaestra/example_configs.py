"""The example configs shipped inside the package (`palaestra/configs/<trainer>/<Name>.yaml`),
so that a plain `pip install palaestra` has them: `palaestra configs` lists them, prints one,
or copies them into a folder of the user's to edit.

A name is `ppo/3DBall` (with or without `.yaml`), or just `3DBall` where only one trainer
folder has it.
"""
from __future__ import annotations

import os
from importlib import resources
from typing import Dict, List, Optional

from palaestra.exception import PalaestraError


def shipped() -> Dict[str, str]:
    """`trainer/Name` -> the YAML text, for every shipped config."""
    root = resources.files("palaestra").joinpath("configs")
    out: Dict[str, str] = {}
    for folder in sorted(root.iterdir(), key=lambda p: p.name):
        if not folder.is_dir():
            continue
        for item in sorted(folder.iterdir(), key=lambda p: p.name):
            if item.name.endswith(".yaml") and item.is_file():
                out[f"{folder.name}/{item.name[:-5]}"] = item.read_text(encoding="utf-8")
    return out


def find(name: str) -> str:
    """The `trainer/Name` a user's `name` means; a clear error listing the choices."""
    configs = shipped()
    key = name[:-5] if name.endswith(".yaml") else name
    if key in configs:
        return key
    matches = [k for k in configs if k.split("/", 1)[1].lower() == key.lower()
               or k.lower() == key.lower()]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise PalaestraError(f"palaestra configs {name}: several configs have that name: "
                             f"{', '.join(matches)}; give one of them.")
    raise PalaestraError(f"palaestra configs {name}: no such example config; there are: "
                         f"{', '.join(configs)}.")


def summary_line(text: str) -> str:
    """What a config trains, from its opening comment: up to the first bracket or sentence
    end ("PPO on the built-in 3DBall")."""
    words = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        words.append(line.lstrip("# ").strip())
    head = " ".join(words)
    cut = min([i for i in (head.find(" ("), head.find(". "), head.find(": ")) if i >= 0]
              or [len(head)])
    head = head[:cut].rstrip(".")
    return head if len(head) <= 70 else head[:69] + "…"


def listing() -> List[str]:
    configs = shipped()
    width = max(len(k) for k in configs)
    return [f"{k.ljust(width)}  {summary_line(text)}" for k, text in configs.items()]


def copy(names: List[str], out: str, force: bool = False) -> List[str]:
    """Copy configs (all of them for no name) into the folder `out` (made if missing), as
    `<out>/<Name>.yaml` for one config or `<out>/<trainer>/<Name>.yaml` for several; `out`
    ending in `.yaml` names the file of a single config. An existing file is not replaced
    unless `force`. Returns the paths written."""
    configs = shipped()
    keys = [find(n) for n in names] if names else list(configs)
    single_file = out.endswith((".yaml", ".yml"))
    if single_file and len(keys) != 1:
        raise PalaestraError(f"-o {out}: a file name takes one config; give a folder for "
                             f"{len(keys)}.")
    targets = []
    for key in keys:
        if single_file:
            path = out
        elif len(keys) == 1:
            path = os.path.join(out, key.split("/", 1)[1] + ".yaml")
        else:
            path = os.path.join(out, *key.split("/")) + ".yaml"
        if os.path.exists(path) and not force:
            raise PalaestraError(f"{path} exists; it is not replaced (--force replaces it).")
        targets.append((key, path))
    written = []
    for key, path in targets:
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(configs[key])
        written.append(path)
    return written


def main(names: List[str], out: Optional[str], force: bool = False) -> List[str]:
    """`palaestra configs [NAME...] [-o OUT]`: the lines to print."""
    if out is not None:
        return [f"Wrote {path}" for path in copy(names, out, force)]
    if not names:
        return listing() + ["", "palaestra configs NAME prints one; -o DIR copies them."]
    return [shipped()[find(name)].rstrip("\n") for name in names]
