"""Reducing per-example losses to a scalar: weighted means with 0/0 = 0."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jax.typing import ArrayLike

from jaxloss._src import checks as _checks
from jaxloss._src.numerics import safe_divide

__all__ = ["weighted_mean"]


def weighted_mean(
    losses: ArrayLike, *, weights: ArrayLike | None = None,
    example_mask: ArrayLike | None = None,
) -> jax.Array:
  r"""Weighted mean of per-example losses, ``sum(w * l) / sum(w)``, with 0/0 = 0.

  .. math::
    \bar\ell = \frac{\sum_i w_i m_i \ell_i}{\sum_i w_i m_i}

  where :math:`m_i` is the ``example_mask``. Entries with ``example_mask=False`` take no
  part at all: their loss may be NaN or inf without affecting the result or its
  gradient. An empty selection (or all-zero weights) gives 0, not NaN, so a
  batch that happens to contain only ignored examples does not poison training.

  Args:
    losses: per-example losses, any shape.
    weights: optional non-negative weights broadcastable to ``losses.shape``
      (for example ``class_weights[labels]``).
    example_mask: optional boolean mask broadcastable to ``losses.shape``
      (the per-example mask of the losses; ``False`` = leave out).

  Returns:
    A scalar with the dtype of ``losses`` (upcast to at least float32).

  Example:
    >>> import jax.numpy as jnp, jaxloss
    >>> losses = jnp.array([1.0, 2.0, jnp.nan])
    >>> print(jaxloss.weighted_mean(losses, weights=jnp.array([1.0, 3.0, 1.0]),
    ...                             example_mask=jnp.array([True, True, False])))
    1.75
    >>> print(jaxloss.weighted_mean(losses, example_mask=jnp.zeros(3, bool)))
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
  if example_mask is not None:
    keep = jnp.broadcast_to(jnp.asarray(example_mask, bool), losses.shape)
    w = jnp.where(keep, w, 0.0)
    losses = jnp.where(keep, losses, 0.0)
  return safe_divide(jnp.sum(w * losses), jnp.sum(w))
