"""Multi-label decoding (logits -> multi-hot sets) and set-based scores (F1, exact match).

Decoding turns per-class logits into a multi-hot prediction (1 = class
predicted), either the ``k`` highest logits (`top_k_multi_hot`) or every logit
above a threshold (`threshold_multi_hot`). The scores compare multi-hot
predictions with multi-hot targets:

* `per_class_f1` / `macro_f1` -- F1 per class over the whole batch, and its
  unweighted mean over classes;
* `exact_set_accuracy` -- per example, 1 when the predicted set equals the
  target set.

Multi-hot inputs may be float, integer or boolean; they are binarized at 0.5
(``x > 0.5``), so 0/1 arrays of any dtype and booleans all work. The class
axis is ``axis`` (default -1); every other axis indexes examples. Everything is
pure and jit-able with static shapes.
"""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
import numpy as np

from jax.typing import ArrayLike

from jaxloss._src import checks as _checks

__all__ = [
    "exact_set_accuracy",
    "macro_f1",
    "per_class_f1",
    "threshold_multi_hot",
    "top_k_multi_hot",
]


def _binarize_pair(predictions, targets, axis: int, fn: str):
  """Boolean predictions and targets (class axis last) and the float result dtype."""
  p = jnp.asarray(predictions)
  t = jnp.asarray(targets)
  for name, x in (("predictions", p), ("targets", t)):
    if not (jnp.issubdtype(x.dtype, jnp.number) or x.dtype == jnp.bool_):
      raise TypeError(f"{name} must be numeric or boolean multi-hot in {fn}, got dtype {x.dtype}.")
    if jnp.issubdtype(x.dtype, jnp.complexfloating):
      raise TypeError(f"{name} must be real multi-hot in {fn}, got dtype {x.dtype}.")
    if x.ndim == 0:
      raise ValueError(f"{name} must have a class axis in {fn}, got a scalar.")
  if p.shape != t.shape:
    hint = ""
    if p.ndim == t.ndim + 1 or t.ndim == p.ndim + 1:
      hint = (" One of them looks like integer class labels: convert with "
              "jax.nn.one_hot(labels, num_classes).")
    raise ValueError(
        f"predictions shape {p.shape} must equal targets shape {t.shape} in {fn}.{hint}")
  dtype = np.dtype(jnp.float32)
  for x in (p, t):
    if jnp.issubdtype(x.dtype, jnp.floating):
      dtype = np.dtype(jnp.promote_types(dtype, x.dtype))
  p = _checks.to_last_axis(p, axis) > 0.5
  t = _checks.to_last_axis(t, axis) > 0.5
  return p, t, dtype


def _check_k(k, num_classes: int) -> int:
  if not isinstance(k, numbers.Integral) or isinstance(k, bool):
    raise TypeError(f"k must be a Python int (static under jit), got {k!r}.")
  if not 0 <= k <= num_classes:
    raise ValueError(
        f"k={k} is out of range: it must be in [0, {num_classes}] (the number of classes).")
  return int(k)


def top_k_multi_hot(logits: ArrayLike, *, k: int, axis: int = -1) -> jax.Array:
  r"""Multi-hot prediction of the ``k`` highest logits per example.

  .. math::
    \hat y_c = \mathbb{1}\left[c \in \operatorname{top}_k(z)\right]

  Ties are broken by the lowest class index, as in ``jax.lax.top_k`` (which is
  used): of equal logits straddling the cut, the earlier classes are taken.
  Every row gets exactly ``k`` ones.

  Args:
    logits: ``[..., K, ...]`` floating logits (class axis ``axis``).
    k: number of classes to predict per example, a Python int in ``[0, K]``.
    axis: the class axis.

  Returns:
    Multi-hot ``0./1.`` array of the logits' shape, float32 (float64 for
    float64 logits).

  Example:
    >>> import jax.numpy as jnp, jaxloss
    >>> logits_BxC = jnp.array([[0.1, 2.0, -1.0, 1.5], [1.0, 1.0, 1.0, 0.0]])
    >>> print(jaxloss.top_k_multi_hot(logits_BxC, k=2))
    [[0. 1. 0. 1.]
     [1. 1. 0. 0.]]

  Reference: top-k decoding of multi-label classifiers, ``torch.topk`` /
  ``jax.lax.top_k``; Zhang & Zhou, "A Review on Multi-Label Learning
  Algorithms", IEEE TKDE 2014.
  """
  logits = _checks.check_logits(logits)
  ax = _checks.normalize_axis(axis, logits.ndim)
  z = _checks.to_last_axis(logits, ax)
  num_classes = z.shape[-1]
  k = _check_k(k, num_classes)
  if k == 0:
    return jnp.zeros(logits.shape, logits.dtype)
  _, idx = jax.lax.top_k(z, k)  # [..., k], ties -> lower index first
  # Scatter ones at the selected indices (a [..., k, K] one-hot sum would cost
  # k times the memory). The k indices of a row are distinct.
  hot = jnp.zeros(z.shape, z.dtype)
  hot = jnp.put_along_axis(hot, idx, jnp.ones(idx.shape, z.dtype), axis=-1, inplace=False)
  return jnp.moveaxis(hot, -1, ax)


