"""Reaching a dask.distributed cluster (the optional ``graphwia[fleet]`` extra).

:func:`connect` is the one way graphwia reaches a dask scheduler: the fleet,
the engine's cluster evaluation and the Kineto importer use it. dask is
imported only here and only when an address is given. An address is checked
before dask tries it: a Client given a malformed one hangs on cleanup.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from graphwia.errors import ArgumentError, UsageError, first_line

if TYPE_CHECKING:  # pragma: no cover
    from distributed import Client

__all__ = ["CONNECT_TIMEOUT_S", "INSTALL_HINT", "check_address", "connect"]

#: How long to try reaching a dask scheduler before giving up.
CONNECT_TIMEOUT_S = 10
INSTALL_HINT = "pip install 'graphwia[fleet]'"


def connect(address: str, *, timeout_s: float = CONNECT_TIMEOUT_S) -> Client:
    """A ``distributed.Client`` of the scheduler at ``address`` (``tcp://host:port``).

    Raises :class:`~graphwia.errors.UsageError` when dask is missing, the address is
    malformed (:class:`~graphwia.errors.ArgumentError` of ``scheduler``) or nothing answers.
    """
    check_address(address)
    from distributed import Client

    try:
        return Client(address, timeout=f"{timeout_s}s", set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise UsageError(f"{address}: cannot connect to the dask scheduler ({first_line(exc)})") from None


def check_address(address: str) -> None:
    """Reject a malformed scheduler address (not like ``tcp://host:8786`` or ``inproc://…``) before dask tries it."""
    try:
        from distributed.comm.addressing import parse_address, parse_host_port
    except ImportError:
        raise UsageError(f"a dask scheduler needs dask.distributed: {INSTALL_HINT}") from None
    try:
        scheme, location = parse_address(address)
        if scheme != "inproc":
            parse_host_port(location)
    except ValueError as exc:
        raise ArgumentError("scheduler", address, f"not a scheduler address like tcp://host:8786 ({exc})") from None
