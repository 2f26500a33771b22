"""Softmax cross-entropy in its forms: probability targets, integer labels, NLL,
label smoothing, and a PyTorch-parity front door with weights and ignore_index.

All functions return per-example losses (the logits' shape without the class
axis) computed in at least float32; see `jaxloss._src.checks` for the shared
conventions on ``axis``, ``where``, ``weights`` and ``example_mask``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxloss._src import checks as _checks
from jaxloss._src import numerics as _numerics

__all__ = [
    "cross_entropy",
    "label_smoothing_cross_entropy",
    "nll_loss",
    "smooth_labels",
    "softmax_cross_entropy",
    "softmax_cross_entropy_with_integer_labels",
]


def _prepare(logits, axis, where, weights, name="logits"):
  """Upcast, move the class axis last, broadcast the class mask, check weights."""
  logits, z, mask = _checks.prepare(logits, axis, where, name)
  w = _checks.check_class_weights(weights, z.shape[-1], z.dtype)
  return logits, z, mask, w


def _integer_labels(logits, labels, axis, example_mask, fn):
  """Checked integer labels and example mask; masked-out labels are never read."""
  labels = _checks.check_integer_labels(logits, labels, axis, fn)
  example_mask = _checks.check_example_mask(example_mask, labels.shape)
  if example_mask is not None:
    labels = jnp.where(example_mask, labels, 0)
  return labels, example_mask


def integer_label_nll(logits, labels, *, axis, where, weights, example_mask, fn):
  """The cross-entropy kernel that every integer-label softmax loss is built on.

  Returns ``(nll, parts, labels, class_weights, example_mask, mask)`` with
  ``nll = lse(zs) - zs_y`` from `numerics.softmax_parts` (shift-exact, no
  ``[..., K]`` log-softmax formed), before class weights and `finalize`.
  """
  logits, z, mask, w = _prepare(logits, axis, where, weights)
  labels, example_mask = _integer_labels(logits, labels, axis, example_mask, fn)
  parts = _numerics.softmax_parts(z, mask)
  nll = parts.lse - _numerics.take_label(parts.zs, labels)
  return nll, parts, labels, w, example_mask, mask


def probability_targets(logits, targets, *, axis, where, weights, example_mask, fn):
  """The kernel of every softmax loss on targets of the logits' shape.

  Returns ``(parts, t, example_mask)``: `numerics.softmax_parts` of the logits
  (shift-exact) and the checked targets with the class axis last, scaled by the
  class weights and 0 in masked classes; the caller applies `numerics.finalize`.
  """
  logits, z, mask, w = _prepare(logits, axis, where, weights)
  t = _checks.to_last_axis(_checks.check_targets(logits, targets, axis, fn), axis)
  example_mask = _checks.check_example_mask(example_mask, z.shape[:-1])
  parts = _numerics.softmax_parts(z, mask)
  if w is not None:
    t = t * _class_weights_like(w, z)
  if mask is not None:
    t = jnp.where(mask, t, 0.0)
  return parts, t, example_mask


def finish_integer_label_loss(loss, parts, labels, w, example_mask):
  """Scales by the class weight of the label, then applies `numerics.finalize`."""
  if w is not None:
    loss = loss * _numerics.take_label(w, labels)
  return _numerics.finalize(loss, bad=parts.bad, dead=parts.dead, example_mask=example_mask)


def _class_weights_like(w: jax.Array | None, z: jax.Array) -> jax.Array | None:
  # Explicit broadcast: the tests run with jax_numpy_rank_promotion="raise".
  return None if w is None else jnp.broadcast_to(w, z.shape)


def _num_live_classes(mask: jax.Array | None, z: jax.Array) -> jax.Array | int:
  if mask is None:
    return z.shape[-1]
  return jnp.sum(mask, axis=-1).astype(z.dtype)


@_checks.declares_targets(_checks.UNIT_TARGETS)
def softmax_cross_entropy(
    logits: ArrayLike, targets: ArrayLike, *, axis: int = -1, where: ArrayLike | None = None,
    weights: ArrayLike | None = None, example_mask: ArrayLike | None = None,
) -> jax.Array:
  r"""Softmax cross-entropy against probability (or one-hot) targets, or integer labels.

  .. math::
    \ell = -\sum_c w_c\, t_c \log \operatorname{softmax}(z)_c

  with the softmax taken over the unmasked classes only. Masked classes
  (``where=False``) and ``-inf`` logits get probability 0 and contribute nothing
  (``0 * log 0 = 0``); a row with every class masked gives 0. The log-softmax
  is computed from ``z - max z``, so the loss is exact under a common shift.

  Integer labels of the per-example shape are accepted too and go to
  `softmax_cross_entropy_with_integer_labels` (same result as their one-hot
  targets, without forming the log-softmax). ``optax.softmax_cross_entropy``
  takes probability targets only.

  Args:
    logits: ``[..., K, ...]`` floating logits (class axis ``axis``).
    targets: the logits' shape, rows are probability vectors (one-hot,
      smoothed or soft); or integer labels ``[...]``.
    axis: the class axis.
    where: optional boolean class mask broadcastable to ``logits.shape``.
    weights: optional per-class weights ``[K]`` (PyTorch's ``weight``).
    example_mask: optional boolean ``[...]``; ``False`` examples give 0.

  Returns:
    Per-example losses ``[...]`` (the class axis removed), float32 for 16/32-bit
    logits, float64 for float64 logits; NaN where an unmasked logit is NaN or
    ``+inf``.

  Example:
    >>> import jax.numpy as jnp, jaxloss
    >>> logits_BxC = jnp.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    >>> targets_BxC = jnp.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]])
    >>> print(jaxloss.softmax_cross_entropy(logits_BxC, targets_BxC).round(4))
    [0.1698 1.0986]

  Reference: Goodfellow, Bengio & Courville, *Deep Learning* (2016), sec. 6.2.2.3;
  matches ``torch.nn.functional.cross_entropy`` with probability targets.
  """
  raw = jnp.asarray(targets)
  if jnp.issubdtype(raw.dtype, jnp.integer) and raw.shape != jnp.shape(logits):
    return softmax_cross_entropy_with_integer_labels(
        logits, raw, axis=axis, where=where, weights=weights, example_mask=example_mask)
  parts, t, example_mask = probability_targets(
      logits, raw, axis=axis, where=where, weights=weights, example_mask=example_mask,
      fn="softmax_cross_entropy")
  loss = -jnp.sum(_numerics.xlogy_safe(t, parts.log_softmax()), axis=-1)
  return _numerics.finalize(loss, bad=parts.bad, dead=parts.dead, example_mask=example_mask)


@_checks.declares_targets(_checks.UNIT_TARGETS)
def softmax_cross_entropy_with_integer_labels(
    logits: ArrayLike, labels: ArrayLike, *, axis: int = -1, where: ArrayLike | None = None,
    weights: ArrayLike | None = None, example_mask: ArrayLike | None = None,
) -> jax.Array:
  r"""Softmax cross-entropy with integer class labels, without forming log_softmax.

  .. math::
    \ell = w_y \left(\log\sum_{c} e^{z_c - m} - (z_y - m)\right),
    \qquad m = \max_c z_c

  Only a ``logsumexp`` and one gathered logit per example are computed, so no
  ``[..., K]`` log-probability array is materialized. The maximum is
  subtracted first, so the result is exact under a common shift of the logits
  (see `jaxloss._src.numerics`).

  Args:
    logits: ``[..., K, ...]`` floating logits (class axis ``axis``).
    labels: integer labels, the logits' shape without the class axis.
    axis: the class axis.
    where: optional boolean class mask; masked classes leave the normalizer, and
      a label pointing at a masked class gives ``+inf``.
    weights: optional per-class weights ``[K]``; the loss is scaled by
      ``weights[label]`` (PyTorch's ``weight``).
    example_mask: optional boolean ``[...]``; ``False`` examples get loss 0 and
      their labels are never read (PyTorch's ``ignore_index`` role).

  Returns:
    Per-example losses ``[...]``. An out-of-range label (not masked by
    ``example_mask``) gives NaN for that example: labels cannot be range-checked
    at trace time. Wrap the call in `jaxloss.checked` to get an error instead.
    A NaN or ``+inf`` in an unmasked logit gives NaN too.

  Example:
    >>> import jax.numpy as jnp, jaxloss
    >>> logits_BxC = jnp.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    >>> labels_B = jnp.array([0, 2])
    >>> print(jaxloss.softmax_cross_entropy_with_integer_labels(
    ...     logits_BxC, labels_B).round(4))
    [0.1698 1.0986]

  Reference: equals ``torch.nn.functional.cross_entropy(..., reduction="none")``
  with integer targets.
  """
  loss, parts, labels, w, example_mask, _ = integer_label_nll(
      logits, labels, axis=axis, where=where, weights=weights, example_mask=example_mask,
      fn="softmax_cross_entropy_with_integer_labels")
  return finish_integer_label_loss(loss, parts, labels, w, example_mask)


@_checks.declares_targets(_checks.UNIT_TARGETS)
def nll_loss(
    log_probs: ArrayLike, labels: ArrayLike, *, axis: int = -1, where: ArrayLike | None = None,
    weights: ArrayLike | None = None, example_mask: ArrayLike | None = None,
) -> jax.Array:
  r"""Negative log-likelihood of integer labels under given log-probabilities.

  .. math::
    \ell = -w_y \log p_y

  The input is log-probabilities, not logits, and is not normalized here
  (PyTorch's ``nll_loss``): ``nll_loss(jax.nn.log_softmax(z), y)`` equals
  ``softmax_cross_entropy_with_integer_labels(z, y)`` and
  ``cross_entropy(z, y, reduction="none")``. The metric
  `jaxloss.negative_log_likelihood` takes logits instead (it is the
  cross-entropy, applied to held-out data).

  Args:
    log_probs: ``[..., K, ...]`` floating log-probabilities.
    labels: integer labels, the input's shape without the class axis.
    axis: the class axis.
    where: optional boolean class mask; a masked class has log-probability
      ``-inf`` (as in `softmax_cross_entropy` with the same mask), and a fully
      masked row gives 0.
    weights: optional per-class weights ``[K]``.
    example_mask: optional boolean ``[...]``; ``False`` examples give 0.

  Returns:
    Per-example losses ``[...]``; NaN for out-of-range labels (see
    `jaxloss.checked`) and where an unmasked log-probability is NaN or ``+inf``.

  Example:
    >>> import jax, jax.numpy as jnp, jaxloss
    >>> log_p_BxC = jax.nn.log_softmax(jnp.array([[2.0, 0.0, -1.0]]))
    >>> print(jaxloss.nll_loss(log_p_BxC, jnp.array([0])).round(4))
    [0.1698]

  Reference: ``torch.nn.functional.nll_loss(..., reduction="none")``.
  """
  log_probs, lp, mask, w = _prepare(log_probs, axis, where, weights, "log_probs")
  labels, example_mask = _integer_labels(log_probs, labels, axis, example_mask, "nll_loss")
  bad = _numerics.nonfinite_rows(lp, mask)
  dead = None
  if mask is not None:
    dead = ~jnp.any(mask, axis=-1)
    lp = jnp.where(mask, lp, -jnp.inf)
  loss = -_numerics.take_label(jnp.where(jnp.isfinite(lp), lp, -jnp.inf), labels)
  if w is not None:
    loss = loss * _numerics.take_label(w, labels)
  return _numerics.finalize(loss, bad=bad, dead=dead, example_mask=example_mask)


def smooth_labels(
    targets: ArrayLike, *, alpha: float, axis: int = -1, where: ArrayLike | None = None,
) -> jax.Array:
  r"""Label smoothing of one-hot (or probability) targets.

  .. math::
    t' = (1 - \alpha)\, t + \alpha / K

  where :math:`K` is the number of (unmasked) classes; masked classes get 0.

  Args:
    targets: ``[..., K, ...]`` one-hot or probability targets.
    alpha: smoothing strength in ``[0, 1]``.
    axis: the class axis.
    where: optional boolean class mask broadcastable to ``targets.shape``.

  Returns:
    Smoothed targets, the input's shape, floating (at least float32).

  Example:
    >>> import jax.numpy as jnp, jaxloss
    >>> print(jaxloss.smooth_labels(jnp.array([0.0, 1.0, 0.0, 0.0]), alpha=0.2))
    [0.05 0.85 0.05 0.05]

  Reference: Szegedy et al., "Rethinking the Inception Architecture for Computer
  Vision", CVPR 2016, sec. 7.
  """
  _checks.check_unit_interval(alpha, "alpha")
  targets = jnp.asarray(targets)
  if targets.ndim == 0:
    raise ValueError("targets must have a class axis, got a scalar.")
  dtype = _checks.compute_dtype(
      targets.dtype if jnp.issubdtype(targets.dtype, jnp.floating) else jnp.float32)
  t = _checks.to_last_axis(targets.astype(dtype), axis)
  mask = _checks.check_class_mask(where, targets)
  if mask is None:
    smoothed = (1.0 - alpha) * t + alpha / t.shape[-1]
  else:
    mask = _checks.to_last_axis(mask, axis)
    k = jnp.sum(mask, axis=-1, keepdims=True).astype(dtype)
    smoothed = jnp.where(mask, (1.0 - alpha) * t + alpha / jnp.maximum(k, 1.0), 0.0)
  return jnp.moveaxis(smoothed, -1, _checks.normalize_axis(axis, targets.ndim))


@_checks.declares_targets(_checks.UNIT_TARGETS)
def label_smoothing_cross_entropy(
    logits: ArrayLike, labels: ArrayLike, *, axis: int = -1, where: ArrayLike | None = None,
    weights: ArrayLike | None = None, example_mask: ArrayLike | None = None,
    alpha: float = 0.1,
) -> jax.Array:
  r"""Cross-entropy against label-smoothed targets, from integer or one-hot labels.

  .. math::
    \ell = (1-\alpha)\, w_y (\operatorname{lse}(z) - z_y)
      + \frac{\alpha}{K} \sum_c w_c (\operatorname{lse}(z) - z_c)

  which is ``softmax_cross_entropy(z, smooth_labels(onehot(y), alpha))`` (with
  class weights applied to each target entry, as PyTorch does). For integer
  labels the log-softmax is never materialized: the smoothing term is
  ``lse * sum(w) - sum(w * z)``. ``alpha=0`` is plain cross-entropy.

  Args:
    logits: ``[..., K, ...]`` floating logits.
    labels: integer labels ``[...]`` or one-hot / probability targets of the
      logits' shape (dispatched on dtype).
    alpha: smoothing strength in ``[0, 1]``.
    axis: the class axis.
    where: optional boolean class mask; :math:`K` counts unmasked classes.
    weights: optional per-class weights ``[K]``.
    example_mask: optional boolean ``[...]``; ``False`` examples give 0.

  Returns:
    Per-example losses ``[...]``.

  Example:
    >>> import jax.numpy as jnp, jaxloss
    >>> logits_BxC = jnp.array([[2.0, 0.0, -1.0]])
    >>> print(jaxloss.label_smoothing_cross_entropy(
    ...     logits_BxC, jnp.array([0]), alpha=0.1).round(4))
    [0.3365]

  Reference: Szegedy et al., CVPR 2016, sec. 7; Müller, Kornblith & Hinton,
  "When does label smoothing help?", NeurIPS 2019. Matches
  ``torch.nn.functional.cross_entropy(..., label_smoothing=alpha)`` including
  class weights and ignored examples.
  """
  _checks.check_unit_interval(alpha, "alpha")
  raw = jnp.asarray(labels)
  if not jnp.issubdtype(raw.dtype, jnp.integer):
    # One-hot / probability targets: smooth them, then plain cross-entropy.
    logits_c = _checks.check_logits(logits)
    targets = _checks.check_targets(logits_c, raw, axis, "label_smoothing_cross_entropy")
    return softmax_cross_entropy(
        logits_c, smooth_labels(targets, alpha=alpha, axis=axis, where=where),
        axis=axis, where=where, weights=weights, example_mask=example_mask)

  nll, parts, labels, w, example_mask, mask = integer_label_nll(
      logits, raw, axis=axis, where=where, weights=weights, example_mask=example_mask,
      fn="label_smoothing_cross_entropy")
  z = parts.zs
  w_all = jnp.ones_like(z) if w is None else _class_weights_like(w, z)
  if mask is not None:
    w_all = jnp.where(mask, w_all, 0.0)
  # sum_c w_c (lse - zs_c) without forming log_softmax; classes that take no
  # part hold -inf in zs, so they are selected to 0 before the product
  # (0 * -inf = NaN). A -inf logit that is not masked gives +inf, as in CE.
  z_live = jnp.where(parts.taking_part, z, 0.0)
  smooth = parts.lse * jnp.sum(w_all, axis=-1) - jnp.sum(w_all * z_live, axis=-1)
  unmasked_minus_inf = jnp.any((w_all != 0) & ~parts.taking_part, axis=-1) & ~parts.dead
  smooth = jnp.where(unmasked_minus_inf, jnp.inf, smooth)
  if w is not None:
    nll = nll * _numerics.take_label(w, labels)
  k = _num_live_classes(mask, z)
  loss = (1.0 - alpha) * nll + alpha * smooth / k
  return _numerics.finalize(loss, bad=parts.bad, dead=parts.dead, example_mask=example_mask)


@_checks.declares_targets(_checks.UNIT_TARGETS)
def cross_entropy(
    logits: ArrayLike, labels: ArrayLike, *, axis: int = -1, where: ArrayLike | None = None,
    weights: ArrayLike | None = None, example_mask: ArrayLike | None = None,
    ignore_index: int | None = None, label_smoothing: float = 0.0, reduction: str = "mean",
) -> jax.Array:
  r"""``torch.nn.functional.cross_entropy``, argument for argument, in JAX.

  Dispatches on ``labels``: integer labels use
  `label_smoothing_cross_entropy` (or the plain integer-label loss when
  ``label_smoothing == 0``); floating targets of the logits' shape are treated as
  probabilities. Reductions follow PyTorch:

  * ``"none"``: per-example losses, weighted by ``weights[label]``, 0 where
    ``label == ignore_index``;
  * ``"sum"``: their sum;
  * ``"mean"``: for integer labels, the sum divided by
    :math:`\sum_{i \text{ kept}} w_{y_i}` (PyTorch's weighted mean); for
    probability targets, divided by the number of examples.

  One deliberate difference: when every example is ignored PyTorch returns NaN
  for ``"mean"``; this returns 0 (see `jaxloss.weighted_mean`).

  Args:
    logits: ``[..., K, ...]`` floating logits. PyTorch puts classes on axis 1
      for ``[N, C, d1, ...]`` inputs: pass ``axis=1`` for that layout.
    labels: integer ``[...]`` or probability targets of the logits' shape.
    axis: the class axis.
    where: optional boolean class mask.
    weights: optional per-class weights ``[K]``.
    example_mask: optional boolean ``[...]``; ``False`` examples are left out
      of the loss and of the mean's denominator, like ignored labels.
    ignore_index: integer labels equal to this value are ignored (integer
      labels only).
    label_smoothing: ``alpha`` of `smooth_labels`.
    reduction: ``"mean"``, ``"sum"`` or ``"none"``.

  Returns:
    A scalar, or per-example losses for ``reduction="none"``.

  Example:
    >>> import jax.numpy as jnp, jaxloss
    >>> logits_BxC = jnp.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    >>> labels_B = jnp.array([0, -100])
    >>> print(jaxloss.cross_entropy(logits_BxC, labels_B, ignore_index=-100).round(4))
    0.1698

  Reference: https://pytorch.org/docs/stable/generated/torch.nn.functional.cross_entropy.html
  """
  if reduction not in ("mean", "sum", "none"):
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}.")
  raw = jnp.asarray(labels)
  if not jnp.issubdtype(raw.dtype, jnp.integer):
    if ignore_index is not None:
      raise ValueError("ignore_index applies to integer labels only (as in PyTorch).")
    losses = label_smoothing_cross_entropy(
        logits, raw, alpha=label_smoothing, axis=axis, where=where, weights=weights,
        example_mask=example_mask)
    if reduction == "none":
      return losses
    if reduction == "sum":
      return jnp.sum(losses)
    if example_mask is None:
      return jnp.mean(losses)
    return _numerics.safe_divide(
        jnp.sum(losses), jnp.sum(jnp.asarray(example_mask).astype(losses.dtype)))

  if ignore_index is not None:
    kept_labels = raw != ignore_index
    example_mask = kept_labels if example_mask is None else (
        _checks.check_example_mask(example_mask, raw.shape) & kept_labels)
  if isinstance(label_smoothing, (int, float)) and label_smoothing == 0:
    losses = softmax_cross_entropy_with_integer_labels(
        logits, raw, axis=axis, where=where, weights=weights, example_mask=example_mask)
  else:
    losses = label_smoothing_cross_entropy(
        logits, raw, alpha=label_smoothing, axis=axis, where=where, weights=weights,
        example_mask=example_mask)
  if reduction == "none":
    return losses
  total = jnp.sum(losses)
  if reduction == "sum":
    return total
  kept = jnp.ones(raw.shape, losses.dtype) if example_mask is None else example_mask.astype(
      losses.dtype)
  if weights is not None:
    safe = raw if example_mask is None else jnp.where(example_mask, raw, 0)
    kept = kept * _numerics.take_label(jnp.asarray(weights, losses.dtype), safe)
  return _numerics.safe_divide(total, jnp.sum(kept))
