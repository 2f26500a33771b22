"""Margin-based classification losses: functions of the margin ``v = y * f``.

These are the losses of the "Loss functions for classification" table
(Wikipedia), applied one-vs-rest: every class ``c`` is a binary problem with
sign ``y_c`` in ``{-1, +1}`` and score ``f_c`` (the logit), and the per-example
loss is the mean over the (unmasked) classes of ``phi(y_c * f_c)``. A single
binary classifier is the special case of one class: logits ``[B, 1]`` with
targets ``[B, 1]``.

``MARGIN_LOSSES`` maps each name to its elementwise function ``phi(v)``;
`margin_loss` picks one by name. ``-inf`` logits are values, not masks (use
``where`` to exclude classes): for a negative class (``y = -1``) they give
``v = +inf``, which every loss here handles without NaN (see each function).
"""

from __future__ import annotations

import types
from typing import Callable

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxloss._src import checks as _checks
from jaxloss._src import numerics as _numerics

__all__ = [
    "MARGIN_LOSSES",
    "ovr_exponential",
    "ovr_hinge",
    "ovr_logistic",
    "ovr_margin_loss",
    "ovr_savage",
    "ovr_smooth_hinge",
    "ovr_square",
    "ovr_squared_hinge",
    "ovr_tangent",
]


# ---------------------------------------------------------------- phi(v)
def _hinge(v):
  return jax.nn.relu(1.0 - v)


def _squared_hinge(v):
  return jnp.square(jax.nn.relu(1.0 - v))


def _smooth_hinge(v):
  # Double-where: the quadratic piece is evaluated at v clipped to [0, 1], so
  # its derivative -(1 - u) stays finite (it would be -inf at v = -inf and, in
  # reverse mode, 0 * inf = NaN). The linear piece has a constant derivative.
  u = jnp.clip(v, 0.0, 1.0)
  return jnp.where(v <= 0.0, 0.5 - v, 0.5 * jnp.square(1.0 - u))


def _logistic(v):
  # softplus(-v) = log(1 + exp(-v)) without overflow: it is computed as
  # max(-v, 0) + log1p(exp(-|v|)).
  return jax.nn.softplus(-v)


def _exponential(v):
  return jnp.exp(-v)


def _savage(v):
  # 1 / (1 + e^v)^2 = exp(-2 softplus(v)): no overflow of e^v for large v, and
  # it tends to exactly 0 (not NaN) as v -> +inf and to 1 as v -> -inf.
  return jnp.exp(-2.0 * jax.nn.softplus(v))


def _tangent(v):
  # arctan saturates at +-pi/2 and its derivative 1 / (1 + v^2) is 0 at
  # v = +-inf, so infinite margins give a finite loss with zero gradient.
  return jnp.square(2.0 * jnp.arctan(v) - 1.0)


def _square(v):
  return jnp.square(1.0 - v)


MARGIN_LOSSES: types.MappingProxyType[str, Callable[[jax.Array], jax.Array]] = (
    types.MappingProxyType({
        "hinge": _hinge,
        "squared_hinge": _squared_hinge,
        "smooth_hinge": _smooth_hinge,
        "logistic": _logistic,
        "exponential": _exponential,
        "savage": _savage,
        "tangent": _tangent,
        "square": _square,
    }))


# ---------------------------------------------------------------- shared implementation
def _signs(logits: jax.Array, labels, axis: int, fn: str) -> tuple[jax.Array, jax.Array | None]:
  """The +-1 signs y_c (class axis last) and, for integer labels, a per-example in-range mask."""
  labels = jnp.asarray(labels)
  ax = _checks.normalize_axis(axis, logits.ndim)
  batch_shape = logits.shape[:ax] + logits.shape[ax + 1:]
  if labels.shape == logits.shape:
    # (a) Per-class targets in {-1, +1} or {0, 1} (or bool): t > 0 maps both
    # encodings to +1 / -1.
    t = _checks.to_last_axis(_checks.check_targets(logits, labels, axis, fn), axis)
    return jnp.where(t > 0, 1.0, -1.0).astype(logits.dtype), None
  if labels.shape == batch_shape:
    if not jnp.issubdtype(labels.dtype, jnp.integer):
      raise TypeError(
          f"{fn}: labels of shape {labels.shape} (the logits' shape without the "
          f"class axis) must be integer class labels, got dtype {labels.dtype}. "
          "Per-class +-1 or 0/1 targets must have the logits' shape "
          f"{logits.shape} (for a single binary logit use targets[..., None]).")
    # (b) Integer class labels, one-vs-rest: y_c = +1 for c == label, else -1.
    labels = _checks.check_integer_labels(logits, labels, axis, fn)
    k = logits.shape[ax]
    classes = jax.lax.broadcasted_iota(jnp.int32, batch_shape + (k,), len(batch_shape))
    y = jnp.where(classes == labels[..., None], 1.0, -1.0).astype(logits.dtype)
    return y, (labels >= 0) & (labels < k)
  raise ValueError(
      f"{fn}: labels shape {labels.shape} must be the logits' shape {logits.shape} "
      "(per-class targets in {-1, +1} or {0, 1}) or the logits' shape without the "
      f"class axis {ax}, {batch_shape} (integer class labels).")


