"""Reading YAML files strictly: what a config file (or an --env-args value) may hold.

Configs are downloaded and shared, so the reader refuses what PyYAML's safe_load accepts
silently (duplicate keys) or pays for with the machine (alias bombs, deep nesting, huge files),
and names the file and line of every fault in one sentence. Kept apart from `config`, which
turns the values into settings, so that environments can read YAML values without the
settings and registry layers.
"""
from __future__ import annotations

import codecs
import os
from typing import Any, Dict, Tuple

import yaml

from palaestra.exception import TrainerConfigError


# What a config file may hold. A config is a few hundred values; these limits are far above any
# real one (ML-Agents' configs with anchors included) and far below what would take the machine
# down: a YAML alias "bomb" of a few hundred bytes expands to 10**9 values, deep nesting
# exhausts Python's recursion, and a file of gigabytes is not a config.
MAX_CONFIG_BYTES = 16 * 2 ** 20
MAX_YAML_VALUES = 100_000
MAX_YAML_DEPTH = 64


class _Refusal(yaml.MarkedYAMLError):
    """A file that is YAML, but one palaestra will not read (duplicate key, alias explosion,
    nesting): told apart from syntax errors so the message does not say "not valid YAML"."""


class StrictYAMLLoader(yaml.SafeLoader):
    """SafeLoader (no arbitrary Python objects) that also refuses what a plain safe_load
    accepts silently or pays for with the machine:

    - a key twice in one mapping (PyYAML keeps the last one: the first value, which the user may
      be editing, is silently ignored); keys that a `<<` merge brings in may be overridden;
    - more than MAX_YAML_VALUES values once every alias is expanded, counted while composing, so
      a billion-laughs file is refused after a few thousand nodes, not after minutes of
      expanding it; an alias to the value that contains it (an infinite value) likewise;
    - nesting deeper than MAX_YAML_DEPTH (PyYAML's composer recurses: RecursionError);
    - an integer of over 4000 digits (Python refuses to convert 4300: ValueError, not a YAML
      error); any other value a constructor fails on (`2001-13-45`) is named with its line.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._values = 0
        self._aliases = 0
        self._depth = 0
        self._sizes: Dict[int, int] = {}  # id(anchored node) -> values it expands to

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            target = self.anchors.get(event.anchor)
            if target is not None:  # an undefined alias is the composer's own error
                if id(target) not in self._sizes:
                    raise _Refusal(None, None, f"alias *{event.anchor} refers to a value that "
                                   "contains the alias itself (a recursive alias): a config "
                                   "cannot hold an infinite value", event.start_mark)
                self._aliases += 1
                self._count(self._sizes[id(target)], event.start_mark)
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_YAML_DEPTH:
            raise _Refusal(None, None, f"values nested more than {MAX_YAML_DEPTH} levels deep; "
                           "a config needs a handful", event.start_mark)
        before = self._values
        node = super().compose_node(parent, index)
        self._depth -= 1
        self._count(1, event.start_mark)
        if getattr(event, "anchor", None) is not None:
            self._sizes[id(node)] = self._values - before
        return node

    def _count(self, values: int, mark: Any) -> None:
        self._values += values
        if self._values > MAX_YAML_VALUES:
            if self._aliases:
                problem = (f"aliases (*name) expand this file to more than {MAX_YAML_VALUES} "
                           f"values ({self._aliases} aliases used so far), far more than any "
                           "config holds: a YAML alias bomb? Write the repeated parts out, or "
                           "use fewer aliases")
            else:
                problem = (f"the file holds more than {MAX_YAML_VALUES} values, far more than "
                           "any config holds")
            raise _Refusal(None, None, problem, mark)

    def compose_mapping_node(self, anchor: Any) -> Any:
        node = super().compose_mapping_node(anchor)
        seen: Dict[Tuple[str, str], Any] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
                continue
            key = (key_node.tag, key_node.value)
            if key in seen:
                raise _Refusal(None, None, f"duplicate key '{key_node.value}' (first given on "
                               f"line {seen[key].line + 1}); a key may appear once in a mapping "
                               "(YAML would silently keep the last value)", key_node.start_mark)
            seen[key] = key_node.start_mark
        return node

    def construct_yaml_int(self, node: Any) -> Any:
        digits = sum(c.isalnum() for c in str(node.value))
        if digits > 4000:  # Python refuses to print (or read) integers of more than 4300 digits
            raise _Refusal(None, None, f"an integer of {digits} digits is too long for any "
                           "setting", node.start_mark)
        return super().construct_yaml_int(node)

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        """PyYAML's constructors raise plain Python errors for a value that matches a type's
        pattern but not its rules (`2001-13-45` is read as a date: month 13), or for an explicit
        tag that does not fit (`!!float abc`): those become YAML errors with the line."""
        try:
            return super().construct_object(node, deep)
        except (ValueError, TypeError, KeyError, OverflowError) as exc:
            value = node.value if isinstance(node, yaml.ScalarNode) else node.tag
            tag = node.tag.rsplit(":", 1)[-1]
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read {value!r} as !!{tag}: {exc}", node.start_mark) from None


_MERGE_TAG = "tag:yaml.org,2002:merge"
StrictYAMLLoader.add_constructor("tag:yaml.org,2002:int", StrictYAMLLoader.construct_yaml_int)


def _decode(path: str, data: bytes) -> str:
    """The file's text; a binary file or one in another encoding than UTF-8 is named as such
    (Python's UnicodeDecodeError names neither the file nor the fix)."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) and \
            not data.startswith(codecs.BOM_UTF32_LE):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            pass
    head = data[:8192]
    controls = sum(1 for b in head if b < 32 and b not in b"\t\n\r\f")
    if b"\0" in data or controls > len(head) // 10:
        raise TrainerConfigError(f"{path}: this is a binary file, not a YAML text file (it holds "
                                 "NUL or control bytes). Give the path of a .yaml config.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise TrainerConfigError(
            f"{path}: line {line}: byte 0x{data[exc.start]:02x} is not valid UTF-8; a config "
            "file must be UTF-8 text (this one looks like Latin-1 or another 8-bit encoding: "
            "save it as UTF-8).") from None


def _yaml_error(path: str, text: str, exc: yaml.YAMLError) -> TrainerConfigError:
    """One line: the file, the line and column, and PyYAML's own words for the problem (its
    str() spans several lines, with a snippet of the file)."""
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, max(exc.position, 0)) + 1
        what = f"unacceptable character #x{exc.character:04x}: {exc.reason}" \
            if isinstance(exc.character, int) else str(exc.reason)
        return TrainerConfigError(f"{path}: line {line}: not valid YAML: {what}.")
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = "; ".join(p for p in (exc.context, exc.problem) if p)
        prefix = "" if isinstance(exc, _Refusal) else "not valid YAML: "
        return TrainerConfigError(" ".join(f"{path}: {where}{prefix}{what}.".split()))
    return TrainerConfigError(" ".join(f"{path}: not valid YAML: {exc}".split()))


