"""Where the work runs: the method apart from the engine that runs it.

An engine maps a module-level function over tuples of picklable arguments and yields
each result with its index as it finishes:

    for i, part in engine.map(render_batch, items, common=(source, layer, settings)):
        save(i, part)

calls `render_batch(*common, *items[i])` for each i. `common` travels once; each item is
one unit of work (a batch of icons). Results are numpy arrays, or tuples of them, and
come back to the driver, which writes them into the cache: workers need no shared disk.

LocalEngine runs each call in this process, in order, and needs nothing but torch.
RayEngine runs each as a Ray task on any node of a cluster (`pip install
"activation-atlas[ray]"`): one GPU a task where the cluster has GPUs, else CPUs; a task
whose worker process died is run again (`max_retries`). A model crosses to workers as a
ModelSource, what load_model needs to make it again, and is loaded once per worker
process (`load_model_cached`), never pickled.
"""

from __future__ import annotations

import logging
import socket
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from .errors import AtlasError

INSTALL_RAY = 'pip install "activation-atlas[ray]"'
ENGINES = ("local", "ray")


@dataclass(frozen=True)
class ModelSource:
    """A model by what makes it: load_model's arguments, as paths every node can read."""

    spec: str
    checkpoint: str = ""
    labels: str = ""
    weights_id: str = ""  # the driver's LoadedModel.weights_id; a worker that loads other weights fails

    @classmethod
    def of(cls, model, checkpoint: str = "", labels: str = "") -> "ModelSource":
        """The source of a loaded `model`, its files by absolute path: workers run in other folders."""
        path, sep, factory = model.spec.rpartition(":")
        spec = f"{Path(path).resolve()}:{factory}" if sep and path.endswith(".py") else model.spec
        return cls(spec, checkpoint and str(Path(checkpoint).resolve()), labels and str(Path(labels).resolve()),
                   model.weights_id)


# One model per process: a worker runs one build's work at a time.
_MODELS: dict[ModelSource, Any] = {}


def load_model_cached(source: ModelSource):
    """The LoadedModel for `source`, loaded on the first call in this process."""
    model = _MODELS.get(source)
    if model is None:
        from .models import load_model

        model = load_model(source.spec, source.checkpoint, source.labels)
        if source.weights_id and model.weights_id != source.weights_id:
            raise AtlasError(f"model {source.spec} loads other weights on {socket.gethostname()} than where the "
                             "build started: give every node the same model file and checkpoint")
        _MODELS.clear()
        _MODELS[source] = model
    return model


@contextmanager
def remembered(source: ModelSource, model) -> Iterator[None]:
    """Within, work that runs in this process uses the driver's own `model` for `source`."""
    _MODELS.clear()
    _MODELS[source] = model
    try:
        yield
    finally:
        _MODELS.pop(source, None)


class Engine:
    """Runs fn(*common, *item) for each item; `map` yields (index, result) as each finishes."""

    name = "local"

    def map(self, fn: Callable, items: Iterable[tuple], common: tuple = ()) -> Iterator[tuple[int, Any]]:
        raise NotImplementedError

    def describe(self) -> str:
        return "this process"

    def close(self) -> None:
        pass

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class LocalEngine(Engine):
    """Every call in this process, in order: the default, and the reference the others must equal."""

    def map(self, fn, items, common=()):
        for i, item in enumerate(items):
            yield i, fn(*common, *item)


def _call(fn: Callable, threads: int, *args):
    """A task's body on a Ray worker: torch with the driver's thread count, then the work.

    Ray sets OMP_NUM_THREADS to a task's CPU count, and torch's CPU reductions can split
    their sums by thread count: with the driver's count, a CPU worker gives the local
    engine's results bit for bit.
    """
    if threads:
        import torch

        torch.set_num_threads(threads)
    return fn(*args)


def _owned(value):
    """Results as arrays of their own: Ray's zero-copy arrays would pin the object store's memory."""
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, (tuple, list)):
        return type(value)(_owned(v) for v in value)
    return value


