"""Focal losses (softmax and sigmoid forms) and the Poly-1 cross-entropy.

All three re-weight the cross-entropy by how well an example is already
classified. They are computed from logits in log space, never by clipping
probabilities: ``log p_y = z_y - logsumexp(z)`` for the softmax forms and
``log_sigmoid`` for the sigmoid form. Per-example outputs have the logits'
shape without the class axis; see `jaxloss._checks` for the shared conventions
on ``axis``, ``where``, ``weights`` and ``example_mask``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxloss import _checks
from jaxloss import _numerics
from jaxloss.reductions import safe_divide

__all__ = ["poly1_cross_entropy", "sigmoid_focal_loss", "softmax_focal_loss"]

_LN2 = math.log(2.0)


def _is_concrete_number(value) -> bool:
  return isinstance(value, (int, float, np.number)) and not isinstance(value, bool)


def _check_non_negative(value, name: str) -> None:
  """Checks a Python-number hyperparameter is >= 0 (traced values are skipped)."""
  if _is_concrete_number(value) and not value >= 0:
    raise ValueError(f"{name} must be >= 0, got {value}.")


def _log1mexp(x: jax.Array) -> jax.Array:
  """``log(1 - exp(x))`` for ``x < 0``, accurate over the whole range.

  ``log(-expm1(x))`` is accurate near 0 (where ``1 - exp(x)`` cancels) and
  ``log1p(-exp(x))`` far from it (Maechler 2012, "Accurately computing
  log(1 - exp(-|a|))"). Both branches of the `where` are differentiated, so
  each is evaluated at a harmless point (-ln 2) where it is not selected:
  ``log1p(-exp(0))`` would be ``-inf`` with an infinite derivative.
  """
  near_zero = x > -_LN2
  a = jnp.log(-jnp.expm1(jnp.where(near_zero, x, -_LN2)))
  b = jnp.log1p(-jnp.exp(jnp.where(near_zero, -_LN2, x)))
  return jnp.where(near_zero, a, b)


def _integer_label_nll(logits, labels, axis, where, weights, example_mask, fn):
  """Exactly the computation of `softmax_cross_entropy_with_integer_labels`.

  Returns ``(nll, labels, class_weights, example_mask, live, num_classes)`` with
  ``nll = logsumexp(z) - z_y`` (before class weights and `finalize`), so that
  the losses built on it reduce to cross-entropy bit for bit.
  """
  logits = _checks.check_logits(logits)
  mask = _checks.check_class_mask(where, logits)
  z = _checks.to_last_axis(logits, axis)
  mask = None if mask is None else _checks.to_last_axis(mask, axis)
  w = _checks.check_class_weights(weights, z.shape[-1], z.dtype)
  labels = _checks.check_integer_labels(logits, labels, axis, fn)
  example_mask = _checks.check_example_mask(example_mask, labels.shape)
  if example_mask is not None:
    labels = jnp.where(example_mask, labels, 0)  # masked labels are never read
  z, mask, live = _numerics.guard_dead_rows(z, mask)
  z = _numerics.safe_logits(z, mask)
  # logsumexp subtracts the row maximum, so neither +1e4 nor -inf logits
  # overflow; the label logit is gathered (not one-hot-summed), so a -inf in
  # another class never meets a 0 weight. No [..., K] log-softmax is formed.
  nll = _numerics.masked_logsumexp(z, mask) - _numerics.take_label(z, labels)
  return nll, labels, w, example_mask, live, z.shape[-1]


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


def softmax_focal_loss(
    logits, labels, *, axis: int = -1, where=None, weights=None, example_mask=None,
    gamma=2.0, alpha=None,
):
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
  nll, labels, w, example_mask, live, k = _integer_label_nll(
      logits, labels, axis, where, weights, example_mask, "softmax_focal_loss")
  dtype = nll.dtype
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
  log_1mp = _log1mexp(jnp.where(regular, -nll, -1.0))
  gamma_arr = jnp.asarray(gamma, dtype)
  at_one = jnp.where(gamma_arr == 0, 1.0, 0.0).astype(dtype)
  factor = jnp.where(one_minus_p_zero, at_one, jnp.exp(gamma_arr * log_1mp))
  nll_finite = jnp.where(p_zero, 0.0, nll)
  loss = jnp.where(p_zero, nll, factor * nll_finite)
  a = _softmax_alpha(alpha, labels, k, dtype)
  if a is not None:
    loss = loss * a
  if w is not None:
    loss = loss * _numerics.take_label(w, labels)
  return _numerics.finalize(loss, live=live, example_mask=example_mask)


def poly1_cross_entropy(
    logits, labels, *, axis: int = -1, where=None, weights=None, example_mask=None,
    epsilon=1.0,
):
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
  nll, labels, w, example_mask, live, _ = _integer_label_nll(
      logits, labels, axis, where, weights, example_mask, "poly1_cross_entropy")
  # 1 - p_y = -expm1(-nll): no cancellation as p_y -> 1, and exactly 1 (with a
  # zero derivative, exp(-inf) = 0) when nll = +inf.
  loss = nll + epsilon * -jnp.expm1(-nll)
  if w is not None:
    loss = loss * _numerics.take_label(w, labels)
  return _numerics.finalize(loss, live=live, example_mask=example_mask)


def sigmoid_focal_loss(
    logits, targets, *, axis: int = -1, where=None, gamma=2.0, alpha=0.25,
):
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
  ``gamma >= 0``. An infinite logit gives 0 where its target agrees with it
  (``-inf`` with ``t = 0``, ``+inf`` with ``t = 1``; zero gradient) and
  ``+inf`` otherwise.

  Args:
    logits: ``[..., K, ...]`` floating logits (class axis ``axis``).
    targets: the logits' shape; one-hot, multi-hot or soft targets in
      ``[0, 1]``.
    axis: the class axis.
    where: optional boolean class mask broadcastable to ``logits.shape``;
      masked classes take no part (the mean is over unmasked classes) and a
      fully masked row gives 0.
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
  logits = _checks.check_logits(logits)
  t = _checks.check_targets(logits, targets, axis, "sigmoid_focal_loss")
  mask = _checks.check_class_mask(where, logits)
  z = _checks.to_last_axis(logits, axis)
  t = _checks.to_last_axis(t, axis)
  mask = None if mask is None else _checks.to_last_axis(mask, axis)
  dtype = z.dtype

  # Masked classes and infinite logits are replaced by 0 before any non-linear
  # function (double where: the unused branch is differentiated too); their
  # elements are selected afterwards.
  infinite = jnp.isinf(z)
  skip = infinite if mask is None else infinite | ~mask
  zs = jnp.where(skip, 0.0, z)
  ls_pos = jax.nn.log_sigmoid(zs)  # log p
  ls_neg = jax.nn.log_sigmoid(-zs)  # log (1 - p)
  # BCE with logits, = max(z, 0) - z t + log1p(exp(-|z|)); finite for finite z.
  ce = -(t * ls_pos + (1.0 - t) * ls_neg)
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
  # Infinite logits: 0 when the target agrees (z = -inf, t = 0 or z = +inf,
  # t = 1), else +inf (the BCE diverges and the factor tends to a positive value).
  agrees = jnp.where(z > 0, is_one, is_zero)
  elem = jnp.where(infinite, jnp.where(agrees, 0.0, jnp.inf).astype(dtype), elem)
  if mask is not None:
    elem = jnp.where(mask, elem, 0.0)
  total = jnp.sum(elem, axis=-1)
  if mask is None:
    return total / z.shape[-1]
  count = jnp.sum(mask, axis=-1).astype(dtype)
  return safe_divide(total, count)
