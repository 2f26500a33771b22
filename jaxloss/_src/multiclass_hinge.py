"""Multiclass hinge losses: Crammer-Singer and Weston-Watkins, plain or squared.

Both compare the true-class logit with every other (unmasked) logit and charge
for each violation of the ``margin``. They are per-example losses of the
logits' shape without the class axis; see `jaxloss._src.checks` for the shared
conventions on ``axis``, ``where``, ``weights`` and ``example_mask``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxloss._src import checks as _checks
from jaxloss._src import numerics as _numerics

__all__ = ["multiclass_hinge_loss"]

_KINDS = ("crammer_singer", "weston_watkins")


@_checks.declares_targets(_checks.UNIT_TARGETS)
def multiclass_hinge_loss(
    logits: ArrayLike, labels: ArrayLike, *, axis: int = -1, where: ArrayLike | None = None,
    weights: ArrayLike | None = None, example_mask: ArrayLike | None = None,
    margin: float | ArrayLike = 1.0, kind: str = "crammer_singer", squared: bool = False,
) -> jax.Array:
  r"""Multiclass hinge loss with integer labels (Crammer-Singer or Weston-Watkins).

  .. math::
    \ell_{\mathrm{CS}} = w_y \max\Bigl(0,\; m + \max_{j \ne y} z_j - z_y\Bigr),
    \qquad
    \ell_{\mathrm{WW}} = w_y \sum_{j \ne y} \max\bigl(0,\; m + z_j - z_y\bigr)

  With ``squared=True`` the Crammer-Singer loss is squared, and each term of the
  Weston-Watkins sum is squared. Only unmasked classes :math:`j` take part: a
  class with ``where=False`` or a ``-inf`` logit (other than the label's) never
  violates the margin and contributes exactly 0, to the value and to the
  gradient. A row with no such competitor (e.g. every class masked) gives 0.

  Args:
    logits: ``[..., K, ...]`` floating logits (class axis ``axis``).
    labels: integer labels, the logits' shape without the class axis. One-hot
      targets raise an error (pass ``targets.argmax(axis)``).
    margin: the margin :math:`m`; a Python number must be > 0.
    kind: ``"crammer_singer"`` (max over the competitors) or
      ``"weston_watkins"`` (sum over the competitors).
    squared: square the hinge (CS) or each hinge term (WW).
    axis: the class axis.
    where: optional boolean class mask broadcastable to ``logits.shape``. A label
      that points at a masked class has logit :math:`-\infty` (as in
      `softmax_cross_entropy_with_integer_labels`), so its loss is ``+inf``
      whenever some competitor is unmasked (with ``squared=True`` the
      derivatives of such an infinite loss are not finite either).
    weights: optional per-class weights ``[K]``; the loss is scaled by
      ``weights[label]`` (PyTorch's ``weight`` of ``multi_margin_loss``).
    example_mask: optional boolean ``[...]``; ``False`` examples give 0 and their
      labels are never read.

  Returns:
    Per-example losses ``[...]``, float32 for 16/32-bit logits, float64 for
    float64 logits. An out-of-range label (not masked by ``example_mask``) gives
    NaN: labels cannot be range-checked at trace time (see `jaxloss.checked`).
    A NaN or ``+inf`` in an unmasked logit gives NaN. The loss depends on
    logit differences only and is computed as ``margin + (z_j - z_y)``, so it
    is exact under a common shift of the logits.

  Example:
    >>> import jax.numpy as jnp, jaxloss
    >>> logits_BxC = jnp.array([[2.0, 1.5, -1.0], [0.0, 0.5, 0.2]])
    >>> labels_B = jnp.array([0, 0])
    >>> print(jaxloss.multiclass_hinge_loss(logits_BxC, labels_B).round(4))
    [0.5 1.5]
    >>> print(jaxloss.multiclass_hinge_loss(
    ...     logits_BxC, labels_B, kind="weston_watkins").round(4))
    [0.5 2.7]

  Reference: Crammer & Singer, "On the Algorithmic Implementation of Multiclass
  Kernel-based Vector Machines", JMLR 2 (2001); Weston & Watkins, "Support
  Vector Machines for Multi-Class Pattern Recognition", ESANN 1999.
  ``torch.nn.functional.multi_margin_loss(z, y, p, margin, weight,
  reduction="none")`` equals the Weston-Watkins loss (``p=2``: squared) divided
  by :math:`K`.
  """
  if kind not in _KINDS:
    raise ValueError(
        f"Unknown multiclass hinge kind {kind!r}; valid kinds are "
        f"{', '.join(repr(k) for k in _KINDS)}.")
  _checks.check_positive(margin, "margin")
  logits, z, mask = _checks.prepare(logits, axis, where)
  labels = _checks.check_integer_labels(logits, labels, axis, "multiclass_hinge_loss")
  w = _checks.check_class_weights(weights, z.shape[-1], z.dtype)
  bad = _numerics.nonfinite_rows(z, mask)
  z = _numerics.without_bad(z)
  example_mask = _checks.check_example_mask(example_mask, labels.shape)
  if example_mask is not None:
    labels = jnp.where(example_mask, labels, 0)
  margin = jnp.asarray(margin, z.dtype)

  # The true-class logit; -inf if the label's class is masked, NaN if out of range.
  z_y = _numerics.take_label(z if mask is None else jnp.where(mask, z, -jnp.inf), labels)
  # Competitors: unmasked classes other than the label with a logit above -inf.
  active = ~_numerics.label_is_class(labels, z.shape[-1]) & (z != -jnp.inf)
  if mask is not None:
    active = active & mask
  # Non-competitors are selected away right after the (linear) subtraction and
  # before relu / square (the double where of `jaxloss._src.numerics`). The
  # difference z_j - z_y is formed before the margin is added: at logits near
  # 1e8, margin + z_j would round the margin away (shift invariance).
  if kind == "crammer_singer":
    has_active = jnp.any(active, axis=-1)
    best = jnp.max(jnp.where(active, z, -jnp.inf), axis=-1)  # -inf if no competitor
    diff = jnp.where(has_active, margin + (best - z_y), 0.0)
    loss = jax.nn.relu(diff)
    if squared:
      loss = jnp.square(loss)
  else:
    diff = jnp.where(active, margin + (z - z_y[..., None]), 0.0)
    terms = jax.nn.relu(diff)
    if squared:
      terms = jnp.square(terms)
    loss = jnp.sum(terms, axis=-1)  # no competitor (e.g. a fully masked row): 0
  if w is not None:
    loss = loss * _numerics.take_label(w, labels)
  return _numerics.finalize(loss, bad=bad, example_mask=example_mask)
