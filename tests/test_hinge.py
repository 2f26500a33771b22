"""Multiclass hinge losses vs float64 NumPy references, PyTorch, and identities."""

import functools

import chex
import hypothesis
import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from absl.testing import parameterized
from hypothesis import strategies as st
from jax.test_util import check_grads

import jaxloss
from _loss_checks import assert_shift_exact

# Per-loss reference tests: thorough and slow (many eager shapes compile); the quick
# check is tests/test_contract.py, which walks every loss (see the README).
pytestmark = [pytest.mark.usefixtures("x64", "jitted_public_api"), pytest.mark.slow]

KINDS = ("crammer_singer", "weston_watkins")
# One shape for the random inputs of the whole file: each hyperparameter setting
# of the loss compiles once per shape and dtype, so tests that share the shape
# share programs. Checks made of several calls (values, Jacobians, masked
# variants) run as one jitted program each, one compile instead of one per call.
B, K = 8, 5


# ---------------------------------------------------------------- reference
def np_hinge(z, y, *, margin=1.0, kind="crammer_singer", squared=False, mask=None, w=None,
             keep=None):
  """Loop reference written from the formulas (class axis last, float64)."""
  z = np.asarray(z, np.float64)
  k = z.shape[-1]
  out = np.zeros(z.shape[:-1])
  for idx in np.ndindex(*z.shape[:-1]):
    if keep is not None and not keep[idx]:
      continue
    row, label = z[idx], int(y[idx])
    m = np.ones(k, bool) if mask is None else mask[idx]
    if not 0 <= label < k:
      out[idx] = np.nan
      continue
    z_y = row[label] if m[label] else -np.inf
    rivals = [row[j] for j in range(k) if j != label and m[j] and row[j] > -np.inf]
    if not rivals:
      loss = 0.0
    elif kind == "crammer_singer":
      loss = max(0.0, margin + max(rivals) - z_y)
      loss = loss**2 if squared else loss
    else:
      terms = [max(0.0, margin + r - z_y) for r in rivals]
      loss = sum(t**2 if squared else t for t in terms)
    out[idx] = loss * (1.0 if w is None else w[label])
  return out


def random_inputs(rng, batch_shape, k, scale=2.0):
  z = rng.normal(size=batch_shape + (k,)) * scale
  y = rng.integers(0, k, size=batch_shape)
  return z, y


