"""Small helpers shared by the client's context managers."""

from __future__ import annotations

from typing import NoReturn

import trio

__all__ = ["raise_collapsed"]


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


def raise_collapsed(group: BaseExceptionGroup[BaseException]) -> NoReturn:
    """Re-raise a nursery's exception group as the one real exception inside it.

    A context manager that owns a nursery would otherwise turn a caller's own
    ``ValueError`` (or our ``ConnectionClosedError``) into an
    ``ExceptionGroup``, and ``except ValueError`` around the ``async with``
    would stop working.  ``Cancelled`` leaves are noise from the same failure
    and are dropped; with more than one real error the group is kept, since
    picking one would hide the others.
    """
    real = [leaf for leaf in _leaves(group) if not isinstance(leaf, trio.Cancelled)]
    if len(real) != 1:
        raise group
    error = real[0]
    # Raising inside the handler would chain the group as the error's context
    # and print every traceback twice; keep the context it had.
    context = error.__context__
    try:
        raise error
    finally:
        error.__context__ = context
