"""Optimizers by name (Optax), with a constant or cosine-decay learning rate."""

from __future__ import annotations

import optax

__all__ = ["OPTIMIZERS", "SCHEDULES", "make_optimizer", "make_schedule"]

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
    An ``optax.GradientTransformation``.
  """
  key = name.lower()
  if key not in OPTIMIZERS:
    raise ValueError(f"Unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}.")
  lr = make_schedule(learning_rate, schedule, total_steps=total_steps)
  if key == "sgd":
    return optax.sgd(lr)
  if key == "momentum":
    return optax.sgd(lr, momentum=momentum)
  if key == "adam":
    return optax.adam(lr)
  return optax.adamw(lr, weight_decay=weight_decay)
