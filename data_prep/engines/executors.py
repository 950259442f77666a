"""Where the out-of-core steps run: ``local`` (this process, one step after another) or ``ray`` (Ray tasks).

``ray`` connects to ``RAY_ADDRESS`` when it is set, else starts a local instance with ``RAY_NUM_CPUS`` CPUs
(default: all). A task's PrepareError comes back as the same one-line error; a lost worker (a killed process,
a lost node) is retried by Ray up to MAX_RETRIES times (tasks are idempotent: each writes its own files under
the run's work directory) and, when the retries run out, or when a task raises, fails the run with one line.
The step's other tasks are cancelled and waited for before the error leaves :meth:`RayEngine.map`, so none
writes into the staged run directory after it is removed; the earlier run stays.
"""
from __future__ import annotations

import contextlib
import os

from tqdm import tqdm

from data_prep.errors import PrepareError, one_line

ENGINES = ("local", "ray")
MAX_RETRIES = 3          # Ray reruns a task whose worker died this many times


class LocalEngine:
    name = "local"

    def put(self, value):
        return value

    def map(self, fn, calls: list[tuple], desc: str) -> list:
        return [fn(*args) for args in tqdm(calls, desc=desc, unit="task", disable=None, mininterval=2.0)]


class RayEngine:
    name = "ray"

    def __init__(self, ray):
        self.ray = ray

    def put(self, value):
        return self.ray.put(value)

    def map(self, fn, calls: list[tuple], desc: str) -> list:
        remote = self.ray.remote(max_retries=MAX_RETRIES)(fn)
        refs = [remote.remote(*args) for args in calls]
        results = []
        try:
            with tqdm(total=len(refs), desc=desc, unit="task", disable=None, mininterval=2.0) as bar:
                for ref in refs:
                    results.append(self._get(ref))
                    bar.update(1)
        except BaseException:
            self._stop(refs)
            raise
        return results

    def _stop(self, refs) -> None:
        """Cancel the tasks (killing their workers) and wait until none runs."""
        for ref in refs:
            with contextlib.suppress(Exception):
                self.ray.cancel(ref, force=True)
        with contextlib.suppress(Exception):
            self.ray.wait(refs, num_returns=len(refs), timeout=120)

    def _get(self, ref):
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as err:
            cause = getattr(err, "cause", None)
            if isinstance(cause, PrepareError):
                raise PrepareError(str(cause)) from None
            raise PrepareError(f"ray task failed: {one_line(cause or err)}") from None
        except self.ray.exceptions.RayError as err:
            raise PrepareError(f"ray: a worker or its result was lost ({one_line(err)[:200]}); the run "
                               f"directory is unchanged, rerun prepare") from None


@contextlib.contextmanager
def start(name: str):
    """The engine `name`, started for the duration of the block (ray: shut down again when this call
    started it)."""
    if name not in ENGINES:
        raise PrepareError(f"engine must be one of {', '.join(ENGINES)}, got '{name}'")
    if name == "local":
        yield LocalEngine()
        return
    try:
        import ray
    except ImportError:
        raise PrepareError("ENGINE=ray needs the ray package (pip install -r requirements.txt)") from None
    started = not ray.is_initialized()
    if started:
        address = os.environ.get("RAY_ADDRESS") or None
        try:
            ray.init(address=address, log_to_driver=False, include_dashboard=False,
                     **({} if address else {"num_cpus": int(os.environ.get("RAY_NUM_CPUS", os.cpu_count() or 1))}))
        except Exception as exc:  # ray raises ConnectionError, RuntimeError, ValueError for a bad address
            raise PrepareError(f"ray: cannot start or reach the cluster at {address or 'a local instance'} "
                               f"({one_line(exc)[:200]})") from None
    try:
        yield RayEngine(ray)
    finally:
        if started:
            ray.shutdown()
