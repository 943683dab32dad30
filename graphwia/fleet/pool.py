"""Local worker processes that fail one task at a time.

:func:`run_isolated` runs ``function(*task)`` for every task on a few worker
processes, handing each worker one task at a time, so it always knows which
task a worker is running. When a worker dies (killed by the out-of-memory
killer, a crash in native code) only the task it was running fails; when a
task runs longer than ``timeout`` seconds (a hung or stopped worker) its
worker is killed and only that task fails. The worker is replaced and the
other tasks go on. Workers ignore Ctrl-C (the parent decides) and end as soon
as the parent process ends, however it ends: each holds the read end of a pipe
only the parent writes to, and exits when that pipe closes.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing import get_context
from multiprocessing.connection import wait
from typing import Any

from graphwia.errors import GraphwiaError, first_line

__all__ = ["Failure", "run_isolated"]

#: Worker starts in a row without a task finished before the pool gives up (a worker that cannot start).
MAX_FAILED_STARTS = 3
#: Seconds to wait for a worker to end after it was asked to.
STOP_WAIT_S = 5.0


@dataclass(frozen=True)
class Failure:
    """A task that returned nothing: ``reason`` says why (its worker died, or it ran out of time)."""

    reason: str


@dataclass
class _Worker:
    process: Any
    conn: Any  # the parent's end of the task pipe
    lifeline: Any  # the parent's (write) end of the lifeline pipe: closed when the parent ends
    ready: bool = False
    task: int | None = None
    since: float = 0.0


def run_isolated(
    function: Callable,
    tasks: Sequence[tuple],
    *,
    workers: int,
    timeout: float | None = None,
    warm_up: Sequence[str] = (),
    on_start: Callable[[int, int], None] | None = None,
) -> Iterator[tuple[int, Any]]:
    """Run ``function(*tasks[i])`` on ``workers`` processes; yield ``(i, result)`` as each task ends.

    ``result`` is what the function returned, or a :class:`Failure` when the
    task's worker died or the task ran longer than ``timeout`` seconds (None:
    no limit). ``function`` must be importable by name (a module-level
    function); ``warm_up`` names modules each worker imports before it takes
    a task, so the time limit does not count imports. ``on_start(i, pid)`` is
    called when task ``i`` is handed to the worker with process id ``pid``.
    Every worker has ended when the iteration ends, normally or not.
    """
    context = get_context("spawn")  # not fork: the caller may have threads (a progress bar) fork would copy mid-state
    queue = deque(range(len(tasks)))
    pool: list[_Worker] = []
    failed_starts = 0

    def start() -> None:
        if failed_starts >= MAX_FAILED_STARTS:
            raise GraphwiaError(f"worker processes end before they take a task ({failed_starts} in a row)")
        parent, child = context.Pipe()
        line_read, line_write = context.Pipe(duplex=False)
        process = context.Process(
            target=_worker_main, args=(child, line_read, function, tuple(warm_up)), daemon=True, name="graphwia-worker"
        )
        process.start()
        child.close()
        line_read.close()
        pool.append(_Worker(process, parent, line_write))

    try:
        for _ in range(min(workers, len(tasks))):
            start()
        while queue or any(w.task is not None for w in pool):
            for worker in pool:  # hand out work
                if queue and worker.ready and worker.task is None:
                    worker.task, worker.since = queue.popleft(), time.monotonic()
                    try:
                        worker.conn.send((worker.task, tasks[worker.task]))
                    except OSError:
                        pass  # it died: the next look finds out and fails the task
                    if on_start is not None:
                        on_start(worker.task, worker.process.pid)
            deadlines = [w.since + timeout - time.monotonic() for w in pool if w.task is not None and timeout]
            wait(
                [w.conn for w in pool] + [w.process.sentinel for w in pool],
                timeout=max(0.0, min(deadlines)) if deadlines else None,
            )
            for worker in list(pool):
                event = _look(worker, timeout)
                if event is None:
                    continue
                index, result, gone = event
                if index is not None:
                    failed_starts = 0
                    yield index, result
                if gone:
                    failed_starts += index is None
                    _retire(worker, pool)
                    if queue and len(pool) < workers:
                        start()
    finally:
        idle = [w for w in pool if w.ready and w.task is None]  # the others are killed: starting, or cut short
        for worker in idle:
            try:
                worker.conn.send(None)  # no more tasks: end cleanly
            except OSError:
                pass
        deadline = time.monotonic() + STOP_WAIT_S
        for worker in idle:
            worker.process.join(max(0.0, deadline - time.monotonic()))
        for worker in list(pool):
            _retire(worker, pool)


def _look(worker: _Worker, timeout: float | None) -> tuple[int | None, Any, bool] | None:
    """What happened to ``worker``: None (nothing to report), or (task or None, result or Failure, gone).

    ``gone``: the worker died or must be stopped (its task, if any, failed).
    """
    if worker.conn.poll():
        try:
            message = worker.conn.recv()
        except (EOFError, OSError):
            message = None
        if message == "ready":
            worker.ready = True
            return None
        if message is not None:
            index, result = message
            worker.task = None
            return index, result, False
    if not worker.process.is_alive():
        if worker.task is None:
            return None, None, True
        return worker.task, Failure(f"its worker process {_death(worker.process.exitcode)} while running it"), True
    if worker.task is not None and timeout and time.monotonic() - worker.since > timeout:
        return worker.task, Failure(f"timed out after {timeout:g} s (its worker process was stopped)"), True
    return None


def _retire(worker: _Worker, pool: list[_Worker]) -> None:
    """End ``worker`` (SIGKILL if it still runs: that also ends a stopped process) and drop it from ``pool``."""
    pool.remove(worker)
    if worker.process.is_alive():
        worker.process.kill()
    worker.process.join()
    worker.conn.close()
    worker.lifeline.close()


def _death(exitcode: int | None) -> str:
    """How a worker process ended, in words."""
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = " (out of memory?)" if -exitcode == signal.SIGKILL else ""
        return f"was killed by {name}{hint}"
    return f"exited with code {exitcode}"


def _worker_main(conn, lifeline, function: Callable, warm_up: tuple[str, ...]) -> None:
    """A worker: run each ``(index, args)`` received on ``conn``, send back ``(index, result)``; None ends it."""
    import importlib

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent decides
    threading.Thread(target=_exit_with_parent, args=(lifeline,), daemon=True, name="lifeline").start()
    for module in warm_up:
        importlib.import_module(module)
    conn.send("ready")
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        index, args = task
        try:
            result = function(*args)
        except Exception as exc:  # the function should not raise; if it does, only its task fails
            result = Failure(f"unexpected {type(exc).__name__}: {first_line(exc)}")
        conn.send((index, result))


def _exit_with_parent(lifeline) -> None:
    """Block until the parent's end of ``lifeline`` closes (the parent ended), then end this process at once."""
    try:
        lifeline.recv_bytes()
    except (EOFError, OSError):
        pass
    os._exit(1)
