"""Open-set recognition: scoring the rejection of never-seen (out-of-distribution) inputs.

A classifier trained on known classes also meets inputs from none of them. An
open-set recognizer gives every input a scalar *score* and rejects the inputs
whose score falls below a threshold. Convention throughout this module: a
HIGHER score means "more likely a seen / known (in-distribution) input".

Scores (``[B]``, one per input) from logits ``[B, K]``:

* `max_softmax_score` -- :math:`\\max_c \\operatorname{softmax}(z)_c`, the
  baseline of Hendrycks & Gimpel (2017);
* `max_sigmoid_score` -- :math:`\\max_c \\sigma(z_c)`, for one-vs-rest
  (sigmoid) heads, where all-low outputs mean "none of the known classes";
* `not_class_score` -- :math:`1 - \\operatorname{softmax}(z)_{na}` for a model
  trained with an explicit background / "not applicable" (NA) class ``na``:
  the probability mass on the known classes.

Evaluation (1-D score vectors of any lengths >= 1):

* `auroc` -- threshold-free separation of in- from out-of-distribution scores;
* `threshold_at_recall` -- the threshold that keeps a given share (e.g. 95%)
  of the in-distribution inputs;
* `rejection_rate` -- the share of out-of-distribution inputs that such a
  threshold rejects (1 - the "FPR at 95% TPR" of the OOD literature).

Everything is pure and jit-able; shapes are static, values never reach Python.

Non-finite in, non-finite out (the contract of `jaxloss._src.numerics`): a NaN
or ``+inf`` logit makes that input's score NaN (``-inf`` masks a class), and a
NaN score makes `auroc`, `threshold_at_recall` and `rejection_rate` NaN (it
would otherwise sort above every number and give a meaningless value).
``+-inf`` scores are ordinary, ordered values.
"""

from __future__ import annotations

import fractions
import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np

from jax.typing import ArrayLike

from jaxloss._src import checks as _checks
from jaxloss._src import numerics as _numerics

__all__ = [
    "auroc",
    "max_sigmoid_score",
    "max_softmax_score",
    "not_class_score",
    "rejection_rate",
    "threshold_at_recall",
]


# ---------------------------------------------------------------- helpers
def _check_scores(scores, name: str, fn: str) -> jax.Array:
  """A non-empty 1-D array of real scores (float, integer or bool -> int32)."""
  scores = jnp.asarray(scores)
  if scores.dtype == jnp.bool_:
    scores = scores.astype(jnp.int32)
  if not (jnp.issubdtype(scores.dtype, jnp.floating)
          or jnp.issubdtype(scores.dtype, jnp.integer)):
    raise TypeError(
        f"{name} must be a real (floating or integer) array in {fn}, got dtype "
        f"{scores.dtype}.")
  if scores.ndim != 1:
    hint = (" Flatten with .reshape(-1), or jax.vmap over the leading axes for "
            "one value per row.") if scores.ndim > 1 else ""
    raise ValueError(
        f"{name} must be 1-D (one score per input) in {fn}, got shape "
        f"{scores.shape}.{hint}")
  if scores.shape[0] == 0:
    raise ValueError(f"{name} must hold at least one score in {fn}, got an empty array.")
  return scores


def _float_dtype(*arrays) -> np.dtype:
  """float64 if any input is float64, else float32 (integer inputs count as float32)."""
  dtype = np.dtype(jnp.float32)
  for a in arrays:
    if jnp.issubdtype(a.dtype, jnp.floating):
      dtype = np.dtype(jnp.promote_types(dtype, a.dtype))
  return dtype


def _upcast(scores: jax.Array) -> jax.Array:
  """bf16 / fp16 scores -> float32 (lossless); other dtypes unchanged."""
  if jnp.issubdtype(scores.dtype, jnp.floating):
    return scores.astype(_checks.compute_dtype(scores.dtype))
  return scores


def _any_nan(*scores: jax.Array) -> jax.Array:
  """True when a floating score vector holds a NaN (integer scores never do)."""
  nan = jnp.zeros((), bool)
  for s in scores:
    if jnp.issubdtype(s.dtype, jnp.floating):
      nan = nan | jnp.any(jnp.isnan(s))
  return nan


