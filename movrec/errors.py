"""Errors that are the user's to fix: a bad option, file, column or value.

The entry points (``train.py``, the ``movrec`` command) print them as one line,
``movrec: error: ...``, and exit with code 2; anything else is a bug and keeps its traceback.
Both subclass the built-in type a caller would expect (``ValueError``, ``FileNotFoundError``).
"""

from __future__ import annotations

USER_ERROR_EXIT_CODE = 2


class UserError(ValueError):
    """Bad input or configuration; the message says which option, file or column."""


class MissingFileError(UserError, FileNotFoundError):
    """A file the run needs is not there; the message says what to download and where."""


def find_user_error(error: BaseException) -> UserError | None:
    """The user error behind ``error``: itself, or the cause it wraps (Hydra's
    ``instantiate`` wraps what a constructor raises)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, UserError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None
