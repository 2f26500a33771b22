"""The numerical core: every trick the losses rely on, each explained once, here.

All helpers work with the class axis last. The losses in this package are
built from them and never repeat the reasoning below; a loss's own comments
only say which helper it uses.

**Non-finite in, non-finite out.** A NaN or ``+inf`` logit in a class that
takes part in a loss makes that example's loss NaN (`finalize` with
``bad=nonfinite_rows(...)``). ``-inf`` is not an error: in the softmax losses
it means "masked class" (probability 0), in the sigmoid and margin losses it
is the limit value of the formula. A test ``logits > -inf`` would be False for
NaN and silently treat a NaN as a masked class, so every test here is written
as ``logits != -inf`` (True for NaN) or with ``jnp.isnan`` explicitly. The
NaN is selected in explicitly rather than left to propagate through ``max`` or
``exp``, whose NaN-versus-inf behaviour is not the same on every backend. The
gradient of such an example is 0 (its computation runs on sanitized values):
the NaN loss is the signal.

**Shift invariance.** Softmax losses depend only on differences of logits.
`softmax_parts` subtracts the row maximum *first* and works with
``zs = z - max z`` from then on: ``lse(zs) - zs_y`` instead of
``lse(z) - z_y``. At ``z = 1e8 + [0, 0, -8]`` in float32 the second form
cancels catastrophically (``lse(z)`` rounds to ``1e8`` and the loss to 0);
the first is exact, and when the shifted logits are representable it is
bit-identical to the unshifted call, value and gradient. The maximum is a
constant offset (`jax.lax.stop_gradient`): the softmax does not depend on it.

**The double where.** ``jnp.where(c, f(x), g)`` differentiates ``f`` at ``x``
also where ``c`` is False, and ``0 * inf = NaN`` in the backward pass. So a
value that would make ``f`` or its derivative infinite (a ``-inf`` logit
under ``exp`` or ``log``, a masked entry, a dead row) is replaced by a
harmless finite stand-in *before* ``f``, and the result is selected after.

**0 * log 0.** A target of 0 against a log-probability of ``-inf`` contributes
0 (`xlogy_safe`), never ``0 * -inf = NaN``, in the value and in both AD modes.

**Dead rows.** A row with no class left (every class masked or ``-inf``) has
no softmax; its loss is defined as 0 (`finalize` with ``dead=``), and its
computation runs on zeros so that no ``-inf - -inf`` reaches a derivative.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__: list[str] = []

_LN2 = math.log(2.0)


def safe_divide(numerator: jax.Array, denominator: jax.Array) -> jax.Array:
  """``numerator / denominator`` with ``x / 0 = 0``, and a finite gradient there."""
  zero = denominator == 0
  return jnp.where(zero, 0.0, numerator / jnp.where(zero, 1.0, denominator))


def is_bad(z: jax.Array) -> jax.Array:
  """Elementwise: NaN or ``+inf`` (``-inf`` is not bad; see the module docstring)."""
  return jnp.isnan(z) | (z == jnp.inf)


def nonfinite_rows(z: jax.Array, mask: jax.Array | None) -> jax.Array:
  """``[...]``: True where an unmasked class holds a NaN or ``+inf``."""
  bad = is_bad(z)
  if mask is not None:
    bad = bad & mask
  return jnp.any(bad, axis=-1)


def without_bad(z: jax.Array, fill: float = 0.0) -> jax.Array:
  """``z`` with NaN / ``+inf`` replaced by ``fill``, so that they reach no derivative.

  Losses call it after recording `nonfinite_rows`: the bad rows are set to NaN
  by `finalize`, and their gradient is 0 instead of NaN.
  """
  return jnp.where(is_bad(z), fill, z)


class SoftmaxParts(NamedTuple):
  """What every softmax loss needs of a row of logits (class axis last).

  Attributes:
    zs: ``z - max z`` over the classes that take part (unmasked and finite),
      ``-inf`` elsewhere; all zeros in a row with no such class.
    lse: ``log sum exp(zs)``; ``>= 0`` in a live row.
    taking_part: ``[..., K]`` unmasked classes with a finite logit.
    dead: ``[...]`` rows in which no class takes part and none is bad.
    bad: ``[...]`` rows with a NaN or ``+inf`` in an unmasked class.
  """

  zs: jax.Array
  lse: jax.Array
  taking_part: jax.Array
  dead: jax.Array
  bad: jax.Array

  def log_softmax(self) -> jax.Array:
    """``[..., K]`` log-probabilities; ``-inf`` for classes that take no part."""
    return jnp.where(self.taking_part, self.zs - self.lse[..., None], -jnp.inf)

  def probabilities(self) -> jax.Array:
    """``[..., K]`` softmax, ``exp(zs) / sum exp(zs)``: exact at any common shift."""
    e = jnp.exp(self.zs)
    return e / jnp.sum(e, axis=-1, keepdims=True)


def softmax_parts(z: jax.Array, mask: jax.Array | None) -> SoftmaxParts:
  """Shifted logits and their log-sum-exp (see the module docstring)."""
  unmasked = jnp.ones(z.shape, bool) if mask is None else mask
  finite = jnp.isfinite(z)
  taking_part = unmasked & finite
  bad = jnp.any(unmasked & ~finite & (z != -jnp.inf), axis=-1)
  some = jnp.any(taking_part, axis=-1)
  # The row maximum of the classes that take part: a constant offset.
  m = jax.lax.stop_gradient(jnp.max(jnp.where(taking_part, z, -jnp.inf), axis=-1))
  m = jnp.where(some, m, 0.0)
  # z - m is linear, so evaluating it at a NaN / inf in an unused branch is
  # harmless to the derivatives; the selected -inf makes exp give exactly 0.
  zs = jnp.where(taking_part, z - m[..., None], -jnp.inf)
  zs = jnp.where(some[..., None], zs, 0.0)  # dead or all-bad rows: zeros
  lse = jnp.log(jnp.sum(jnp.exp(zs), axis=-1))
  return SoftmaxParts(zs, lse, taking_part, dead=~some & ~bad, bad=bad)


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


def label_is_class(labels: jax.Array, num_classes: int) -> jax.Array:
  """``[..., K]`` booleans ``c == label`` (all False for an out-of-range label)."""
  classes = jax.lax.broadcasted_iota(jnp.int32, labels.shape + (num_classes,), labels.ndim)
  return classes == labels[..., None]


def log1mexp(x: jax.Array) -> jax.Array:
  """``log(1 - exp(x))`` for ``x < 0``, accurate over the whole range.

  ``log(-expm1(x))`` is accurate near 0 (where ``1 - exp(x)`` cancels) and
  ``log1p(-exp(x))`` far from it (Maechler 2012, "Accurately computing
  log(1 - exp(-|a|))"). Each branch is evaluated at the harmless point -ln 2
  where it is not selected (double where).
  """
  near_zero = x > -_LN2
  a = jnp.log(-jnp.expm1(jnp.where(near_zero, x, -_LN2)))
  b = jnp.log1p(-jnp.exp(jnp.where(near_zero, -_LN2, x)))
  return jnp.where(near_zero, a, b)


def sigmoid_bce_terms(z: jax.Array, t: jax.Array, pos_weight: jax.Array | None = None):
  """Per-class binary cross-entropy ``-(p t log s(z) + (1 - t) log s(-z))``.

  Built on `jax.nn.log_sigmoid`, which neither overflows nor loses the tail of
  saturated logits and has the correct derivative ``sigmoid(z) - t`` at
  ``z = 0``. ``z`` must be finite here (see `sigmoid_inputs`).
  """
  pos = t if pos_weight is None else pos_weight * t
  return -(pos * jax.nn.log_sigmoid(z) + (1.0 - t) * jax.nn.log_sigmoid(-z))


def sigmoid_inputs(z: jax.Array, mask: jax.Array | None):
  """Finite stand-ins for a per-class sigmoid loss: ``(z_safe, at_minus_inf, bad)``.

  ``-inf`` logits are values here (probability 0): they, masked classes and
  bad entries are replaced by 0 before any non-linear function (double where),
  and the caller selects the limit value ``-inf`` gives afterwards.
  """
  minus_inf = z == -jnp.inf
  skip = ~jnp.isfinite(z)
  if mask is not None:
    skip = skip | ~mask
  return jnp.where(skip, 0.0, z), minus_inf, nonfinite_rows(z, mask)


def mean_over_classes(elem: jax.Array, mask: jax.Array | None) -> jax.Array:
  """Mean over the last axis and the unmasked classes; 0 for a fully masked row."""
  if mask is None:
    return jnp.sum(elem, axis=-1) / elem.shape[-1]
  elem = jnp.where(mask, elem, 0.0)
  return safe_divide(jnp.sum(elem, axis=-1), jnp.sum(mask, axis=-1).astype(elem.dtype))


def finalize(
    losses: jax.Array,
    *,
    bad: jax.Array | None = None,
    dead: jax.Array | None = None,
    example_mask: jax.Array | None = None,
) -> jax.Array:
  """Applies the row conventions: dead rows 0, bad rows NaN, masked-out examples 0."""
  if dead is not None:
    losses = jnp.where(dead, jnp.zeros_like(losses), losses)
  if bad is not None:
    losses = jnp.where(bad, jnp.full_like(losses, jnp.nan), losses)
  if example_mask is not None:
    losses = jnp.where(example_mask, losses, jnp.zeros_like(losses))
  return losses
