"""Where a study's cells run: one ``concurrent.futures.Executor`` interface for serial, local-process
and Dask execution, with results merged in a fixed order (so every output is byte-identical
whatever runs it).

A *cell* is one independent, seeded unit of a sweep (sampler x grid x target x seed): a picklable
module-level function and its arguments. :func:`map_cells` submits the cells to the executor of
the current run and returns their results in submission order; a cell that raises is reported
by its description (:class:`CellError`: ``cell '<desc>' failed: ...``) and nothing of the run is
written (the outputs are written after the cells, atomically — experiments.io).

Executors (chosen by ``samplerlab reproduce --jobs N`` / ``--dask ADDRESS``, or
:func:`cell_executor` in code):

* serial (default, ``jobs=1``): each cell runs inline at ``submit``;
* ``jobs=N > 1``: a ``ProcessPoolExecutor`` of N spawned workers, each with the parent's torch
  thread count (the same thread count gives the same floating-point reductions, hence identical
  numbers);
* ``dask=ADDRESS``: the executor of a ``dask.distributed.Client`` connected to that scheduler
  (optional dependency: ``pip install 'samplerlab[dask]'``); the workers must have samplerlab
  installed.
"""
from __future__ import annotations

import concurrent.futures as cf
import contextlib
import contextvars
import multiprocessing
import numbers
from typing import Any, Callable, Iterable, List, Optional, Sequence, Tuple

import torch

__all__ = ["CellError", "SerialExecutor", "cell_executor", "current_executor", "map_calls",
           "map_cells", "parallel_safe", "use_executor"]

_CURRENT: contextvars.ContextVar = contextvars.ContextVar("samplerlab_cell_executor", default=None)


class CellError(RuntimeError):
    """A cell of a sweep raised; the message names the cell and the original error."""


class SerialExecutor(cf.Executor):
    """Runs every submitted call inline; its futures are already done."""

    def submit(self, fn, /, *args, **kwargs):
        fut = cf.Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller through the future
            fut.set_exception(exc)
        return fut


def _worker_init(threads: int) -> None:
    torch.set_num_threads(threads)
    import samplerlab.solvers  # noqa: F401  (registers the built-in samplers)


def _check_jobs(jobs) -> int:
    if isinstance(jobs, bool) or not isinstance(jobs, numbers.Integral):
        raise TypeError(f"jobs must be an integer >= 1, got {type(jobs).__name__}")
    if jobs < 1:
        raise ValueError(f"jobs must be an integer >= 1, got {jobs}")
    return int(jobs)


@contextlib.contextmanager
def cell_executor(jobs: int = 1, dask: Optional[str] = None, *, timeout: float = 10.0):
    """An executor for the cells of a run (context manager; shut down on exit).

    ``jobs``: number of local worker processes (1: serial). ``dask``: address of a running Dask
    scheduler (``tcp://host:port``); then ``jobs`` must be 1. An unreachable address raises
    ``ValueError`` naming it within ``timeout`` seconds.
    """
    jobs = _check_jobs(jobs)
    if dask is not None:
        if not isinstance(dask, str) or not dask:
            raise TypeError(f"dask must be a scheduler address string, got {dask!r}")
        if jobs != 1:
            raise ValueError("use either jobs > 1 (local processes) or dask=ADDRESS, not both")
        try:
            from dask.distributed import Client
        except ImportError:
            raise ValueError("dask=ADDRESS needs dask.distributed: pip install "
                             "'samplerlab[dask]'") from None
        try:
            client = Client(dask, timeout=timeout)
        except (OSError, TimeoutError) as exc:
            raise ValueError(f"cannot reach the Dask scheduler at dask={dask!r}: {exc}") from None
        try:
            yield client.get_executor()
        finally:
            client.close()
        return
    if jobs == 1:
        yield SerialExecutor()
        return
    ex = cf.ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                                initializer=_worker_init, initargs=(torch.get_num_threads(),))
    try:
        yield ex
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


def current_executor() -> cf.Executor:
    """The executor of the current run (serial unless :func:`use_executor` set one)."""
    ex = _CURRENT.get()
    return ex if ex is not None else SerialExecutor()


@contextlib.contextmanager
def use_executor(executor: cf.Executor):
    """Run the enclosed code's cells (:func:`map_cells`) on ``executor``."""
    if not isinstance(executor, cf.Executor):
        raise TypeError(f"executor must be a concurrent.futures.Executor, got "
                        f"{type(executor).__name__}")
    token = _CURRENT.set(executor)
    try:
        yield executor
    finally:
        _CURRENT.reset(token)


def map_cells(fn: Callable, cells: Sequence[Tuple[str, tuple]],
              executor: Optional[cf.Executor] = None) -> List[Any]:
    """``[fn(*args) for desc, args in cells]`` on ``executor`` (default: the current one), in
    order. ``fn`` must be a picklable module-level function for process/Dask executors."""
    return map_calls([(desc, fn, tuple(args)) for desc, args in cells], executor)


def map_calls(calls: Sequence[tuple], executor: Optional[cf.Executor] = None) -> List[Any]:
    """``[fn(*args, **kwargs) for desc, fn, args[, kwargs] in calls]`` on ``executor`` (default:
    the current one), results in the order of ``calls``.

    :func:`map_cells` for cells of different kinds: the independent parts of a study (say, one
    cell per grid size and one per target) are submitted together, so every worker stays busy.
    Each call is ``(description, function, args)`` or ``(description, function, args, kwargs)``;
    for process/Dask executors the function and its arguments must be picklable (module-level
    functions, ``functools.partial`` of them). All calls are submitted before the first result
    is awaited (inline executors run them one by one and stop at the first failure); the first
    failing call, in order, raises :class:`CellError` naming it, and calls not yet started are
    cancelled.
    """
    ex = executor if executor is not None else current_executor()
    parsed = []
    for item in calls:
        ok = (isinstance(item, tuple) and len(item) in (3, 4) and isinstance(item[0], str)
              and callable(item[1]) and isinstance(item[2], tuple)
              and (len(item) == 3 or isinstance(item[3], dict)))
        if not ok:
            raise TypeError("calls must be (description, function, args tuple[, kwargs dict]), "
                            f"got {item!r:.80}")
        parsed.append((item[0], item[1], item[2], item[3] if len(item) == 4 else {}))
    futures = []
    for _, fn, args, kwargs in parsed:
        futures.append(ex.submit(fn, *args, **kwargs))
        if isinstance(ex, SerialExecutor) and futures[-1].exception() is not None:
            break  # inline: the calls after a failure are not run
    results = []
    for (desc, _, _, _), fut in zip(parsed, futures):
        try:
            results.append(fut.result())
        except Exception as exc:
            for other in futures:
                other.cancel()
            raise CellError(f"cell {desc!r} failed: {type(exc).__name__}: {exc}") from exc
    return results


def parallel_safe(items: Iterable[Any]) -> bool:
    """Whether cells naming these samplers can leave this process: only registered names (which
    every worker registers on import) can; user objects stay serial."""
    return all(isinstance(i, str) for i in items)