def _num_kept(recall, n: int) -> jax.Array | int:
  """``ceil(recall * n)``: how many of n in-distribution scores must be kept.

  A Python number is read as the decimal it prints as (``0.95`` -> 19/20, via
  its shortest repr), so ``ceil`` is exact and ``recall=0.95, n=20`` keeps 19,
  not 20 as the binary value 0.9499999999999999556 * 20 might round to. A
  traced recall is computed in floating point, and products within ``n * eps``
  above an integer are rounded down to it for the same reason (so a traced
  recall is resolved only to its dtype's precision).
  """
  if isinstance(recall, numbers.Real):  # Python / NumPy number (not a jax array)
    if not 0.0 < float(recall) <= 1.0:
      raise ValueError(f"recall must be in (0, 1], got {recall}.")
    # str() of a float / NumPy float is its shortest round-trip decimal
    # (np.float32(0.3) -> "0.3", not 0.30000001192...).
    text = str(recall) if isinstance(recall, (float, np.floating)) else str(float(recall))
    return min(max(math.ceil(fractions.Fraction(text) * n), 1), n)
  recall = jnp.asarray(recall)
  if recall.ndim != 0:
    raise ValueError(f"recall must be a scalar, got shape {recall.shape}.")
  if not jnp.issubdtype(recall.dtype, jnp.floating):
    raise TypeError(f"recall must be a floating-point scalar, got dtype {recall.dtype}.")
  # Work in recall's own precision (>= float32): the tolerance must cover the
  # representation error of recall itself (n * eps / 2) plus the rounding of
  # the product (<= n * eps / 2); float64 arithmetic on a float32 recall would
  # not hide the former.
  dtype = _checks.compute_dtype(recall.dtype)
  rn = recall.astype(dtype) * n
  k = jnp.ceil(rn - n * jnp.finfo(dtype).eps).astype(jnp.int32)
  # A traced recall cannot be range-checked; out-of-range values are clipped.
  return jnp.clip(k, 1, n)


# ---------------------------------------------------------------- evaluation
def auroc(scores_in: ArrayLike, scores_out: ArrayLike) -> jax.Array:
  r"""Area under the ROC curve for separating in- from out-of-distribution scores.

  In-distribution inputs are the positives. With :math:`n_{in}` scores
  :math:`s_i` and :math:`n_{out}` scores :math:`u_j`:

  .. math::
    \mathrm{AUROC} = \frac{1}{n_{in} n_{out}} \sum_{i,j}
      \left(\mathbb{1}[s_i > u_j] + \tfrac12 \mathbb{1}[s_i = u_j]\right)
    = P(s > u) + \tfrac12 P(s = u) = \frac{U}{n_{in} n_{out}}

  with :math:`U` the Mann-Whitney statistic. It is computed exactly, ties
  included: the out-scores are sorted once and, for each in-score,
  ``searchsorted`` counts the out-scores below it (``side="left"``) and at
  or below it (``side="right"``); the average of the two counts is the
  in-score's average-rank contribution to :math:`U`. O((n_in + n_out) log n_out)
  time, O(n_in + n_out) memory, never an ``n_in x n_out`` matrix. 1 means
  every in-score is above every out-score, 0.5 is chance. A NaN score gives NaN.

  Args:
    scores_in: ``[n_in]`` scores of in-distribution inputs (floating, integer
      or bool), ``n_in >= 1``. Higher = more likely in-distribution.
    scores_out: ``[n_out]`` scores of out-of-distribution inputs, ``n_out >= 1``.

  Returns:
    A scalar in ``[0, 1]``: float32, or float64 if either input is float64;
    NaN if a score is NaN.

  Example:
    >>> import jax.numpy as jnp, jaxloss
    >>> s_in = jnp.array([0.9, 0.8, 0.4, 0.7])
    >>> s_out = jnp.array([0.1, 0.4, 0.75])
    >>> print(jaxloss.auroc(s_in, s_out).round(4))
    0.7917

  Reference: Hanley & McNeil, "The meaning and use of the area under a receiver
  operating characteristic (ROC) curve", Radiology 1982; Mann & Whitney 1947;
  ``sklearn.metrics.roc_auc_score`` with in = label 1.
  """
  s_in = _check_scores(scores_in, "scores_in", "auroc")
  s_out = _check_scores(scores_out, "scores_out", "auroc")
  dtype = _float_dtype(s_in, s_out)
  # Compare in the common dtype of the inputs (not the result dtype): int64
  # scores above 2**24 would collide if they were cast to float32 first.
  common = jnp.promote_types(s_in.dtype, s_out.dtype)
  s_in, s_out = s_in.astype(common), s_out.astype(common)
  u_sorted = jnp.sort(s_out)
  below = jnp.searchsorted(u_sorted, s_in, side="left")      # #{u_j < s_i}
  at_or_below = jnp.searchsorted(u_sorted, s_in, side="right")  # #{u_j <= s_i}
  # (below + at_or_below) / 2 = #{u < s} + #{u == s} / 2. Divide per in-score
  # before summing: the integer counts (< 2**24 each) are exact in float32,
  # while a single sum over all pairs could exceed float32's exact range.
  per_in = (below + at_or_below).astype(dtype) / (2 * s_out.shape[0])
  return jnp.where(_any_nan(s_in, s_out), jnp.nan, jnp.mean(per_in))


