"""Scale-out through `jax.sharding`: models across devices, batches within them.

A training program holds ``M`` models (seeds x grid points, vmapped) and trains
each on batches of ``B`` examples. With several devices, `make_mesh` builds a
two-axis `Mesh`, ``("models", "data")``:

* ``"models"`` splits the vmapped model axis: each device trains ``M / models``
  whole models, and only the epoch's few metrics cross devices (a sweep is
  embarrassingly parallel). This is what a sweep wants.
* ``"data"`` splits each batch (data parallel): the models' parameters are
  replicated over it, and XLA's SPMD partitioner inserts the gradient
  all-reduce. This is what one big run wants.

`auto_mesh` puts as many devices on ``"models"`` as divide the model count, and
the rest on ``"data"``. The devices may belong to several processes, on one host
or many, after `jaxloss.train.distributed.initialize` (JAX's multi-controller
runtime): every process runs the same program on the global arrays, and each
computes the models of its own devices. Helpers here place host (NumPy) values
on the mesh (`put`) and read results back on every process (`to_host`).

With one device (or ``mesh=None``) the ``constrain_*`` helpers return their input
unchanged and `put` places arrays on the default device, so the single- and
multi-device code paths are the same code.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

__all__ = ["DATA_AXIS", "MODELS_AXIS", "auto_mesh", "constrain_batch", "constrain_models",
           "constrain_replicated", "data_size", "make_mesh", "models_sharded", "models_size",
           "put", "replicate", "replicated", "to_host"]

MODELS_AXIS = "models"
DATA_AXIS = "data"


def make_mesh(devices: Sequence[jax.Device] | None = None, *, models: int = 1) -> Mesh | None:
  """A ``("models", "data")`` mesh over `devices` (default all, of every process).

  Args:
    devices: the devices, default ``jax.devices()``.
    models: devices along ``"models"``; the other ``len(devices) // models``
      lie along ``"data"``. Must divide the device count.

  Returns:
    The mesh, or None for a single device.
  """
  devices = list(jax.devices() if devices is None else devices)
  if not isinstance(models, int) or models < 1 or len(devices) % models:
    raise ValueError(f"models={models!r} must be a positive int dividing the "
                     f"{len(devices)} devices.")
  if len(devices) <= 1:
    return None
  grid = np.asarray(devices, dtype=object).reshape(models, len(devices) // models)
  return Mesh(grid, (MODELS_AXIS, DATA_AXIS))


def auto_mesh(num_models: int, devices: Sequence[jax.Device] | None = None) -> Mesh | None:
  """The mesh for training `num_models` models: ``gcd(num_models, devices)`` along
  ``"models"``, the rest along ``"data"`` (None for one device).

  E.g. 8 devices: 8 models -> (8, 1), all model parallel; 1 model -> (1, 8), all
  data parallel; 6 models -> (2, 4).
  """
  devices = list(jax.devices() if devices is None else devices)
  return make_mesh(devices, models=math.gcd(int(num_models), len(devices)))


def models_size(mesh: Mesh | None) -> int:
  """Devices along ``"models"`` (1 without a mesh)."""
  return 1 if mesh is None else mesh.shape[MODELS_AXIS]


def data_size(mesh: Mesh | None) -> int:
  """Devices along ``"data"`` (1 without a mesh)."""
  return 1 if mesh is None else mesh.shape[DATA_AXIS]


def replicated(mesh: Mesh | None) -> NamedSharding | None:
  """``NamedSharding(mesh, PartitionSpec())``, or None without a mesh."""
  return None if mesh is None else NamedSharding(mesh, P())


def models_sharded(mesh: Mesh | None) -> NamedSharding | None:
  """Leading (model) axis split over ``"models"``, the rest replicated; None without a mesh."""
  return None if mesh is None else NamedSharding(mesh, P(MODELS_AXIS))


def put(tree: Any, sharding: NamedSharding | None) -> Any:
  """Places every array of `tree` with `sharding` (default device when None).

  Local values go through host memory first, so this works for arrays committed
  to one local device too, in every process of a multi-process run (each process
  must pass the same values). An array that already has `sharding` is returned
  as is; PRNG key arrays keep their type.
  """

  def one(x):
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      return jax.random.wrap_key_data(one(jax.random.key_data(x)),
                                      impl=jax.random.key_impl(x))
    if sharding is None:
      return jax.device_put(x)
    if isinstance(x, jax.Array):
      if x.sharding.is_equivalent_to(sharding, x.ndim):
        return x
      if not x.is_fully_addressable:  # already global (e.g. restored): reshard on the devices
        return jax.device_put(x, sharding)
      x = jax.device_get(x)
    return jax.device_put(np.asarray(x), sharding)

  return jax.tree.map(one, tree)


def replicate(tree: Any, mesh: Mesh | None) -> Any:
  """Places every array of `tree` on all devices of `mesh` (no-op without a mesh)."""
  return tree if mesh is None else put(tree, replicated(mesh))


def to_host(tree: Any) -> Any:
  """NumPy copies of every array of `tree`, on every process.

  An array spread over several processes' devices is gathered first
  (``multihost_utils.process_allgather``; a collective: every process must call
  this at the same point).
  """

  def one(x):
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      return jax.random.wrap_key_data(one(jax.random.key_data(x)), impl=jax.random.key_impl(x))
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel

      return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))

  return jax.tree.map(one, tree)


def constrain_replicated(tree: Any, mesh: Mesh | None) -> Any:
  """Inside jit: asks for `tree` to be replicated (no-op without a mesh)."""
  if mesh is None:
    return tree
  return jax.lax.with_sharding_constraint(tree, replicated(mesh))


def constrain_models(tree: Any, mesh: Mesh | None) -> Any:
  """Inside jit: the leading (model) axis of every array of `tree` split over
  ``"models"`` (no-op without a mesh)."""
  if mesh is None:
    return tree
  return jax.lax.with_sharding_constraint(tree, models_sharded(mesh))


def constrain_batch(x: jax.Array, mesh: Mesh | None, axis: int = 0) -> jax.Array:
  """Inside jit: splits `x` along `axis` over the mesh's ``"data"`` axis.

  Under ``jax.vmap(..., spmd_axis_name="models")`` (as in
  `jaxloss.train.make_epoch_program`) the mapped axis lies along ``"models"``.
  No-op without a mesh.
  """
  if mesh is None:
    return x
  axis = axis % x.ndim
  if x.shape[axis] % data_size(mesh):
    raise ValueError(
        f"Axis {axis} of size {x.shape[axis]} does not split evenly over the "
        f"{data_size(mesh)} devices of the data axis: pick a batch size divisible by it.")
  spec = P(*([None] * axis), DATA_AXIS)
  return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))