def _import_ray():
    try:
        import ray
    except ImportError:
        raise AtlasError(f"the ray engine needs Ray: {INSTALL_RAY}") from None
    return ray


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds, not minutes: ray.init retries an unreachable address for a long time."""
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise AtlasError(f"ray address {address!r}: give auto, or the head node's host:port (e.g. 10.0.0.5:6379)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise AtlasError(f"cannot reach a Ray cluster at {address} ({reason}): start one with `ray start --head` "
                         "and give its address, or use --ray-address auto on a node of the cluster") from None


def _connect(ray, address: str) -> None:
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
    if not address:
        ray.init(address="local", include_dashboard=False, **quiet)  # "local": never join a cluster by accident
        return
    if address != "auto":
        _check_reachable(address)
    try:
        ray.init(address=address, **quiet)
    except (ConnectionError, ValueError) as exc:
        first = str(exc).split(". ")[0].strip()
        raise AtlasError(f"cannot join a Ray cluster at {address}: {first}; start one with `ray start --head`, "
                         "or give the head node's host:port") from None


class RayEngine(Engine):
    """Each call a Ray task, anywhere on the cluster at `address` ("": a Ray instance on this machine).

    Joins a Ray session already open in this process, else opens one and closes it at
    `close()`. `threads`: torch's CPU threads in each task (0: this process's count).
    At most two tasks per slot are in flight, so the object store holds little at once.
    """

    name = "ray"

    def __init__(self, address: str = "", threads: int = 0, max_retries: int = 3):
        import torch

        ray = self._ray = _import_ray()
        self._owned = not ray.is_initialized()
        if self._owned:
            _connect(ray, address)
        resources = ray.cluster_resources()
        self.gpus, self.cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 0))
        self.nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
        if self.gpus:
            # On a GPU the CPU threads matter little, and bit-identity is a CPU promise.
            options, self.slots, self.threads = {"num_gpus": 1, "num_cpus": 1}, self.gpus, 0
        else:
            self.threads = threads or torch.get_num_threads()
            largest = max((int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")), default=1)
            per_task = max(1, min(self.threads, largest))
            options, self.slots = {"num_cpus": per_task}, max(1, self.cpus // per_task)
        self._task = ray.remote(_call).options(max_retries=max_retries, retry_exceptions=False, **options)
        self.max_retries = max_retries

    def describe(self) -> str:
        return (f"Ray, {self.nodes} node{'s' * (self.nodes != 1)}, {self.cpus} CPUs, {self.gpus} GPUs; "
                f"{self.slots} task{'s' * (self.slots != 1)} at once")

    def map(self, fn, items, common=()):
        ray = self._ray
        shared = [ray.put(x) for x in common]  # refs as arguments: each task gets the values
        todo = iter(enumerate(items))
        pending: dict = {}

        def submit() -> None:
            while len(pending) < 2 * self.slots:
                nxt = next(todo, None)
                if nxt is None:
                    return
                pending[self._task.remote(fn, self.threads, *shared, *nxt[1])] = nxt[0]

        try:
            submit()
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                index = pending.pop(ready[0])
                result = self._get(ready[0], fn, index)
                submit()
                yield index, result
        finally:
            for ref in pending:
                ray.cancel(ref)

    def _get(self, ref, fn: Callable, index: int):
        ray = self._ray
        try:
            return _owned(ray.get(ref))
        except ray.exceptions.RayTaskError as exc:
            if isinstance(exc.cause, AtlasError):
                raise AtlasError(str(exc.cause)) from None
            raise  # a bug: keep the worker's traceback
        except ray.exceptions.RayError as exc:
            brief = " ".join(str(exc).split())[:200]
            raise AtlasError(f"Ray lost {fn.__name__} #{index} after {self.max_retries} retries ({type(exc).__name__}: "
                             f"{brief}); see `ray status` and the worker logs on the cluster") from None

    def close(self) -> None:
        if self._owned and self._ray.is_initialized():
            self._ray.shutdown()
        self._owned = False


def open_engine(name: str = "local", address: str = "") -> Engine:
    """The engine called `name` ("local" or "ray"); `address` is Ray's (see RayEngine)."""
    if name == "local":
        if address:
            raise AtlasError(f"ray_address is {address!r} but the engine is local: add --engine ray "
                             "(engine = \"ray\" in atlas.toml), or leave the address out")
        return LocalEngine()
    if name == "ray":
        return RayEngine(address)
    raise AtlasError(f"unknown engine {name!r}: use {' or '.join(ENGINES)}")