def threshold_multi_hot(
    logits: ArrayLike, *, threshold: float | ArrayLike = 0.0, axis: int = -1,
) -> jax.Array:
  r"""Multi-hot prediction of every class whose logit is above a threshold.

  .. math::
    \hat y_c = \mathbb{1}\left[z_c > \tau\right]

  At ``threshold=0`` this is ``sigmoid(logits) > 0.5``; a probability
  threshold :math:`p` corresponds to :math:`\tau = \log(p / (1 - p))`. The
  comparison is strict (a logit equal to :math:`\tau` is not predicted), as in
  `jaxloss.multilabel_accuracy`. A row may get no ones at all.

  Args:
    logits: ``[..., K, ...]`` floating logits (class axis ``axis``).
    threshold: the logit threshold :math:`\tau` (a number or an array
      broadcastable to the logits, e.g. one threshold per class).
    axis: the class axis (only validated; the decision is elementwise).

  Returns:
    Multi-hot ``0./1.`` array of the logits' shape, float32 (float64 for
    float64 logits).

  Example:
    >>> import jax.numpy as jnp, jaxloss
    >>> logits_BxC = jnp.array([[0.1, 2.0, -1.0], [-0.5, 0.0, 3.0]])
    >>> print(jaxloss.threshold_multi_hot(logits_BxC))
    [[1. 1. 0.]
     [0. 0. 1.]]

  Reference: binary relevance decoding, Zhang & Zhou, IEEE TKDE 2014;
  ``torchmetrics.classification.MultilabelF1Score(threshold=...)``.
  """
  logits = _checks.check_logits(logits)
  _checks.normalize_axis(axis, logits.ndim)
  tau = jnp.asarray(threshold)
  try:
    tau = jnp.broadcast_to(tau, logits.shape)
  except ValueError:
    raise ValueError(
        f"threshold shape {tau.shape} does not broadcast to logits shape {logits.shape}."
    ) from None
  return (logits > tau).astype(logits.dtype)


def per_class_f1(predictions: ArrayLike, targets: ArrayLike, *, axis: int = -1) -> jax.Array:
  r"""F1 score of each class over the whole batch.

  With true positives, false positives and false negatives of class :math:`c`
  counted over every example (every axis but the class axis):

  .. math::
    F_1^{(c)} = \frac{2\,TP_c}{2\,TP_c + FP_c + FN_c}

  the harmonic mean of precision and recall. A class with neither positives
  nor predictions (:math:`TP = FP = FN = 0`) has the undefined 0/0 set to
  **1.0**: predicting nothing for an absent class is perfect. (scikit-learn's
  ``f1_score`` sets it to 0.0 by default, ``zero_division=1.0`` matches this.)

  Args:
    predictions: multi-hot predictions ``[..., K, ...]`` (float, int or bool;
      binarized at 0.5), e.g. from `top_k_multi_hot` / `threshold_multi_hot`.
    targets: multi-hot targets of the same shape.
    axis: the class axis.

  Returns:
    ``[K]`` scores in ``[0, 1]``, float32 (float64 if an input is float64).

  Example:
    >>> import jax.numpy as jnp, jaxloss
    >>> pred_BxC = jnp.array([[1, 0, 1, 0], [1, 1, 0, 0], [0, 0, 1, 0]])
    >>> true_BxC = jnp.array([[1, 0, 0, 0], [1, 0, 0, 0], [1, 0, 1, 0]])
    >>> print(jaxloss.per_class_f1(pred_BxC, true_BxC).round(4))
    [0.8    0.     0.6667 1.    ]

  Reference: van Rijsbergen, "Information Retrieval" (1979), the F-measure;
  ``sklearn.metrics.f1_score(average=None, zero_division=1.0)`` on indicator
  arrays.
  """
  p, t, dtype = _binarize_pair(predictions, targets, axis, "per_class_f1")
  k = p.shape[-1]
  p = p.reshape(-1, k)
  t = t.reshape(-1, k)
  # Integer counts: exact (no float rounding for batches above 2**24).
  tp = jnp.sum(p & t, axis=0)
  fp = jnp.sum(p & ~t, axis=0)
  fn = jnp.sum(~p & t, axis=0)
  num = (2 * tp).astype(dtype)
  den = (2 * tp + fp + fn).astype(dtype)
  empty = den == 0
  return jnp.where(empty, 1.0, num / jnp.where(empty, 1.0, den)).astype(dtype)


