"""Connecting to a dask.distributed cluster (the optional ``graphwia[fleet]`` extra).

dask is imported only here and only when a scheduler address is given. An address is checked
before dask tries it: a Client given a malformed one hangs on cleanup.
"""

from __future__ import annotations

from graphwia.errors import UsageError, first_line

#: How long to try reaching a dask scheduler before giving up.
CONNECT_TIMEOUT_S = 10


def connect(address: str, *, timeout_s: float = CONNECT_TIMEOUT_S):
    """A ``distributed.Client`` of the scheduler at ``address`` (``tcp://host:port``); a UsageError
    says why when dask is missing, the address is malformed or nothing answers."""
    try:
        from distributed import Client
    except ImportError:
        raise UsageError("--scheduler needs dask.distributed: pip install 'graphwia[fleet]'") from None
    check_address(address)
    try:
        return Client(address, timeout=f"{timeout_s}s", set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise UsageError(f"{address}: cannot connect to the dask scheduler ({first_line(exc)})") from None


def check_address(address: str) -> None:
    """Reject an address that is not like ``tcp://host:8786`` (or ``inproc://...``)."""
    from distributed.comm.addressing import parse_address, parse_host_port

    try:
        scheme, location = parse_address(address)
        if scheme != "inproc":
            parse_host_port(location)
    except ValueError as exc:
        raise UsageError(f"--scheduler {address}: not a scheduler address like tcp://host:8786 ({exc})") from None
