"""Per-epoch checkpoints of a multi-seed training state, with Orbax.

A run's checkpoint folder holds the `TrainState` of all its seeds (leading seed
axis) after the latest completed epoch, saved with
`orbax.checkpoint.CheckpointManager` under the epoch number as its step. Orbax
writes each step into a temporary folder and renames it when complete, so an
interrupted save never leaves a half-written checkpoint behind: `restore` finds
the latest complete one, or nothing.

Several processes (`jaxloss.train.distributed`) call `save`, `latest_epoch` and
`restore` together, at the same points: Orbax coordinates them, and each process
writes and reads the shards of its own devices.

Usage::

  save(ckpt_dir, epoch, record.state)            # after each epoch
  resumed = restore(ckpt_dir, like=fresh_states)  # (states, epoch) or None
"""

from __future__ import annotations

import os
from typing import Any

import jax

__all__ = ["latest_epoch", "restore", "save"]


def _manager(directory: str | os.PathLike):
  import orbax.checkpoint as ocp  # Imported on use: orbax is heavy.

  options = ocp.CheckpointManagerOptions(max_to_keep=1, create=True,
                                         enable_async_checkpointing=False)
  return ocp.CheckpointManager(os.path.abspath(os.fspath(directory)), options=options)


def save(directory: str | os.PathLike, epoch: int, states: Any) -> None:
  """Saves `states` (any pytree of arrays) as the checkpoint of `epoch`; older ones are removed."""
  import orbax.checkpoint as ocp

  with _manager(directory) as manager:
    manager.save(int(epoch), args=ocp.args.StandardSave(states), force=True)
    manager.wait_until_finished()


def latest_epoch(directory: str | os.PathLike) -> int | None:
  """The epoch of the latest complete checkpoint in `directory`, or None."""
  if not os.path.isdir(directory):
    return None
  with _manager(directory) as manager:
    return manager.latest_step()


def restore(directory: str | os.PathLike, *, like: Any) -> tuple[Any, int] | None:
  """The latest checkpoint as ``(states, epoch)``, or None if there is none.

  Args:
    directory: the checkpoint folder given to `save`.
    like: a pytree with the structure, shapes and dtypes of the saved states
      (e.g. freshly initialised states of the same config and seeds); arrays or
      `jax.ShapeDtypeStruct` leaves, whose shardings the restored arrays get.
  """
  import orbax.checkpoint as ocp

  if not os.path.isdir(directory):
    return None
  with _manager(directory) as manager:
    epoch = manager.latest_step()
    if epoch is None:
      return None
    # Each leaf comes back with the sharding of `like`'s (e.g. models split over
    # the devices of several processes), or on the default device.
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
        like)
    states = manager.restore(epoch, args=ocp.args.StandardRestore(abstract))
  return states, int(epoch)
