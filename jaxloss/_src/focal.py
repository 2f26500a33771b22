"""Focal losses (softmax and sigmoid forms) and the Poly-1 cross-entropy.

All three re-weight the cross-entropy by how well an example is already
classified. They are computed from logits in log space, never by clipping
probabilities: ``log p_y = z_y - logsumexp(z)`` for the softmax forms and
``log_sigmoid`` for the sigmoid form. Per-example outputs have the logits'
shape without the class axis; see `jaxloss._src.checks` for the shared conventions
on ``axis``, ``where``, ``weights`` and ``example_mask``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxloss._src import checks as _checks
from jaxloss._src import numerics as _numerics
from jaxloss._src.cross_entropy import finish_integer_label_loss
from jaxloss._src.cross_entropy import integer_label_nll

__all__ = ["poly1_cross_entropy", "sigmoid_focal_loss", "softmax_focal_loss"]


def _is_concrete_number(value) -> bool:
  return isinstance(value, (int, float, np.number)) and not isinstance(value, bool)


def _check_non_negative(value, name: str) -> None:
  """Checks a Python-number hyperparameter is >= 0 (traced values are skipped)."""
  if _is_concrete_number(value) and not value >= 0:
    raise ValueError(f"{name} must be >= 0, got {value}.")


def _softmax_alpha(alpha, labels, num_classes: int, dtype) -> jax.Array | None:
  """alpha_y: None, a scalar, or a per-class ``[K]`` vector picked by label."""
  if alpha is None:
    return None
  alpha = jnp.asarray(alpha)
  if alpha.ndim == 0:
    return alpha.astype(dtype)
  if alpha.shape != (num_classes,):
    raise ValueError(
        f"alpha must be None, a scalar or one value per class (shape ({num_classes},)), "
        f"got shape {alpha.shape}.")
  return _numerics.take_label(alpha.astype(dtype), labels)


@_checks.declares_targets(_checks.UNIT_TARGETS)
def softmax_focal_loss(
    logits: ArrayLike, labels: ArrayLike, *, axis: int = -1, where: ArrayLike | None = None,
    weights: ArrayLike | None = None, example_mask: ArrayLike | None = None,
    gamma: float | ArrayLike = 2.0, alpha: float | ArrayLike | None = None,
) -> jax.Array:
  r"""Multi-class (softmax) focal loss with integer labels.

  .. math::
    \ell = -\,\alpha_y\, w_y\, (1 - p_y)^{\gamma} \log p_y,
    \qquad \log p_y = z_y - \log\sum_c e^{z_c}

  The modulating factor :math:`(1 - p_y)^\gamma` down-weights examples that are
  already classified well. ``gamma=0`` with ``alpha=None`` is exactly
  `softmax_cross_entropy_with_integer_labels` (same computation, same result),
  and for ``gamma > 0`` the loss never exceeds it (for :math:`\alpha_y \le 1`).

  Args:
    logits: ``[..., K, ...]`` floating logits (class axis ``axis``).
    labels: integer labels, the logits' shape without the class axis.
    axis: the class axis.
    where: optional boolean class mask; masked classes leave the normalizer, and
      a label pointing at a masked (or ``-inf``) class gives ``+inf``, as in
      cross-entropy. A fully masked row gives 0.
    weights: optional per-class weights ``[K]``; the loss is scaled by
      ``weights[label]`` (as in `softmax_cross_entropy_with_integer_labels`).
    example_mask: optional boolean ``[...]``; ``False`` examples get loss 0 and
      their labels are never read.
    gamma: focusing parameter, ``>= 0`` (a Python number is checked; a traced
      value is not).
    alpha: ``None`` (no balancing), a scalar, or per-class ``[K]`` balancing
      weights; the loss is scaled by ``alpha[label]``.

  Returns:
    Per-example losses ``[...]``, float32 for 16/32-bit logits, float64 for
    float64 logits. An out-of-range label (not masked by ``example_mask``) gives
    NaN for that example, as in cross-entropy; wrap the call in
    `jaxloss.checked` to get an error instead.

  Example:
    >>> import jax.numpy as jnp, jaxloss
    >>> logits_BxC = jnp.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    >>> labels_B = jnp.array([0, 2])
    >>> print(jaxloss.softmax_focal_loss(logits_BxC, labels_B, gamma=2.0).round(4))
    [0.0041 0.4883]

  Reference: Lin, Goyal, Girshick, He & Dollar, "Focal Loss for Dense Object
  Detection", ICCV 2017, eq. (5); optax.losses.softmax_focal_loss (optax issue
  #1267 on gradients at saturated logits).
  """
  _check_non_negative(gamma, "gamma")
  nll, parts, labels, w, example_mask, _ = integer_label_nll(
      logits, labels, axis=axis, where=where, weights=weights, example_mask=example_mask,
      fn="softmax_focal_loss")
  dtype = nll.dtype
  k = parts.zs.shape[-1]
  # (1 - p_y)^gamma = exp(gamma * log(1 - p_y)), log(1 - p_y) = log1mexp(-nll).
  # Two ends need care, both in value and in both AD modes:
  # * 1 - p_y == 0 (nll underflows to 0 at saturated logits): log(1 - p_y) is
  #   -inf with an infinite derivative, and for gamma < 1 (1 - p)^gamma has an
  #   infinite derivative at p = 1 (optax #1267). There the factor is the
  #   constant 0 (1 for gamma == 0, i.e. 0^0 = 1, keeping the CE identity), so
  #   the loss 0 * 0 and its gradient are 0 (the true value is below
  #   nll^(1 + gamma), i.e. below the smallest normal float).
  # * p_y == 0 (label logit -inf or masked: nll = +inf): the factor is 1 and
  #   the loss is nll itself; the product branch gets a finite stand-in so
  #   that inf * 0 never appears in a forward- or reverse-mode derivative.
  one_minus_p_zero = nll <= jnp.finfo(dtype).tiny
  p_zero = nll == jnp.inf
  regular = ~(one_minus_p_zero | p_zero)  # also False for NaN (bad label): NaN flows on
  log_1mp = _numerics.log1mexp(jnp.where(regular, -nll, -1.0))
  gamma_arr = jnp.asarray(gamma, dtype)
  at_one = jnp.where(gamma_arr == 0, 1.0, 0.0).astype(dtype)
  factor = jnp.where(one_minus_p_zero, at_one, jnp.exp(gamma_arr * log_1mp))
  nll_finite = jnp.where(p_zero, 0.0, nll)
  loss = jnp.where(p_zero, nll, factor * nll_finite)
  a = _softmax_alpha(alpha, labels, k, dtype)
  if a is not None:
    loss = loss * a
  return finish_integer_label_loss(loss, parts, labels, w, example_mask)


@_checks.declares_targets(_checks.UNIT_TARGETS)
def poly1_cross_entropy(
    logits: ArrayLike, labels: ArrayLike, *, axis: int = -1, where: ArrayLike | None = None,
    weights: ArrayLike | None = None, example_mask: ArrayLike | None = None,
    epsilon: float | ArrayLike = 1.0,
) -> jax.Array:
  r"""Poly-1 loss: cross-entropy plus a linear term in :math:`1 - p_y`.

  .. math::
    \ell = w_y \left(-\log p_y + \epsilon\, (1 - p_y)\right),
    \qquad \log p_y = z_y - \log\sum_c e^{z_c}

  ``epsilon=0`` is exactly `softmax_cross_entropy_with_integer_labels`. The
  loss is non-negative for ``epsilon >= -1`` (since :math:`-\log p \ge 1 - p`);
  the paper uses ``epsilon`` in about ``[-1, 2]``. Class weights scale the
  whole per-example loss (both terms), like ``weight`` in PyTorch's
  cross-entropy; the paper itself has no class weights.
  :math:`1 - p_y` is computed as ``-expm1(log p_y)``, accurate as
  :math:`p_y \to 1`.

  Args:
    logits: ``[..., K, ...]`` floating logits (class axis ``axis``).
    labels: integer labels, the logits' shape without the class axis.
    axis: the class axis.
    where: optional boolean class mask; masked classes leave the normalizer, and
      a label pointing at a masked class gives ``+inf``. A fully masked row
      gives 0.
    weights: optional per-class weights ``[K]``; the loss is scaled by
      ``weights[label]``.
    example_mask: optional boolean ``[...]``; ``False`` examples get loss 0 and
      their labels are never read.
    epsilon: coefficient of the :math:`(1 - p_y)` term (any real number).

  Returns:
    Per-example losses ``[...]``, float32 for 16/32-bit logits, float64 for
    float64 logits; NaN for an out-of-range label (see `jaxloss.checked`).

  Example:
    >>> import jax.numpy as jnp, jaxloss
    >>> logits_BxC = jnp.array([[2.0, 0.0, -1.0], [0.0, 1.0, 2.0]])
    >>> labels_B = jnp.array([0, 2])
    >>> print(jaxloss.poly1_cross_entropy(logits_BxC, labels_B, epsilon=1.0).round(4))
    [0.3261 0.7424]

  Reference: Leng et al., "PolyLoss: A Polynomial Expansion Perspective of
  Classification Loss Functions", ICLR 2022, eq. (3).
  """
  nll, parts, labels, w, example_mask, _ = integer_label_nll(
      logits, labels, axis=axis, where=where, weights=weights, example_mask=example_mask,
      fn="poly1_cross_entropy")
  # 1 - p_y = -expm1(-nll): no cancellation as p_y -> 1, and exactly 1 (with a
  # zero derivative, exp(-inf) = 0) when nll = +inf.
  loss = nll + epsilon * -jnp.expm1(-nll)
  return finish_integer_label_loss(loss, parts, labels, w, example_mask)


@_checks.declares_targets(_checks.UNIT_TARGETS)
def sigmoid_focal_loss(
    logits: ArrayLike, targets: ArrayLike, *, axis: int = -1, where: ArrayLike | None = None,
    example_mask: ArrayLike | None = None, gamma: float | ArrayLike = 2.0,
    alpha: float | ArrayLike | None = 0.25,
) -> jax.Array:
  r"""Sigmoid (binary, per class) focal loss, averaged over the classes.

  .. math::
    \ell = \frac{1}{K} \sum_c \alpha_{t,c}\, (1 - p_{t,c})^{\gamma}\,
      \mathrm{BCE}(z_c, t_c),
    \qquad p_t = p\,t + (1 - p)(1 - t),\quad
    \alpha_t = \alpha\, t + (1 - \alpha)(1 - t)

  with :math:`p = \sigma(z)` and the mean over the :math:`K` unmasked classes.
  Per element this is ``torchvision.ops.sigmoid_focal_loss``. ``alpha=None``
  or a negative ``alpha`` switches the balancing off (torchvision's
  ``alpha < 0`` convention); ``gamma=0, alpha=None`` is the sigmoid binary
  cross-entropy, mean over classes.

  Computed in log space: :math:`\log(1 - p_t)` is ``log_sigmoid(-z)`` for
  ``t = 1`` and ``log_sigmoid(z)`` for ``t = 0``, and for soft targets
  ``logaddexp(log t + log_sigmoid(-z), log(1-t) + log_sigmoid(z))``.
  Saturated logits therefore give a finite value and gradient for every
  ``gamma >= 0``. A ``-inf`` logit (probability 0) gives 0 with target 0
  (zero gradient) and ``+inf`` otherwise; a NaN or ``+inf`` logit makes the
  example's loss NaN.

  Note:
    Unlike ``optax.sigmoid_focal_loss`` (elementwise, the logits' shape), this
    returns one value per example, the mean over the classes:
    ``optax.sigmoid_focal_loss(z, t).mean(axis)``. Every jaxloss loss is
    per-example, so that `jaxloss.weighted_mean` and ``example_mask`` work
    alike for all of them.

  Args:
    logits: ``[..., K, ...]`` floating logits (class axis ``axis``).
    targets: the logits' shape; one-hot, multi-hot or soft targets in
      ``[0, 1]``.
    axis: the class axis.
    where: optional boolean class mask broadcastable to ``logits.shape``;
      masked classes take no part (the mean is over unmasked classes) and a
      fully masked row gives 0.
    example_mask: optional boolean ``[...]``; ``False`` examples give 0.
    gamma: focusing parameter, ``>= 0``.
    alpha: balancing weight of the positives in ``[0, 1]`` (negatives get
      ``1 - alpha``); ``None`` or ``< 0`` for none.

  Returns:
    Per-example losses ``[...]``, float32 for 16/32-bit logits, float64 for
    float64 logits.

  Example:
    >>> import jax.numpy as jnp, jaxloss
    >>> logits_BxC = jnp.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    >>> targets_BxC = jnp.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    >>> print(jaxloss.sigmoid_focal_loss(logits_BxC, targets_BxC).round(4))
    [0.0491 0.1011]

  Reference: Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017;
  ``torchvision.ops.sigmoid_focal_loss`` (per element, before its reduction).
  """
  _check_non_negative(gamma, "gamma")
  if _is_concrete_number(alpha) and alpha > 1:
    raise ValueError(f"alpha must be <= 1 (or None / negative for no weighting), got {alpha}.")
  logits, z, mask = _checks.prepare(logits, axis, where)
  t = _checks.to_last_axis(
      _checks.check_targets(logits, targets, axis, "sigmoid_focal_loss"), axis)
  example_mask = _checks.check_example_mask(example_mask, z.shape[:-1])
  dtype = z.dtype
  zs, minus_inf, bad = _numerics.sigmoid_inputs(z, mask)
  ls_pos = jax.nn.log_sigmoid(zs)  # log p
  ls_neg = jax.nn.log_sigmoid(-zs)  # log (1 - p)
  ce = _numerics.sigmoid_bce_terms(zs, t)
  # log(1 - p_t), 1 - p_t = t (1 - p) + (1 - t) p. Hard targets pick one
  # log-sigmoid; soft ones combine both with logaddexp on a t strictly in (0, 1)
  # (the hard-target entries get t = 1/2 there, so log 0 is never formed).
  is_one, is_zero = t == 1, t == 0
  soft = ~(is_one | is_zero)
  ts = jnp.where(soft, t, 0.5)
  log_1mpt_soft = jnp.logaddexp(jnp.log(ts) + ls_neg, jnp.log1p(-ts) + ls_pos)
  log_1mpt = jnp.where(is_one, ls_neg, jnp.where(is_zero, ls_pos, log_1mpt_soft))
  # exp(gamma * log(1 - p_t)): log(1 - p_t) is finite (>= -|z| - log 2) for
  # finite z, so the factor and its derivative are finite for every gamma >= 0
  # (no (1 - p)**gamma at p = 1, optax #1267); gamma = 0 gives exactly 1.
  gamma_arr = jnp.asarray(gamma, dtype)
  elem = jnp.exp(gamma_arr * log_1mpt) * ce
  if alpha is not None and not (_is_concrete_number(alpha) and alpha < 0):
    a = jnp.asarray(alpha, dtype)
    alpha_t = a * t + (1.0 - a) * (1.0 - t)
    if not _is_concrete_number(alpha):  # traced alpha: the < 0 switch at run time
      alpha_t = jnp.where(a < 0, jnp.ones_like(alpha_t), alpha_t)
    elem = alpha_t * elem
  # A -inf logit (probability 0): 0 when the target is 0, else +inf (the BCE
  # diverges and the factor tends to a positive value).
  elem = jnp.where(minus_inf, jnp.where(is_zero, 0.0, jnp.inf).astype(dtype), elem)
  loss = _numerics.mean_over_classes(elem, mask)
  return _numerics.finalize(loss, bad=bad, example_mask=example_mask)
