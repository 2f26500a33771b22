"""Trace-time validation and the dtype / class-axis conventions shared by every loss.

Everything here runs while JAX traces a function, on shapes and dtypes only, so a
mistake surfaces as a Python exception with a readable message before any
computation happens. Value checks (label ranges) live in `jaxloss.checked`.

Conventions (used by every loss in jaxloss):

* ``logits`` must be floating point. bfloat16 / float16 logits are upcast to
  float32 before any arithmetic; float32 and float64 stay as they are. The
  returned losses therefore have dtype ``float32`` for 16- and 32-bit inputs
  and ``float64`` for float64 inputs (see `compute_dtype`).
* The class axis is moved to the end internally; per-example outputs have the
  logits' shape without the class axis.
* ``where`` is a boolean mask broadcastable to ``logits.shape``; masked classes
  take no part in the loss.
* ``example_mask`` is a boolean array with the per-example (batch) shape;
  masked examples get a loss of exactly 0 (PyTorch's ``ignore_index`` role).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__: list[str] = []


def compute_dtype(dtype) -> np.dtype:
  """The dtype a loss computes in: float32 for <=32-bit floats, else `dtype`."""
  dtype = np.dtype(dtype)
  return np.dtype(jnp.promote_types(dtype, jnp.float32))


def check_logits(logits, name: str = "logits") -> jax.Array:
  """Checks that `logits` is a floating array and returns it upcast (see module doc)."""
  logits = jnp.asarray(logits)
  if not jnp.issubdtype(logits.dtype, jnp.floating):
    raise TypeError(
        f"{name} must be a floating-point array, got dtype {logits.dtype}. "
        f"Cast with {name}.astype(jnp.float32); integer {name} usually mean "
        "the arguments were passed in the wrong order (logits first, then labels)."
    )
  if logits.ndim == 0:
    raise ValueError(
        f"{name} must have at least one (class) axis, got a scalar. For a single "
        "binary logit per example use shape (..., 1)."
    )
  return logits.astype(compute_dtype(logits.dtype))


def normalize_axis(axis: int, ndim: int) -> int:
  if not -ndim <= axis < ndim:
    raise ValueError(f"axis={axis} is out of range for logits with {ndim} dimensions.")
  return axis % ndim


def to_last_axis(x: jax.Array, axis: int) -> jax.Array:
  """Moves the class axis of `x` to the end (no-op for axis=-1)."""
  axis = normalize_axis(axis, x.ndim)
  return x if axis == x.ndim - 1 else jnp.moveaxis(x, axis, -1)


def check_integer_labels(logits: jax.Array, labels, axis: int, fn: str = "") -> jax.Array:
  """Integer class labels of shape ``logits.shape`` without the class axis."""
  labels = jnp.asarray(labels)
  axis = normalize_axis(axis, logits.ndim)
  batch_shape = logits.shape[:axis] + logits.shape[axis + 1 :]
  hint = f" in {fn}" if fn else ""
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    if labels.shape == logits.shape:
      raise TypeError(
          f"Expected integer class labels of shape {batch_shape}{hint}, got a "
          f"{labels.dtype} array of the logits' shape {labels.shape}: these look "
          "like one-hot / probability targets. Use softmax_cross_entropy (or the "
          "targets form of this loss), or pass labels.argmax(axis)."
      )
    raise TypeError(
        f"Expected integer class labels{hint}, got dtype {labels.dtype}. "
        "Cast with labels.astype(jnp.int32)."
    )
  if labels.shape != batch_shape:
    if labels.shape == logits.shape:
      raise ValueError(
          f"Expected integer class labels of shape {batch_shape}{hint}, got the "
          f"logits' shape {labels.shape}: these look like one-hot targets. Pass "
          "labels.argmax(axis) or use the one-hot form of the loss."
      )
    raise ValueError(
        f"labels shape {labels.shape} does not match logits shape {logits.shape} "
        f"without the class axis {axis} (expected {batch_shape}){hint}."
    )
  return labels


def check_targets(logits: jax.Array, targets, axis: int, fn: str = "") -> jax.Array:
  """One-hot, multi-hot or probability targets with exactly the logits' shape.

  Integer or boolean targets of the right shape are accepted (multi-hot 0/1) and
  converted to the logits' compute dtype.
  """
  targets = jnp.asarray(targets)
  axis = normalize_axis(axis, logits.ndim)
  batch_shape = logits.shape[:axis] + logits.shape[axis + 1 :]
  hint = f" in {fn}" if fn else ""
  if targets.shape != logits.shape:
    if targets.shape == batch_shape and jnp.issubdtype(targets.dtype, jnp.integer):
      raise ValueError(
          f"Expected one-hot / probability targets of the logits' shape "
          f"{logits.shape}{hint}, got integer labels of shape {targets.shape}. "
          "Use the *_with_integer_labels / integer-label form of the loss, or "
          f"jax.nn.one_hot(labels, {logits.shape[axis]})."
      )
    raise ValueError(
        f"targets shape {targets.shape} must equal logits shape {logits.shape}{hint} "
        f"(class axis {axis} has {logits.shape[axis]} classes)."
    )
  if not (jnp.issubdtype(targets.dtype, jnp.number) or targets.dtype == jnp.bool_):
    raise TypeError(f"targets must be numeric, got dtype {targets.dtype}{hint}.")
  return targets.astype(logits.dtype)


def check_class_mask(where, logits: jax.Array) -> jax.Array | None:
  """Boolean class mask broadcast to the logits' shape (None stays None)."""
  if where is None:
    return None
  where = jnp.asarray(where)
  if where.dtype != jnp.bool_:
    raise TypeError(f"where must be a boolean mask, got dtype {where.dtype}.")
  try:
    return jnp.broadcast_to(where, logits.shape)
  except ValueError:
    raise ValueError(
        f"where shape {where.shape} does not broadcast to logits shape {logits.shape}."
    ) from None


