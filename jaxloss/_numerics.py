"""Numerically careful building blocks shared by the losses (class axis last).

The recurring hazards, and how these helpers avoid them:

* ``-inf`` logits (a common way to mask classes). ``0 * -inf`` is NaN, so a
  product such as ``targets * log_softmax`` is never formed where the target is
  zero; masked entries are *selected away* with ``jnp.where`` instead. Both
  branches of a ``where`` are differentiated, so the value fed to a non-linear
  function in the unused branch is replaced by a harmless finite number first
  (the "double where" trick), which keeps `jax.grad` and `jax.jacfwd` NaN-free.
* Fully masked rows. ``logsumexp`` over no classes is ``-inf`` and
  ``-inf - -inf`` is NaN; `finalize` sets such rows to exactly 0.
* Saturation. Everything is computed from logits through ``logsumexp`` /
  ``log_softmax`` / ``log_sigmoid``; probabilities are only ever exponentiated
  log-probabilities, never clipped.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__: list[str] = []


def safe_logits(logits: jax.Array, where: jax.Array | None) -> jax.Array:
  """Logits with masked classes replaced by -inf (so softmax gives them 0)."""
  if where is None:
    return logits
  return jnp.where(where, logits, -jnp.inf)


def masked_logsumexp(logits: jax.Array, where: jax.Array | None) -> jax.Array:
  """logsumexp over the last axis and the unmasked classes; -inf for an empty row."""
  return jax.nn.logsumexp(logits, axis=-1, where=where)


def row_is_live(logits: jax.Array, where: jax.Array | None) -> jax.Array:
  """True where a row has at least one unmasked class with a logit above -inf."""
  live = logits > -jnp.inf
  if where is not None:
    live = live & where
  return jnp.any(live, axis=-1)


def guard_dead_rows(
    logits: jax.Array, where: jax.Array | None
) -> tuple[jax.Array, jax.Array | None, jax.Array]:
  """Makes dead rows (no unmasked finite logit) harmless; returns (logits, where, live).

  A dead row's loss is set to 0 by `finalize`, but its value is still computed
  and differentiated: with every logit at -inf, logsumexp's gradient is
  ``exp(-inf - -inf) = NaN``, and ``0 * NaN`` poisons the gradient. So dead rows
  are replaced by zeros with every class unmasked before any arithmetic.
  """
  live = row_is_live(logits, where)
  logits = jnp.where(live[..., None], logits, 0.0)
  if where is not None:
    where = where | ~live[..., None]
  return logits, where, live


def masked_log_softmax(logits: jax.Array, where: jax.Array | None) -> jax.Array:
  """log_softmax over the last axis; masked classes (and -inf logits) give -inf."""
  z = safe_logits(logits, where)
  # A dead row (every class masked or -inf) would make logsumexp's gradient
  # exp(-inf - -inf) = NaN, which a later `where` cannot undo (0 * NaN = NaN in
  # the backward pass). So dead rows are computed on zeros and replaced by -inf
  # afterwards: the replacement constant carries no gradient.
  live = row_is_live(z, where)
  z_safe = jnp.where(live[..., None], z, 0.0)
  lse = masked_logsumexp(z_safe, None if where is None else where | ~live[..., None])
  return jnp.where(live[..., None], z_safe - lse[..., None], -jnp.inf)


def xlogy_safe(t: jax.Array, log_p: jax.Array) -> jax.Array:
  """``t * log_p`` with the convention ``0 * -inf = 0``, NaN-free in both AD modes."""
  nonzero = t != 0
  return jnp.where(nonzero, t * jnp.where(nonzero, log_p, 0.0), 0.0)


def take_label(values: jax.Array, labels: jax.Array) -> jax.Array:
  """``values[..., label]``; NaN for labels outside ``[0, num_classes)``.

  Out-of-range labels cannot be detected at trace time; returning NaN (instead
  of silently wrapping -1 to the last class, as NumPy indexing would) makes the
  mistake visible. `jaxloss.checked` turns it into an error instead.
  """
  num_classes = values.shape[-1]
  in_range = (labels >= 0) & (labels < num_classes)
  safe = jnp.where(in_range, labels, 0).astype(jnp.int32)
  if values.ndim == 1:  # a per-class table such as class weights
    picked = values[safe]
  else:
    picked = jnp.take_along_axis(values, safe[..., None], axis=-1)[..., 0]
  return jnp.where(in_range, picked, jnp.nan)


def label_one_hot(labels: jax.Array, num_classes: int, dtype) -> jax.Array:
  """One-hot rows; all zeros for out-of-range labels (the caller handles those)."""
  return jax.nn.one_hot(labels, num_classes, dtype=dtype)


def finalize(
    losses: jax.Array,
    *,
    live: jax.Array | None = None,
    example_mask: jax.Array | None = None,
) -> jax.Array:
  """Zeroes the loss of dead rows (everything masked) and of masked-out examples."""
  keep = None
  if live is not None:
    keep = live
  if example_mask is not None:
    keep = example_mask if keep is None else keep & example_mask
  if keep is None:
    return losses
  return jnp.where(keep, losses, jnp.zeros_like(losses))
