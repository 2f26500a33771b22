"""Squared-error classification losses with integer labels: the Brier score
(on softmax probabilities) and Hui & Belkin's square loss (on raw logits).

Per-example outputs have the logits' shape without the class axis; see
`jaxloss._src.checks` for the shared conventions on ``axis`` and ``where``. Masked
classes take no part at all: not in the softmax, not in the sums, not in the
class count. A label pointing at a masked class is therefore not seen by the
loss (its term is left out like every masked one); cross-entropy would give
``+inf`` there.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxloss._src import checks as _checks
from jaxloss._src import numerics as _numerics

__all__ = ["brier_score", "square_loss"]


def _prepare(logits, labels, axis, where, example_mask, fn):
  """Upcast, check labels and masks, move the class axis last; label one-hot and range."""
  logits, z, mask = _checks.prepare(logits, axis, where)
  labels = _checks.check_integer_labels(logits, labels, axis, fn)
  example_mask = _checks.check_example_mask(example_mask, labels.shape)
  if example_mask is not None:
    labels = jnp.where(example_mask, labels, 0)
  num_classes = z.shape[-1]
  in_range = (labels >= 0) & (labels < num_classes)
  return z, mask, _numerics.label_is_class(labels, num_classes), in_range, example_mask


@_checks.declares_targets(_checks.UNIT_TARGETS)
def brier_score(
    logits: ArrayLike, labels: ArrayLike, *, axis: int = -1, where: ArrayLike | None = None,
    example_mask: ArrayLike | None = None,
) -> jax.Array:
  r"""Brier score: squared distance between softmax probabilities and the one-hot label.

  .. math::
    \ell = \sum_c \left(\operatorname{softmax}(z)_c - [c = y]\right)^2
    = (1 - p_y)^2 + \sum_{c \ne y} p_c^2 \in [0, 2]

  with the softmax and the sum over the unmasked classes. It is 0 exactly when
  the label gets probability 1, and 2 when another class does. ``-inf`` logits
  get probability 0. Each squared difference is non-negative, so the sum is
  never below 0 through rounding (unlike ``sum p^2 - 2 p_y + 1``).

  Args:
    logits: ``[..., K, ...]`` floating logits (class axis ``axis``).
    labels: integer labels, the logits' shape without the class axis. One-hot
      targets raise an error: pass ``targets.argmax(axis)``.
    axis: the class axis.
    where: optional boolean class mask broadcastable to ``logits.shape``;
      masked classes take no part (see the module docstring) and a row with no
      unmasked finite logit gives 0.
    example_mask: optional boolean ``[...]``; ``False`` examples give 0.

  Returns:
    Per-example scores ``[...]``, float32 for 16/32-bit logits, float64 for
    float64 logits; NaN where an unmasked logit is NaN or ``+inf``. An out-of-range label gives NaN for that example (as the
    cross-entropy losses do): labels cannot be range-checked at trace time.
    Wrap the call in `jaxloss.checked` to get an error instead.

  Example:
    >>> import jax.numpy as jnp, jaxloss
    >>> logits_BxC = jnp.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    >>> labels_B = jnp.array([0, 2])
    >>> print(jaxloss.brier_score(logits_BxC, labels_B).round(4))
    [0.0392 0.6667]

  Reference: Brier, "Verification of Forecasts Expressed in Terms of
  Probability", Monthly Weather Review 78 (1950); a proper scoring rule, used as a metric too.
  """
  z, mask, is_label, in_range, example_mask = _prepare(
      logits, labels, axis, where, example_mask, "brier_score")
  # The softmax as exp(z - max) / sum (`softmax_parts`), not exp(log_softmax):
  # for logits like [1e4, 1e4] float32 cannot hold 1e4 + log 2 accurately, so
  # log_softmax would be off by ~5e-4, while z - max is exact. Classes that
  # take no part (masked, -inf) get probability exactly 0.
  parts = _numerics.softmax_parts(z, mask)
  sq = jnp.square(parts.probabilities() - is_label.astype(z.dtype))
  if mask is not None:
    sq = jnp.where(mask, sq, 0.0)
  loss = jnp.where(in_range, jnp.sum(sq, axis=-1), jnp.nan)
  return _numerics.finalize(loss, bad=parts.bad, dead=parts.dead, example_mask=example_mask)


@_checks.declares_targets(_checks.UNIT_TARGETS)
def square_loss(
    logits: ArrayLike, labels: ArrayLike, *, axis: int = -1, where: ArrayLike | None = None,
    example_mask: ArrayLike | None = None, k: float | ArrayLike = 1.0,
    m: float | ArrayLike = 1.0,
) -> jax.Array:
  r"""Square loss on raw logits against a (rescaled) one-hot target.

  .. math::
    \ell = \frac{1}{K} \left[ k\,(z_y - m)^2 + \sum_{c \ne y} z_c^2 \right]

  with :math:`K` the number of unmasked classes and the sum over them.
  ``k = m = 1`` is the plain mean squared error against the one-hot vector;
  Hui & Belkin rescale the true-class term by ``k`` and its target by ``m``
  for many classes (e.g. ``k=1, m=15`` on ImageNet). No softmax: the logits
  are regressed directly, so predictions are ``argmax(z)``.

  Args:
    logits: ``[..., K, ...]`` floating logits (class axis ``axis``).
    labels: integer labels, the logits' shape without the class axis.
    axis: the class axis.
    where: optional boolean class mask broadcastable to ``logits.shape``;
      masked classes take no part (any value behind the mask, ``-inf``
      included) and a fully masked row gives 0. An UNMASKED ``-inf`` logit
      gives ``+inf``.
    example_mask: optional boolean ``[...]``; ``False`` examples give 0.
    k: weight of the true-class term.
    m: target value of the true-class logit.

  Returns:
    Per-example losses ``[...]``, float32 for 16/32-bit logits, float64 for
    float64 logits; NaN for an out-of-range label (see `jaxloss.checked`) and
    where an unmasked logit is NaN or ``+inf``. The square loss regresses the
    raw logits, so unlike the softmax losses it is not invariant to a common
    shift of the logits.

  Example:
    >>> import jax.numpy as jnp, jaxloss
    >>> logits_BxC = jnp.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    >>> labels_B = jnp.array([0, 2])
    >>> print(jaxloss.square_loss(logits_BxC, labels_B).round(4))
    [0.6667 0.3333]

  Reference: Hui & Belkin, "Evaluation of Neural Architectures Trained with
  Square Loss vs Cross-Entropy in Classification Tasks", ICLR 2021, sec. 3.
  """
  z, mask, is_label, in_range, example_mask = _prepare(
      logits, labels, axis, where, example_mask, "square_loss")
  dtype = z.dtype
  bad = _numerics.nonfinite_rows(z, mask)
  z = _numerics.without_bad(z)
  # Masked logits (possibly -inf) are replaced by 0 before squaring (double
  # where): (-inf)^2 has derivative -inf, and 0 * -inf = NaN in the backward pass.
  zs = z if mask is None else jnp.where(mask, z, 0.0)
  k = jnp.asarray(k, dtype)
  m = jnp.asarray(m, dtype)
  sq = jnp.where(is_label, k * jnp.square(zs - m), jnp.square(zs))
  loss = jnp.where(in_range, _numerics.mean_over_classes(sq, mask), jnp.nan)
  return _numerics.finalize(loss, bad=bad, example_mask=example_mask)
