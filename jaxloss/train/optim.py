"""Optimizers by name (Optax), with a constant or cosine-decay learning rate.

The (peak) learning rate is data, not code: `make_optimizer` wraps the
optimizer in ``optax.inject_hyperparams``, so the rate lives in the optimizer
state (``opt_state.hyperparams["learning_rate"]``) as an array. A program
compiled once then trains at any rate, and a vmapped batch of states trains
one rate per model (`jaxloss.train.iterate_training`'s ``learning_rates``).
The schedule's shape (constant, or the cosine decay over ``total_steps``) is
part of the program.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

__all__ = ["OPTIMIZERS", "SCHEDULES", "learning_rate_of", "make_optimizer", "make_schedule",
           "with_learning_rate"]

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")
SCHEDULES = ("constant", "cosine")


def make_schedule(learning_rate: float, schedule: str = "constant", *,
                  total_steps: int | None = None) -> optax.ScalarOrSchedule:
  """``learning_rate`` as is, or ``optax.cosine_decay_schedule(learning_rate, total_steps)``.

  The cosine schedule decays from ``learning_rate`` at step 0 to 0 at
  ``total_steps`` (and stays there).
  """
  if schedule == "constant":
    return learning_rate
  if schedule == "cosine":
    if total_steps is None or total_steps < 1:
      raise ValueError(
          "schedule='cosine' needs total_steps >= 1 (epochs * steps per epoch), "
          f"got {total_steps!r}.")
    return optax.cosine_decay_schedule(learning_rate, decay_steps=total_steps)
  raise ValueError(f"Unknown schedule {schedule!r}; valid: {', '.join(SCHEDULES)}.")


def make_optimizer(name: str, learning_rate: float, *, schedule: str = "constant",
                   total_steps: int | None = None, weight_decay: float = 1e-4,
                   momentum: float = 0.9) -> optax.GradientTransformation:
  """An Optax optimizer by name.

  Args:
    name: ``"sgd"`` (plain), ``"momentum"`` (SGD with heavy-ball ``momentum``),
      ``"adam"`` or ``"adamw"`` (Adam with decoupled ``weight_decay``).
    learning_rate: the (peak) learning rate.
    schedule: ``"constant"`` or ``"cosine"`` (see `make_schedule`).
    total_steps: number of optimizer steps; required for ``"cosine"``.
    weight_decay: decoupled weight decay, used by ``"adamw"`` only.
    momentum: used by ``"momentum"`` only.

  Returns:
    An ``optax.GradientTransformation`` whose state holds the learning rate
    (see `with_learning_rate`).
  """
  key = name.lower()
  if key not in OPTIMIZERS:
    raise ValueError(f"Unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}.")
  make_schedule(1.0, schedule, total_steps=total_steps)  # bad settings fail here, not in a trace

  def build(learning_rate):
    lr = make_schedule(learning_rate, schedule, total_steps=total_steps)
    if key == "sgd":
      return optax.sgd(lr)
    if key == "momentum":
      return optax.sgd(lr, momentum=momentum)
    if key == "adam":
      return optax.adam(lr)
    return optax.adamw(lr, weight_decay=weight_decay)

  return optax.inject_hyperparams(build)(learning_rate=learning_rate)


def learning_rate_of(opt_state) -> jax.Array:
  """The (peak) learning rate held by a `make_optimizer` state (``[...]`` if batched)."""
  return opt_state.hyperparams["learning_rate"]


def with_learning_rate(opt_state, learning_rate) -> Any:
  """`opt_state` with its (peak) learning rate replaced, e.g. one rate per vmapped model.

  `learning_rate` must broadcast to the stored array's shape (``[]``, or ``[R]``
  for R models stacked on a leading axis); it is cast to the stored dtype.
  """
  old = learning_rate_of(opt_state)
  new = jnp.broadcast_to(jnp.asarray(learning_rate, old.dtype), old.shape)
  return opt_state._replace(hyperparams={**opt_state.hyperparams, "learning_rate": new})