def _margin_loss(phi, fn: str, logits, labels, axis: int, where, example_mask) -> jax.Array:
  logits, z, mask = _checks.prepare(logits, axis, where)
  y, in_range = _signs(logits, labels, axis, fn)
  example_mask = _checks.check_example_mask(example_mask, z.shape[:-1])
  bad = _numerics.nonfinite_rows(z, mask)
  # y is +-1, so y * (-inf) = -+inf, never 0 * inf. Masked classes and bad
  # entries get the harmless margin 1 before phi (double where).
  v = y * z
  skip = _numerics.is_bad(z)
  if mask is not None:
    skip = skip | ~mask
  loss = _numerics.mean_over_classes(phi(jnp.where(skip, 1.0, v)), mask)
  if in_range is not None:
    # Out-of-range integer labels cannot be caught at trace time: NaN makes
    # them visible (as `numerics.take_label` does); see `jaxloss.checked`.
    loss = jnp.where(in_range, loss, jnp.nan)
  dead = None if mask is None else ~jnp.any(mask, axis=-1)
  return _numerics.finalize(loss, bad=bad, dead=dead, example_mask=example_mask)


_ARGS_AND_RETURNS = """Args:
    logits: ``[..., K, ...]`` floating logits (class axis ``axis``); ``K = 1``
      for a single binary classifier.
    labels: either per-class targets of the logits' shape with values in
      ``{-1, +1}`` or ``{0, 1}`` (also bool; mapped by ``y = +1 if t > 0 else
      -1``, so soft targets are not supported), or integer class labels of
      the logits' shape without the class axis (one-vs-rest: ``y_c = +1`` for
      ``c == label``, else ``-1``).
    axis: the class axis.
    where: optional boolean class mask broadcastable to ``logits.shape``;
      masked classes take no part in the mean, and a fully masked row gives 0.
    example_mask: optional boolean ``[...]``; ``False`` examples give 0.

  Returns:
    Per-example losses ``[...]`` (the mean over the unmasked classes), float32
    for 16/32-bit logits, float64 for float64 logits. An out-of-range integer
    label gives NaN (see `jaxloss.checked`), and so does a NaN or ``+inf`` in
    an unmasked logit; ``-inf`` is a value (the limit of the formula)."""


def _shared_doc(fn):
  """Fills the Args / Returns sections shared by the named losses into a docstring."""
  if fn.__doc__:  # None under `python -OO`
    fn.__doc__ = fn.__doc__.replace("{ARGS_AND_RETURNS}", _ARGS_AND_RETURNS)
  return fn


# ---------------------------------------------------------------- public losses
@_checks.declares_targets(_checks.PM1_TARGETS)
@_shared_doc
def ovr_hinge(
    logits: ArrayLike, labels: ArrayLike, *, axis: int = -1, where: ArrayLike | None = None,
    example_mask: ArrayLike | None = None,
) -> jax.Array:
  r"""Hinge loss of the margin, averaged over classes (one-vs-rest SVM loss).

  .. math::
    \ell = \frac{1}{K} \sum_c \max(0,\, 1 - y_c f_c)

  Convex upper bound of the 0-1 loss :math:`[v \le 0]`. ``-inf`` logits of
  negative classes contribute 0.

  {ARGS_AND_RETURNS}

  Example:
    >>> import jax.numpy as jnp, jaxloss
    >>> logits_Bx1 = jnp.array([[2.0], [0.5], [-1.0]])
    >>> targets_Bx1 = jnp.array([[1.0], [1.0], [1.0]])
    >>> print(jaxloss.ovr_hinge(logits_Bx1, targets_Bx1).round(4))
    [0.  0.5 2. ]

  Reference: Cortes & Vapnik, "Support-Vector Networks", Machine Learning 20
  (1995); "Loss functions for classification", Wikipedia.
  """
  return _margin_loss(_hinge, "ovr_hinge", logits, labels, axis, where, example_mask)


