"""Data parallelism over a ``jax.sharding.Mesh`` (one host or many), with optional FSDP-style params.

The mesh has one axis, ``"data"``, over every visible device (all local GPUs on one machine;
every device of every process after :func:`maybe_initialize_distributed` on several).

* Batches are sharded along rows: ``NamedSharding(mesh, P("data"))``.
* Params, optimizer state, step and rng are replicated (``P()``); with ``fsdp=True`` every
  array of the train state with >= 2 dims and >= ``fsdp_min_size`` elements is instead
  split along its largest dimension that the device count divides (Adam's moments follow
  their params, since the rule only looks at shapes). XLA inserts the all-gathers and
  reduce-scatters; the step code is the same.
* The step is ``steps.jit_train_step`` (one compile per bucket shape, state donated): the
  :class:`Layout` rides along as a static field of the train state, the step pins its outputs
  to the layout with ``with_sharding_constraint``, so the next call sees the same shardings.

``batch_size`` is the *global* number of real examples per optimizer step. The padded batch
that goes to the devices is rounded up to a multiple of ``devices x grad_accum_steps`` with
weight-0 filler rows (:meth:`Layout.padded_rows`), so the same config trains the same way on
any device count; per device that is ``ceil(batch_size / devices)`` rows.

Multi-host: every process builds the same global batch (the batch plan is a pure function of
seed and epoch, and cheap), keeps only the rows its own devices hold (:meth:`Layout.local_rows`)
and hands them to ``jax.make_array_from_process_local_data``. On one host that is every row.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"
log = logging.getLogger(__name__)



def _int_env(*names: str) -> int | None:
    for name in names:
        if os.environ.get(name, "").strip():
            return int(os.environ[name])
    return None


def distributed_requested(environ=None) -> bool:
    """Whether the environment asks for a multi-process run (see :func:`maybe_initialize_distributed`)."""
    env = os.environ if environ is None else environ
    flag = env.get("JAXSENTI_DISTRIBUTED", "").strip().lower()
    if flag in ("0", "false", "no", "off"):
        return False
    if flag in ("1", "true", "yes", "on"):
        return True
    if env.get("JAXSENTI_COORDINATOR") or env.get("JAX_COORDINATOR_ADDRESS"):
        return True
    if "SLURM_JOB_ID" in env and int(env.get("SLURM_NTASKS", env.get("SLURM_NPROCS", "1")) or 1) > 1:
        return True
    if int(env.get("OMPI_COMM_WORLD_SIZE", "1") or 1) > 1:
        return True
    hosts = env.get("TPU_WORKER_HOSTNAMES") or env.get("TPU_PROCESS_ADDRESSES") or ""
    return len([h for h in hosts.split(",") if h.strip()]) > 1


def _why_distributed() -> str:
    names = ("JAXSENTI_DISTRIBUTED", "JAXSENTI_COORDINATOR", "JAX_COORDINATOR_ADDRESS", "SLURM_NTASKS",
             "OMPI_COMM_WORLD_SIZE", "TPU_WORKER_HOSTNAMES")
    return ", ".join(f"{n}={os.environ[n]}" for n in names if os.environ.get(n)) or "environment"


def maybe_initialize_distributed() -> bool:
    """Call ``jax.distributed.initialize()`` when launched as one process of a multi-process job.

    It runs when (checked in this order):

    * ``JAXSENTI_DISTRIBUTED=0`` - never (a plain single-process run even under SLURM/MPI);
      ``JAXSENTI_DISTRIBUTED=1`` - always, letting jax auto-detect the cluster (TPU pod slices,
      SLURM, Open MPI, Kubernetes);
    * ``JAXSENTI_COORDINATOR`` or ``JAX_COORDINATOR_ADDRESS`` (``host:port`` of process 0) is set,
      with ``JAXSENTI_NUM_PROCESSES``/``JAX_NUM_PROCESSES`` and ``JAXSENTI_PROCESS_ID``/``JAX_PROCESS_ID``
      (both optional where jax can detect them);
    * a SLURM job step with more than one task, an Open MPI job with more than one rank, or a
      TPU pod slice with more than one worker (``TPU_WORKER_HOSTNAMES``).

    On a plain single host nothing happens. It must run before anything touches a jax backend
    (``jax.devices()``, any computation); a second call is a no-op. Returns whether jax now runs
    distributed.
    """
    if jax.distributed.is_initialized():
        return True
    if not distributed_requested():
        return False
    coordinator = os.environ.get("JAXSENTI_COORDINATOR") or os.environ.get("JAX_COORDINATOR_ADDRESS") or None
    kwargs = {}
    if coordinator:
        kwargs["coordinator_address"] = coordinator
    if (n := _int_env("JAXSENTI_NUM_PROCESSES", "JAX_NUM_PROCESSES")) is not None:
        kwargs["num_processes"] = n
    if (i := _int_env("JAXSENTI_PROCESS_ID", "JAX_PROCESS_ID")) is not None:
        kwargs["process_id"] = i
    try:
        jax.distributed.initialize(**kwargs)
    except ValueError as e:  # nothing to connect to: no coordinator given and none detected (not SLURM, not a TPU pod)
        raise ValueError(f"a multi-process run was asked for ({_why_distributed()}) but jax could not set it up "
                         f"({str(e).splitlines()[0]}): set JAXSENTI_COORDINATOR=host:port, JAXSENTI_NUM_PROCESSES and "
                         "JAXSENTI_PROCESS_ID on every process (README, \"Scaling out\"), or JAXSENTI_DISTRIBUTED=0 for "
                         "a single-process run") from None
    except RuntimeError as e:
        raise RuntimeError(f"{e}\njaxsenti: call maybe_initialize_distributed() at the very start of the program, "
                           "before any jax call; or set JAXSENTI_DISTRIBUTED=0 for a single-process run") from e
    log.info("jax.distributed initialised: process %d of %d, %d local / %d global devices", jax.process_index(),
             jax.process_count(), jax.local_device_count(), jax.device_count())
    return True


def check_mesh_devices(num_devices: int | None) -> None:
    """``mesh_devices`` names devices that exist (checked before a run writes anything)."""
    visible = jax.device_count()
    if num_devices is not None and not 1 <= num_devices <= visible:
        raise ValueError(f"config field mesh_devices: {num_devices}, but {visible} device(s) are visible "
                         f"({jax.devices()[0].platform}); use --set mesh_devices=None for all of them")


def make_mesh(num_devices: int | None = None) -> Mesh:
    """A 1-D ``("data",)`` mesh over all devices (default) or the first ``num_devices`` of them."""
    check_mesh_devices(num_devices)
    devices = jax.devices()
    n = len(devices) if num_devices is None else int(num_devices)
    if n == len(devices):  # topology-aware order (contiguous per host, ICI/NVLink neighbours)
        return jax.make_mesh((n,), (DATA_AXIS,), axis_types=(AxisType.Auto,))
    if jax.process_count() > 1:
        raise ValueError("mesh_devices must cover every device in a multi-process run")
    return Mesh(np.asarray(devices[:n]), (DATA_AXIS,), axis_types=(AxisType.Auto,))


def _is_array(x) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype")


@dataclasses.dataclass(frozen=True)
class Layout:
    """How the train state and batches are placed on a mesh. Hashable: a static field of ``TrainState``."""

    mesh: Mesh
    fsdp: bool = False
    fsdp_min_size: int = 2**14  # smaller arrays stay replicated under fsdp (biases, LayerNorm, small heads)

    @classmethod
    def create(cls, num_devices: int | None = None, *, fsdp: bool = False, fsdp_min_size: int = 2**14) -> "Layout":
        return cls(make_mesh(num_devices), fsdp=fsdp, fsdp_min_size=fsdp_min_size)

    @property
    def num_devices(self) -> int:
        return self.mesh.devices.size

    @property
    def batch(self) -> NamedSharding:
        return NamedSharding(self.mesh, P(DATA_AXIS))

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, P())

    # --- train state -------------------------------------------------------------------------

    def spec_for(self, shape) -> P:
        n = self.num_devices
        if not self.fsdp or n == 1 or len(shape) < 2 or math.prod(shape) < self.fsdp_min_size:
            return P()
        axes = [a for a in range(len(shape)) if shape[a] % n == 0]
        if not axes:
            return P()
        a = max(axes, key=lambda i: shape[i])  # largest divisible dim; first on ties
        return P(*[DATA_AXIS if i == a else None for i in range(a + 1)])  # no trailing Nones: jit's canonical form

    def sharding_for(self, shape) -> NamedSharding:
        return NamedSharding(self.mesh, self.spec_for(shape))

    def place(self, tree):
        """Put a host-identical pytree (fresh params, restored numpy…) on the mesh with the layout's shardings."""
        def put(x):
            if not _is_array(x):
                return x
            s = self.sharding_for(x.shape)
            if jax.process_count() == 1:
                return jax.device_put(x, s)
            if isinstance(x, jax.Array) and not x.is_fully_addressable:
                return jax.jit(lambda y: y, out_shardings=s)(x)  # already global: reshard on device
            host = np.asarray(x)
            return jax.make_array_from_callback(host.shape, s, lambda idx: host[idx])

        return jax.tree.map(put, tree)

    def constrain(self, tree):
        """Inside jit: pin every array of a state-like pytree to its layout sharding."""
        return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, self.sharding_for(x.shape)), tree)

    def constrain_replicated(self, tree):
        return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, self.replicated), tree)

    def constrain_batch(self, batch, axis: int = 0):
        spec = P(*([None] * axis), DATA_AXIS)
        return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, NamedSharding(self.mesh, spec)), batch)

    # --- batches -----------------------------------------------------------------------------

    def padded_rows(self, rows: int, multiple: int = 1) -> int:
        """``rows`` rounded up to a multiple of ``devices x multiple`` (the shape that goes to the devices)."""
        m = self.num_devices * multiple
        return -(-rows // m) * m

    def local_rows(self, rows: int) -> slice:
        """The rows of a ``rows``-row global batch that this process's devices hold (all rows on one host)."""
        idx = self.batch.addressable_devices_indices_map((rows,)).values()
        starts = [s[0].start or 0 for s in idx]
        stops = [rows if s[0].stop is None else s[0].stop for s in idx]
        lo, hi = min(starts), max(stops)
        if hi - lo != sum(b - a for a, b in zip(starts, stops)):
            raise ValueError("this process's devices do not hold a contiguous block of the batch")
        return slice(lo, hi)

    def put_batch(self, batch: dict[str, np.ndarray], multiple: int = 1) -> dict[str, jax.Array]:
        """Pad a global host batch with weight-0 rows to ``padded_rows`` and shard it along rows.

        Filler rows are all zeros: token 0 (pad), length 0, label 0, weight 0.
        """
        rows = len(next(iter(batch.values())))
        target = self.padded_rows(rows, multiple)
        local = self.local_rows(target)
        out = {}
        for k, v in batch.items():
            v = np.asarray(v)
            if target != rows:
                v = np.concatenate([v, np.zeros((target - rows,) + v.shape[1:], v.dtype)])
            out[k] = jax.make_array_from_process_local_data(self.batch, v[local], v.shape)
        return out


def fetch(tree):
    """Device → host numpy for a pytree of metric scalars / replicated arrays, on one host or many.

    Replicated arrays are read from a local copy; an array sharded over other processes is
    all-gathered first (``multihost_utils.process_allgather``).
    """
    def get(x):
        if not isinstance(x, jax.Array):
            return np.asarray(x)
        if x.is_fully_addressable:
            return np.asarray(jax.device_get(x))
        if x.sharding.is_fully_replicated:
            return np.asarray(x.addressable_data(0))
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))

    return jax.tree.map(get, tree)


def is_primary() -> bool:
    return jax.process_index() == 0


def sync(name: str) -> None:
    """A barrier across processes (no-op on one)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)
