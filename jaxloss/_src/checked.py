"""Opt-in value checks for any loss, with `jax.experimental.checkify`.

Shapes and dtypes are checked at trace time by every loss (`jaxloss._src.checks`),
but VALUES cannot be: under `jax.jit` a label is only known when the compiled
program runs. An out-of-range integer label therefore does not raise in an
ordinary call; the integer-label losses return NaN for that example (see
`jaxloss._src.numerics.take_label`: NumPy-style wrapping of ``-1`` to the last
class would be a silent bug), and a loss that one-hot encodes labels internally
may see an all-zero target row instead. `checked` turns such mistakes into errors::

  err, loss = jax.jit(jaxloss.checked(loss_fn))(logits, labels)
  err.throw()  # raises checkify.JaxRuntimeError if a check failed

The range of the float targets a loss takes is declared by the loss itself:
every public jaxloss loss carries the mark ``fn.jaxloss_target_range`` (set by
the decorator `jaxloss._src.checks.declares_targets`), and `checked` reads it
from the function it is given (a ``functools.partial`` is unwrapped first; a
``functools.wraps`` wrapper copies the mark). The mark travels with the
function, wherever it is defined or re-exported; there is no table of names.

=====================================================  ====================
losses (their ``jaxloss_target_range``)                 float targets in
=====================================================  ====================
the cross-entropy family, nll_loss, kl_divergence,      ``[0, 1]``
the focal losses, sigmoid_difference,
balanced_sigmoid_difference,
sigmoid_binary_cross_entropy, brier_score,
softmax_absolute_error, square_loss,
multiclass_hinge_loss
the one-vs-rest margin losses ovr_* and                 ``[-1, 1]``
ovr_margin_loss
a function without the mark                             not checked
=====================================================  ====================

and, for every function (marked or not):

* the first argument (logits, or log-probabilities) contains no NaN and no
  ``+inf`` (``-inf`` is allowed: it is how classes are masked);
* an integer second argument of the per-example shape (class labels) lies in
  ``[0, K)``, ``K = logits.shape[axis]``, except for examples with
  ``example_mask=False`` and labels equal to ``ignore_index`` (when the loss
  has those keywords and they are given);
* a second argument of the logits' shape (one-hot / multi-hot / probability /
  {-1, +1} targets) lies in the declared range (NaN fails), except in examples
  with ``example_mask=False``. ``checked(fn, target_range=(lo, hi))``
  overrides the mark; ``target_range=None`` switches the targets check off.

NaN logits are rejected even in masked examples or classes: they are cheap to
find and usually a bug upstream (the loss itself gives such an example NaN, or
0 under ``example_mask=False``, by the non-finite-in, non-finite-out contract).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

from jaxloss._src import checks as _checks

__all__ = ["checked"]


def _unwrap(fn: Callable) -> Callable:
  while isinstance(fn, functools.partial):
    fn = fn.func
  return fn


def _declared_target_range(fn: Callable) -> tuple[float, float] | None:
  """The loss's own mark (`checks.declares_targets`), or None: generic checks only."""
  declared = getattr(_unwrap(fn), "jaxloss_target_range", None)
  if declared is None:
    return None
  lo, hi = declared
  return (float(lo), float(hi))


def _first_offender(values: jax.Array, bad: jax.Array) -> jax.Array:
  """The first value where `bad` holds (any value if none does)."""
  return values.reshape(-1)[jnp.argmax(bad.reshape(-1))]


def _check_logits(name: str, arg: str, logits: jax.Array) -> None:
  if not jnp.issubdtype(logits.dtype, jnp.floating):
    return  # the loss raises its own trace-time error
  checkify.check(~jnp.any(jnp.isnan(logits)), f"{name}: {arg} contain NaN")
  checkify.check(
      ~jnp.any(logits == jnp.inf),
      f"{name}: {arg} contain +inf (only -inf is allowed, to mask a class)")


def _example_mask(kwargs: dict[str, Any], batch_shape: tuple[int, ...]) -> jax.Array | None:
  mask = kwargs.get("example_mask")
  if mask is None:
    return None
  mask = jnp.asarray(mask)
  if mask.dtype != jnp.bool_ or mask.shape != batch_shape:
    return None  # malformed: the loss itself raises a readable error
  return mask


def _check_labels(name, logits, labels, axis, kwargs, target_range) -> None:
  if logits.ndim == 0 or not -logits.ndim <= axis < logits.ndim:
    return
  axis = axis % logits.ndim
  num_classes = logits.shape[axis]
  batch_shape = logits.shape[:axis] + logits.shape[axis + 1:]
  mask = _example_mask(kwargs, batch_shape)
  if labels.size == 0:
    return
  if jnp.issubdtype(labels.dtype, jnp.integer) and labels.shape == batch_shape:
    bad = (labels < 0) | (labels >= num_classes)
    if mask is not None:
      bad = bad & mask
    ignore_index = kwargs.get("ignore_index")
    if ignore_index is not None:
      bad = bad & (labels != ignore_index)
    checkify.check(
        ~jnp.any(bad),
        f"{name}: labels must be in [0, {num_classes}), got a label outside that "
        "range (first offending label: {})",
        _first_offender(labels, bad))
  elif labels.shape == logits.shape and target_range is not None:
    if not (jnp.issubdtype(labels.dtype, jnp.number) or labels.dtype == jnp.bool_):
      return
    lo, hi = target_range
    t = labels.astype(_checks.compute_dtype(
        labels.dtype if jnp.issubdtype(labels.dtype, jnp.floating) else jnp.float32))
    bad = ~((t >= lo) & (t <= hi))  # NaN compares False, so it is flagged too
    if mask is not None:
      bad = bad & jnp.broadcast_to(jnp.expand_dims(mask, axis), bad.shape)
    checkify.check(
        ~jnp.any(bad),
        f"{name}: targets must be in [{lo:g}, {hi:g}], got a value outside that "
        "range (first offending value: {})",
        _first_offender(t, bad))