def threshold_at_recall(scores_in: ArrayLike, *, recall: float | ArrayLike = 0.95) -> jax.Array:
  r"""The largest threshold that keeps at least ``recall`` of the in-distribution scores.

  Sort the :math:`n` in-scores ascending, :math:`s_{(0)} \le \dots \le s_{(n-1)}`.
  Keeping an input means :math:`s \ge t`; at least :math:`k = \lceil r n \rceil`
  inputs must be kept, so

  .. math::
    t = s_{(j)}, \qquad j = n - \lceil r n \rceil
      = \lfloor (1 - r)\, n \rfloor

  (the :math:`(1-r)` lower quantile by order statistic, no interpolation).
  Then :math:`\#\{s \ge t\} \ge n - j \ge r n`, and every larger threshold
  keeps fewer than :math:`r n` (ties at :math:`t` can only keep more).
  ``recall=1`` gives the minimum in-score. A Python-number ``recall`` is read
  as the decimal it prints as, so ``recall=0.95`` with ``n=20`` keeps exactly
  19 (binary rounding of 0.95 * 20 cannot push it to 20); a traced ``recall``
  is computed in its own floating-point precision (>= float32), rounding
  products within ``n * eps`` above an integer down to it, and ``k`` is
  clipped to ``[1, n]`` (a traced value cannot be range-checked). A NaN score
  gives NaN (floating scores).

  Args:
    scores_in: ``[n]`` in-distribution scores (floating, integer or bool),
      ``n >= 1``. Higher = more likely in-distribution.
    recall: the share :math:`r \in (0, 1]` of in-distribution inputs to keep
      (the true-positive rate); a Python float or a scalar array.

  Returns:
    A scalar, one of the scores: float32 for 16/32-bit floats (float64 for
    float64), the input dtype for integer scores; NaN if a score is NaN.

  Example:
    >>> import jax.numpy as jnp, jaxloss
    >>> s_in = jnp.array([0.5, 0.1, 0.9, 0.3, 0.7, 0.2, 0.8, 0.6, 0.4, 1.0])
    >>> print(jaxloss.threshold_at_recall(s_in, recall=0.8).round(4))
    0.3
    >>> print(jaxloss.threshold_at_recall(s_in, recall=0.75).round(4))  # keeps 8
    0.3

  Reference: Hendrycks & Gimpel, "A Baseline for Detecting Misclassified and
  Out-of-Distribution Examples in Neural Networks", ICLR 2017 (FPR at 95% TPR);
  ``numpy.quantile(s, 1 - r, method="lower")`` up to float rounding of
  ``(1 - r)(n - 1)``.
  """
  s = _upcast(_check_scores(scores_in, "scores_in", "threshold_at_recall"))
  n = s.shape[0]
  k = _num_kept(recall, n)
  t = jnp.sort(s)[n - k]
  if jnp.issubdtype(t.dtype, jnp.floating):
    t = jnp.where(_any_nan(s), jnp.nan, t)
  return t


