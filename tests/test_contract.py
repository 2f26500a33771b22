"""The library contract, checked table-driven over every public loss.

One row of `CASES` per public loss (and per variant of its second argument or
kind); every test below runs over the rows it applies to. The contract itself
is stated in `jaxloss._src.numerics` (non-finite in, non-finite out; shift
invariance; masked classes) and `jaxloss._src.checks` (signature, dtypes,
class axis, trace-time errors). `test_table_covers_every_public_loss` makes
sure a new public loss cannot be left out of the table.

Comparisons are to the library itself: at a few float32 ulps where the
contract promises an exact computation (shift invariance, 16-bit inputs that
are upcast first), with small tolerances where two different XLA programs are
compared (jit versus eager, vmap, a moved class axis). No test relies on the
rounding of one CPU.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from typing import Any

import chex
import hypothesis
import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from hypothesis import strategies as st

import jaxloss

# One shape for (almost) every test: op-by-op (eager) execution compiles each
# primitive once per shape and dtype, and then every loss of the table reuses it.
B, K = 6, 5  # batch, classes
N, T = 2, 3  # the leading batch of the vmap and class-axis tests, a spatial axis


# ---------------------------------------------------------------- the table
@dataclasses.dataclass(frozen=True)
class Case:
  """A public loss with its hyperparameters bound, and what the contract says of it.

  Attributes:
    fn: the public function (``jaxloss.<name>``).
    second: how its second argument is made from integer labels: ``"int"``
      (the labels), ``"onehot"`` (float one-hot of the logits' shape),
      ``"pm1"`` (``2 * onehot - 1``) or ``"prob"`` (smoothed one-hot rows,
      probabilities that sum to 1 with no zero entry).
    first: ``"logits"``, or ``"log_probs"`` (the input is log-probabilities:
      the tests pass ``log_softmax`` of their logits).
    shift_invariant: softmax-based or multiclass-margin: depends on logit
      differences only, exactly (``z - max z`` / ``margin + (z_j - z_y)``).
    minus_inf_masks: a ``-inf`` in an unmasked non-label class acts as a masked
      class (probability 0 / no competitor): same value, finite gradients.
    other_kind: the kind of second argument this loss must refuse (``"int"``
      or ``"onehot"``), or None where it accepts both.
    kwargs: hyperparameters bound for the call.
  """

  fn: Callable[..., jax.Array]
  second: str
  first: str = "logits"
  shift_invariant: bool = False
  minus_inf_masks: bool = False
  other_kind: str | None = None
  kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)

  def __call__(self, first, second, **kw):
    return self.fn(first, second, **self.kwargs, **kw)

  def inputs(self, logits, labels, axis=-1):
    """``(first, second)`` numpy arguments from logits and integer labels."""
    logits = np.asarray(logits)
    first = logits
    if self.first == "log_probs":
      first = _log_softmax64(logits, axis).astype(logits.dtype)
    return first, make_second(self.second, labels, logits.shape[axis], axis)


def _softmax_case(fn, second="int", **kw):
  return Case(fn, second, shift_invariant=True, minus_inf_masks=True,
              other_kind="onehot" if second == "int" else None, **kw)


def _hinge_case(kind, squared):
  return Case(jaxloss.multiclass_hinge_loss, "int", shift_invariant=True, minus_inf_masks=True,
              other_kind="onehot", kwargs=dict(kind=kind, squared=squared))


_OVR = {
    "hinge": jaxloss.ovr_hinge,
    "squared_hinge": jaxloss.ovr_squared_hinge,
    "smooth_hinge": jaxloss.ovr_smooth_hinge,
    "logistic": jaxloss.ovr_logistic,
    "exponential": jaxloss.ovr_exponential,
    "savage": jaxloss.ovr_savage,
    "tangent": jaxloss.ovr_tangent,
    "square": jaxloss.ovr_square,
}

CASES: dict[str, Case] = {
    # Softmax cross-entropy family: shift-exact, -inf = masked class.
    "softmax_cross_entropy": _softmax_case(jaxloss.softmax_cross_entropy, "onehot"),
    "softmax_cross_entropy[int]": Case(
        jaxloss.softmax_cross_entropy, "int", shift_invariant=True, minus_inf_masks=True),
    "softmax_cross_entropy[prob]": Case(
        jaxloss.softmax_cross_entropy, "prob", shift_invariant=True),
    "softmax_cross_entropy_with_integer_labels": _softmax_case(
        jaxloss.softmax_cross_entropy_with_integer_labels),
    "nll_loss": Case(jaxloss.nll_loss, "int", first="log_probs", minus_inf_masks=True,
                     other_kind="onehot"),
    # Label smoothing puts alpha / K on every class: a -inf logit gives +inf.
    "label_smoothing_cross_entropy": Case(
        jaxloss.label_smoothing_cross_entropy, "int", shift_invariant=True),
    "label_smoothing_cross_entropy[onehot]": Case(
        jaxloss.label_smoothing_cross_entropy, "onehot", shift_invariant=True),
    "cross_entropy": Case(jaxloss.cross_entropy, "int", shift_invariant=True,
                          minus_inf_masks=True, kwargs=dict(reduction="none")),
    "cross_entropy[smoothing]": Case(
        jaxloss.cross_entropy, "int", shift_invariant=True,
        kwargs=dict(reduction="none", label_smoothing=0.1)),
    "cross_entropy[prob]": Case(
        jaxloss.cross_entropy, "prob", shift_invariant=True, kwargs=dict(reduction="none")),
    "softmax_focal_loss": _softmax_case(jaxloss.softmax_focal_loss),
    "poly1_cross_entropy": _softmax_case(jaxloss.poly1_cross_entropy),
    "brier_score": _softmax_case(jaxloss.brier_score),
    # 1 - p_y, bounded: a label (or target mass) at probability 0 costs 1, not +inf.
    "softmax_absolute_error": Case(
        jaxloss.softmax_absolute_error, "int", shift_invariant=True, minus_inf_masks=True),
    "softmax_absolute_error[prob]": Case(
        jaxloss.softmax_absolute_error, "prob", shift_invariant=True),
    # Multiclass margins: margin + (z_j - z_y); a -inf competitor takes no part.
    "multiclass_hinge_loss[crammer_singer]": _hinge_case("crammer_singer", False),
    "multiclass_hinge_loss[crammer_singer,squared]": _hinge_case("crammer_singer", True),
    "multiclass_hinge_loss[weston_watkins]": _hinge_case("weston_watkins", False),
    "multiclass_hinge_loss[weston_watkins,squared]": _hinge_case("weston_watkins", True),
    # Per-class sigmoid and one-vs-rest margin losses: -inf is a value (a limit).
    "sigmoid_focal_loss": Case(jaxloss.sigmoid_focal_loss, "onehot", other_kind="int"),
    "sigmoid_difference": Case(jaxloss.sigmoid_difference, "onehot", other_kind="int"),
    "balanced_sigmoid_difference": Case(
        jaxloss.balanced_sigmoid_difference, "onehot", other_kind="int"),
    "sigmoid_binary_cross_entropy": Case(
        jaxloss.sigmoid_binary_cross_entropy, "onehot", other_kind="int"),
    **{f"ovr_{kind}": Case(fn, "pm1") for kind, fn in _OVR.items()},
    **{f"ovr_margin_loss[{kind}]": Case(jaxloss.ovr_margin_loss, "int", kwargs=dict(kind=kind))
       for kind in _OVR},
    "square_loss": Case(jaxloss.square_loss, "int", other_kind="onehot"),
    "kl_divergence": Case(jaxloss.kl_divergence, "prob", first="log_probs", other_kind="int"),
}

# Public callables whose signature starts like a loss's but that are metrics:
# they reduce over the batch (or bin it) and are not per-example losses.
NOT_LOSSES = frozenset({
    "accuracy", "calibration_bins", "expected_calibration_error", "multilabel_accuracy",
    "negative_log_likelihood",
})

NAMES = sorted(CASES)
SHIFT_NAMES = [n for n in NAMES if CASES[n].shift_invariant]
MINUS_INF_NAMES = [n for n in NAMES if CASES[n].minus_inf_masks]
LIMIT_NAMES = [n for n in NAMES if not CASES[n].minus_inf_masks]


# ---------------------------------------------------------------- inputs
def _log_softmax64(x, axis=-1):
  x = np.asarray(x, np.float64)
  m = np.max(np.where(np.isfinite(x), x, -np.inf), axis=axis, keepdims=True)
  m = np.where(np.isfinite(m), m, 0.0)
  return x - m - np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))


def _onehot(labels, k, axis=-1):
  oh = (np.asarray(labels)[..., None] == np.arange(k)).astype(np.float32)
  return np.moveaxis(oh, -1, axis)


def make_second(kind, labels, k, axis=-1):
  labels = np.asarray(labels, np.int32)
  if kind == "int":
    return labels
  oh = _onehot(labels, k, axis)
  if kind == "onehot":
    return oh
  if kind == "pm1":
    return 2.0 * oh - 1.0
  if kind == "prob":
    return (0.8 * oh + 0.2 / k).astype(np.float32)
  raise ValueError(kind)


def _data(seed=0, shape=(B, K), scale=2.0):
  rng = np.random.default_rng(seed)
  logits = (scale * rng.standard_normal(shape)).astype(np.float32)
  labels = rng.integers(0, shape[-1], shape[:-1]).astype(np.int32)
  return logits, labels


def _non_label(labels, k=K):
  return (np.asarray(labels) + 1) % k


def _allclose(actual, desired, rtol=1e-5, atol=1e-6):
  np.testing.assert_allclose(np.asarray(actual, np.float64), np.asarray(desired, np.float64),
                             rtol=rtol, atol=atol)


def _ulps(actual, desired, maxulp=4):
  np.testing.assert_array_max_ulp(np.asarray(actual, np.float32),
                                  np.asarray(desired, np.float32), maxulp=maxulp)


def _sum_grad(case, second, **kw):
  return jax.grad(lambda z: jnp.sum(case(z, second, **kw)))


def _forward_mode(case, first, second, **kw):
  """Forward-mode derivatives, as `jax.jacfwd` computes them (it is vmap of jvp).

  Two tangents: all ones (each output sums its Jacobian row, so a non-finite
  entry anywhere in the row shows) and the basis vectors of the -inf / masked
  entries summed (the directions where a 0 * inf would appear). One jvp each
  instead of a full jacfwd: eager jacfwd compiles a batched copy of every
  primitive, which costs more than all the other checks of this file.
  """
  first = np.asarray(first)
  f = lambda z: case(z, second, **kw)
  ones = np.ones_like(first)  # tangents made in NumPy: no eager op to compile
  special = np.where(np.isneginf(first), 1.0, 0.0).astype(first.dtype)
  return [jax.jvp(f, (jnp.asarray(first),), (jnp.asarray(t),))[1] for t in (ones, special)]


def _assert_finite(x, what=""):
  x = np.asarray(x, np.float64)
  assert np.all(np.isfinite(x)), f"{what} not finite: {x}"


def _trace(case, first, second, **kw):
  """Runs `case` under `jax.eval_shape`: only shapes and dtypes, no computation."""
  arrays = {k: v for k, v in kw.items() if v is not None and not isinstance(v, int)}
  static = {k: v for k, v in kw.items() if k not in arrays}
  return jax.eval_shape(lambda a, b, kw_arrays: case(a, b, **kw_arrays, **static),
                        first, second, arrays)


# ---------------------------------------------------------------- coverage
def _looks_like_a_loss(fn) -> bool:
  try:
    params = list(inspect.signature(fn).parameters)
  except (TypeError, ValueError):
    return False
  return (len(params) >= 2 and params[0] in ("logits", "log_probs", "log_predictions")
          and params[1] in ("labels", "targets"))


def test_table_covers_every_public_loss():
  public = {name: getattr(jaxloss, name) for name in dir(jaxloss) if not name.startswith("_")}
  loss_like = {name for name, obj in public.items()
               if callable(obj) and not isinstance(obj, type) and _looks_like_a_loss(obj)}
  assert NOT_LOSSES <= loss_like, f"stale NOT_LOSSES entries: {sorted(NOT_LOSSES - loss_like)}"
  in_table = {case.fn.__name__ for case in CASES.values()}
  missing = loss_like - NOT_LOSSES - in_table
  assert not missing, f"public losses missing from the contract table: {sorted(missing)}"
  for case in CASES.values():
    assert public[case.fn.__name__] is case.fn, f"{case.fn.__name__} is not the public object"
  assert not (in_table & NOT_LOSSES)


# ---------------------------------------------------------------- 1. signature and shapes
@pytest.mark.parametrize("name", NAMES)
def test_signature(name):
  case = CASES[name]
  params = list(inspect.signature(case.fn).parameters.values())
  assert len(params) >= 5
  for p in params[:2]:
    assert p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD), p
    assert p.default is p.empty, p
  for p in params[2:]:
    assert p.kind is p.KEYWORD_ONLY, f"{p.name} must be keyword-only"
  by_name = {p.name: p for p in params}
  assert by_name["axis"].default == -1
  assert by_name["where"].default is None
  assert by_name["example_mask"].default is None


@pytest.mark.parametrize("name", NAMES)
def test_returns_per_example_shape(name):
  case = CASES[name]
  for shape in [(B, K), (2, B, K), (1, 1)]:
    logits, labels = _data(1, shape)
    out = _trace(case, *case.inputs(logits, labels))
    assert out.shape == shape[:-1] and out.dtype == jnp.float32, (shape, out)


# ---------------------------------------------------------------- 2, 7. jit, vmap, axis, retrace
def _masks(labels, k=K):
  """A class mask with one non-label class masked in rows 0 and 2; example 1 masked out."""
  where = np.ones(labels.shape + (k,), bool)
  c = _non_label(labels, k)
  for row in (0, 2):
    where[row, c[row]] = False
  example_mask = np.ones(labels.shape, bool)
  example_mask[1] = False
  return where, example_mask


class JitTest(chex.TestCase):
  """jit and no-jit give the same losses; new values of the same shape do not retrace."""

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(*[(n.replace("[", "_").replace("]", "").replace(",", "_"), n)
                                    for n in NAMES])
  def test_jit_equals_no_jit_without_retrace(self, name):
    case = CASES[name]
    chex.clear_trace_counter()

    @self.variant
    @chex.assert_max_traces(n=1)
    def f(a, b, w, m):
      return case(a, b, where=w, example_mask=m)

    for seed in (2, 3, 4):  # new values, same shapes and dtypes: traced once
      logits, labels = _data(seed)
      first, second = case.inputs(logits, labels)
      where, example_mask = _masks(labels)
      expected = case(first, second, where=where, example_mask=example_mask)
      actual = f(first, second, where, example_mask)
      assert actual.dtype == jnp.float32 and actual.shape == (B,)
      # Two XLA programs (one fused): equal up to rounding.
      _allclose(actual, expected)
      assert float(actual[1]) == 0.0


def _layouts(case, first, second, where, example_mask, first3, second3, where3, mask3):
  """The same losses in other layouts: vmapped over the batch, and classes on axis 1."""
  mapped = jax.vmap(lambda a, b, w, m: case(a, b, where=w, example_mask=m))(
      first, second, where, example_mask)  # one [K] row per call
  axis1 = case(first3, second3, axis=1, where=where3, example_mask=mask3)
  axis_neg2 = case(first3, second3, axis=-2, where=where3, example_mask=mask3)
  moved_second = second3 if case.second == "int" else jnp.moveaxis(second3, 1, -1)
  moved = case(jnp.moveaxis(first3, 1, -1), moved_second, where=jnp.moveaxis(where3, 1, -1),
               example_mask=mask3)
  return mapped, axis1, axis_neg2, moved


@pytest.mark.parametrize("name", NAMES)
def test_vmap_and_class_axis_1_equal_the_direct_call(name):
  """vmap over the leading batch axis; ``axis=1`` on ``[N, K, T]`` logits.

  The other layouts run as one jitted program per loss: eager vmap and moved
  axes would compile hundreds of primitives of their own. The direct call they
  are compared with runs eagerly, on the ``[B, K]`` inputs whose primitives the
  other tests compile anyway (inside the program it would make it a fifth bigger).
  """
  case = CASES[name]
  logits, labels = _data(3)
  first, second = case.inputs(logits, labels)
  where, example_mask = _masks(labels)
  logits_NTK, labels_NT = _data(4, (N, T, K))
  logits_NKT = np.moveaxis(logits_NTK, -1, 1)  # classes on axis 1: [N, K, T]
  first3, second3 = case.inputs(logits_NKT, labels_NT, axis=1)
  where3 = np.ones(logits_NKT.shape, bool)
  where3[0, _non_label(labels_NT[0, 1]), 1] = False
  mask3 = np.ones(labels_NT.shape, bool)
  mask3[1, 0] = False
  direct = case(first, second, where=where, example_mask=example_mask)
  mapped, axis1, axis_neg2, moved = jax.jit(functools.partial(_layouts, case))(
      first, second, where, example_mask, first3, second3, where3, mask3)
  assert direct.shape == mapped.shape == (B,)
  _allclose(mapped, direct)
  assert axis1.shape == axis_neg2.shape == moved.shape == (N, T)
  _allclose(axis1, moved)
  _allclose(axis_neg2, axis1)
  assert float(axis1[1, 0]) == 0.0


# ---------------------------------------------------------------- 3. -inf and masks
def _masked_inputs(case):
  """Row 0 fully masked (holding -inf and finite values), rows 1 and 3 one masked -inf class."""
  logits, labels = _data(5)
  where = np.ones((B, K), bool)
  where[0] = False
  logits[0, ::2] = -np.inf
  c = _non_label(labels)
  for row in (1, 3):
    where[row, c[row]] = False
    logits[row, c[row]] = -np.inf
  first, second = case.inputs(logits, labels)
  if case.first == "log_probs":  # -inf stays -inf behind the mask
    first = np.where(np.isneginf(logits), -np.inf, first).astype(np.float32)
  return first, second, where


@pytest.mark.parametrize("name", NAMES)
def test_minus_inf_in_masked_classes_and_fully_masked_rows(name):
  case = CASES[name]
  first, second, where = _masked_inputs(case)
  out = case(first, second, where=where)
  _assert_finite(out, "loss")
  assert float(out[0]) == 0.0, "a fully masked row must give exactly 0"
  # Whatever is behind the mask does not matter.
  finite_behind = np.where(where, first, 7.0).astype(np.float32)
  _allclose(case(finite_behind, second, where=where), out, rtol=0, atol=0)
  grad = _sum_grad(case, second, where=where)(jnp.asarray(first))
  _assert_finite(grad, "grad")
  assert np.all(np.asarray(grad)[~where] == 0.0), "masked classes get no gradient"
  _assert_finite(_forward_mode(case, first, second, where=where), "jvp")


@pytest.mark.parametrize("name", MINUS_INF_NAMES)
def test_minus_inf_in_unmasked_non_label_class_acts_as_masked(name):
  case = CASES[name]
  logits, labels = _data(6)
  first, second = case.inputs(logits, labels)
  minus_inf, _ = _minus_inf_non_label(case)
  c = _non_label(labels)
  rows = np.array([0, 2])
  where = np.ones((B, K), bool)
  where[rows, c[rows]] = False
  out = case(minus_inf, second)
  _assert_finite(out, "loss")
  # Masking that class instead gives the same loss (a computed log-softmax
  # input is renormalized by the library, so compare with a tolerance).
  _allclose(out, case(first, second, where=where), rtol=1e-6, atol=1e-7)
  _assert_finite(_sum_grad(case, second)(jnp.asarray(minus_inf)), "grad")
  _assert_finite(_forward_mode(case, minus_inf, second), "jvp")


def _minus_inf_non_label(case):
  logits, labels = _data(6)
  first, second = case.inputs(logits, labels)
  c = _non_label(labels)
  rows = np.array([0, 2])
  first[rows, c[rows]] = -np.inf
  return first, second


@pytest.mark.parametrize("name", LIMIT_NAMES)
def test_minus_inf_elsewhere_is_the_limit_value(name):
  """Where -inf is not a masked class it is the limit z -> -inf of the formula."""
  case = CASES[name]
  logits, labels = _data(7)
  first, second = case.inputs(logits, labels)
  c = _non_label(labels)
  at_inf, far = first.copy(), first.copy()
  at_inf[np.arange(B), c] = -np.inf
  far[np.arange(B), c] = -1e30
  out, limit = np.asarray(case(at_inf, second)), np.asarray(case(far, second))
  huge = ~(np.abs(limit) < 1e20)
  assert np.all(np.isposinf(out[huge])), (out, limit)
  _allclose(out[~huge], limit[~huge], rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------- 4. 16-bit inputs
@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16], ids=["bf16", "f16"])
@pytest.mark.parametrize("name", NAMES)
def test_16_bit_inputs_compute_in_float32(name, dtype):
  case = CASES[name]
  logits, labels = _data(8)
  first, second = case.inputs(logits, labels)
  first16 = np.asarray(first).astype(dtype)  # NumPy (ml_dtypes) casts: no eager op
  out = case(first16, second)
  assert out.dtype == jnp.float32
  _assert_finite(out, "loss")
  # The same values, upcast by the caller: the library upcasts first, so the
  # two computations are one and the same.
  _ulps(out, case(first16.astype(np.float32), second), maxulp=4)
  grad = _sum_grad(case, second)(first16)
  assert grad.dtype == dtype
  _assert_finite(grad, "grad")


# ---------------------------------------------------------------- 5. shift invariance
# (dtype, step, shift): logits are integer multiples of `step` near 0 and near
# `shift`; both sets are exactly representable in `dtype` (checked below).
SHIFTS = [
    (jnp.float32, 8.0, 1e8),  # [2^26, 2^27): float32 spacing 8; 1e8 = 8 * 12500000
    (jnp.float16, 4.0, 4096.0),  # [2^11, 2^12): spacing 2, [2^12, 2^13): spacing 4
    (jnp.bfloat16, 2.0, 256.0),  # [2^7, 2^8): spacing 1, [2^8, 2^9): spacing 2
]


@pytest.mark.parametrize("dtype,step,shift", SHIFTS, ids=["f32@1e8", "f16@4096", "bf16@256"])
@pytest.mark.parametrize("name", SHIFT_NAMES)
def test_shift_invariance_is_exact(name, dtype, step, shift):
  case = CASES[name]
  rng = np.random.default_rng(9)
  base = step * rng.integers(-3, 4, (B, K)).astype(np.float64)
  labels = rng.integers(0, K, (B,)).astype(np.int32)
  where = np.ones((B, K), bool)
  where[1, _non_label(labels[1])] = False
  z0, z1 = base.astype(dtype), (base + shift).astype(dtype)  # NumPy casts: no eager op
  np.testing.assert_array_equal(np.asarray(z0, np.float64), base)  # exactly representable
  np.testing.assert_array_equal(np.asarray(z1, np.float64), base + shift)
  _, second = case.inputs(base, labels)
  out0, out1 = case(z0, second, where=where), case(z1, second, where=where)
  assert out0.dtype == out1.dtype == jnp.float32
  _assert_finite(out0, "loss")
  _ulps(out1, out0, maxulp=4)
  g0 = _sum_grad(case, second, where=where)(z0)
  g1 = _sum_grad(case, second, where=where)(z1)
  assert g0.dtype == g1.dtype == dtype
  _assert_finite(g0, "grad")
  if dtype == jnp.float32:
    _ulps(g1, g0, maxulp=4)
  else:  # float32 gradients a few ulps apart may round to neighbouring 16-bit values
    _allclose(g1, g0, rtol=float(jnp.finfo(dtype).eps), atol=1e-30)


# ---------------------------------------------------------------- 6. NaN and +inf
def _bad_rows(case):
  """Row 0 finite; rows 1 to 5 with a NaN or +inf in an unmasked class."""
  logits, labels = _data(10)
  first, second = case.inputs(logits, labels)
  c = _non_label(labels)
  bad = first.copy()
  bad[1, c[1]] = np.nan  # NaN in a non-label class
  bad[2, labels[2]] = np.nan  # NaN in the label class
  bad[3] = np.nan  # all-NaN row
  bad[4, labels[4]] = np.inf  # +inf in the label class
  bad[5, c[5]] = np.inf  # +inf in a non-label class
  return first, bad, second


@pytest.mark.parametrize("name", NAMES)
def test_nan_and_plus_inf_rows_give_nan(name):
  case = CASES[name]
  first, bad, second = _bad_rows(case)
  base = np.asarray(case(first, second))
  out = np.asarray(case(bad, second))
  assert np.all(np.isnan(out[1:])), out  # exactly NaN: the library selects it
  _ulps(out[0], base[0], maxulp=0)  # the other example is untouched
  # example_mask=False: exactly 0, whatever the logits.
  example_mask = np.array([True, False, False, False, False, False])
  masked = np.asarray(case(bad, second, example_mask=example_mask))
  np.testing.assert_array_equal(masked[1:], 0.0)
  _ulps(masked[0], base[0], maxulp=0)
  # Through a reduction the NaN survives, and is left out with its example.
  assert np.isnan(float(jaxloss.weighted_mean(out)))
  assert np.isfinite(float(jaxloss.weighted_mean(out, example_mask=example_mask)))


@pytest.mark.parametrize("name", NAMES)
def test_nan_and_plus_inf_rows_have_zero_gradient(name):
  case = CASES[name]
  _, bad, second = _bad_rows(case)
  example_mask = np.array([True, True, True, False, False, False])
  for kw in ({}, dict(example_mask=example_mask)):
    grad = np.asarray(_sum_grad(case, second, **kw)(jnp.asarray(bad)))
    _assert_finite(grad, f"grad {kw}")
    assert np.all(grad[1:] == 0.0), grad
    assert np.any(grad[0] != 0.0)


@pytest.mark.parametrize("name", NAMES)
def test_nan_behind_the_class_mask_changes_nothing(name):
  case = CASES[name]
  logits, labels = _data(11)
  first, second = case.inputs(logits, labels)
  c = _non_label(labels)
  where = np.ones((B, K), bool)
  where[[1, 2], c[[1, 2]]] = False
  with_nan = first.copy()
  with_nan[1, c[1]] = np.nan
  with_nan[2, c[2]] = np.inf
  expected = case(first, second, where=where)
  _assert_finite(expected)
  _ulps(case(with_nan, second, where=where), expected, maxulp=0)
  _assert_finite(_sum_grad(case, second, where=where)(jnp.asarray(with_nan)), "grad")


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("second", ["int", "prob"])
def test_cross_entropy_reductions_propagate_nan(reduction, second):
  logits, labels = _data(12)
  logits[2, 1] = np.nan
  y = make_second(second, labels, K)
  assert np.isnan(float(jaxloss.cross_entropy(logits, y, reduction=reduction)))
  # ...but an example left out by example_mask is left out.
  keep = np.array([True, True, False, True, True, True])
  assert np.isfinite(float(jaxloss.cross_entropy(logits, y, reduction=reduction,
                                                 example_mask=keep)))


@pytest.mark.parametrize("name", jaxloss.available())
def test_registry_loss_from_labels_propagates_nan(name):
  logits, labels = _data(13)
  spec = jaxloss.get(name)
  assert np.isfinite(float(spec.loss_from_labels(logits, labels)))
  logits[1] = np.nan
  assert np.isnan(float(spec.loss_from_labels(logits, labels)))
  keep = np.arange(B) != 1
  assert np.isfinite(float(spec.loss_from_labels(logits, labels, example_mask=keep)))


# ---------------------------------------------------------------- 8. errors at trace time
def _bad_inputs(case):
  """``(description, first, second, kwargs, exception, match)`` rows for `case`."""
  logits, labels = _data(17)
  first, second = case.inputs(logits, labels)
  scalar_second = np.int32(0) if case.second == "int" else np.float32(1.0)
  if case.second == "int":
    wrong_shape = np.zeros((B + 1,), np.int32)
  else:
    wrong_shape = np.zeros((B, K + 1), np.float32)
  rows = [
      ("integer logits", first.astype(np.int32), second, {}, TypeError, "floating"),
      ("scalar logits", np.float32(1.0), scalar_second, {}, ValueError, "scalar"),
      ("labels of the wrong shape", first, wrong_shape, {}, ValueError, "shape"),
      ("non-boolean where", first, second, dict(where=np.ones((B, K), np.float32)),
       TypeError, "where must be a boolean"),
      ("where not broadcastable", first, second, dict(where=np.ones((B, K + 1), bool)),
       ValueError, "does not broadcast"),
      ("non-boolean example_mask", first, second,
       dict(example_mask=np.ones((B,), np.float32)), TypeError, "example_mask must be boolean"),
      ("example_mask of the wrong shape", first, second,
       dict(example_mask=np.ones((B + 1,), bool)), ValueError, "example_mask shape"),
      ("axis out of range", first, second, dict(axis=2), ValueError, "out of range"),
      ("axis out of range (negative)", first, second, dict(axis=-3), ValueError, "out of range"),
  ]
  if case.other_kind == "onehot":
    rows.append(("one-hot where integer labels are needed", first, _onehot(labels, K), {},
                 TypeError, "one-hot"))
  elif case.other_kind == "int":
    rows.append(("integer labels where targets are needed", first, labels, {},
                 ValueError, "integer labels"))
  return rows


@pytest.mark.parametrize("name", NAMES)
def test_bad_inputs_raise_at_trace_time(name):
  case = CASES[name]
  for what, first, second, kw, exc, match in _bad_inputs(case):
    with pytest.raises(exc, match=match):
      _trace(case, first, second, **kw)
      pytest.fail(f"{name}: no error for {what}")  # pragma: no cover


# ---------------------------------------------------------------- 9. properties
_GRID = 2.0 ** -10  # logits on this grid with |z| <= 8 + 2^12 use <= 23 significant bits


@hypothesis.given(
    z=hnp.arrays(np.float32, (B, K), elements=st.floats(
        -8, 8, width=32, allow_nan=False, allow_infinity=False, allow_subnormal=False)),
    labels=hnp.arrays(np.int32, (B,), elements=st.integers(0, K - 1)),
    shift=st.integers(-(2 ** 12), 2 ** 12))
def test_property_shift_invariance_and_non_negativity(z, labels, shift):
  z = (np.round(z.astype(np.float64) / _GRID) * _GRID).astype(np.float32)
  shifted = z + np.float32(shift)
  np.testing.assert_array_equal(shifted.astype(np.float64), z.astype(np.float64) + shift)
  for name in NAMES:
    case = CASES[name]
    first, second = case.inputs(z, labels)
    out = case(first, second)
    _assert_finite(out, f"{name} loss")
    if case.shift_invariant:  # values here; gradients in test_shift_invariance_is_exact
      _ulps(case(shifted, second), out, maxulp=4)
    # Every loss of the table is documented non-negative with its default
    # hyperparameters (cross-entropies, squares, hinges, sigmoid losses, the
    # divergence of normalized targets, the NLL of log-probabilities).
    assert np.all(np.asarray(out) >= 0.0), (name, out)