# ---------------------------------------------------------------- forward vs reference
class ReferenceTest(parameterized.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.product(kind=KINDS, squared=(False, True), margin=(0.5, 1.0, 3.0))
  def test_reference(self, kind, squared, margin):
    rng = np.random.default_rng(0)
    z, y = random_inputs(rng, (B,), K)
    f = self.variant(functools.partial(
        jaxloss.multiclass_hinge_loss, margin=margin, kind=kind, squared=squared))
    got = f(z, y)
    chex.assert_shape(got, (B,))
    chex.assert_trees_all_close(
        got, np_hinge(z, y, margin=margin, kind=kind, squared=squared), rtol=1e-12)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.product(kind=KINDS, squared=(False, True))
  def test_where_weights_example_mask(self, kind, squared):
    rng = np.random.default_rng(1)
    z, y = random_inputs(rng, (B,), K)
    mask = rng.random((B, K)) < 0.6
    mask[np.arange(B), y] = True
    mask[0] = False  # fully masked row -> 0
    mask[1] = False
    mask[1, y[1]] = True  # only the label class left: no competitor -> 0
    w = rng.uniform(0.5, 2.0, K)
    keep = rng.random(B) < 0.8
    f = self.variant(functools.partial(
        jaxloss.multiclass_hinge_loss, kind=kind, squared=squared, weights=w))
    got = f(z, y, where=mask, example_mask=keep)
    want = np_hinge(z, y, kind=kind, squared=squared, mask=mask, w=w, keep=keep)
    chex.assert_trees_all_close(got, want, rtol=1e-12)
    self.assertEqual(float(got[0]), 0.0)
    self.assertEqual(float(got[1]), 0.0)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.product(axis=(0, 1, 2, -1), kind=KINDS)
  def test_axis(self, axis, kind):
    rng = np.random.default_rng(2)
    z = rng.normal(size=(3, 4, 5)) * 2
    y_shape = list(z.shape)
    k = y_shape.pop(axis)
    y = rng.integers(0, k, size=y_shape)
    mask = rng.random(z.shape) < 0.7
    f = self.variant(functools.partial(jaxloss.multiclass_hinge_loss, kind=kind, axis=axis))
    got = f(z, y, where=mask)
    want = np_hinge(np.moveaxis(z, axis, -1), y, kind=kind, mask=np.moveaxis(mask, axis, -1))
    chex.assert_trees_all_close(got, want, rtol=1e-12)

  @chex.variants(with_jit=True, without_jit=True)
  def test_vmap_equals_batched(self):
    rng = np.random.default_rng(3)
    z, y = random_inputs(rng, (B,), K)
    for kind in KINDS:
      f = functools.partial(jaxloss.multiclass_hinge_loss, kind=kind, squared=True)
      chex.assert_trees_all_close(self.variant(jax.vmap(f))(z, y), f(z, y), rtol=1e-12)


def test_no_retrace_for_new_values():
  @jax.jit
  @chex.assert_max_traces(n=1)
  def loss(z, y):
    return jaxloss.multiclass_hinge_loss(z, y, kind="weston_watkins").mean()

  rng = np.random.default_rng(4)
  for _ in range(3):
    z, y = random_inputs(rng, (B,), K)
    loss(jnp.asarray(z), jnp.asarray(y))


# ---------------------------------------------------------------- PyTorch parity
@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("margin", [0.5, 1.0, 2.5])
@pytest.mark.parametrize("use_weights", [False, True])
def test_weston_watkins_matches_torch_multi_margin_loss(p, margin, use_weights):
  """multi_margin_loss(p, margin, weight) == (squared) Weston-Watkins / K."""
  rng = np.random.default_rng(5)
  k = K
  z, y = random_inputs(rng, (B,), k, scale=1.0)
  w = rng.uniform(0.2, 3.0, k) if use_weights else None
  want = torch.nn.functional.multi_margin_loss(
      torch.tensor(z), torch.tensor(y), p=p, margin=margin,
      weight=None if w is None else torch.tensor(w), reduction="none").numpy()
  got = jaxloss.multiclass_hinge_loss(
      z, y, margin=margin, kind="weston_watkins", squared=p == 2, weights=w) / k
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------- gradients
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("squared", [False, True])
def test_gradients(kind, squared):
  # Continuous random logits: no ties in the max and no hinge exactly at its
  # kink, so the loss is differentiable at these points.
  rng = np.random.default_rng(6)
  z, y = random_inputs(rng, (B,), K)
  mask = np.ones_like(z, bool)
  mask[0, (y[0] + 1) % K] = False
  w = rng.uniform(0.5, 2.0, K)
  fn = lambda z: jaxloss.multiclass_hinge_loss(
      z, y, kind=kind, squared=squared, where=mask, weights=w)
  check_grads(fn, (z,), order=1, modes=("fwd", "rev"))


def test_crammer_singer_gradient_is_sparse():
  z = np.array([[2.0, 1.5, -1.0, 0.3]])
  g = jax.grad(lambda z: jaxloss.multiclass_hinge_loss(z, np.array([0])).sum())(z)
  np.testing.assert_array_equal(np.asarray(g), [[-1.0, 1.0, 0.0, 0.0]])


# ---------------------------------------------------------------- numerics
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("squared", [False, True])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_extreme_logits(kind, squared, dtype):
  z64 = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0], [1e4, 1e4, -1e4]])
  y = np.array([0, 0, 2])
  fn = lambda z: jaxloss.multiclass_hinge_loss(z, y, kind=kind, squared=squared)
  z = jnp.asarray(z64, dtype)
  # value and gradient, one jitted program
  got, g = jax.jit(lambda z: (fn(z), jax.grad(lambda z: fn(z).sum())(z)))(z)
  np.testing.assert_allclose(np.asarray(got, np.float64),
                             np_hinge(z64, y, kind=kind, squared=squared), rtol=1e-6)
  assert np.all(np.isfinite(np.asarray(g)))


