"""Executors: where chunks of work run -- here, in local processes, or on a Dask cluster.

:func:`make_executor` gives a ``concurrent.futures.Executor`` for each: ``jobs=1`` runs each call
at once in this process; ``jobs=N`` is a ``ProcessPoolExecutor`` of N spawned processes (each with
an address-space limit, so that a mutated length field cannot take the machine's memory);
``cluster`` (an address such as ``tcp://HOST:8786`` or a ``distributed.Client``) is Dask
distributed's own ``Client.get_executor()``.  Used by ``nfpjit fuzz`` and ``nfpjit stats``.
"""

from __future__ import annotations

import concurrent.futures as cf

from nfpjit.errors import UsageError

__all__ = ["make_executor", "limit_memory"]


class _InlineExecutor(cf.Executor):
    """Runs each submitted call at once, here (``jobs=1``): the same interface as the pools."""

    def submit(self, fn, /, *args, **kwargs):
        future: cf.Future = cf.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller through the future
            future.set_exception(exc)
        return future


def limit_memory(megabytes: int) -> None:
    """Limit this process's address space to ``megabytes`` (0: no limit); a worker initializer."""
    if megabytes > 0:
        import resource

        limit = megabytes * 1024 * 1024
        try:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        except (ValueError, OSError):
            pass


def _dask_client(cluster):
    try:
        from distributed import Client
    except ImportError:
        raise UsageError("--cluster needs Dask distributed, which is not installed",
                         hint="pip install 'nfpjit[dask]'") from None
    if isinstance(cluster, Client):
        return cluster, False
    try:
        return Client(cluster, timeout=10), True
    except (OSError, TimeoutError) as exc:
        raise UsageError(f"cannot reach the Dask scheduler at {cluster}: {exc}",
                         hint="start one with `dask scheduler` and workers with `dask worker ADDRESS`") from None


def make_executor(jobs: int = 1, cluster=None, memory_mb: int = 0):
    """``(executor, workers, description, close)`` for ``jobs`` local processes or a Dask cluster."""
    if cluster is not None:
        client, owned = _dask_client(cluster)
        workers = max(1, sum(client.nthreads().values()))

        def close():
            if owned:
                client.close()

        return client.get_executor(pure=False), workers, f"dask {client.scheduler.address} ({workers} threads)", close
    if jobs < 1:
        raise UsageError(f"--jobs {jobs}: give at least 1")
    if jobs == 1:
        return _InlineExecutor(), 1, "1 process (this one)", lambda: None
    import multiprocessing

    pool = cf.ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                                  initializer=limit_memory, initargs=(memory_mb,))
    return pool, jobs, f"{jobs} local processes", lambda: pool.shutdown(cancel_futures=True)
