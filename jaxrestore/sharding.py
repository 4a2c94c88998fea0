"""Data parallelism over a `'data'` mesh: one or many devices, one or many processes.

The batch axis of every array is split over a one-axis mesh named `'data'` with
`NamedSharding(mesh, P('data'))` (the modern form of `pmap`, STYLE.md "Many devices"), and a
batched function runs on each device's rows by `per_device` (`jax.jit` of `jax.shard_map`:
plain `jax.jit` would gather the batch before every FFT). With several processes each one
holds its own share of the clips: it builds its local rows, `global_batch` joins them into one
global array (`jax.make_array_from_process_local_data`), and `local_rows` gives each process
back its own rows of a result. The helpers are no-ops or cheap with a single process, so the
same code runs on a laptop, on a multi-GPU host and on a cluster.

    mesh = data_mesh()                                   # every device of every process
    x = global_batch(local_x, mesh)                      # [B_local, T] -> [B_global, T]
    y = per_device(jax.vmap(f), mesh, P('data'), P('data'))(x)   # each device its own rows
    mine = local_rows(y, mesh)                           # [B_local, T] again, as NumPy
"""

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

AXIS = "data"


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
    """Joins a multi-process JAX run (`jax.distributed.initialize`) before any device is used.

    With no arguments JAX detects the cluster (Cloud TPU, SLURM, …); on a plain machine pass
    all three, e.g. `("127.0.0.1:12345", 2, 0)` and `(…, 2, 1)` for two local processes.
    """
    given = [v is not None for v in (coordinator_address, num_processes, process_id)]
    if any(given) and not all(given):
        raise ValueError(
            "give all of coordinator_address, num_processes and process_id, or none of them "
            f"(for cluster auto-detection); got {coordinator_address!r}, {num_processes!r}, "
            f"{process_id!r}"
        )
    if num_processes is not None and not 0 <= process_id < num_processes:
        raise ValueError(f"process_id must be in [0, {num_processes}), got {process_id}")
    jax.distributed.initialize(coordinator_address, num_processes, process_id)


def data_mesh(num_devices: int | None = None) -> jax.sharding.Mesh:
    """Returns the one-axis mesh `('data',)` over all devices, or over the first `num_devices`.

    `num_devices` is for one process only (to compare device counts on one machine); a
    multi-process mesh always spans every device, so that each process owns some rows.
    """
    devices = jax.devices()
    if num_devices is not None:
        if jax.process_count() > 1 and num_devices != len(devices):
            raise ValueError(
                f"num_devices={num_devices} is for single-process runs; this run has "
                f"{jax.process_count()} processes and uses all {len(devices)} devices"
            )
        if not 1 <= num_devices <= len(devices):
            raise ValueError(f"num_devices must be in [1, {len(devices)}], got {num_devices}")
        devices = devices[:num_devices]
    return jax.make_mesh(
        (len(devices),), (AXIS,), axis_types=(jax.sharding.AxisType.Auto,), devices=devices
    )


def local_mesh() -> jax.sharding.Mesh:
    """Returns the one-axis mesh `('data',)` over this process's devices only (a tool that
    works alone, like restoring a recording, in a single- or multi-process run)."""
    devices = jax.local_devices()
    return jax.make_mesh(
        (len(devices),), (AXIS,), axis_types=(jax.sharding.AxisType.Auto,), devices=devices
    )


def batch_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
    """Returns the sharding that splits the leading (batch) axis over `'data'`."""
    return NamedSharding(mesh, P(AXIS))