NEG_INF_LOGITS = np.array([
    [0.5, -np.inf, 1.0, -np.inf],
    [-np.inf, -np.inf, -np.inf, -np.inf],  # everything -inf: no competitor -> 0
    [2.0, 1.0, -np.inf, 0.0],
    [3.0, -np.inf, -np.inf, -np.inf],  # every competitor -inf -> 0
])
NEG_INF_LABELS = np.array([0, 1, 3, 0])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("squared", [False, True])
def test_neg_inf_competitors(kind, squared):
  mask = np.isfinite(NEG_INF_LOGITS)
  fn = lambda z: jaxloss.multiclass_hinge_loss(
      z, NEG_INF_LABELS, kind=kind, squared=squared, weights=jnp.arange(1.0, 5.0))
  z = jnp.asarray(NEG_INF_LOGITS)

  @jax.jit
  def outputs(z, z_behind_mask):
    """The value, the masked value and the Jacobians: one jitted program."""
    masked = jaxloss.multiclass_hinge_loss(
        z_behind_mask, NEG_INF_LABELS, kind=kind, squared=squared,
        weights=jnp.arange(1.0, 5.0), where=mask)
    return fn(z), masked, jax.jacrev(fn)(z), jax.jacfwd(fn)(z)

  value, masked, *jacobians = outputs(z, np.where(mask, NEG_INF_LOGITS, 123.0))
  assert np.all(np.isfinite(np.asarray(value)))
  assert float(value[1]) == 0.0 and float(value[3]) == 0.0
  # A -inf competitor is the same as a masked one.
  chex.assert_trees_all_close(value, masked, rtol=1e-12)
  chex.assert_trees_all_close(value, np_hinge(NEG_INF_LOGITS, NEG_INF_LABELS, kind=kind,
                                              squared=squared, w=np.arange(1.0, 5.0)),
                              rtol=1e-12)
  for jac in jacobians:
    jac = np.asarray(jac)
    assert np.all(np.isfinite(jac)), jac
    # -inf competitors receive exactly zero gradient.
    assert np.all(jac[np.arange(4), np.arange(4)][~mask] == 0.0)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("squared", [False, True])
def test_label_at_masked_or_neg_inf_class_is_inf_without_nan(kind, squared):
  """Documented: the label's logit is -inf when its class is masked (as in CE)."""
  z = np.array([[0.5, 1.0, -1.0], [-np.inf, 1.0, 0.0]])
  y = np.array([0, 0])
  where = np.array([[False, True, True], [True, True, True]])
  fn = lambda z: jaxloss.multiclass_hinge_loss(z, y, kind=kind, squared=squared, where=where)
  # value and Jacobians, one jitted program
  value, *jacobians = jax.jit(lambda z: (fn(z), jax.jacrev(fn)(z), jax.jacfwd(fn)(z)))(z)
  assert np.all(np.asarray(value) == np.inf)
  if not squared:  # squared: d(h^2) = 2 h dh is inf, and inf * 0 = NaN in a Jacobian
    for jac in jacobians:
      assert not np.any(np.isnan(np.asarray(jac)))


@pytest.mark.parametrize("dtype,tol", [(jnp.float16, 2e-3), (jnp.bfloat16, 2e-2)])
@pytest.mark.parametrize("kind", KINDS)
def test_low_precision_inputs(dtype, tol, kind):
  rng = np.random.default_rng(7)
  z, y = random_inputs(rng, (B,), K)
  z_low = jnp.asarray(z, dtype)
  fn = lambda z: jaxloss.multiclass_hinge_loss(z, y, kind=kind)
  # value and gradient, one jitted program
  got, g = jax.jit(lambda z: (fn(z), jax.grad(lambda z: fn(z).sum())(z)))(z_low)
  assert got.dtype == jnp.float32
  # Exact up to float32 rounding on the rounded inputs...
  np.testing.assert_allclose(np.asarray(got, np.float64),
                             np_hinge(np.asarray(z_low, np.float64), y, kind=kind),
                             rtol=1e-5, atol=1e-5)
  # ...and within the input rounding of the float64 loss (|z| < ~10, K - 1 terms).
  np.testing.assert_allclose(np.asarray(got, np.float64), np_hinge(z, y, kind=kind),
                             rtol=tol, atol=tol * 100)
  assert g.dtype == dtype and np.all(np.isfinite(np.asarray(g, np.float32)))


