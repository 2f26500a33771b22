"""Several processes, one program: JAX's multi-controller runtime, configured from the environment.

In a multi-process run every process runs the same script. After `initialize`,
``jax.devices()`` lists the devices of all processes, a mesh over them
(`jaxloss.train.sharding`) spans hosts, and each process computes the part of
every array that lives on its own devices. Collectives between processes go
over gloo on CPU, NCCL on GPU and the TPU runtime on TPU.

`initialize` reads (the first three are also what `experiments.launch` sets):

* ``JAX_COORDINATOR_ADDRESS``: ``host:port`` of process 0's coordinator,
  reachable from every process;
* ``JAX_NUM_PROCESSES``: the number of processes;
* ``JAX_PROCESS_ID``: this process's index, ``0 .. JAX_NUM_PROCESSES - 1``;
* or ``JAXLOSS_DISTRIBUTED=auto``: JAX detects the cluster itself (SLURM, Open
  MPI, Kubernetes, Cloud TPU VMs), see ``jax.distributed.initialize``.

Without them it does nothing: one process, as before. Call it first, before
anything else touches JAX (it must precede the first computation).

Only process 0 writes files (`is_writer`); `barrier` orders its writes before
the other processes' reads.
"""

from __future__ import annotations

import itertools
import os
import sys

__all__ = ["barrier", "initialize", "is_writer", "process_count"]


def _env_int(name: str) -> int | None:
  value = os.environ.get(name)
  if value is None or value == "":
    return None
  try:
    return int(value)
  except ValueError:
    raise ValueError(f"{name}={value!r} is not an integer.") from None


def initialize() -> bool:
  """Joins the multi-process run that the environment describes; True if it did (now or
  before).

  Raises:
    ValueError: an incomplete or inconsistent description (e.g. a process id
      outside ``0 .. JAX_NUM_PROCESSES - 1``, or no coordinator address).
  """
  import jax  # pylint: disable=import-outside-toplevel

  if jax.distributed.is_initialized():  # joined before (e.g. by experiments.all)
    return True
  num, pid = _env_int("JAX_NUM_PROCESSES"), _env_int("JAX_PROCESS_ID")
  auto = os.environ.get("JAXLOSS_DISTRIBUTED", "").lower() == "auto"
  if num is None and not auto:
    return False
  if num is not None and num < 1:
    raise ValueError(f"JAX_NUM_PROCESSES={num} must be >= 1.")
  if num == 1 and not auto:
    return False
  address = os.environ.get("JAX_COORDINATOR_ADDRESS")
  if num is not None:
    if not address:
      raise ValueError("JAX_NUM_PROCESSES is set but JAX_COORDINATOR_ADDRESS (host:port of "
                       "process 0) is not.")
    if pid is None or not 0 <= pid < num:
      raise ValueError(f"JAX_PROCESS_ID={pid} must be in 0..{num - 1} "
                       f"(JAX_NUM_PROCESSES={num}).")
  # CPU collectives between processes (a no-op for GPU and TPU backends).
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  if num is None:  # JAXLOSS_DISTRIBUTED=auto: the cluster describes itself.
    jax.distributed.initialize()
  else:
    jax.distributed.initialize(coordinator_address=address, num_processes=num, process_id=pid)
  return True


def process_count() -> int:
  """Processes in this run (1 when JAX is not imported yet: nothing was initialized)."""
  jax = sys.modules.get("jax")
  return 1 if jax is None else jax.process_count()


def is_writer() -> bool:
  """Whether this process writes results: process 0 of a multi-process run, or the only one."""
  jax = sys.modules.get("jax")
  return jax is None or jax.process_index() == 0


# Barrier ids must not repeat within a run; every process passes the same barriers
# in the same order, so a per-process count makes them unique and equal across
# processes.
_BARRIERS = itertools.count()


def barrier(name: str, *, timeout_s: float = 3600.0) -> None:
  """Waits until every process reaches the barrier `name` (no-op for one process).

  Uses the coordination service of JAX's distributed runtime, as Orbax does, with
  a generous timeout: a process may wait here while process 0 prepares a dataset.
  (A collective such as ``multihost_utils.sync_global_devices`` gives up after
  30 s on CPU.) When a process dies, the others fail here once the coordination
  service notices (its heartbeat timeout, about a minute or two), rather than hang.
  """
  if process_count() <= 1:
    return
  from jax._src import distributed as jax_distributed  # pylint: disable=import-outside-toplevel

  client = jax_distributed.global_state.client
  if client is None:  # Not JAX's multi-controller runtime (e.g. a TPU pod slice's own).
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel

    multihost_utils.sync_global_devices(name)
    return
  client.wait_at_barrier(f"jaxloss/{next(_BARRIERS)}/{name}", int(timeout_s * 1000))