def per_device(fn: Callable, mesh: jax.sharding.Mesh, in_specs: Any, out_specs: Any) -> Callable:
    """Returns `jax.jit(jax.shard_map(fn, …))`: `fn` runs on each device's rows of the batch.

    `jax.jit` alone partitions a batched program by propagating the input shardings, but
    XLA's partitioner does not split FFTs along the batch: it all-gathers the whole batch
    before every `rfft`/`irfft` and computes it on every device (checked on jax 0.10.2, Shardy
    and GSPMD alike). Filters, low-passes, S4 convolutions and STFTs are all FFTs, so batched
    restorations and metrics run per device instead, as `pmap` did.

    Args:
      fn: a function of per-device blocks, e.g. a `jax.vmap` over clips, with no collective.
      mesh: the `'data'` mesh.
      in_specs, out_specs: `P('data')` for batched arguments and results, `P()` for
        replicated ones (pytree prefixes, as for `jax.shard_map`).
    """
    # check_vma=False: loops in the library start their carries from constants, which the
    # varying-axes check rejects inside shard_map; `fn` holds no collective for it to guard.
    return jax.jit(
        jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)
    )


def local_device_count(mesh: jax.sharding.Mesh) -> int:
    """Returns how many of the mesh's devices belong to this process."""
    return sum(d.process_index == jax.process_index() for d in mesh.devices.flat)


def local_batch_size(batch_size: int, mesh: jax.sharding.Mesh) -> int:
    """Returns this process's rows per global batch of at least `batch_size` clips.

    The global batch is rounded up to a multiple of the mesh size, so every device gets the
    same number of rows; each process holds its devices' rows.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    per_device = -(-batch_size // mesh.size)
    return per_device * local_device_count(mesh)


def global_batch(local: Any, mesh: jax.sharding.Mesh) -> Any:
    """Joins every process's local rows [B_local, …] into global arrays [B_global, …].

    Works on a pytree of NumPy arrays with the same leading size; the rows of process p
    land on process p's devices.
    """
    sharding = batch_sharding(mesh)
    return jax.tree.map(
        lambda v: jax.make_array_from_process_local_data(sharding, np.asarray(v)), local
    )


def local_rows(x: Any, mesh: jax.sharding.Mesh) -> Any:
    """Returns this process's rows of batch-sharded global arrays, as NumPy [B_local, …]."""
    if jax.process_count() == 1:
        return jax.tree.map(np.asarray, x)
    local = multihost_utils.global_array_to_host_local_array(x, mesh, P(AXIS))
    return jax.tree.map(np.asarray, local)


def pad_rows(
    rows: Sequence[np.ndarray], size: int, fill: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Stacks `rows` and pads with `fill` up to `size` rows; returns (batch, mask).

    The mask is True on real rows: padded rows are computed (a batch keeps one compiled
    shape) but never counted.
    """
    if not 0 < size or len(rows) > size:
        raise ValueError(f"need 0 < len(rows) <= size, got {len(rows)} rows for a batch of {size}")
    batch = np.stack([*rows, *([fill] * (size - len(rows)))])
    mask = np.arange(size) < len(rows)
    return batch, mask


def process_share(
    count: int, process_index: int | None = None, process_count: int | None = None
) -> list[int]:
    """Returns the item indices this process handles: i with i % process_count == process_index."""
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index must be in [0, {process_count}), got {process_index}")
    return list(range(process_index, count, process_count))


def max_over_processes(value: int) -> int:
    """Returns the largest of every process's `value` (each process must call this)."""
    if jax.process_count() == 1:
        return int(value)
    return int(np.max(multihost_utils.process_allgather(np.asarray(value, np.int64))))


def barrier(name: str) -> None:
    """Waits until every process reaches the barrier called `name`."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def process_rows(batch_size: int, mesh: jax.sharding.Mesh) -> range:
    """Returns the rows of a global batch [batch_size, …] split over `'data'` that this
    process's devices hold (all of them with one process), for it to build alone."""
    shards = batch_sharding(mesh).addressable_devices_indices_map((batch_size,))
    rows = sorted({r for (index,) in shards.values() for r in range(*index.indices(batch_size))})
    if rows != list(range(rows[0], rows[-1] + 1)):
        raise ValueError(f"this process's rows of the batch are not contiguous: {rows}")
    return range(rows[0], rows[-1] + 1)
