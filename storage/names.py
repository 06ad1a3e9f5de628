"""The one rule for user-given names (results, model sets, evaluations, runs, stages).

A name becomes a folder or object-key component, so it must never escape its parent: it starts
with a letter or digit, holds only letters, digits, ``.``, ``_`` and ``-``, and contains no ``..``.
"""

from __future__ import annotations

import re

from gexplain.storage.errors import InputError

NAME_RULE = "[A-Za-z0-9][A-Za-z0-9._-]*, without '..'"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def is_valid_name(value: str) -> bool:
    """Return True when ``value`` follows :data:`NAME_RULE`."""
    return bool(_NAME.fullmatch(value)) and ".." not in value


def validate_name(value: str, what: str = "name") -> str:
    """Return ``value`` unchanged when it is a safe name; raise :class:`InputError` otherwise.

    Parameters
    ----------
    value
        The user-given name.
    what
        Where it came from, for the message (an option such as ``--name`` or a config key).

    Raises
    ------
    InputError
        Naming ``what``, the value and the rule.
    """
    if not isinstance(value, str) or not is_valid_name(value):
        raise InputError(f"{what} {value!r} is not a valid name; use {NAME_RULE} (e.g. 'default', 'run-1')")
    return value
