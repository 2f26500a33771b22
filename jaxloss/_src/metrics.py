"""Evaluation metrics: accuracy, likelihood, and calibration (reliability bins, ECE).

Every function here is pure and jit-able. The class axis is ``axis`` (default
-1); per-example metrics return the logits' shape without the class axis, the
calibration metrics reduce over every example. For those, ``where`` is a
boolean PER-EXAMPLE mask (the per-example shape; ``False`` = leave the example
out), unlike the losses, where ``where`` masks classes.

Labels are integer class ids (the logits' shape without the class axis) or
one-hot / probability targets of the logits' shape, whose argmax is the label.

``jaxloss.metrics.brier_score`` is `jaxloss.squared.brier_score` itself (the
same object, not a copy), re-exported so that the evaluation metrics can be
found in one place. It is resolved lazily and left out of ``__all__``: the
top-level ``jaxloss.brier_score`` is exported by `jaxloss.squared`, so the two
modules do not depend on each other's import order.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxloss._src import checks as _checks
from jaxloss._src.cross_entropy import softmax_cross_entropy
from jaxloss._src.cross_entropy import softmax_cross_entropy_with_integer_labels
from jaxloss._src.reductions import safe_divide

__all__ = [
    "accuracy",
    "calibration_bins",
    "expected_calibration_error",
    "multilabel_accuracy",
    "negative_log_likelihood",
]


def __getattr__(name: str):
  # PEP 562 lazy re-export of the Brier score (see the module docstring).
  if name == "brier_score":
    from jaxloss.squared import brier_score  # pylint: disable=import-outside-toplevel
    return brier_score
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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


def accuracy(logits, labels, *, axis: int = -1) -> jax.Array:
  r"""Per-example top-1 accuracy: 1 where the predicted class is the label, else 0.

  .. math::
    a = \mathbb{1}\left[\arg\max_c z_c = y\right]

  Ties in the logits go to the first maximal class (``jnp.argmax``). An
  out-of-range label is never equal to the argmax, so it scores 0.

  Args:
    logits: ``[..., K, ...]`` floating logits (class axis ``axis``).
    labels: integer labels ``[...]`` (the logits' shape without the class axis),
      or one-hot / probability targets of the logits' shape (label = argmax).
    axis: the class axis.

  Returns:
    ``[...]`` floating 0/1 values (float32, or float64 for float64 logits);
    ``jaxloss.weighted_mean`` of them is the accuracy of a batch.

  Example:
    >>> import jax.numpy as jnp, jaxloss
    >>> logits_BxC = jnp.array([[2.0, 0.0, -1.0], [0.0, 1.0, 3.0]])
    >>> print(jaxloss.accuracy(logits_BxC, jnp.array([0, 1])).round(4))
    [1. 0.]

  Reference: the top-1 accuracy of ``torchmetrics.Accuracy`` /
  ``sklearn.metrics.accuracy_score``.
  """
  z, y = _logits_and_labels(logits, labels, axis, "accuracy")
  return (jnp.argmax(z, axis=-1) == y).astype(z.dtype)


def multilabel_accuracy(logits, targets, *, threshold: float = 0.0, axis: int = -1) -> jax.Array:
  r"""Per-example exact-match (subset) accuracy of multi-label predictions.

  .. math::
    a = \mathbb{1}\left[\forall c:\ (z_c > \tau) = (t_c > \tfrac12)\right]

  The predicted set is ``logits > threshold``; at ``threshold=0`` that is
  ``sigmoid(logits) > 0.5``. Targets are binarized at 0.5 (so 0/1 multi-hot,
  boolean, and soft targets all work).

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
  return jnp.all(match, axis=-1).astype(z.dtype)


def negative_log_likelihood(logits, labels, *, axis: int = -1) -> jax.Array:
  r"""Per-example negative log-likelihood of the labels under ``softmax(logits)``.

  .. math::
    \mathrm{NLL} = -\log \operatorname{softmax}(z)_y
      = \log\sum_c e^{z_c} - z_y

  This is `softmax_cross_entropy_with_integer_labels` (or
  `softmax_cross_entropy` for one-hot / probability targets); it is listed
  here because held-out NLL is a standard calibration-sensitive metric.

  Args:
    logits: ``[..., K, ...]`` floating logits (class axis ``axis``).
    labels: integer labels ``[...]`` or probability targets of the logits' shape.
    axis: the class axis.

  Returns:
    ``[...]`` per-example NLL; NaN for an out-of-range integer label.

  Example:
    >>> import jax.numpy as jnp, jaxloss
    >>> logits_BxC = jnp.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    >>> print(jaxloss.negative_log_likelihood(logits_BxC, jnp.array([0, 2])).round(4))
    [0.1698 1.0986]

  Reference: Guo et al., "On Calibration of Modern Neural Networks", ICML 2017,
  sec. 2 (NLL as a calibration measure).
  """
  logits = _checks.check_logits(logits)
  labels = jnp.asarray(labels)
  if _is_targets(logits, labels):
    return softmax_cross_entropy(logits, labels, axis=axis)
  return softmax_cross_entropy_with_integer_labels(logits, labels, axis=axis)


def calibration_bins(
    logits, labels, *, num_bins: int = 15, axis: int = -1, where=None
) -> tuple[jax.Array, jax.Array, jax.Array]:
  r"""Reliability-diagram statistics: per-bin counts, mean confidence and accuracy.

  The confidence of an example is its largest softmax probability
  :math:`\hat p = \max_c \operatorname{softmax}(z)_c`; the prediction is the
  argmax. Confidences fall in ``num_bins`` equal-width bins of ``[0, 1]``: bin
  :math:`b` covers :math:`(b/n, (b+1)/n]` and the first bin also holds 0. For
  the set :math:`B_b` of (unmasked) examples in bin :math:`b`:

  .. math::
    n_b = |B_b|, \quad
    \operatorname{conf}_b = \frac{1}{n_b}\sum_{i \in B_b} \hat p_i, \quad
    \operatorname{acc}_b = \frac{1}{n_b}\sum_{i \in B_b} \mathbb{1}[\hat y_i = y_i]

  An empty bin has ``conf = acc = 0`` (not NaN). A confidence exactly on an
  edge :math:`b/n` belongs to bin :math:`b-1` (bins are closed on the right).

  Args:
    logits: ``[..., K, ...]`` floating logits (class axis ``axis``).
    labels: integer labels ``[...]`` or one-hot targets of the logits' shape.
    num_bins: number of equal-width bins ``n`` (a Python int, static under jit).
    axis: the class axis.
    where: optional boolean PER-EXAMPLE mask ``[...]``; ``False`` examples are
      left out (their logits may be anything, even NaN).

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
  keep = _checks.check_example_mask(where, y.shape)
  # max softmax probability = 1 / sum_c exp(z_c - max z): jax.nn.softmax
  # subtracts the row maximum first, so +-1e4 logits do not overflow.
  conf = jnp.max(jax.nn.softmax(z, axis=-1), axis=-1).reshape(-1)
  correct = (jnp.argmax(z, axis=-1) == y).astype(conf.dtype).reshape(-1)
  if keep is None:
    weight = jnp.ones_like(conf)
  else:
    weight = keep.reshape(-1).astype(conf.dtype)
    # Masked examples may hold NaN logits: select them away before summing
    # (0 * NaN would still be NaN).
    conf = jnp.where(weight > 0, conf, 0.0)
    correct = jnp.where(weight > 0, correct, 0.0)
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
  return (
      counts.astype(jnp.int32),
      safe_divide(sum_conf, counts),
      safe_divide(sum_correct, counts),
  )


def expected_calibration_error(
    logits, labels, *, num_bins: int = 15, axis: int = -1, where=None
) -> jax.Array:
  r"""Expected calibration error (ECE) with equal-width confidence bins.

  .. math::
    \mathrm{ECE} = \sum_{b=1}^{n} \frac{n_b}{N}
      \left|\operatorname{acc}_b - \operatorname{conf}_b\right|

  with the bins of `calibration_bins` and :math:`N` the number of unmasked
  examples. 0 means perfectly calibrated; an empty selection gives 0.

  Args:
    logits: ``[..., K, ...]`` floating logits (class axis ``axis``).
    labels: integer labels ``[...]`` or one-hot targets of the logits' shape.
    num_bins: number of equal-width bins (15 as in Guo et al. 2017).
    axis: the class axis.
    where: optional boolean PER-EXAMPLE mask ``[...]``.

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
      logits, labels, num_bins=num_bins, axis=axis, where=where)
  n_b = counts.astype(conf.dtype)
  return safe_divide(jnp.sum(n_b * jnp.abs(acc - conf)), jnp.sum(n_b))
