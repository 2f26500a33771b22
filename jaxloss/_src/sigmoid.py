"""Per-class sigmoid losses: fast.ai's sigmoid difference ("mnist_loss") and the
sigmoid binary cross-entropy (PyTorch's ``BCEWithLogitsLoss``).

Each class is treated as an independent binary problem with probability
``sigmoid(z_c)``; the per-example loss is the MEAN over the (unmasked) classes.
Targets are one-hot, multi-hot or soft targets in ``[0, 1]`` of the logits'
shape (integer class labels raise an error: pass ``jax.nn.one_hot(labels, K)``).
For a single binary logit per example use logits and targets of shape
``[..., 1]``. See `jaxloss._src.checks` for the shared conventions on ``axis`` and
``where``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxloss._src import checks as _checks
from jaxloss._src import numerics as _numerics

__all__ = ["balanced_sigmoid_difference", "sigmoid_binary_cross_entropy", "sigmoid_difference"]


def _prepare(logits, targets, axis, where, example_mask, fn):
  """Upcast, check targets and masks, move the class axis last."""
  logits, z, mask = _checks.prepare(logits, axis, where)
  t = _checks.to_last_axis(_checks.check_targets(logits, targets, axis, fn), axis)
  example_mask = _checks.check_example_mask(example_mask, z.shape[:-1])
  return logits, z, t, mask, example_mask


def _class_vector(value, logits, axis, z, name):
  """A scalar, a per-class ``[K]`` vector or an array broadcastable to the logits.

  Returned broadcast to ``z`` (class axis last). A 1-D array of length K is
  always read as one value per class, whatever ``axis`` is.
  """
  value = jnp.asarray(value).astype(z.dtype)
  if value.ndim == 0:
    return jnp.broadcast_to(value, z.shape)
  if value.shape == (z.shape[-1],):
    return jnp.broadcast_to(value, z.shape)
  try:
    value = jnp.broadcast_to(value, logits.shape)
  except ValueError:
    raise ValueError(
        f"{name} must be a scalar, one value per class (shape ({z.shape[-1]},)) or "
        f"broadcastable to the logits' shape {logits.shape}, got shape {value.shape}."
    ) from None
  return _checks.to_last_axis(value, axis)


@_checks.declares_targets(_checks.UNIT_TARGETS)
def sigmoid_difference(
    logits: ArrayLike, targets: ArrayLike, *, axis: int = -1, where: ArrayLike | None = None,
    example_mask: ArrayLike | None = None,
) -> jax.Array:
  r"""Mean absolute difference between per-class sigmoid probabilities and targets.

  .. math::
    \ell = \frac{1}{K} \sum_c \left|\sigma(z_c) - t_c\right|
    = \frac{1}{K} \sum_c \begin{cases} 1 - \sigma(z_c) & t_c = 1 \\
      \sigma(z_c) & t_c = 0 \end{cases}

  with the mean over the :math:`K` unmasked classes. On 0/1 targets this is the
  ``mnist_loss`` of fast.ai's book, ``torch.where(targets == 1, 1 - p, p)``,
  extended to one-hot / multi-hot targets; soft targets use the absolute
  difference. The book's single-logit case is logits and targets of shape
  ``[N, 1]``. The loss is bounded (in ``[0, 1]``) and its gradient,
  :math:`\pm\sigma'(z_c)/K`, vanishes for confidently WRONG outputs as well as
  for right ones, which is why it trains poorly compared to cross-entropy.

  Args:
    logits: ``[..., K, ...]`` floating logits (class axis ``axis``); ``[..., 1]``
      for one binary logit per example (a 0-d scalar raises an error).
    targets: the logits' shape; one-hot, multi-hot or soft targets in
      ``[0, 1]`` (floating, integer or boolean). Integer class labels of the
      per-example shape raise an error: pass ``jax.nn.one_hot(labels, K)``.
    axis: the class axis.
    where: optional boolean class mask broadcastable to ``logits.shape``;
      masked classes take no part (the mean is over unmasked classes) and a
      fully masked row gives 0. ``-inf`` logits are allowed anywhere (an
      unmasked one counts as probability 0).
    example_mask: optional boolean ``[...]``; ``False`` examples give 0.

  Returns:
    Per-example losses in ``[0, 1]``, shape ``[...]`` (no class axis); float32
    for 16/32-bit logits and float64 for float64 logits. A NaN or ``+inf`` in
    an unmasked class gives NaN.

  Example:
    >>> import jax.numpy as jnp, jaxloss
    >>> logits_BxC = jnp.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    >>> targets_BxC = jnp.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    >>> print(jaxloss.sigmoid_difference(logits_BxC, targets_BxC).round(4))
    [0.296 0.5  ]

  Reference: Howard & Gugger, *Deep Learning for Coders with fastai and
  PyTorch* (2020), ch. 4, ``mnist_loss``.
  """
  _, z, t, mask, example_mask = _prepare(
      logits, targets, axis, where, example_mask, "sigmoid_difference")
  zs, minus_inf, bad = _numerics.sigmoid_inputs(z, mask)
  # sigma(z) - t written as (1 - t) sigma(z) - t sigma(-z) (equal, since
  # sigma(-z) = 1 - sigma(z)): for t = 1 it is -sigma(-z) and for t = 0 it is
  # sigma(z), so no 1 - sigma(z) cancellation at saturated logits (in float32
  # sigma(20) rounds to 1, sigma(-20) = 2e-9 does not underflow).
  diff = (1.0 - t) * jax.nn.sigmoid(zs) - t * jax.nn.sigmoid(-zs)
  diff = jnp.where(minus_inf, -t, diff)  # a -inf logit has probability exactly 0
  # |.| is not differentiable at 0, which a finite logit never reaches on 0/1
  # targets (0 < sigma(z) < 1); JAX's derivative of abs at 0 is 0, not NaN.
  loss = _numerics.mean_over_classes(jnp.abs(diff), mask)
  return _numerics.finalize(loss, bad=bad, example_mask=example_mask)


@_checks.declares_targets(_checks.UNIT_TARGETS)
def balanced_sigmoid_difference(
    logits: ArrayLike, targets: ArrayLike, *, axis: int = -1, where: ArrayLike | None = None,
    example_mask: ArrayLike | None = None,
) -> jax.Array:
  r"""Sigmoid difference with the positive and the negative classes averaged apart.

  .. math::
    \ell = \tfrac{1}{2} \left( \frac{\sum_c t_c\, (1 - \sigma(z_c))}{\sum_c t_c}
      + \frac{\sum_c (1 - t_c)\, \sigma(z_c)}{\sum_c (1 - t_c)} \right)

  with the sums over the unmasked classes. On 0/1 targets this is half the
  mean of :math:`1 - \sigma(z_c)` over the positive classes plus half the mean
  of :math:`\sigma(z_c)` over the negative ones: `sigmoid_difference` with each
  group weighted 1/2 instead of by its share of the classes. On one-hot
  targets over :math:`K` classes, sigmoid-difference charges "no to every
  class" only :math:`1/K`; here it costs 1/2, as much as "yes to every
  class". The terms are bounded and flat at both ends as in
  `sigmoid_difference`: the gradient, :math:`-\sigma'(z_c) / (2 P)` on a
  positive class and :math:`\sigma'(z_c) / (2 N)` on a negative one (``P``,
  ``N`` the group sizes), still vanishes on confidently wrong outputs. Soft
  targets count ``t_c`` of a class as positive and ``1 - t_c`` as negative (the
  weighted means above), so they do not give the mean absolute difference of
  `sigmoid_difference`.

  **A row with no positive or no negative class** (no unmasked class with
  ``t_c > 0``, or none with ``t_c < 1``, e.g. the book's single logit ``[..., 1]``,
  or a label on a masked class): the empty group takes no part and the other
  one has weight 1, so the loss is that group's mean, the loss of
  `sigmoid_difference` on such a row. A row with every class masked gives 0.
  Empty groups are 0/0 computed without NaN (`jaxloss._src.numerics.safe_divide`),
  in the value and in both AD modes.

  Args:
    logits: floating, ``[..., K, ...]`` with the classes on ``axis``, or
      ``[..., 1]`` (one binary logit per example); not a 0-d scalar.
    targets: what `sigmoid_difference` takes: one-hot, multi-hot or soft
      targets in ``[0, 1]`` of the logits' shape (floating, integer or
      boolean); integer labels ``[...]`` raise (use ``jax.nn.one_hot``).
    axis: the class axis.
    where: optional boolean class mask broadcastable to ``logits.shape``;
      masked classes are in neither group. ``-inf`` logits are allowed anywhere
      (an unmasked one counts as probability 0: a term of 1 for a positive
      class and 0 for a negative one).
    example_mask: optional boolean ``[...]``; ``False`` examples give 0.

  Returns:
    Per-example losses in ``[0, 1]``, shape ``[...]`` (no class axis); float32
    for 16/32-bit logits and float64 for float64 logits. A NaN or ``+inf`` in
    an unmasked class gives NaN. Not invariant to a common shift of the logits
    (each class has its own sigmoid).

  Example:
    >>> import jax.numpy as jnp, jaxloss
    >>> logits_BxC = jnp.array([[-3.0, -3.0, -3.0], [0.0, 2.0, -1.0]])
    >>> onehot_BxC = jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    >>> print(jaxloss.balanced_sigmoid_difference(logits_BxC, onehot_BxC).round(4))
    [0.5    0.2518]
    >>> print(jaxloss.sigmoid_difference(logits_BxC, onehot_BxC).round(4))  # "no" is cheap
    [0.3491 0.296 ]

  Reference: Howard & Gugger, *Deep Learning for Coders with fastai and
  PyTorch* (2020), ch. 4, ``mnist_loss``, with class-balanced averaging as in
  the balanced error rate.
  """
  _, z, t, mask, example_mask = _prepare(
      logits, targets, axis, where, example_mask, "balanced_sigmoid_difference")
  zs, minus_inf, bad = _numerics.sigmoid_inputs(z, mask)
  # 1 - sigma(z) as sigma(-z): no cancellation at saturated logits (see
  # sigmoid_difference); a -inf logit gives the limits 1 and 0.
  miss = jnp.where(minus_inf, 1.0, jax.nn.sigmoid(-zs))
  false_alarm = jnp.where(minus_inf, 0.0, jax.nn.sigmoid(zs))
  positive, negative = t, 1.0 - t
  if mask is not None:
    positive = jnp.where(mask, positive, 0.0)
    negative = jnp.where(mask, negative, 0.0)
  num_pos, num_neg = jnp.sum(positive, axis=-1), jnp.sum(negative, axis=-1)
  pos_mean = _numerics.safe_divide(jnp.sum(positive * miss, axis=-1), num_pos)
  neg_mean = _numerics.safe_divide(jnp.sum(negative * false_alarm, axis=-1), num_neg)
  groups = (num_pos > 0).astype(z.dtype) + (num_neg > 0).astype(z.dtype)
  loss = _numerics.safe_divide(pos_mean + neg_mean, groups)
  return _numerics.finalize(loss, bad=bad, example_mask=example_mask)


@_checks.declares_targets(_checks.UNIT_TARGETS)
def sigmoid_binary_cross_entropy(
    logits: ArrayLike, targets: ArrayLike, *, axis: int = -1, where: ArrayLike | None = None,
    weights: ArrayLike | None = None, example_mask: ArrayLike | None = None,
    pos_weight: ArrayLike | None = None,
) -> jax.Array:
  r"""Per-class sigmoid binary cross-entropy with logits, mean over the classes.

  .. math::
    \ell = \frac{1}{K} \sum_c w_c \left[\, p_c\, t_c \operatorname{softplus}(-z_c)
      + (1 - t_c) \operatorname{softplus}(z_c) \right]

  with :math:`p_c` the ``pos_weight`` (1 by default), :math:`w_c` the class
  ``weights`` (1 by default) and the mean over the :math:`K` unmasked classes
  (the weights do not enter the denominator). Each term is
  :math:`-(p\,t \log\sigma(z) + (1 - t)\log\sigma(-z))` with
  `jax.nn.log_sigmoid`, which neither overflows nor loses the small terms of
  saturated logits, and whose derivative at :math:`z = 0` is the correct
  :math:`\sigma(0) - t`.

  A ``-inf`` logit (probability 0): its term is 0 (with zero gradient) when
  its target is 0 and ``+inf`` otherwise. Value, `jax.grad` and `jax.jacfwd`
  are NaN-free in both cases. A NaN or ``+inf`` logit makes the example's loss
  NaN.

  Note:
    Unlike ``optax.sigmoid_binary_cross_entropy`` and PyTorch's
    ``binary_cross_entropy_with_logits(reduction="none")`` (elementwise, the
    logits' shape), this returns one value per example, the mean over the
    classes: ``optax.sigmoid_binary_cross_entropy(z, t).mean(axis)``. Every
    jaxloss loss is per-example, so that `jaxloss.weighted_mean` and
    ``example_mask`` work alike for all of them. For elementwise values use
    logits of shape ``[..., 1]`` per binary problem.

  Args:
    logits: ``[..., K, ...]`` floating logits (class axis ``axis``); ``[..., 1]``
      for one binary logit per example.
    targets: the logits' shape; one-hot, multi-hot or soft targets in
      ``[0, 1]``. Integer class labels of the per-example shape raise an error.
    axis: the class axis.
    where: optional boolean class mask broadcastable to ``logits.shape``;
      masked classes take no part and a fully masked row gives 0.
    pos_weight: optional weight of the positive part, non-negative; a scalar,
      one value per class ``[K]``, or an array broadcastable to the logits'
      shape (PyTorch's ``pos_weight``).
    weights: optional per-class weights ``[K]`` multiplying each class term
      (PyTorch's ``weight`` restricted to the class axis).
    example_mask: optional boolean ``[...]``; ``False`` examples give 0.

  Returns:
    Per-example losses ``[...]``, float32 for 16/32-bit logits, float64 for
    float64 logits. Equals ``torch.nn.functional.binary_cross_entropy_with_logits(
    z, t, weight=w, pos_weight=p, reduction="none").mean(-1)`` and
    ``optax.sigmoid_binary_cross_entropy(z, t).mean(-1)``.

  Example:
    >>> import jax.numpy as jnp, jaxloss
    >>> logits_BxC = jnp.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    >>> targets_BxC = jnp.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    >>> print(jaxloss.sigmoid_binary_cross_entropy(logits_BxC, targets_BxC).round(4))
    [0.3778 0.6931]

  Reference: ``torch.nn.BCEWithLogitsLoss`` (``weight``, ``pos_weight``);
  ``optax.sigmoid_binary_cross_entropy``.
  """
  logits, z, t, mask, example_mask = _prepare(
      logits, targets, axis, where, example_mask, "sigmoid_binary_cross_entropy")
  w = _checks.check_class_weights(weights, z.shape[-1], z.dtype)
  w = None if w is None else jnp.broadcast_to(w, z.shape)
  pw = None if pos_weight is None else _class_vector(
      pos_weight, logits, axis, z, "pos_weight")
  zs, minus_inf, bad = _numerics.sigmoid_inputs(z, mask)
  elem = _numerics.sigmoid_bce_terms(zs, t, pw)
  # A -inf logit: the coefficient of the diverging -log sigmoid(z) decides
  # between 0 (it is 0) and +inf; no inf * 0 is formed.
  coef = t if pw is None else pw * t
  if w is not None:
    elem = w * elem
    coef = coef * w
  elem = jnp.where(minus_inf, jnp.where(coef > 0, jnp.inf, 0.0).astype(z.dtype), elem)
  loss = _numerics.mean_over_classes(elem, mask)
  return _numerics.finalize(loss, bad=bad, example_mask=example_mask)
