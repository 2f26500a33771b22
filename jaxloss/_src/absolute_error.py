"""The softmax absolute error ("MAE"): ``1 - p_y``, bounded like sigmoid-difference.

It shares the bounded range of the fastai book's sigmoid-difference loss
(`jaxloss.sigmoid_difference`) but couples the classes through the softmax:
raising the true class lowers the others, so "no to every class" is not a
cheap answer. With it, a training run can tell apart the two suspects of
sigmoid-difference's collapse on 10-class MNIST (issue #13): the flat, bounded
loss, or the 9:1 weight of the "no" terms.
The balanced form of the sigmoid loss is `jaxloss.balanced_sigmoid_difference`.

It is built on the cross-entropy kernels (`jaxloss._src.cross_entropy`), so it
is exact under a common shift of the logits and follows their conventions on
``where``, ``-inf`` and ``example_mask``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxloss._src import checks as _checks
from jaxloss._src import numerics as _numerics
from jaxloss._src.cross_entropy import integer_label_nll
from jaxloss._src.cross_entropy import probability_targets

__all__ = ["softmax_absolute_error"]


@_checks.declares_targets(_checks.UNIT_TARGETS)
def softmax_absolute_error(
    logits: ArrayLike, labels: ArrayLike, *, axis: int = -1, where: ArrayLike | None = None,
    example_mask: ArrayLike | None = None,
) -> jax.Array:
  r"""Softmax absolute error: one minus the softmax probability of the label.

  .. math::
    \ell = 1 - p_y = \tfrac{1}{2} \left\lVert p - e_y \right\rVert_1 \in [0, 1],
    \qquad p = \operatorname{softmax}(z)

  with the softmax over the unmasked classes and :math:`e_y` the one-hot label.
  Since :math:`\sum_{c \ne y} p_c = 1 - p_y`, it is half the L1 distance between
  the softmax and the one-hot target: the "MAE" loss of Ghosh et al. (2017),
  :math:`\lVert p - e_y \rVert_1 = 2 (1 - p_y)`, times the constant 1/2 (our
  choice), so that the loss lies in ``[0, 1]`` like `sigmoid_difference`.
  Its gradient, :math:`\partial \ell / \partial z_c = p_y (p_c - [c = y])`, is
  that of cross-entropy scaled by :math:`p_y`: like sigmoid-difference's it
  vanishes on confidently wrong outputs (:math:`p_y \to 0`), but the classes
  compete through the softmax. It is computed as :math:`\sum_{c \ne y} p_c`
  from the softmax of ``z - max z`` (`jaxloss._src.numerics.softmax_parts`),
  so a common shift of the logits changes nothing, and the loss keeps its
  relative precision as :math:`p_y \to 1` (where :math:`1 - p_y` would round
  to 0).

  Probability (or one-hot, multi-hot) targets ``t`` of the logits' shape are
  accepted too, as in `softmax_cross_entropy`:

  .. math::
    \ell = 1 - \sum_c t_c\, p_c

  (the sum over the unmasked classes; computed as :math:`\sum_c p_c (1 - t_c)`),
  the expected :math:`1 - p_Y` for a label :math:`Y` drawn from ``t``; one-hot
  targets give the integer-label value. It equals
  :math:`\tfrac{1}{2}\lVert p - t \rVert_1` only for one-hot ``t``.

  A label on a masked class or on a ``-inf`` logit has probability 0 and
  gives 1 (cross-entropy would give ``+inf``); target mass ``t_c`` there adds
  ``t_c``. A ``-inf`` logit elsewhere is a masked class.

  Args:
    logits: ``[..., K, ...]`` floating logits (class axis ``axis``).
    labels: integer labels, the logits' shape without the class axis; or
      targets of the logits' shape in ``[0, 1]`` (rows summing to 1 for
      probabilities; floating, integer or boolean).
    axis: the class axis.
    where: optional boolean class mask broadcastable to ``logits.shape``;
      masked classes leave the softmax and may hold anything. A row with no
      unmasked finite logit gives 0.
    example_mask: optional boolean ``[...]``; ``False`` examples give 0 and
      their labels are never read.

  Returns:
    Per-example losses in ``[0, 1]``, shape ``[...]`` (the class axis removed),
    float32 for 16/32-bit logits and float64 for float64 logits. NaN where an
    unmasked logit is NaN or ``+inf``, and for an out-of-range label (see
    `jaxloss.checked`).

  Example:
    >>> import jax.numpy as jnp, jaxloss
    >>> logits_BxC = jnp.array([[3.0, 1.0, -2.0], [1.0, 1.0, 1.0]])
    >>> print(jaxloss.softmax_absolute_error(logits_BxC, jnp.array([0, 1])).round(4))
    [0.1244 0.6667]
    >>> soft_BxC = jnp.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    >>> print(jaxloss.softmax_absolute_error(logits_BxC, soft_BxC).round(4))
    [0.5029 0.6667]

  Reference: Ghosh, Kumar & Sastry, "Robust Loss Functions under Label Noise
  for Deep Neural Networks", AAAI 2017 (their MAE is twice this loss).
  """
  raw = jnp.asarray(labels)
  if jnp.issubdtype(raw.dtype, jnp.integer) and raw.shape != jnp.shape(logits):
    # The cross-entropy kernel checks the labels and builds the softmax parts
    # (its nll is not needed here).
    _, parts, labels, _, example_mask, _ = integer_label_nll(
        logits, raw, axis=axis, where=where, weights=None, example_mask=example_mask,
        fn="softmax_absolute_error")
    t = _numerics.label_is_class(labels, parts.zs.shape[-1])
    in_range = jnp.any(t, axis=-1)  # an out-of-range label: no class, NaN
    t = t.astype(parts.zs.dtype)
  else:
    parts, t, example_mask = probability_targets(
        logits, raw, axis=axis, where=where, weights=None, example_mask=example_mask,
        fn="softmax_absolute_error")
    in_range = None
  # 1 - sum_c t_c p_c written as sum_c p_c (1 - t_c) (the softmax sums to 1):
  # no term is negative, so a small loss keeps its relative precision where
  # 1 - p_y would round to 0 (p_y near 1). The probabilities are exp(z - max z)
  # / sum, exact under a common shift, and 0 for the classes that take no part.
  loss = jnp.sum(parts.probabilities() * (1.0 - t), axis=-1)
  if in_range is not None:
    loss = jnp.where(in_range, loss, jnp.nan)
  return _numerics.finalize(loss, bad=parts.bad, dead=parts.dead, example_mask=example_mask)
