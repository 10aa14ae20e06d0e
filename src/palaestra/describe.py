"""Words for a report line about someone else's object or exception, that never fail.

A broken plugin is reported and skipped; its exception's ``__str__`` or its object's
``__repr__`` is its own code and may itself raise (or call sys.exit()), so the line that
reports it must be built without trusting either. A leaf module: the registry, the stats
writers' guard and the controller all report plugin and environment faults through it.
"""
from __future__ import annotations

from typing import Any


def short_repr(obj: Any, limit: int = 60) -> str:
    """``repr(obj)`` cut to `limit` characters, for a report line about a plugin's object.

    Never raises: a plugin's ``__repr__`` is its own code and may fail (or call sys.exit()),
    and the line reporting the plugin must still be printed, so such an object reads as
    ``<Type object (its repr failed)>``. Ctrl-C still propagates."""
    try:
        text = str.__str__(repr(obj))  # an exact str: a subclass's own methods could raise
    except KeyboardInterrupt:
        raise
    except BaseException:  # noqa: B036 - whatever the plugin's code raised
        return f"<{_type_name(obj)} object (its repr failed)>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _type_name(obj: Any) -> str:
    """The name of `obj`'s class, or "object" if even that cannot be read (a metaclass of a
    plugin's may define ``__name__``)."""
    try:
        name = type(obj).__name__
    except KeyboardInterrupt:
        raise
    except BaseException:  # noqa: B036
        return "object"
    return str.__str__(name) if isinstance(name, str) else "object"


def describe_error(exc: BaseException) -> str:
    """``Type: message`` for a report line; never raises.

    A plugin's ``sys.exit(3)`` would otherwise read as a bare ``SystemExit: 3``, which does not
    tell a user that the plugin itself asked the process to end. An exception whose ``__str__``
    raises (a plugin's own exception class) reads as ``Type (its message could not be shown)``:
    the report of a broken plugin must not itself end ``palaestra trainers`` or ``learn``.
    """
    if isinstance(exc, SystemExit):
        return f"SystemExit: the plugin called sys.exit({short_repr(exc.code)})"
    name = _type_name(exc)
    try:
        message = str.__str__(str(exc))
    except KeyboardInterrupt:
        raise
    except BaseException:  # noqa: B036 - whatever the plugin's __str__ raised
        return f"{name} (its message could not be shown)"
    return f"{name}: {message}" if message else name
