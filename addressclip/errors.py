"""Errors shared across modules, and the one way a user error is shown.

A user error is bad input: a value, a name or a file the user gave. Its message names the value and the valid
choices, and it is shown as one line (`one_line`), never as a traceback: the CLI prints
``addressclip <command>: error: <message>`` and exits with status 2 (``--debug`` adds the traceback), and the
notebooks show ``<ErrorType>: <message>`` in place of the traceback (`addressclip.notebook.check_parameters`
installs that display; the cell still fails, so papermill still fails the run). ``ADDRESSCLIP_DEBUG=1`` shows
tracebacks in both.

User errors are `UserError` and the documented library types that carry a user's mistake (`USER_ERRORS`):
ValueError (unknown names, bad values, and every builder's error: RawDataError, OSMExtractError,
DatasetFormatError, PhotoInputError are ValueErrors) and the OSErrors of a path that is missing or unusable.
"""
from __future__ import annotations

import numbers
import os
import types
import typing
from typing import Any


class NotApplicable(RuntimeError):
    """An experiment or baseline that cannot run in this setting; the message says why and what would make it
    run (e.g. MaPLe needs a transformer image tower; re-partitioning needs an OSM extract of the city)."""


class UserError(ValueError):
    """Bad input from the user (a value, a name or a file); the message names it and the valid choices.
    A ValueError, so that code catching ValueError keeps working."""


class CheckpointError(UserError):
    """A checkpoint file that cannot be used: missing pieces, damaged, or holding pickled objects."""


class DeviceUnavailable(UserError, RuntimeError):
    """A device was asked for that this machine does not have (e.g. cuda without CUDA)."""


USER_ERRORS: tuple[type[BaseException], ...] = (
    UserError, ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError, FileExistsError, PermissionError,
)


def one_line(exc: BaseException) -> str:
    """The error's message on one line (line breaks and runs of spaces become one space)."""
    text = " ".join(str(exc).split())
    if isinstance(exc, KeyError) and len(exc.args) == 1:
        text = f"no {exc.args[0]!r}"
    return text or type(exc).__name__


def debug_enabled() -> bool:
    """``ADDRESSCLIP_DEBUG=1``: show user errors with their traceback."""
    return os.environ.get("ADDRESSCLIP_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")


# ------------------------------------------------------------------------------------- values and types
_NAMES = {"Optional": typing.Optional, "Union": typing.Union, "List": typing.List, "Dict": typing.Dict,
          "Any": typing.Any, "Tuple": typing.Tuple}


def resolve_hint(hint: Any) -> Any:
    """A type hint, evaluating a string one (``"Optional[int]"``, ``"str | None"``); None if it cannot be read."""
    if isinstance(hint, str):
        try:
            return eval(hint, {"__builtins__": {}}, {**_NAMES, "int": int, "float": float, "str": str, "bool": bool,
                                                      "list": list, "dict": dict, "tuple": tuple, "None": None})
        except Exception:  # noqa: BLE001 - an annotation we cannot read is not checked
            return None
    return hint


def _union_args(hint: Any) -> tuple | None:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return None


def describe(hint: Any) -> str:
    """What a value of `hint` is, in words: "an integer", "True or False", "a list of strings", "... or None"."""
    args = _union_args(hint)
    if args is not None:
        parts = [describe(a) for a in args if a is not type(None)]
        text = " or ".join(parts)
        if type(None) in args:
            text = f"{text}, or None" if " or " in text else f"{text} or None"
        return text
    if hint is None or hint is type(None):
        return "None"
    if hint is bool:
        return "True or False"
    if hint is int:
        return "an integer"
    if hint is float:
        return "a number"
    if hint is str:
        return "a string"
    origin = typing.get_origin(hint) or hint
    if origin is list:
        inner = typing.get_args(hint)
        return "a list" + (f" of {_plural(inner[0])}" if inner else "")
    if origin is dict:
        return "a dict"
    if origin is tuple:
        return "a tuple"
    return getattr(hint, "__name__", str(hint))


def _plural(hint: Any) -> str:
    return {str: "strings", int: "integers", float: "numbers", bool: "True/False values"}.get(hint, describe(hint))


def matches(value: Any, hint: Any) -> bool:
    """Whether `value` fits the type hint (ints count as floats; True/False never count as numbers)."""
    if hint is Any:
        return True
    args = _union_args(hint)
    if args is not None:
        return any(matches(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    origin = typing.get_origin(hint) or hint
    if origin is list:
        inner = typing.get_args(hint)
        return isinstance(value, list) and (not inner or all(matches(v, inner[0]) for v in value))
    if isinstance(origin, type):
        return isinstance(value, origin)
    return True  # a hint we do not check


def check_type(name: str, value: Any, hint: Any) -> None:
    """Raise a `UserError` "NAME must be <what>, got VALUE" when `value` does not fit `hint` (a type or a string
    annotation); hints that cannot be read are not checked."""
    hint = resolve_hint(hint)
    if hint is None:
        return
    if not matches(value, hint):
        raise UserError(f"{name} must be {describe(hint)}, got {value!r}")