def check_example_mask(example_mask, batch_shape: tuple[int, ...]) -> jax.Array | None:
  """Boolean per-example mask of the per-example shape (None stays None)."""
  if example_mask is None:
    return None
  example_mask = jnp.asarray(example_mask)
  if example_mask.dtype != jnp.bool_:
    raise TypeError(
        f"example_mask must be boolean (True = keep), got dtype {example_mask.dtype}."
    )
  if example_mask.shape != tuple(batch_shape):
    raise ValueError(
        f"example_mask shape {example_mask.shape} must equal the per-example shape "
        f"{tuple(batch_shape)}."
    )
  return example_mask


def check_class_weights(weights, num_classes: int, dtype) -> jax.Array | None:
  """Per-class weights, shape ``(num_classes,)``."""
  if weights is None:
    return None
  weights = jnp.asarray(weights)
  if weights.shape != (num_classes,):
    raise ValueError(
        f"class weights must have shape ({num_classes},) (one per class), got "
        f"{weights.shape}."
    )
  if not jnp.issubdtype(weights.dtype, jnp.floating):
    weights = weights.astype(dtype)
  return weights.astype(dtype)


UNIT_TARGETS = (0.0, 1.0)  # probabilities, one-hot and multi-hot targets
PM1_TARGETS = (-1.0, 1.0)  # margin losses: {-1, +1} (or {0, 1}) targets


def declares_targets(target_range: tuple[float, float]):
  """Marks a public loss with the range of the float targets it takes.

  `jaxloss.checked` reads the mark (``fn.jaxloss_target_range``) to check the
  values of targets of the logits' shape; a function without it gets only the
  generic checks. The mark travels with the function, wherever it is defined.
  """
  def mark(fn):
    fn.jaxloss_target_range = tuple(float(v) for v in target_range)
    return fn
  return mark


def prepare(logits, axis: int, where, name: str = "logits"):
  """Upcast the logits, move the class axis last, broadcast the class mask.

  Returns ``(logits, z, mask)``: the upcast logits in their own layout (for the
  shape checks of labels and targets), and the logits and mask with the class
  axis last (mask None when not given).
  """
  logits = check_logits(logits, name)
  mask = check_class_mask(where, logits)
  z = to_last_axis(logits, axis)
  mask = None if mask is None else to_last_axis(mask, axis)
  return logits, z, mask


def batch_shape(logits: jax.Array, axis: int) -> tuple[int, ...]:
  """The per-example shape: the logits' shape without the class axis."""
  axis = normalize_axis(axis, logits.ndim)
  return logits.shape[:axis] + logits.shape[axis + 1:]


def check_positive(value, name: str) -> None:
  """Checks a Python-number hyperparameter is > 0 (traced values are skipped)."""
  if isinstance(value, (int, float)) and not value > 0:
    raise ValueError(f"{name} must be > 0, got {value}.")


def check_unit_interval(value, name: str) -> None:
  if isinstance(value, (int, float)) and not 0.0 <= value <= 1.0:
    raise ValueError(f"{name} must be in [0, 1], got {value}.")