def macro_f1(predictions: ArrayLike, targets: ArrayLike, *, axis: int = -1) -> jax.Array:
  r"""Macro-averaged F1: the unweighted mean of `per_class_f1` over classes.

  .. math::
    F_1^{macro} = \frac{1}{K} \sum_{c=1}^{K} F_1^{(c)}

  Classes absent from both predictions and targets count as 1.0 (see
  `per_class_f1`); to leave them out, average `per_class_f1` over the classes
  you want instead.

  Args:
    predictions: multi-hot predictions ``[..., K, ...]`` (binarized at 0.5).
    targets: multi-hot targets of the same shape.
    axis: the class axis.

  Returns:
    A scalar in ``[0, 1]``, float32 (float64 if an input is float64).

  Example:
    >>> import jax.numpy as jnp, jaxloss
    >>> pred_BxC = jnp.array([[1, 0, 1, 0], [1, 1, 0, 0], [0, 0, 1, 0]])
    >>> true_BxC = jnp.array([[1, 0, 0, 0], [1, 0, 0, 0], [1, 0, 1, 0]])
    >>> print(jaxloss.macro_f1(pred_BxC, true_BxC).round(4))
    0.6167

  Reference: Yang, "An evaluation of statistical approaches to text
  categorization", Information Retrieval 1999 (macro-averaging);
  ``sklearn.metrics.f1_score(average="macro", zero_division=1.0)``.
  """
  return jnp.mean(per_class_f1(predictions, targets, axis=axis))


def exact_set_accuracy(
    predictions: ArrayLike, targets: ArrayLike, *, axis: int = -1,
) -> jax.Array:
  r"""Per-example exact match: 1 when the predicted set equals the target set.

  .. math::
    a = \mathbb{1}\left[\forall c:\ \hat y_c = y_c\right]

  `jaxloss.multilabel_accuracy` is the same score computed from logits; this
  one takes the decoded multi-hot predictions (e.g. from `top_k_multi_hot`).

  Args:
    predictions: multi-hot predictions ``[..., K, ...]`` (binarized at 0.5).
    targets: multi-hot targets of the same shape.
    axis: the class axis.

  Returns:
    ``[...]`` ``0./1.`` values (the inputs' shape without the class axis),
    float32 (float64 if an input is float64).

  Example:
    >>> import jax.numpy as jnp, jaxloss
    >>> pred_BxC = jnp.array([[1, 0, 1], [1, 1, 0]])
    >>> true_BxC = jnp.array([[1, 0, 1], [1, 0, 0]])
    >>> print(jaxloss.exact_set_accuracy(pred_BxC, true_BxC))
    [1. 0.]

  Reference: subset accuracy, ``sklearn.metrics.accuracy_score`` on multi-label
  indicator arrays; Tsoumakas & Katakis, "Multi-label classification: an
  overview" (2007).
  """
  p, t, dtype = _binarize_pair(predictions, targets, axis, "exact_set_accuracy")
  return jnp.all(p == t, axis=-1).astype(dtype)
