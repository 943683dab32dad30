"""The one rule a name from an input file must pass before it becomes part of a path.

Trial names (metadata ``trial_name``), fleet job names (``trace-NAME.parquet``),
what-if scenario names and synthetic trace names end up in file names such as
``result-NAME.json``. They are data: :func:`check_name` lets one through only
when it is a plain word of :data:`NAME_CHARACTERS`, starting with a letter or
digit, at most :data:`MAX_NAME_LENGTH` characters long, so it can never hold a
path separator, ``..``, a control character or anything a shell, a URL or a
matplotlib label would read specially.
"""

from __future__ import annotations

import re
from typing import TypeGuard

from graphwia.errors import GraphwiaError, UsageError

__all__ = ["MAX_NAME_LENGTH", "NAME_CHARACTERS", "check_name", "is_name", "shown"]

#: Longest accepted name: file names built from it stay far below the usual 255-byte limit.
MAX_NAME_LENGTH = 100
#: What a name may hold, in words (for messages).
NAME_CHARACTERS = "letters, digits, '.', '_' and '-'"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def is_name(value: object) -> TypeGuard[str]:
    """True when ``value`` passes the name rule."""
    return isinstance(value, str) and len(value) <= MAX_NAME_LENGTH and _NAME.fullmatch(value) is not None


def check_name(value: object, *, what: str, source: str | None, error: type[GraphwiaError] = UsageError) -> str:
    """``value`` when it is a valid name, else ``error`` with one line naming ``source``, ``what`` and the value.

    ``what`` says which name it is (``"trial_name"``, ``"job name"``…), ``source``
    where it came from (a file, a file and key, an option; None: the caller says).
    """
    if is_name(value):
        return value
    where = "" if source is None else f"{source}: "
    if not isinstance(value, str):
        raise error(f"{where}{what} must be text, got {type(value).__name__} {shown(value)}")
    if len(value) > MAX_NAME_LENGTH:
        raise error(
            f"{where}{what} {shown(value)} is {len(value)} characters long; at most {MAX_NAME_LENGTH} are allowed"
        )
    raise error(
        f"{where}{what} {shown(value)} is not a valid name: use {NAME_CHARACTERS}, starting with a letter or digit"
    )


def shown(value: object, *, limit: int = 40) -> str:
    """``value`` for a one-line message: ASCII-only ``repr``, cut after ``limit`` characters.

    Safe for any value a YAML file can produce: a container is described by
    its size instead of being converted to text (which a billion-laughs file
    makes exponentially long).
    """
    if isinstance(value, (list, tuple, dict, set)):
        return f"({type(value).__name__} of {len(value)} item(s))"
    if isinstance(value, str):
        text = ascii(value[: limit + 1])  # the cut happens before escaping: a huge string is never copied
    elif isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 4 * limit:
        return f"(an integer of about {int(value.bit_length() * 0.30103)} digits)"
    else:
        text = ascii(value)
    return text if len(text) <= limit else text[:limit] + "..."
