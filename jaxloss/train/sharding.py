"""Data-parallel scale-out through `jax.sharding`, a no-op on one device.

With more than one device, `make_mesh` builds a one-axis `Mesh` named
``"batch"``. The trainer then

* keeps parameters, optimizer state, PRNG keys and the dataset replicated
  (``NamedSharding(mesh, PartitionSpec())``), and
* constrains each epoch's ``[steps, B, ...]`` batch array (and the evaluation
  chunks) to be split along ``B`` with `constrain_batch`,

and XLA's SPMD partitioner inserts the gradient all-reduce. Every device then
computes the same update on the same replicated state, so results equal
single-device training up to the order of floating-point sums.

With one device (or ``mesh=None``) every helper here returns its input unchanged,
so the single- and multi-device code paths are the same code.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

__all__ = ["BATCH_AXIS", "constrain_batch", "constrain_replicated", "make_mesh", "replicate",
           "replicated"]

BATCH_AXIS = "batch"


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh | None:
  """A one-axis ``("batch",)`` mesh over `devices` (default all), or None for one device."""
  devices = list(jax.devices() if devices is None else devices)
  if len(devices) <= 1:
    return None
  return Mesh(np.asarray(devices), (BATCH_AXIS,))


def mesh_size(mesh: Mesh | None) -> int:
  return 1 if mesh is None else mesh.shape[BATCH_AXIS]


def replicated(mesh: Mesh | None) -> NamedSharding | None:
  """``NamedSharding(mesh, PartitionSpec())``, or None without a mesh."""
  return None if mesh is None else NamedSharding(mesh, P())


def replicate(tree: Any, mesh: Mesh | None) -> Any:
  """Places every array of `tree` on all devices of `mesh` (no-op without a mesh)."""
  return tree if mesh is None else jax.device_put(tree, replicated(mesh))


def constrain_replicated(tree: Any, mesh: Mesh | None) -> Any:
  """Inside jit: asks for `tree` to stay replicated (no-op without a mesh)."""
  if mesh is None:
    return tree
  return jax.lax.with_sharding_constraint(tree, replicated(mesh))


def constrain_batch(x: jax.Array, mesh: Mesh | None, axis: int = 0) -> jax.Array:
  """Inside jit: splits `x` along `axis` over the mesh's ``"batch"`` axis.

  Under `jax.vmap` the mapped axis is left unsharded. No-op without a mesh.
  """
  if mesh is None:
    return x
  axis = axis % x.ndim
  if x.shape[axis] % mesh_size(mesh):
    raise ValueError(
        f"Axis {axis} of size {x.shape[axis]} does not split evenly over "
        f"{mesh_size(mesh)} devices: pick a batch size divisible by the device count.")
  spec = P(*([None] * axis), BATCH_AXIS)
  return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))