@_checks.declares_targets(_checks.PM1_TARGETS)
@_shared_doc
def ovr_squared_hinge(
    logits: ArrayLike, labels: ArrayLike, *, axis: int = -1, where: ArrayLike | None = None,
    example_mask: ArrayLike | None = None,
) -> jax.Array:
  r"""Squared hinge loss of the margin, averaged over classes.

  .. math::
    \ell = \frac{1}{K} \sum_c \max(0,\, 1 - y_c f_c)^2

  Convex, differentiable upper bound of the 0-1 loss. At logits of
  :math:`\pm 10^4` it is finite but large (about :math:`10^8`).

  {ARGS_AND_RETURNS}

  Example:
    >>> import jax.numpy as jnp, jaxloss
    >>> logits_Bx1 = jnp.array([[2.0], [0.5], [-1.0]])
    >>> targets_Bx1 = jnp.array([[1.0], [1.0], [1.0]])
    >>> print(jaxloss.ovr_squared_hinge(logits_Bx1, targets_Bx1).round(4))
    [0.   0.25 4.  ]

  Reference: "Loss functions for classification", Wikipedia; Rennie & Srebro,
  "Loss Functions for Preference Levels", IJCAI 2005 workshop.
  """
  return _margin_loss(_squared_hinge, "ovr_squared_hinge", logits, labels, axis, where, example_mask)


@_checks.declares_targets(_checks.PM1_TARGETS)
@_shared_doc
def ovr_smooth_hinge(
    logits: ArrayLike, labels: ArrayLike, *, axis: int = -1, where: ArrayLike | None = None,
    example_mask: ArrayLike | None = None,
) -> jax.Array:
  r"""Smooth hinge of Rennie & Srebro (2005), averaged over classes.

  .. math::
    \phi(v) = \begin{cases} \tfrac12 - v & v \le 0 \\
      \tfrac12 (1 - v)^2 & 0 < v < 1 \\ 0 & v \ge 1 \end{cases},
    \qquad \ell = \frac{1}{K} \sum_c \phi(y_c f_c)

  Convex and continuously differentiable (the derivative is :math:`-1` at
  :math:`v = 0` and :math:`0` at :math:`v = 1` from both sides). It is *not*
  an upper bound of the 0-1 loss (:math:`\phi(0) = 1/2`), but :math:`2\phi` is.

  {ARGS_AND_RETURNS}

  Example:
    >>> import jax.numpy as jnp, jaxloss
    >>> logits_Bx1 = jnp.array([[2.0], [0.5], [-1.0]])
    >>> targets_Bx1 = jnp.array([[1.0], [1.0], [1.0]])
    >>> print(jaxloss.ovr_smooth_hinge(logits_Bx1, targets_Bx1).round(4))
    [0.    0.125 1.5  ]

  Reference: Rennie & Srebro, "Loss Functions for Preference Levels: Regression
  with Discrete Ordered Labels", IJCAI 2005 workshop.
  """
  return _margin_loss(_smooth_hinge, "ovr_smooth_hinge", logits, labels, axis, where, example_mask)


@_checks.declares_targets(_checks.PM1_TARGETS)
@_shared_doc
def ovr_logistic(
    logits: ArrayLike, labels: ArrayLike, *, axis: int = -1, where: ArrayLike | None = None,
    example_mask: ArrayLike | None = None,
) -> jax.Array:
  r"""Logistic loss of the margin (natural log), averaged over classes.

  .. math::
    \ell = \frac{1}{K} \sum_c \log\bigl(1 + e^{-y_c f_c}\bigr)
         = \frac{1}{K} \sum_c \operatorname{softplus}(-y_c f_c)

  With ``{0, 1}`` targets this is sigmoid binary cross-entropy. Wikipedia's
  table scales it by :math:`1/\ln 2` (log base 2), which makes it an upper
  bound of the 0-1 loss; this function does not.

  {ARGS_AND_RETURNS}

  Example:
    >>> import jax.numpy as jnp, jaxloss
    >>> logits_Bx1 = jnp.array([[2.0], [0.5], [-1.0]])
    >>> targets_Bx1 = jnp.array([[1.0], [1.0], [1.0]])
    >>> print(jaxloss.ovr_logistic(logits_Bx1, targets_Bx1).round(4))
    [0.1269 0.4741 1.3133]

  Reference: "Loss functions for classification", Wikipedia; equals
  ``optax.sigmoid_binary_cross_entropy`` averaged over classes.
  """
  return _margin_loss(_logistic, "ovr_logistic", logits, labels, axis, where, example_mask)