def rejection_rate(scores_out: ArrayLike, threshold: ArrayLike) -> jax.Array:
  r"""Share of out-of-distribution scores strictly below the threshold (rejected).

  .. math::
    R(t) = \frac{1}{n_{out}} \sum_j \mathbb{1}[u_j < t]

  With ``t = threshold_at_recall(scores_in, recall=0.95)`` this is
  ``1 - FPR@95%TPR``: the share of never-seen inputs rejected while at least
  95% of the known ones are kept (kept means ``s >= t``). A NaN score or a
  NaN threshold gives NaN.

  Args:
    scores_out: ``[n_out]`` out-of-distribution scores (floating, integer or
      bool), ``n_out >= 1``.
    threshold: a scalar threshold (Python number or 0-d array).

  Returns:
    A scalar in ``[0, 1]``: float32, or float64 if an input is float64; NaN if
    a score or the threshold is NaN.

  Example:
    >>> import jax.numpy as jnp, jaxloss
    >>> s_out = jnp.array([0.1, 0.3, 0.35, 0.6])
    >>> print(jaxloss.rejection_rate(s_out, 0.35).round(4))
    0.5

  Reference: Hendrycks & Gimpel, ICLR 2017 (FPR at 95% TPR = 1 - this rate at
  the 95%-recall threshold); Liang, Li & Srikant, "Enhancing the reliability of
  out-of-distribution image detection" (ODIN), ICLR 2018.
  """
  u = _upcast(_check_scores(scores_out, "scores_out", "rejection_rate"))
  t = jnp.asarray(threshold)
  if t.ndim != 0:
    raise ValueError(f"threshold must be a scalar in rejection_rate, got shape {t.shape}.")
  if not (jnp.issubdtype(t.dtype, jnp.floating) or jnp.issubdtype(t.dtype, jnp.integer)):
    raise TypeError(f"threshold must be a real number in rejection_rate, got dtype {t.dtype}.")
  # A weakly typed threshold (a Python number, also when passed through jit)
  # does not make the result float64.
  dtype = _float_dtype(u) if t.weak_type else _float_dtype(u, t)
  return jnp.where(_any_nan(u, t), jnp.nan, jnp.mean((u < t).astype(dtype))).astype(dtype)


# ---------------------------------------------------------------- scores
def _logits_last(logits, axis: int) -> jax.Array:
  return _checks.to_last_axis(_checks.check_logits(logits), axis)


def max_softmax_score(logits: ArrayLike, *, axis: int = -1) -> jax.Array:
  r"""Maximum softmax probability, the baseline "known input" score.

  .. math::
    s = \max_c \operatorname{softmax}(z)_c = \frac{1}{\sum_c e^{z_c - \max z}}

  ``-inf`` logits are classes of probability 0. A NaN or ``+inf`` logit, or a
  row with no class left (every logit ``-inf``), gives NaN.

  Args:
    logits: ``[..., K, ...]`` floating logits (class axis ``axis``).
    axis: the class axis.

  Returns:
    ``[...]`` scores in ``[1/K, 1]`` (the logits' shape without the class axis),
    float32 (float64 for float64 logits).

  Example:
    >>> import jax.numpy as jnp, jaxloss
    >>> logits_BxC = jnp.array([[4.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    >>> print(jaxloss.max_softmax_score(logits_BxC).round(4))
    [0.9647 0.3333]

  Reference: Hendrycks & Gimpel, "A Baseline for Detecting Misclassified and
  Out-of-Distribution Examples in Neural Networks", ICLR 2017.
  """
  # softmax_parts shifts by the row maximum first, so +-1e4 logits neither
  # overflow nor lose the 1/K floor; the probabilities do not depend on the
  # shift, so their derivative is the softmax's own (argmax row of the Jacobian).
  parts = _numerics.softmax_parts(_logits_last(logits, axis), None)
  score = jnp.max(parts.probabilities(), axis=-1)
  return _numerics.finalize(score, bad=parts.bad | parts.dead)