def read_yaml(path: str) -> Dict[str, Any]:
    """The file's top-level mapping, read with `StrictYAMLLoader`. Every way a file can fail
    (missing, a folder, unreadable, too large, binary, not UTF-8, not YAML, refused) becomes a
    one-line TrainerConfigError naming the file and, where there is one, the line."""
    if os.path.isdir(path):
        raise TrainerConfigError(f"Config file {path} is a directory; give the path of a YAML "
                                 "file.")
    if os.path.exists(path) and not os.path.isfile(path):  # a device or a pipe: reading hangs
        raise TrainerConfigError(f"Config file {path} is not a regular file; give the path of a "
                                 "YAML file.")
    if not os.path.isfile(path):
        raise TrainerConfigError(f"Config file {path} was not found.")
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise TrainerConfigError(f"Config file {path} cannot be read: {exc.strerror}.") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise TrainerConfigError(f"{path}: larger than {MAX_CONFIG_BYTES // 2 ** 20} MiB, which "
                                 "no config is; is this the right file?")
    text = _decode(path, data)
    try:
        loaded = yaml.load(text, Loader=StrictYAMLLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        raise _yaml_error(path, text, exc) from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise TrainerConfigError(f"{path}: the top level must be a mapping of sections "
                                 f"(behaviors:, env_settings:, ...), got "
                                 f"{type(loaded).__name__}.")
    return loaded