@_checks.declares_targets(_checks.PM1_TARGETS)
@_shared_doc
def ovr_exponential(
    logits: ArrayLike, labels: ArrayLike, *, axis: int = -1, where: ArrayLike | None = None,
    example_mask: ArrayLike | None = None,
) -> jax.Array:
  r"""Exponential (AdaBoost) loss of the margin, averaged over classes.

  .. math::
    \ell = \frac{1}{K} \sum_c e^{-y_c f_c}

  Convex upper bound of the 0-1 loss. It grows exponentially with a negative
  margin: in float32 :math:`e^{-v}` overflows to ``inf`` for
  :math:`v < -88.7` (e.g. a logit of :math:`-10^4` for a positive class), and
  so does its gradient (never NaN). ``-inf`` logits of negative classes give 0.

  {ARGS_AND_RETURNS}

  Example:
    >>> import jax.numpy as jnp, jaxloss
    >>> logits_Bx1 = jnp.array([[2.0], [0.5], [-1.0]])
    >>> targets_Bx1 = jnp.array([[1.0], [1.0], [1.0]])
    >>> print(jaxloss.ovr_exponential(logits_Bx1, targets_Bx1).round(4))
    [0.1353 0.6065 2.7183 ]

  Reference: Freund & Schapire, "A Decision-Theoretic Generalization of
  On-Line Learning and an Application to Boosting", JCSS 55 (1997);
  "Loss functions for classification", Wikipedia.
  """
  return _margin_loss(_exponential, "ovr_exponential", logits, labels, axis, where, example_mask)


@_checks.declares_targets(_checks.PM1_TARGETS)
@_shared_doc
def ovr_savage(
    logits: ArrayLike, labels: ArrayLike, *, axis: int = -1, where: ArrayLike | None = None,
    example_mask: ArrayLike | None = None,
) -> jax.Array:
  r"""Savage loss of the margin, averaged over classes.

  .. math::
    \ell = \frac{1}{K} \sum_c \frac{1}{\bigl(1 + e^{y_c f_c}\bigr)^2}
         = \frac{1}{K} \sum_c e^{-2 \operatorname{softplus}(y_c f_c)}

  Non-convex, bounded in :math:`(0, 1)` and decreasing, so outliers with a
  very negative margin cost at most 1. Not an upper bound of the 0-1 loss
  (:math:`\phi(0) = 1/4`).

  {ARGS_AND_RETURNS}

  Example:
    >>> import jax.numpy as jnp, jaxloss
    >>> logits_Bx1 = jnp.array([[2.0], [0.5], [-1.0]])
    >>> targets_Bx1 = jnp.array([[1.0], [1.0], [1.0]])
    >>> print(jaxloss.ovr_savage(logits_Bx1, targets_Bx1).round(4))
    [0.0142 0.1425 0.5344]

  Reference: Masnadi-Shirazi & Vasconcelos, "On the Design of Loss Functions
  for Classification: theory, robustness to outliers, and SavageBoost",
  NeurIPS 2008.
  """
  return _margin_loss(_savage, "ovr_savage", logits, labels, axis, where, example_mask)