def test_output_dtypes():
  # The output dtype is fixed at trace time: eval_shape traces without compiling.
  y = np.zeros(B, np.int32)
  for dtype, out in [(jnp.float16, jnp.float32), (jnp.bfloat16, jnp.float32),
                     (jnp.float32, jnp.float32), (jnp.float64, jnp.float64)]:
    for kind in KINDS:
      fn = functools.partial(jaxloss.multiclass_hinge_loss, kind=kind)
      assert jax.eval_shape(fn, jax.ShapeDtypeStruct((B, K), dtype), y).dtype == out


@pytest.mark.parametrize("kind", KINDS)
def test_out_of_range_label_is_nan(kind):
  z = np.zeros((4, 3))
  got = np.asarray(jaxloss.multiclass_hinge_loss(
      z, np.array([0, 3, -1, 5]), kind=kind, weights=np.ones(3),
      example_mask=np.array([True, True, True, False])))
  assert got[0] > 0 and np.isnan(got[1]) and np.isnan(got[2]) and got[3] == 0.0


# ---------------------------------------------------------------- identities (hypothesis)
logit_arrays = hnp.arrays(
    np.float64, st.sampled_from([(B, 2), (B, K)]),  # two classes, and the file's shape
    elements=st.floats(-30, 30, allow_nan=False, allow_subnormal=False))


@hypothesis.given(z=logit_arrays, data=st.data())
def test_identities(z, data):
  b, k = z.shape
  y = np.asarray(data.draw(hnp.arrays(np.int64, (b,), elements=st.integers(0, k - 1))))
  margin = data.draw(st.floats(0.1, 5.0))
  shift = data.draw(st.floats(-50, 50))
  # The margin as a NumPy scalar is traced (an array to the jitted API): one
  # program per shape, not one per drawn margin.
  f = functools.partial(jaxloss.multiclass_hinge_loss, margin=np.float64(margin))
  cs, ww = (np.asarray(f(z, y, kind=kind)) for kind in KINDS)
  cs2, ww2 = (np.asarray(f(z, y, kind=kind, squared=True)) for kind in KINDS)
  for loss in (cs, ww, cs2, ww2):
    assert np.all(loss >= 0)
  # max <= sum <= (K - 1) max over the K - 1 non-negative hinge terms.
  assert np.all(cs <= ww + 1e-9) and np.all(ww <= (k - 1) * cs + 1e-9)
  assert np.all(cs2 <= ww2 + 1e-9)
  np.testing.assert_allclose(cs2, cs**2, rtol=1e-12)
  if k == 2:  # one competitor: the max and the sum agree
    np.testing.assert_allclose(cs, ww, rtol=1e-12)
  # Invariant to a shift of all logits.
  np.testing.assert_allclose(np.asarray(f(z + shift, y)), cs, rtol=1e-8, atol=1e-8)
  # Zero exactly when the label beats every competitor by the margin.
  z_y = z[np.arange(b), y]
  others = np.where(np.eye(k, dtype=bool)[y], -np.inf, z).max(-1)
  np.testing.assert_array_equal(cs == 0, z_y >= others + margin)


# ---------------------------------------------------------------- issue 10: NaN rows, shift
_BAD_Z = np.array([
    [np.nan, np.nan, np.nan],  # all NaN
    [1.0, np.nan, 0.0],  # one NaN competitor
    [np.nan, 1.0, 0.0],  # NaN at the label
    [1.0, np.inf, 0.0],  # +inf competitor
    [0.5, 1.0, -1.0],  # finite
])
_BAD_Y = np.zeros(5, np.int64)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("squared", [False, True])
def test_nan_or_pos_inf_logit_gives_nan(kind, squared):
  """Issue 10: a NaN (or +inf) class used to be dropped like a -inf one; now NaN,
  with a zero gradient there. example_mask=False gives 0; a class mask hides it."""
  fn = lambda z, **kw: jaxloss.multiclass_hinge_loss(
      z, _BAD_Y, kind=kind, squared=squared, weights=np.arange(1.0, 4.0), **kw)
  where = np.array([True, False, True])

  @jax.jit
  def outputs(z, z_junk):
    """Every call of this test, one jitted program."""
    return (fn(z), jax.jacrev(fn)(z), jax.jacfwd(fn)(z),
            fn(z, example_mask=np.array([False] * 4 + [True])), fn(z, where=where),
            fn(z_junk, where=where))

  value, jac_rev, jac_fwd, masked_out, hidden, junk = (
      np.asarray(a) for a in outputs(jnp.asarray(_BAD_Z), np.where(where, _BAD_Z, 7.0)))
  assert np.all(np.isnan(value[:4])) and np.isfinite(value[4]), value
  np.testing.assert_allclose(value[4], np_hinge(_BAD_Z[4:], _BAD_Y[4:], kind=kind,
                                                squared=squared, w=np.arange(1.0, 4.0))[0])
  for jac in (jac_rev, jac_fwd):
    assert np.all(np.isfinite(jac)) and np.all(jac[:4] == 0.0), jac
  assert np.all(masked_out[:4] == 0.0) and masked_out[4] == value[4]
  assert np.isnan(hidden[0]) and np.isnan(hidden[2])  # NaN in unmasked classes
  np.testing.assert_array_equal(hidden[[1, 3, 4]], junk[[1, 3, 4]])
  assert np.all(np.isfinite(hidden[[1, 3, 4]]))