def _is_array(x) -> bool:
  return isinstance(x, (jax.Array, np.ndarray, np.generic))


def checked(
    loss_fn: Callable[..., jax.Array], *,
    target_range: tuple[float, float] | None | str = "auto",
) -> Callable[..., tuple[checkify.Error, jax.Array]]:
  r"""Wraps a loss so that it also returns a checkify error for invalid inputs.

  ``checked(loss_fn)(*args, **kwargs)`` returns ``(err, loss_fn(*args, **kwargs))``
  where ``err`` is a `jax.experimental.checkify.Error`; ``err.throw()`` raises
  `checkify.JaxRuntimeError` with a message naming the function and the
  problem, for example ``softmax_cross_entropy_with_integer_labels: labels must
  be in [0, 10), got a label outside that range (first offending label: 12)``.
  The wrapper is jit-able: ``jax.jit(jaxloss.checked(loss_fn))``. The checks
  (see the module docstring) are:

  .. math::
    \neg\operatorname{isnan}(z),\ z \ne +\infty; \quad
    0 \le y < K \text{ (integer labels)}; \quad
    lo \le t \le hi \text{ (targets of the logits' shape)}

  What the UNCHECKED call does with an out-of-range label: the integer-label
  losses built on `jaxloss._src.numerics.take_label` (the cross-entropy family, for
  example) return NaN for that example, which a mean then spreads to the whole
  batch loss; losses that one-hot encode labels see an all-zero target row and
  return a finite but meaningless value. Neither raises.

  Python scalars, strings and ``None`` in the arguments (``axis``, ``alpha``,
  ``kind``, ...) stay static; arrays are traced.

  Args:
    loss_fn: any jaxloss loss (or ``functools.partial`` of one) taking
      ``(logits, labels_or_targets, ...)``; other callables with that calling
      convention get the generic checks, unless they carry the mark
      ``jaxloss_target_range``.
    target_range: ``"auto"`` (the loss's declared ``jaxloss_target_range``),
      a ``(lo, hi)`` pair, or ``None`` (no check on targets of the logits'
      shape).

  Returns:
    A function with ``loss_fn``'s arguments returning ``(err, loss)``.

  Example:
    >>> import jax, jax.numpy as jnp, jaxloss
    >>> f = jax.jit(jaxloss.checked(jaxloss.softmax_cross_entropy_with_integer_labels))
    >>> err, loss = f(jnp.zeros((2, 3)), jnp.array([0, 3]))
    >>> print(err.get())
    softmax_cross_entropy_with_integer_labels: labels must be in [0, 3), got a label outside that range (first offending label: 3) (`check` failed)
    >>> print(loss.round(4))
    [1.0986    nan]

  Reference: `jax.experimental.checkify`,
  https://docs.jax.dev/en/latest/debugging/checkify_guide.html
  """
  if not callable(loss_fn):
    raise TypeError(f"checked expects a loss function, got {type(loss_fn).__name__}.")
  if isinstance(target_range, str):
    if target_range != "auto":
      raise ValueError(f"target_range must be 'auto', None or (lo, hi), got {target_range!r}.")
    target_range = _declared_target_range(loss_fn)
  elif target_range is not None:
    lo, hi = target_range
    target_range = (float(lo), float(hi))
  name = getattr(_unwrap(loss_fn), "__name__", type(loss_fn).__name__)
  try:
    signature = inspect.signature(loss_fn)
  except (TypeError, ValueError):
    signature = None

  def check_and_call(args, kwargs):
    bound = None
    if signature is not None:
      try:
        bound = signature.bind(*args, **kwargs)
      except TypeError:
        pass  # loss_fn raises its own error for the bad call below
    if bound is not None:
      bound.apply_defaults()
      positional = [p for p in signature.parameters.values()
                    if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
      if len(positional) >= 2:
        first, second = positional[0].name, positional[1].name
        values = bound.arguments
        logits = jnp.asarray(values[first])
        _check_logits(name, first, logits)
        axis = values.get("axis", -1)
        if values[second] is not None and isinstance(axis, (int, np.integer)):
          _check_labels(name, logits, jnp.asarray(values[second]), int(axis), values,
                        target_range)
    return loss_fn(*args, **kwargs)

  @functools.wraps(loss_fn)
  def wrapper(*args, **kwargs):
    # Only array leaves go through checkify as traced arguments: Python scalars
    # and strings (axis, alpha, kind, ignore_index, ...) must stay static.
    leaves, treedef = jax.tree_util.tree_flatten((args, kwargs))
    is_array = [_is_array(leaf) for leaf in leaves]

    def run(arrays):
      it = iter(arrays)
      full = [next(it) if a else leaf for leaf, a in zip(leaves, is_array)]
      call_args, call_kwargs = jax.tree_util.tree_unflatten(treedef, full)
      return check_and_call(call_args, call_kwargs)

    arrays = [leaf for leaf, a in zip(leaves, is_array) if a]
    return checkify.checkify(run, errors=checkify.user_checks)(arrays)

  return wrapper