@_checks.declares_targets(_checks.PM1_TARGETS)
@_shared_doc
def ovr_tangent(
    logits: ArrayLike, labels: ArrayLike, *, axis: int = -1, where: ArrayLike | None = None,
    example_mask: ArrayLike | None = None,
) -> jax.Array:
  r"""Tangent loss of the margin, averaged over classes.

  .. math::
    \ell = \frac{1}{K} \sum_c \bigl(2 \arctan(y_c f_c) - 1\bigr)^2

  Non-convex and bounded; an upper bound of the 0-1 loss (:math:`\phi(0) = 1`,
  :math:`\phi > 1` for :math:`v < 0`). Its minimum 0 is at
  :math:`v = \tan(1/2)`, and it rises again to :math:`(\pi - 1)^2` as
  :math:`v \to +\infty`: infinite margins give that finite value with zero
  gradient.

  {ARGS_AND_RETURNS}

  Example:
    >>> import jax.numpy as jnp, jaxloss
    >>> logits_Bx1 = jnp.array([[2.0], [1.0], [-1.0]])
    >>> targets_Bx1 = jnp.array([[1.0], [1.0], [1.0]])
    >>> print(jaxloss.ovr_tangent(logits_Bx1, targets_Bx1).round(4))
    [1.4745 0.3258 6.609]

  Reference: Masnadi-Shirazi, Mahadevan & Vasconcelos, "On the design of robust
  classifiers for computer vision", CVPR 2010.
  """
  return _margin_loss(_tangent, "ovr_tangent", logits, labels, axis, where, example_mask)


@_checks.declares_targets(_checks.PM1_TARGETS)
@_shared_doc
def ovr_square(
    logits: ArrayLike, labels: ArrayLike, *, axis: int = -1, where: ArrayLike | None = None,
    example_mask: ArrayLike | None = None,
) -> jax.Array:
  r"""Square loss of the margin, averaged over classes.

  .. math::
    \ell = \frac{1}{K} \sum_c (1 - y_c f_c)^2

  Convex upper bound of the 0-1 loss; for :math:`y \in \{-1, +1\}` it equals
  :math:`(y - f)^2`, so it also penalizes confidently correct scores, and a
  ``-inf`` logit gives ``+inf`` (mask such classes with ``where``).

  {ARGS_AND_RETURNS}

  Example:
    >>> import jax.numpy as jnp, jaxloss
    >>> logits_Bx1 = jnp.array([[2.0], [0.5], [-1.0]])
    >>> targets_Bx1 = jnp.array([[1.0], [1.0], [1.0]])
    >>> print(jaxloss.ovr_square(logits_Bx1, targets_Bx1).round(4))
    [1.   0.25 4.  ]

  Reference: "Loss functions for classification", Wikipedia; Rifkin & Klautau,
  "In Defense of One-Vs-All Classification", JMLR 5 (2004).
  """
  return _margin_loss(_square, "ovr_square", logits, labels, axis, where, example_mask)


@_checks.declares_targets(_checks.PM1_TARGETS)
def ovr_margin_loss(
    logits: ArrayLike, labels: ArrayLike, *, axis: int = -1, where: ArrayLike | None = None,
    example_mask: ArrayLike | None = None, kind: str,
) -> jax.Array:
  r"""Any margin loss of `MARGIN_LOSSES`, chosen by name.

  .. math::
    \ell = \frac{1}{K} \sum_c \phi_{\mathrm{kind}}(y_c f_c)

  Args:
    logits: ``[..., K, ...]`` floating logits.
    labels: per-class ``{-1, +1}`` / ``{0, 1}`` targets of the logits' shape, or
      integer class labels (see `hinge`).
    kind: one of ``MARGIN_LOSSES`` (``"hinge"``, ``"squared_hinge"``,
      ``"smooth_hinge"``, ``"logistic"``, ``"exponential"``, ``"savage"``,
      ``"tangent"``, ``"square"``).
    axis: the class axis.
    where: optional boolean class mask broadcastable to ``logits.shape``.
    example_mask: optional boolean ``[...]``; ``False`` examples give 0.

  Returns:
    Per-example losses ``[...]``, as the function ``ovr_<kind>`` returns.

  Example:
    >>> import jax.numpy as jnp, jaxloss
    >>> logits_BxC = jnp.array([[2.0, -1.0, 0.5]])
    >>> print(jaxloss.ovr_margin_loss(logits_BxC, jnp.array([0]), kind="hinge").round(4))
    [0.5]

  Reference: "Loss functions for classification", Wikipedia.
  """
  if kind not in MARGIN_LOSSES:
    raise ValueError(
        f"Unknown margin loss kind {kind!r}; valid kinds are "
        f"{', '.join(repr(k) for k in MARGIN_LOSSES)}.")
  return _margin_loss(
      MARGIN_LOSSES[kind], f"ovr_{kind}", logits, labels, axis, where, example_mask)