def max_sigmoid_score(logits: ArrayLike, *, axis: int = -1) -> jax.Array:
  r"""Largest one-vs-rest probability, the "known input" score of a sigmoid head.

  .. math::
    s = \max_c \sigma(z_c) = \sigma\!\left(\max_c z_c\right)

  Unlike softmax, sigmoid outputs can all be low: an input that matches none
  of the known classes scores near 0. ``-inf`` is a value here (probability
  0); a NaN or ``+inf`` logit gives NaN.

  Args:
    logits: ``[..., K, ...]`` floating logits (class axis ``axis``).
    axis: the class axis.

  Returns:
    ``[...]`` scores in ``[0, 1]``, float32 (float64 for float64 logits).

  Example:
    >>> import jax.numpy as jnp, jaxloss
    >>> logits_BxC = jnp.array([[2.0, -1.0], [-3.0, -4.0]])
    >>> print(jaxloss.max_sigmoid_score(logits_BxC).round(4))
    [0.8808 0.0474 ]

  Reference: Shu, Xu & Liu, "DOC: Deep Open Classification of Text Documents",
  EMNLP 2017; Hendrycks & Gimpel, ICLR 2017 (max-probability baseline).
  """
  z = _logits_last(logits, axis)
  bad = _numerics.nonfinite_rows(z, None)
  # sigma is increasing, so the max commutes with it (one sigmoid per row). Bad
  # entries are replaced before the max (whose NaN handling is backend-specific)
  # and the NaN is selected in afterwards.
  z = _numerics.without_bad(z, -jnp.inf)
  return _numerics.finalize(jax.nn.sigmoid(jnp.max(z, axis=-1)), bad=bad)


def not_class_score(logits: ArrayLike, *, cls: int | ArrayLike, axis: int = -1) -> jax.Array:
  r"""Probability of NOT being class ``cls``: the score for an explicit "NA" class.

  A model trained with an extra background / "not applicable" (NA) class
  ``na`` rejects unknown inputs by :math:`p(\mathrm{NA})`; as a higher-is-known
  score that is

  .. math::
    s = 1 - \operatorname{softmax}(z)_{na}
      = \sum_{c \ne na} \operatorname{softmax}(z)_c
      = \exp\!\left(\operatorname{logsumexp}_{c \ne na} z_c
                    - \operatorname{logsumexp}_c z_c\right)

  computed in the last form, so that scores near 0 (confident NA) keep their
  relative precision instead of cancelling in ``1 - p``. ``-inf`` logits are
  classes of probability 0; a NaN or ``+inf`` logit, or a row with every logit
  ``-inf``, gives NaN.

  Args:
    logits: ``[..., K, ...]`` floating logits (class axis ``axis``).
    cls: the NA class index, an int in ``[-K, K)`` (negative counts from the
      end) or an integer scalar array (not range-checked).
    axis: the class axis.

  Returns:
    ``[...]`` scores in ``[0, 1]``, float32 (float64 for float64 logits). For
    ``K = 1`` (or when every other class is ``-inf``) the score is 0.

  Example:
    >>> import jax.numpy as jnp, jaxloss
    >>> logits_BxC = jnp.array([[3.0, 0.0, -1.0], [0.0, 0.0, 2.0]])
    >>> print(jaxloss.not_class_score(logits_BxC, cls=2).round(4))
    [0.9829 0.213 ]

  Reference: Dhamija, Günther & Boult, "Reducing Network Agnostophobia",
  NeurIPS 2018 (background class baseline); Hendrycks & Gimpel, ICLR 2017.
  """
  z = _logits_last(logits, axis)
  k = z.shape[-1]
  if isinstance(cls, numbers.Integral) and not isinstance(cls, bool):
    if not -k <= cls < k:
      raise ValueError(f"cls={cls} is out of range for {k} classes (class axis {axis}).")
    cls = cls % k
  else:
    cls = jnp.asarray(cls)
    if cls.ndim != 0 or not jnp.issubdtype(cls.dtype, jnp.integer):
      raise TypeError(
          f"cls must be an integer class index, got {cls.dtype} of shape {cls.shape}.")
    cls = jnp.where(cls < 0, cls + k, cls)
  parts = _numerics.softmax_parts(z, None)
  others = parts.taking_part & jnp.broadcast_to(jnp.arange(k) != cls, z.shape)
  some_other = jnp.any(others, axis=-1)
  # The log-sum-exp of the other classes, on the shifted logits of softmax_parts
  # (no overflow at +-1e4), shifted again by its own maximum (jax.nn.logsumexp):
  # the other classes may all lie far below the maximum (exp underflows to 0).
  # A row with no other class (K = 1, or all -inf) has score 0; it runs on
  # zeros (double where) so that its gradient is 0, not NaN.
  z_others = jnp.where(others, parts.zs, -jnp.inf)
  z_others = jnp.where(some_other[..., None], z_others, 0.0)
  lse_others = jax.nn.logsumexp(z_others, axis=-1)
  score = jnp.where(some_other, jnp.exp(lse_others - parts.lse), 0.0)
  return _numerics.finalize(score, bad=parts.bad | parts.dead)
