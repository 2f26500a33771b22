"""Evaluation metrics: accuracy, likelihood, and calibration (reliability bins, ECE).

Every function here is pure and jit-able. The class axis is ``axis`` (default
-1); per-example metrics return the logits' shape without the class axis, the
calibration metrics reduce over every example. For those, ``example_mask`` is a
boolean PER-EXAMPLE mask (the per-example shape; ``False`` = leave the example
out), as in the losses; ``where`` is always a CLASS mask in jaxloss.

Labels are integer class ids (the logits' shape without the class axis) or
one-hot / probability targets of the logits' shape, whose argmax is the label.

**Non-finite in, non-finite out** (the contract of `jaxloss._src.numerics`): a
NaN or ``+inf`` logit in an example makes its per-example metric NaN, and a
reduced metric NaN when any kept example has one. ``-inf`` masks a class
(probability 0). The metrics are built on the numerical core (`softmax_parts`,
the cross-entropy kernel), not on the public losses.

The Brier score, a proper scoring rule often reported next to these, is the
loss `jaxloss.brier_score`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxloss._src import checks as _checks
from jaxloss._src import numerics as _numerics
from jaxloss._src.cross_entropy import integer_label_nll

__all__ = [
    "accuracy",
    "calibration_bins",
    "expected_calibration_error",
    "multilabel_accuracy",
    "negative_log_likelihood",
]


def _is_targets(logits: jax.Array, labels: jax.Array) -> bool:
  """True when `labels` are one-hot / probability targets (the logits' shape)."""
  return labels.ndim == logits.ndim and labels.shape == logits.shape


def _logits_and_labels(logits, labels, axis: int, fn: str) -> tuple[jax.Array, jax.Array]:
  """Logits with the class axis last, and integer labels of the per-example shape.

  One-hot / probability targets (the logits' shape) are turned into labels by
  their argmax (ties: the first class).
  """
  logits = _checks.check_logits(logits)
  labels = jnp.asarray(labels)
  if _is_targets(logits, labels):
    labels = jnp.argmax(_checks.to_last_axis(labels, axis), axis=-1)
  else:
    labels = _checks.check_integer_labels(logits, labels, axis, fn)
  return _checks.to_last_axis(logits, axis), labels


def _check_num_bins(num_bins) -> int:
  if not isinstance(num_bins, int) or isinstance(num_bins, bool) or num_bins < 1:
    raise ValueError(f"num_bins must be a positive Python int, got {num_bins!r}.")
  return num_bins


def accuracy(logits: ArrayLike, labels: ArrayLike, *, axis: int = -1) -> jax.Array:
  r"""Per-example top-1 accuracy: 1 where the predicted class is the label, else 0.

  .. math::
    a = \mathbb{1}\left[\arg\max_c z_c = y\right]

  Ties in the logits go to the first maximal class (``jnp.argmax``). An
  out-of-range label is never equal to the argmax, so it scores 0. A NaN or
  ``+inf`` logit makes the example's accuracy NaN (``-inf`` masks a class).

  Args:
    logits: ``[..., K, ...]`` floating logits (class axis ``axis``).
    labels: integer labels ``[...]`` (the logits' shape without the class axis),
      or one-hot / probability targets of the logits' shape (label = argmax).
    axis: the class axis.

  Returns:
    ``[...]`` floating 0/1 values (float32, or float64 for float64 logits), NaN
    for an example with a NaN or ``+inf`` logit; ``jaxloss.weighted_mean`` of
    them is the accuracy of a batch.

  Example:
    >>> import jax.numpy as jnp, jaxloss
    >>> logits_BxC = jnp.array([[2.0, 0.0, -1.0], [0.0, 1.0, 3.0], [jnp.nan, 0.0, 1.0]])
    >>> print(jaxloss.accuracy(logits_BxC, jnp.array([0, 1, 2])).round(4))
    [ 1.  0. nan]

  Reference: the top-1 accuracy of ``torchmetrics.Accuracy`` /
  ``sklearn.metrics.accuracy_score``.
  """
  z, y = _logits_and_labels(logits, labels, axis, "accuracy")
  bad = _numerics.nonfinite_rows(z, None)
  # How argmax treats a NaN differs between backends: the NaN is selected in.
  correct = (jnp.argmax(z, axis=-1) == y).astype(z.dtype)
  return _numerics.finalize(correct, bad=bad)


def multilabel_accuracy(
    logits: ArrayLike, targets: ArrayLike, *, threshold: float = 0.0, axis: int = -1,
) -> jax.Array:
  r"""Per-example exact-match (subset) accuracy of multi-label predictions.

  .. math::
    a = \mathbb{1}\left[\forall c:\ (z_c > \tau) = (t_c > \tfrac12)\right]

  The predicted set is ``logits > threshold``; at ``threshold=0`` that is
  ``sigmoid(logits) > 0.5``. Targets are binarized at 0.5 (so 0/1 multi-hot,
  boolean, and soft targets all work). A NaN or ``+inf`` logit makes the
  example's value NaN (``-inf`` is a logit like any other: never predicted).

  Args:
    logits: ``[..., K, ...]`` floating logits (class axis ``axis``).
    targets: multi-hot targets of the logits' shape (float, integer or bool).
    threshold: the logit threshold :math:`\tau` of a positive prediction.
    axis: the class axis.

  Returns:
    ``[...]`` floating 0/1 values (float32, or float64 for float64 logits).

  Example:
    >>> import jax.numpy as jnp, jaxloss
    >>> logits_BxC = jnp.array([[2.0, -1.0, 0.5], [2.0, -1.0, -0.5]])
    >>> targets_BxC = jnp.array([[1.0, 0.0, 1.0], [1.0, 0.0, 1.0]])
    >>> print(jaxloss.multilabel_accuracy(logits_BxC, targets_BxC).round(4))
    [1. 0.]

  Reference: subset accuracy, ``sklearn.metrics.accuracy_score`` on multi-label
  indicator arrays; Tsoumakas & Katakis, "Multi-label classification: an
  overview" (2007).
  """
  logits = _checks.check_logits(logits)
  t = _checks.check_targets(logits, targets, axis, "multilabel_accuracy")
  z = _checks.to_last_axis(logits, axis)
  t = _checks.to_last_axis(t, axis)
  match = (z > threshold) == (t > 0.5)
  exact = jnp.all(match, axis=-1).astype(z.dtype)
  return _numerics.finalize(exact, bad=_numerics.nonfinite_rows(z, None))


def negative_log_likelihood(logits: ArrayLike, labels: ArrayLike, *, axis: int = -1) -> jax.Array:
  r"""Per-example negative log-likelihood of the labels under ``softmax(logits)``.

  .. math::
    \mathrm{NLL} = -\log \operatorname{softmax}(z)_y
      = \log\sum_c e^{z_c - m} - (z_y - m), \qquad m = \max_c z_c

  This metric takes LOGITS: it is the softmax cross-entropy, applied to
  held-out data (a standard calibration-sensitive metric). `jaxloss.nll_loss`
  takes LOG-PROBABILITIES instead (PyTorch's ``nll_loss``); the two agree on
  normalized inputs, ``negative_log_likelihood(z, y) == nll_loss(jax.nn.log_softmax(z), y)``.
  Probability targets of the logits' shape give
  :math:`-\sum_c t_c \log \operatorname{softmax}(z)_c`. Computed from
  ``z - max z`` (exact under a common shift); a ``-inf`` logit is a class of
  probability 0.

  Args:
    logits: ``[..., K, ...]`` floating logits (class axis ``axis``).
    labels: integer labels ``[...]`` or probability targets of the logits' shape.
    axis: the class axis.

  Returns:
    ``[...]`` per-example NLL; NaN for an out-of-range integer label and for an
    example with a NaN or ``+inf`` logit.

  Example:
    >>> import jax, jax.numpy as jnp, jaxloss
    >>> logits_BxC = jnp.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    >>> labels_B = jnp.array([0, 2])
    >>> print(jaxloss.negative_log_likelihood(logits_BxC, labels_B).round(4))
    [0.1698 1.0986]
    >>> print(jaxloss.nll_loss(jax.nn.log_softmax(logits_BxC), labels_B).round(4))
    [0.1698 1.0986]

  Reference: Guo et al., "On Calibration of Modern Neural Networks", ICML 2017,
  sec. 2 (NLL as a calibration measure).
  """
  logits = _checks.check_logits(logits)
  labels = jnp.asarray(labels)
  if _is_targets(logits, labels):
    t = _checks.to_last_axis(
        _checks.check_targets(logits, labels, axis, "negative_log_likelihood"), axis)
    parts = _numerics.softmax_parts(_checks.to_last_axis(logits, axis), None)
    nll = -jnp.sum(_numerics.xlogy_safe(t, parts.log_softmax()), axis=-1)
  else:
    nll, parts, *_ = integer_label_nll(
        logits, labels, axis=axis, where=None, weights=None, example_mask=None,
        fn="negative_log_likelihood")
  return _numerics.finalize(nll, bad=parts.bad, dead=parts.dead)


def calibration_bins(
    logits: ArrayLike, labels: ArrayLike, *, num_bins: int = 15, axis: int = -1,
    example_mask: ArrayLike | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
  r"""Reliability-diagram statistics: per-bin counts, mean confidence and accuracy.

  The confidence of an example is its largest softmax probability
  :math:`\hat p = \max_c \operatorname{softmax}(z)_c`; the prediction is the
  argmax. Confidences fall in ``num_bins`` equal-width bins of ``[0, 1]``: bin
  :math:`b` covers :math:`(b/n, (b+1)/n]` and the first bin also holds 0. For
  the set :math:`B_b` of kept examples in bin :math:`b`:

  .. math::
    n_b = |B_b|, \quad
    \operatorname{conf}_b = \frac{1}{n_b}\sum_{i \in B_b} \hat p_i, \quad
    \operatorname{acc}_b = \frac{1}{n_b}\sum_{i \in B_b} \mathbb{1}[\hat y_i = y_i]

  An empty bin has ``conf = acc = 0`` (not NaN). A confidence exactly on an
  edge :math:`b/n` belongs to bin :math:`b-1` (bins are closed on the right).
  ``-inf`` logits are classes of probability 0. If any kept example has a NaN
  or ``+inf`` logit (or no class left: every logit ``-inf``), both float outputs
  are NaN in every bin (non-finite in, non-finite out); ``counts`` stay integers.

  Args:
    logits: ``[..., K, ...]`` floating logits (class axis ``axis``).
    labels: integer labels ``[...]`` or one-hot targets of the logits' shape.
    num_bins: number of equal-width bins ``n`` (a Python int, static under jit).
    axis: the class axis.
    example_mask: optional boolean PER-EXAMPLE mask ``[...]``; ``False``
      examples are left out (their logits may be anything, even NaN).

  Returns:
    ``(counts, mean_confidence, accuracy)``, each of shape ``[num_bins]``:
    counts int32, the others float32 (float64 for float64 logits).

  Example:
    >>> import jax.numpy as jnp, jaxloss
    >>> logits_BxC = jnp.array([[2.0, 0.0], [0.0, 0.0], [0.0, 3.0], [1.0, 0.0]])
    >>> counts, conf, acc = jaxloss.calibration_bins(
    ...     logits_BxC, jnp.array([0, 1, 0, 1]), num_bins=4)
    >>> print(counts)
    [0 1 1 2]
    >>> print(conf.round(4))
    [0.     0.5    0.7311 0.9167 ]
    >>> print(acc.round(4))
    [0.  0.  0.  0.5]

  Reference: Naeini, Cooper & Hauskrecht, "Obtaining Well Calibrated
  Probabilities Using Bayesian Binning", AAAI 2015; Guo et al., "On Calibration
  of Modern Neural Networks", ICML 2017, sec. 2 (reliability diagrams).
  """
  num_bins = _check_num_bins(num_bins)
  z, y = _logits_and_labels(logits, labels, axis, "calibration_bins")
  keep = _checks.check_example_mask(example_mask, y.shape)
  # softmax_parts works from z - max z (no overflow at +-1e4) on the finite,
  # unmasked logits only: the confidences below are finite in every row.
  parts = _numerics.softmax_parts(z, None)
  undefined = (parts.bad | parts.dead).reshape(-1)
  conf = jnp.max(parts.probabilities(), axis=-1).reshape(-1)
  correct = (jnp.argmax(z, axis=-1) == y).astype(conf.dtype).reshape(-1)
  if keep is None:
    weight = jnp.ones_like(conf)
  else:
    keep = keep.reshape(-1)
    weight = keep.astype(conf.dtype)
    undefined = undefined & keep
  # Bin b covers (edges[b], edges[b+1]]. searchsorted(side="left") returns the
  # first edge >= conf, so a confidence exactly on an edge goes to the bin below
  # it; conf = 0 gives -1 and is clipped into the first bin. The edges are
  # computed as b / n (a correctly rounded division) so that they are exactly
  # the edges a NumPy reference computes the same way.
  edges = jnp.arange(num_bins + 1, dtype=conf.dtype) / num_bins
  bins = jnp.clip(jnp.searchsorted(edges, conf, side="left") - 1, 0, num_bins - 1)
  counts = jax.ops.segment_sum(weight, bins, num_segments=num_bins)
  sum_conf = jax.ops.segment_sum(weight * conf, bins, num_segments=num_bins)
  sum_correct = jax.ops.segment_sum(weight * correct, bins, num_segments=num_bins)
  any_undefined = jnp.any(undefined)
  nan = jnp.full((num_bins,), jnp.nan, conf.dtype)
  return (
      counts.astype(jnp.int32),
      jnp.where(any_undefined, nan, _numerics.safe_divide(sum_conf, counts)),
      jnp.where(any_undefined, nan, _numerics.safe_divide(sum_correct, counts)),
  )


def expected_calibration_error(
    logits: ArrayLike, labels: ArrayLike, *, num_bins: int = 15, axis: int = -1,
    example_mask: ArrayLike | None = None,
) -> jax.Array:
  r"""Expected calibration error (ECE) with equal-width confidence bins.

  .. math::
    \mathrm{ECE} = \sum_{b=1}^{n} \frac{n_b}{N}
      \left|\operatorname{acc}_b - \operatorname{conf}_b\right|

  with the bins of `calibration_bins` and :math:`N` the number of kept
  examples. 0 means perfectly calibrated; an empty selection gives 0. NaN if
  any kept example has a NaN or ``+inf`` logit (see `calibration_bins`).

  Args:
    logits: ``[..., K, ...]`` floating logits (class axis ``axis``).
    labels: integer labels ``[...]`` or one-hot targets of the logits' shape.
    num_bins: number of equal-width bins (15 as in Guo et al. 2017).
    axis: the class axis.
    example_mask: optional boolean PER-EXAMPLE mask ``[...]``; ``False``
      examples are left out.

  Returns:
    A scalar, float32 (float64 for float64 logits).

  Example:
    >>> import jax.numpy as jnp, jaxloss
    >>> logits_BxC = jnp.array([[2.0, 0.0], [0.0, 0.0], [0.0, 3.0], [1.0, 0.0]])
    >>> print(jaxloss.expected_calibration_error(
    ...     logits_BxC, jnp.array([0, 1, 0, 1]), num_bins=4).round(4))
    0.5161

  Reference: Naeini, Cooper & Hauskrecht, AAAI 2015; Guo, Pleiss, Sun &
  Weinberger, "On Calibration of Modern Neural Networks", ICML 2017, eq. (3).
  """
  counts, conf, acc = calibration_bins(
      logits, labels, num_bins=num_bins, axis=axis, example_mask=example_mask)
  n_b = counts.astype(conf.dtype)
  # Every bin is NaN or none is: the selection keeps empty bins' 0 * NaN in.
  ece = _numerics.safe_divide(jnp.sum(jnp.where(n_b > 0, n_b * jnp.abs(acc - conf), 0.0)),
                              jnp.sum(n_b))
  return jnp.where(jnp.isnan(conf[0]), jnp.nan, ece)
