"""Where the out-of-core steps run: ``local`` (this process, one step after another) or ``ray`` (Ray tasks).

``ray`` connects to ``RAY_ADDRESS`` when it is set, else starts a local instance. A task's PrepareError comes
back as the same one-line error; a lost worker is retried by Ray (tasks are idempotent: each writes its own
files under the run's work directory) and, when the retries run out, fails the run with one line, before the
run directory is swapped in.
"""
from __future__ import annotations

import contextlib
import os

from tqdm import tqdm

from data_prep.errors import PrepareError, one_line

ENGINES = ("local", "ray")


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
        remote = self.ray.remote(max_retries=3)(fn)
        refs = [remote.remote(*args) for args in calls]
        results = []
        with tqdm(total=len(refs), desc=desc, unit="task", disable=None, mininterval=2.0) as bar:
            for ref in refs:
                results.append(self._get(ref))
                bar.update(1)
        return results

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
