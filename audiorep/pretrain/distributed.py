"""Multi-host setup, the device mesh, and the sharding rules for parameters and batches.

One command runs on every host of a TPU pod (or every multi-GPU host). `initialize` joins the processes
through `jax.distributed` (auto-detected on Cloud TPU / SLURM, or explicit coordinator flags), `make_mesh`
lays all devices out on a ('data', 'fsdp') mesh, `param_sharding` puts every parameter's largest
fsdp-divisible dimension on the 'fsdp' axis (replicated when fsdp == 1), and `global_batch` assembles the
per-process batches into one global array sharded over ('data', 'fsdp'). Used by pretrain/trainer.py.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

log = logging.getLogger(__name__)

DATA, FSDP = "data", "fsdp"
BATCH_AXES = (DATA, FSDP)

_initialized = False


def _cluster_env() -> str | None:
    """The name of the multi-host environment we run in, if any (decides `initialize(mode='auto')`)."""
    hosts = os.environ.get("TPU_WORKER_HOSTNAMES", "")
    if len([h for h in hosts.split(",") if h.strip()]) > 1:
        return "Cloud TPU pod"
    if os.environ.get("MEGASCALE_COORDINATOR_ADDRESS"):
        return "Cloud TPU multislice"
    if int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1:
        return "SLURM"
    if os.environ.get("OMPI_COMM_WORLD_SIZE", "1") not in ("", "1"):
        return "Open MPI"
    return None


def initialize(cfg: Mapping[str, Any] | None = None) -> None:
    """Join the processes of a multi-host job; a no-op on one host.  Call before any other JAX use.

    cfg fields (all optional): mode 'auto' | 'on' | 'explicit' | 'off' (default 'auto'); coordinator_address
    'host:port'; num_processes; process_id; local_device_ids. With a coordinator_address the mode is
    explicit. 'on' always calls `jax.distributed.initialize()`, which finds coordinator and ranks by itself
    on Cloud TPU (metadata server), SLURM and Open MPI (tpu/launch.sh uses it). 'auto' does the same only
    when such a cluster shows in the environment (TPU_WORKER_HOSTNAMES, SLURM_NTASKS, OMPI_COMM_WORLD_SIZE).
    """
    global _initialized
    cfg = dict(cfg or {})
    mode = cfg.get("mode") or "auto"
    coordinator = cfg.get("coordinator_address")
    if _initialized or mode == "off":
        return
    if coordinator or mode == "explicit":
        missing = [k for k in ("coordinator_address", "num_processes", "process_id") if cfg.get(k) in (None, "", -1)
                   or (k == "num_processes" and not cfg.get(k))]
        if missing:
            raise ValueError(f"explicit multi-host setup needs {', '.join(missing)}: pass e.g. "
                             f"--config.distributed.coordinator_address=10.0.0.2:8476 "
                             f"--config.distributed.num_processes=4 --config.distributed.process_id=0 "
                             f"(process_id differs on every host).")
        kwargs = dict(coordinator_address=coordinator, num_processes=int(cfg["num_processes"]),
                      process_id=int(cfg["process_id"]))
        if cfg.get("local_device_ids") is not None:
            kwargs["local_device_ids"] = cfg["local_device_ids"]
        log.info("jax.distributed.initialize(%s)", kwargs)
        jax.distributed.initialize(**kwargs)
        _initialized = True
        return
    if mode not in ("auto", "on"):
        raise ValueError(f"distributed.mode={mode!r}: use 'auto', 'on', 'explicit' or 'off'.")
    env = _cluster_env() if mode == "auto" else "distributed.mode=on"
    if env is not None:
        log.info("multi-host environment detected (%s): jax.distributed.initialize()", env)
        jax.distributed.initialize()
        _initialized = True


def make_mesh(data: int = -1, fsdp: int = 1, devices: list | None = None) -> Mesh:
    """A ('data', 'fsdp') mesh over all devices (all processes).  data=-1 takes what fsdp leaves."""
    devices = list(jax.devices() if devices is None else devices)
    n = len(devices)
    if fsdp < 1 or n % fsdp:
        raise ValueError(f"mesh.fsdp={fsdp} must divide the device count {n}; choose one of "
                         f"{[d for d in range(1, n + 1) if n % d == 0]}.")
    if data == -1:
        data = n // fsdp
    if data * fsdp != n:
        raise ValueError(f"mesh data x fsdp = {data} x {fsdp} = {data * fsdp}, but there are {n} devices; "
                         f"set --config.mesh.data=-1 to use the rest of the devices for data parallelism.")
    axis_types = (jax.sharding.AxisType.Auto,) * 2
    # devices in process order, so each process's devices form a contiguous block of the batch dimension.
    arr = np.asarray(sorted(devices, key=lambda d: (d.process_index, d.id)), dtype=object).reshape(data, fsdp)
    return Mesh(arr, (DATA, FSDP), axis_types=axis_types)


def leaf_spec(shape: tuple[int, ...], fsdp: int, min_size: int = 2**10) -> P:
    """PartitionSpec of one parameter: its largest dimension divisible by fsdp goes on the 'fsdp' axis.

    Small arrays (< min_size elements), scalars and arrays with no divisible dimension stay replicated.
    """
    if fsdp <= 1 or len(shape) == 0 or int(np.prod(shape)) < min_size:
        return P()
    order = sorted(range(len(shape)), key=lambda i: -shape[i])
    for i in order:
        if shape[i] % fsdp == 0:
            spec = [None] * len(shape)
            spec[i] = FSDP
            return P(*spec)
    return P()


def param_sharding(tree: Any, mesh: Mesh) -> Any:
    """NamedSharding for every array leaf of `tree` (params, optimizer state, EMA) by `leaf_spec`."""
    fsdp = mesh.shape[FSDP]

    def one(x):
        shape = tuple(getattr(x, "shape", ()))
        return NamedSharding(mesh, leaf_spec(shape, fsdp))

    return jax.tree.map(one, tree)


def batch_sharding(mesh: Mesh, ndim: int = 1) -> NamedSharding:
    """Leading (batch) dimension split over ('data', 'fsdp'); the rest replicated."""
    return NamedSharding(mesh, P(BATCH_AXES, *([None] * (ndim - 1))))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def process_shard() -> tuple[int, int]:
    """(this process's index, number of processes): which data shard this host reads."""
    return jax.process_index(), jax.process_count()


def local_batch_size(global_batch_size: int, mesh: Mesh) -> int:
    """Examples each process loads per step; errors when the batch does not split evenly."""
    shards = mesh.shape[DATA] * mesh.shape[FSDP]
    procs = jax.process_count()
    if global_batch_size % shards:
        raise ValueError(f"train.batch_size={global_batch_size} must be a multiple of the {shards} devices "
                         f"of the mesh (data x fsdp); e.g. --config.train.batch_size="
                         f"{max(shards, global_batch_size // shards * shards)}.")
    return global_batch_size // procs


def global_batch(local: Mapping[str, np.ndarray], mesh: Mesh, global_batch_size: int) -> dict[str, jax.Array]:
    """Per-process numpy batch {name: [B_local, ...]} -> global jax arrays [B_global, ...] sharded on batch."""
    out = {}
    for key, value in local.items():
        value = np.asarray(value)
        sharding = batch_sharding(mesh, value.ndim)
        out[key] = jax.make_array_from_process_local_data(sharding, value, (global_batch_size, *value.shape[1:]))
    return out
