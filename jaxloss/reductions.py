"""Reducing per-example losses to a scalar: weighted means with 0/0 = 0."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxloss import _checks

__all__ = ["weighted_mean"]


def safe_divide(numerator: jax.Array, denominator: jax.Array) -> jax.Array:
  """``numerator / denominator`` with ``x / 0 = 0``, and a finite gradient there."""
  zero = denominator == 0
  return jnp.where(zero, 0.0, numerator / jnp.where(zero, 1.0, denominator))


def weighted_mean(losses, weights=None, where=None) -> jax.Array:
  r"""Weighted mean of per-example losses, ``sum(w * l) / sum(w)``, with 0/0 = 0.

  .. math::
    \bar\ell = \frac{\sum_i w_i m_i \ell_i}{\sum_i w_i m_i}

  where :math:`m_i` is the ``where`` mask. Entries with ``where=False`` take no
  part at all: their loss may be NaN or inf without affecting the result or its
  gradient. An empty selection (or all-zero weights) gives 0, not NaN, so a
  batch that happens to contain only ignored examples does not poison training.

  Args:
    losses: per-example losses, any shape.
    weights: optional non-negative weights broadcastable to ``losses.shape``
      (for example ``class_weights[labels]``).
    where: optional boolean mask broadcastable to ``losses.shape``.

  Returns:
    A scalar with the dtype of ``losses`` (upcast to at least float32).

  Example:
    >>> import jax.numpy as jnp, jaxloss
    >>> losses = jnp.array([1.0, 2.0, jnp.nan])
    >>> print(jaxloss.weighted_mean(losses, jnp.array([1.0, 3.0, 1.0]),
    ...                             where=jnp.array([True, True, False])))
    1.75
    >>> print(jaxloss.weighted_mean(losses, where=jnp.zeros(3, bool)))
    0.0

  Reference: the ``reduction="mean"`` convention of
  ``torch.nn.functional.cross_entropy`` with class weights (which divides by the
  summed weights of the kept targets), minus its NaN for empty selections.
  """
  losses = jnp.asarray(losses)
  if not jnp.issubdtype(losses.dtype, jnp.floating):
    raise TypeError(f"losses must be floating point, got dtype {losses.dtype}.")
  losses = losses.astype(_checks.compute_dtype(losses.dtype))
  dtype = losses.dtype
  w = jnp.ones_like(losses) if weights is None else jnp.broadcast_to(
      jnp.asarray(weights, dtype), losses.shape)
  if where is not None:
    where = jnp.broadcast_to(jnp.asarray(where, bool), losses.shape)
    w = jnp.where(where, w, 0.0)
    losses = jnp.where(where, losses, 0.0)
  return safe_divide(jnp.sum(w * losses), jnp.sum(w))