def test_one_nan_class_regression():
  """The reproducer of issue 10: one NaN class gave a finite loss."""
  for kind in KINDS:
    got = jaxloss.multiclass_hinge_loss(jnp.array([[1.0, jnp.nan, 0.0]]), jnp.array([0]),
                                        kind=kind)
    assert np.isnan(float(got[0])), kind


_SHIFT_Z = np.array([[0.0, 8.0, -16.0]] * 3, np.float32)  # exact at 1e8 in float32
_SHIFT_Y = np.array([0, 1, 2])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("squared", [False, True])
def test_shift_invariance_at_1e8_float32(kind, squared):
  """Issue 10: margin + (z_j - z_y), not (margin + z_j) - z_y, which rounds the
  margin away at 1e8: value and gradient are bit-identical to the unshifted call."""
  fn = lambda z: jaxloss.multiclass_hinge_loss(z, _SHIFT_Y, kind=kind, squared=squared,
                                               margin=0.5)
  unshifted = assert_shift_exact(fn, _SHIFT_Z)
  np.testing.assert_allclose(np.asarray(unshifted, np.float64),
                             np_hinge(_SHIFT_Z, _SHIFT_Y, kind=kind, squared=squared,
                                      margin=0.5), rtol=1e-6)


# ---------------------------------------------------------------- bad input
def test_bad_inputs():
  # NumPy inputs: every error is raised while tracing, before anything compiles.
  z = np.zeros((4, 3))
  y = np.zeros(4, np.int32)
  with pytest.raises(TypeError, match="look like one-hot"):
    jaxloss.multiclass_hinge_loss(z, np.eye(3)[[0, 1, 2, 0]])
  with pytest.raises(ValueError, match="look like one-hot"):
    jaxloss.multiclass_hinge_loss(z, np.zeros((4, 3), np.int32))
  with pytest.raises(ValueError, match="does not match logits shape"):
    jaxloss.multiclass_hinge_loss(z, np.zeros(5, np.int32))
  with pytest.raises(ValueError, match="valid kinds are 'crammer_singer', 'weston_watkins'"):
    jaxloss.multiclass_hinge_loss(z, y, kind="ovr")
  for bad in (0.0, -1.0, 0):
    with pytest.raises(ValueError, match="margin must be > 0"):
      jaxloss.multiclass_hinge_loss(z, y, margin=bad)
  with pytest.raises(TypeError, match="floating-point"):
    jaxloss.multiclass_hinge_loss(np.zeros((4, 3), np.int32), y)
  with pytest.raises(ValueError, match="one per class"):
    jaxloss.multiclass_hinge_loss(z, y, weights=np.ones(4))
  with pytest.raises(TypeError, match="boolean"):
    jaxloss.multiclass_hinge_loss(z, y, where=np.ones((4, 3)))
  with pytest.raises(ValueError, match="per-example shape"):
    jaxloss.multiclass_hinge_loss(z, y, example_mask=np.ones(3, bool))
  with pytest.raises(ValueError, match="axis=2 is out of range"):
    jaxloss.multiclass_hinge_loss(z, y, axis=2)


def test_traced_margin():
  z = np.array([[2.0, 1.5, -1.0]])
  f = jax.jit(lambda m: jaxloss.multiclass_hinge_loss(z, np.array([0]), margin=m))
  np.testing.assert_allclose(np.asarray(f(2.0)), [1.5])
