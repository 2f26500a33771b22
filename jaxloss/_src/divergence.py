"""Divergences between a target distribution and predicted log-probabilities.

Per-example outputs have the input's shape without the class axis; see
`jaxloss._src.checks` for the shared conventions on ``axis`` and ``where``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxloss._src import checks as _checks
from jaxloss._src import numerics as _numerics

__all__ = ["kl_divergence"]


@_checks.declares_targets(_checks.UNIT_TARGETS)
def kl_divergence(
    log_predictions: ArrayLike, targets: ArrayLike, *, axis: int = -1,
    where: ArrayLike | None = None, example_mask: ArrayLike | None = None,
) -> jax.Array:
  r"""Kullback-Leibler divergence :math:`\mathrm{KL}(t \,\|\, p)` from log-probabilities.

  .. math::
    \ell = \sum_c t_c \left(\log t_c - \log p_c\right),
    \qquad 0 \log 0 = 0,\ 0 \cdot (-\infty) = 0

  The input is NOT normalized: pass log-probabilities (e.g.
  ``jax.nn.log_softmax(z)``). Then
  ``kl_divergence(log_softmax(z), t) = softmax_cross_entropy(z, t) - H(t)``
  and the value is non-negative for targets that sum to 1. A class with target
  0 contributes 0 even where ``log_predictions`` is ``-inf`` (value and both
  AD modes stay finite); a positive target on a ``-inf`` log-probability gives
  ``+inf``.

  Args:
    log_predictions: ``[..., K, ...]`` floating log-probabilities (class axis
      ``axis``).
    targets: the input's shape; probabilities (one-hot, smoothed or soft).
      Integer class labels raise an error: pass ``jax.nn.one_hot(labels, K)``.
    axis: the class axis.
    where: optional boolean class mask broadcastable to the input's shape;
      masked classes take no part (their terms are left out; any value behind
      the mask, ``-inf`` included) and a fully masked row gives 0.
    example_mask: optional boolean ``[...]``; ``False`` examples give 0.

  Returns:
    Per-example divergences ``[...]``, float32 for 16/32-bit inputs, float64
    for float64 inputs; NaN where an unmasked log-probability is NaN or
    ``+inf`` (even against a zero target).

  Example:
    >>> import jax, jax.numpy as jnp, jaxloss
    >>> log_p_BxC = jax.nn.log_softmax(jnp.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]]))
    >>> targets_BxC = jnp.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]])
    >>> print(jaxloss.kl_divergence(log_p_BxC, targets_BxC).round(4))
    [0.1698 0.4055]

  Reference: Kullback & Leibler, "On Information and Sufficiency", Ann. Math.
  Statist. 22 (1951); equals ``torch.nn.functional.kl_div(log_predictions,
  targets, reduction="none").sum(-1)`` and ``optax.losses.kl_divergence``.
  """
  log_predictions, lp, mask = _checks.prepare(log_predictions, axis, where, "log_predictions")
  t = _checks.to_last_axis(
      _checks.check_targets(log_predictions, targets, axis, "kl_divergence"), axis)
  example_mask = _checks.check_example_mask(example_mask, lp.shape[:-1])
  bad = _numerics.nonfinite_rows(lp, mask)
  lp = _numerics.without_bad(lp)
  if mask is not None:
    # Masked classes leave the sum: a zero target drops the term in xlogy_safe,
    # and the masked log-probability is replaced before it is ever multiplied.
    t = jnp.where(mask, t, 0.0)
    lp = jnp.where(mask, lp, 0.0)
  # log t with log 0 replaced by 0 BEFORE the log (double where), so that the
  # derivative 1/t is never formed at t = 0 (0 * inf = NaN in a target gradient).
  positive = t > 0
  log_t = jnp.where(positive, jnp.log(jnp.where(positive, t, 1.0)), 0.0)
  # Both products use xlogy_safe: t = 0 gives 0 even against log p = -inf.
  terms = _numerics.xlogy_safe(t, log_t) - _numerics.xlogy_safe(t, lp)
  return _numerics.finalize(jnp.sum(terms, axis=-1), bad=bad, example_mask=example_mask)
