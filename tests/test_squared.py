"""Brier score and Hui & Belkin's square loss vs float64 NumPy references and identities."""

import functools

import chex
import hypothesis
import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from hypothesis import strategies as st
from jax.test_util import check_grads

import _compiled
import jaxloss
from _loss_checks import assert_shift_exact
from jaxloss._src import squared

# Per-loss reference tests: thorough and slow (many eager shapes compile); the quick
# check is tests/test_contract.py, which walks every loss (see the README).
pytestmark = [pytest.mark.usefixtures("x64", "jitted_public_api"), pytest.mark.slow]

# A few shapes for the whole file: each hyperparameter setting of a loss compiles
# once per shape and dtype, so tests that share a shape share programs. Checks
# made of several calls (values, Jacobians, masked variants) run as one jitted
# program each, one compile instead of one per call.
B, K = 4, 5
SHAPE3 = (3, 4, 5)  # multi-axis batches and the class-axis tests


# ---------------------------------------------------------------- references
def np_softmax(z, mask=None):
  """Float64 softmax over the last axis and the unmasked classes (masked -> 0)."""
  z = np.asarray(z, np.float64)
  live = np.isfinite(z) if mask is None else np.isfinite(z) & mask
  zl = np.where(live, z, -np.inf)
  mx = np.max(zl, axis=-1, keepdims=True)
  mx = np.where(np.isfinite(mx), mx, 0.0)
  e = np.where(live, np.exp(np.where(live, zl - mx, 0.0)), 0.0)
  s = e.sum(-1, keepdims=True)
  return e / np.where(s > 0, s, 1.0)


def np_brier(z, y, mask=None):
  """sum over (unmasked) classes of (softmax - onehot)^2; a row with no live class -> 0."""
  z = np.asarray(z, np.float64)
  k = z.shape[-1]
  p = np_softmax(z, mask)
  sq = (p - np.eye(k)[y]) ** 2
  live = np.isfinite(z) if mask is None else np.isfinite(z) & mask
  if mask is not None:
    sq = np.where(mask, sq, 0.0)
  return np.where(live.any(-1), sq.sum(-1), 0.0)


def np_square(z, y, mask=None, k=1.0, m=1.0):
  """(1/K') [k (z_y - m)^2 + sum_{c != y} z_c^2] over the K' unmasked classes."""
  z = np.asarray(z, np.float64)
  onehot = np.eye(z.shape[-1], dtype=bool)[y]
  zs = z if mask is None else np.where(mask, z, 0.0)
  sq = np.where(onehot, k * (zs - m) ** 2, zs ** 2)
  if mask is None:
    return sq.mean(-1)
  count = mask.sum(-1)
  return np.where(count > 0, np.where(mask, sq, 0.0).sum(-1) / np.maximum(count, 1), 0.0)


def random_inputs(rng, shape, num_classes):
  z = rng.normal(size=shape + (num_classes,)) * 3
  y = rng.integers(0, num_classes, size=shape)
  return z, y


# ---------------------------------------------------------------- forward vs reference
class ReferenceTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(((B,), K), ((1,), 2), (SHAPE3[:-1], SHAPE3[-1]), ((B,), 1))
  def test_brier(self, shape, k):
    z, y = random_inputs(np.random.default_rng(k), shape, k)
    got = self.variant(jaxloss.brier_score)(z, y)
    chex.assert_shape(got, shape)
    chex.assert_trees_all_close(got, np_brier(z, y), rtol=1e-12, atol=1e-15)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(((B,), K, 1.0, 1.0), ((1,), 2, 1.0, 1.0), ((B,), K, 2.0, 5.0),
                            (SHAPE3[:-1], SHAPE3[-1], 0.5, 15.0), ((B,), 1, 3.0, -1.0))
  def test_square_loss(self, shape, num_classes, k, m):
    z, y = random_inputs(np.random.default_rng(num_classes), shape, num_classes)
    got = self.variant(functools.partial(jaxloss.square_loss, k=k, m=m))(z, y)
    chex.assert_shape(got, shape)
    chex.assert_trees_all_close(got, np_square(z, y, k=k, m=m), rtol=1e-12)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(0, 1, 2, -1)
  def test_axis(self, axis):
    rng = np.random.default_rng(2)
    z = rng.normal(size=SHAPE3)
    y_shape = list(z.shape)
    k = y_shape.pop(axis)
    y = rng.integers(0, k, size=y_shape)
    zl = np.moveaxis(z, axis, -1)
    got = self.variant(functools.partial(jaxloss.brier_score, axis=axis))(z, y)
    chex.assert_trees_all_close(got, np_brier(zl, y), rtol=1e-12)
    got = self.variant(functools.partial(jaxloss.square_loss, axis=axis, k=2.0, m=3.0))(z, y)
    chex.assert_trees_all_close(got, np_square(zl, y, k=2.0, m=3.0), rtol=1e-12)

  @chex.variants(with_jit=True, without_jit=True)
  def test_where(self):
    rng = np.random.default_rng(3)
    z, y = random_inputs(rng, (B,), K)
    mask = rng.random((B, K)) < 0.6
    mask[np.arange(B), y] = True
    mask[0] = False  # a fully masked row gives 0
    mask[1] = True
    mask[2, (y[2] + 1) % K] = False
    z_junk = np.where(mask, z, -np.inf)  # anything may sit behind the mask
    got = self.variant(jaxloss.brier_score)(z_junk, y, where=mask)
    chex.assert_trees_all_close(got, np_brier(z, y, mask), rtol=1e-12)
    self.assertEqual(float(got[0]), 0.0)
    got2 = self.variant(jaxloss.brier_score)(np.where(mask, z, 7.0), y, where=mask)
    chex.assert_trees_all_close(got2, got, rtol=1e-12)
    got = self.variant(functools.partial(jaxloss.square_loss, k=2.0, m=0.5))(
        z_junk, y, where=mask)
    chex.assert_trees_all_close(got, np_square(z, y, mask, k=2.0, m=0.5), rtol=1e-12)
    self.assertEqual(float(got[0]), 0.0)

  @chex.variants(with_jit=True, without_jit=True)
  def test_where_broadcasts_with_axis(self):
    rng = np.random.default_rng(4)
    z = rng.normal(size=SHAPE3)  # classes on axis 1
    y = rng.integers(0, 4, size=(SHAPE3[0], SHAPE3[2]))
    mask = np.array([True, False, True, True])[:, None]
    ml = np.moveaxis(np.broadcast_to(mask, z.shape), 1, -1)
    zl = np.moveaxis(z, 1, -1)
    got = self.variant(functools.partial(jaxloss.brier_score, axis=1))(z, y, where=mask)
    chex.assert_trees_all_close(got, np_brier(zl, y, ml), rtol=1e-12)
    got = self.variant(functools.partial(jaxloss.square_loss, axis=1))(z, y, where=mask)
    chex.assert_trees_all_close(got, np_square(zl, y, ml), rtol=1e-12)

  @chex.variants(with_jit=True, without_jit=True)
  def test_vmap_equals_batched(self):
    z, y = random_inputs(np.random.default_rng(5), (B,), K)
    for f in (jaxloss.brier_score, functools.partial(jaxloss.square_loss, k=2.0, m=3.0)):
      chex.assert_trees_all_close(self.variant(jax.vmap(f))(z, y), f(z, y), rtol=1e-12)


def test_no_retrace_for_new_values():
  @jax.jit
  @chex.assert_max_traces(n=1)
  def loss(z, y):
    return (jaxloss.brier_score(z, y) + jaxloss.square_loss(z, y)).mean()

  rng = np.random.default_rng(6)
  for _ in range(3):
    z, y = random_inputs(rng, (B,), K)
    loss(jnp.asarray(z), jnp.asarray(y))


def test_traced_k_m_match_static():
  z, y = random_inputs(np.random.default_rng(7), (B,), K)
  f = jax.jit(lambda z, y, k, m: jaxloss.square_loss(z, y, k=k, m=m))
  chex.assert_trees_all_close(f(z, y, 2.0, 3.0), jaxloss.square_loss(z, y, k=2.0, m=3.0),
                              rtol=1e-12)


# ---------------------------------------------------------------- identities
def test_brier_and_square_loss_are_exported():
  # The Brier score is no longer re-exported from the metrics module (the library has
  # no public submodules now); `jaxloss.brier_score` is the one name for it.
  assert _compiled.original(jaxloss.brier_score) is squared.brier_score
  assert _compiled.original(jaxloss.square_loss) is squared.square_loss


def test_brier_confident_extremes():
  k = K
  y = np.array([0, 3, 4, 1])
  right = 1e4 * np.eye(k)[y]
  wrong = 1e4 * np.eye(k)[(y + 1) % k]
  assert np.all(np.asarray(jaxloss.brier_score(right, y)) == 0.0)  # 0 iff perfectly confident
  np.testing.assert_allclose(np.asarray(jaxloss.brier_score(wrong, y)), 2.0, rtol=1e-12)
  uniform = np.zeros((B, k))
  np.testing.assert_allclose(np.asarray(jaxloss.brier_score(uniform, y)), 1 - 1 / k,
                             rtol=1e-12)


def test_square_loss_k1_m1_is_mse_against_one_hot():
  z, y = random_inputs(np.random.default_rng(8), (B,), K)
  want = np.mean((z - np.eye(K)[y]) ** 2, axis=-1)
  chex.assert_trees_all_close(jaxloss.square_loss(z, y), want, rtol=1e-12)


@hypothesis.given(
    z=hnp.arrays(np.float64, st.sampled_from([(1, 1), (B, K)]),  # the file's shapes: few compiles
                 elements=st.floats(-30, 30, allow_nan=False, allow_subnormal=False)),
    data=st.data())
def test_properties(z, data):
  b, k = z.shape
  y = np.asarray(data.draw(hnp.arrays(np.int64, (b,), elements=st.integers(0, k - 1))))
  # k and m as NumPy scalars are traced (arrays to the jitted API): one program per
  # shape, not one per drawn value.
  kk = np.float64(data.draw(st.floats(0.0, 5.0)))
  m = np.float64(data.draw(st.floats(-5.0, 20.0)))
  brier = np.asarray(jaxloss.brier_score(z, y))
  assert np.all((brier >= 0) & (brier <= 2))
  p = np.asarray(jax.nn.softmax(z))
  np.testing.assert_allclose(brier, ((p - np.eye(k)[y]) ** 2).sum(-1), rtol=1e-9, atol=1e-12)
  np.testing.assert_allclose(brier, np_brier(z, y), rtol=1e-9, atol=1e-12)
  # shift invariance (a property of the softmax)
  np.testing.assert_allclose(np.asarray(jaxloss.brier_score(z + 3.0, y)), brier,
                             rtol=1e-8, atol=1e-10)
  sq = np.asarray(jaxloss.square_loss(z, y, k=kk, m=m))
  assert np.all(sq >= 0)
  np.testing.assert_allclose(sq, np_square(z, y, k=kk, m=m), rtol=1e-9, atol=1e-12)
  np.testing.assert_allclose(np.asarray(jaxloss.square_loss(z, y)),
                             ((z - np.eye(k)[y]) ** 2).mean(-1), rtol=1e-9, atol=1e-12)
  # 0 only when perfectly confident: with bounded logits (and K >= 2) no class
  # reaches probability 1, so the score is > 0
  if k >= 2:
    assert np.all(np.asarray(jaxloss.brier_score(np.clip(z, -5, 5), y)) > 0)


# ---------------------------------------------------------------- gradients
@pytest.mark.parametrize("name,fn", [
    ("brier", lambda z, y, m: jaxloss.brier_score(z, y)),
    ("brier+where", lambda z, y, m: jaxloss.brier_score(z, y, where=m)),
    ("square", lambda z, y, m: jaxloss.square_loss(z, y)),
    ("square+where+k+m", lambda z, y, m: jaxloss.square_loss(z, y, where=m, k=2.0, m=3.0)),
])
def test_gradients(name, fn):
  rng = np.random.default_rng(9)
  z, y = random_inputs(rng, (B,), K)
  mask = np.ones((B, K), bool)
  mask[:, 2] = False
  y = np.where(y == 2, 0, y)
  check_grads(lambda z: fn(z, y, mask), (z,), order=1, modes=("fwd", "rev"))


def test_square_loss_gradient_formula():
  z, y = random_inputs(np.random.default_rng(10), (B,), K)
  g = jax.grad(lambda z: jaxloss.square_loss(z, y, k=2.0, m=3.0).sum())(z)
  onehot = np.eye(K)[y]
  want = np.where(onehot == 1, 2.0 * 2 * (z - 3.0), 2 * z) / K
  np.testing.assert_allclose(np.asarray(g), want, rtol=1e-12)


# ---------------------------------------------------------------- numerics
EXTREME = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0], [1e4, 1e4, -1e4]])
EXTREME_Y = np.array([0, 0, 2])


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_extreme_logits(dtype):
  z = jnp.asarray(EXTREME, dtype)
  cases = ((jaxloss.brier_score, np_brier, 1e-6), (jaxloss.square_loss, np_square, 1e-6))
  # The values and gradients of the two losses, one jitted program.
  outputs = jax.jit(lambda z: [(fn(z, EXTREME_Y), jax.grad(lambda z: fn(z, EXTREME_Y).sum())(z))
                               for fn, _, _ in cases])(z)
  for (_, ref, rtol), (got, g) in zip(cases, outputs):
    np.testing.assert_allclose(np.asarray(got, np.float64), ref(EXTREME, EXTREME_Y), rtol=rtol)
    assert np.all(np.isfinite(np.asarray(g)))
  np.testing.assert_allclose(np.asarray(outputs[0][0], np.float64), [0.0, 2.0, 1.5], rtol=1e-6)


NEG_INF_Z = np.array([
    [0.5, -np.inf, 1.0, -np.inf],
    [-np.inf, -np.inf, -np.inf, -np.inf],  # dead row: 0
    [2.0, 1.0, -np.inf, 0.0],
])
NEG_INF_Y = np.array([0, 1, 3])
FINITE = np.isfinite(NEG_INF_Z)


@pytest.mark.parametrize("name,fn", [
    ("brier", lambda z: jaxloss.brier_score(z, NEG_INF_Y)),
    ("brier+where", lambda z: jaxloss.brier_score(z, NEG_INF_Y, where=FINITE)),
    ("square+where", lambda z: jaxloss.square_loss(z, NEG_INF_Y, where=FINITE, k=2.0, m=3.0)),
])
def test_neg_inf_logits_value_grad_jacfwd_finite(name, fn):
  z = jnp.asarray(NEG_INF_Z)
  # value and Jacobians, one jitted program
  value, *jacobians = jax.jit(lambda z: (fn(z), jax.jacrev(fn)(z), jax.jacfwd(fn)(z)))(z)
  assert np.all(np.isfinite(np.asarray(value))), (name, value)
  assert float(value[1]) == 0.0
  for jac in jacobians:
    assert np.all(np.isfinite(np.asarray(jac))), (name, jac)
  if name == "square+where":
    want = np_square(np.where(FINITE, NEG_INF_Z, 0.0), NEG_INF_Y, FINITE, k=2.0, m=3.0)
  elif name == "brier":  # unmasked -inf classes have probability 0 (and count in the sum)
    want = np_brier(NEG_INF_Z, NEG_INF_Y)
  else:
    want = np_brier(NEG_INF_Z, NEG_INF_Y, FINITE)
  chex.assert_trees_all_close(value, want, rtol=1e-12)


def test_brier_neg_inf_equals_mask_on_other_classes():
  z = NEG_INF_Z[[0, 2]]
  y = NEG_INF_Y[[0, 2]]
  a = jaxloss.brier_score(z, y)
  b = jaxloss.brier_score(np.where(FINITE[[0, 2]], z, 5.0), y, where=FINITE[[0, 2]])
  chex.assert_trees_all_close(a, b, rtol=1e-12)


def test_square_loss_unmasked_neg_inf_is_inf():
  z = jnp.array([[0.0, -jnp.inf, 1.0]])
  assert np.isposinf(float(jaxloss.square_loss(z, jnp.array([0]))[0]))


@pytest.mark.parametrize("dtype,tol", [(jnp.float16, 2e-3), (jnp.bfloat16, 2e-2)])
def test_low_precision_inputs(dtype, tol):
  """16-bit logits are upcast: the only error left is the rounding of the inputs."""
  rng = np.random.default_rng(11)
  z, y = random_inputs(rng, (B,), K)
  z_low = jnp.asarray(z, dtype)
  z_rounded = np.asarray(z_low, np.float64)
  cases = ((jaxloss.brier_score, np_brier), (jaxloss.square_loss, np_square))
  # The values and gradients of the two losses, one jitted program.
  outputs = jax.jit(lambda z: [(fn(z, y), jax.grad(lambda z: fn(z, y).sum())(z))
                               for fn, _ in cases])(z_low)
  for (_, ref), (got, g) in zip(cases, outputs):
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got, np.float64), ref(z_rounded, y),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(got, np.float64), ref(z, y), rtol=tol, atol=tol)
    assert g.dtype == dtype and np.all(np.isfinite(np.asarray(g, np.float32)))


def test_output_dtypes():
  # The output dtype is fixed at trace time: eval_shape traces without compiling.
  y = np.zeros(B, np.int32)
  for dtype, out in [(jnp.float16, jnp.float32), (jnp.bfloat16, jnp.float32),
                     (jnp.float32, jnp.float32), (jnp.float64, jnp.float64)]:
    for fn in (jaxloss.brier_score, jaxloss.square_loss):
      assert jax.eval_shape(fn, jax.ShapeDtypeStruct((B, K), dtype), y).dtype == out


def test_out_of_range_label_is_nan_unchecked():
  z = np.zeros((B, K))
  y = np.array([0, K, -1, 2])
  for fn in (jaxloss.brier_score, jaxloss.square_loss):
    got = np.asarray(fn(z, y))
    assert np.isfinite(got[0]) and np.isnan(got[1]) and np.isnan(got[2]) and np.isfinite(got[3])
    err, _ = jaxloss.checked(fn)(z, y)
    assert err.get().startswith(f"{fn.__name__}: labels must be in [0, {K})")


# ---------------------------------------------------------------- issue 10: NaN rows, shift
_BAD_Z = np.array([
    [np.nan, np.nan, np.nan],  # all NaN: used to be a "dead row" with Brier score 0
    [1.0, np.nan, 0.0],  # one NaN class: used to be left out like a -inf one
    [1.0, np.inf, 0.0],  # +inf
    [0.5, 1.0, -1.0],  # finite
])
_BAD_Y = np.zeros(4, np.int64)


@pytest.mark.parametrize("name,fn", [
    ("brier", lambda z, **kw: jaxloss.brier_score(z, _BAD_Y, **kw)),
    ("square", lambda z, **kw: jaxloss.square_loss(z, _BAD_Y, k=2.0, m=3.0, **kw)),
])
def test_nan_or_pos_inf_logit_gives_nan(name, fn):
  """A NaN or +inf in an unmasked class gives exactly NaN; example_mask=False gives
  0; a class mask hides it."""
  where = np.array([True, False, True])

  @jax.jit
  def outputs(z, z_junk):
    """Every call of this test, one jitted program."""
    return (fn(z), fn(z, example_mask=np.array([False, False, False, True])),
            fn(z, where=where), fn(z_junk, where=where))

  value, masked_out, hidden, junk = (
      np.asarray(a) for a in outputs(jnp.asarray(_BAD_Z), np.where(where, _BAD_Z, 7.0)))
  assert np.all(np.isnan(value[:3])) and np.isfinite(value[3]), (name, value)
  assert np.all(masked_out[:3] == 0.0) and masked_out[3] == value[3]
  assert np.isnan(hidden[0])
  np.testing.assert_array_equal(hidden[1:], junk[1:])
  assert np.all(np.isfinite(hidden[1:]))


def _assert_zero_gradient_at_bad_rows(fn):
  z = jnp.asarray(_BAD_Z)
  for jac in jax.jit(lambda z: (jax.jacrev(fn)(z), jax.jacfwd(fn)(z)))(z):  # one program
    jac = np.asarray(jac)
    assert np.all(np.isfinite(jac)) and np.all(jac[:3] == 0.0), jac


def test_brier_nan_gradient_is_zero():
  _assert_zero_gradient_at_bad_rows(lambda z: jaxloss.brier_score(z, _BAD_Y))


def test_square_loss_nan_gradient_is_zero():
  _assert_zero_gradient_at_bad_rows(lambda z: jaxloss.square_loss(z, _BAD_Y, k=2.0, m=3.0))


def test_brier_nan_regression():
  """The reproducer of issue 10: one NaN class gave a finite Brier score."""
  assert np.isnan(float(jaxloss.brier_score(jnp.array([[1.0, jnp.nan, 0.0]]),
                                            jnp.array([0]))[0]))
  assert np.isnan(float(jaxloss.brier_score(jnp.full((1, 3), jnp.nan), jnp.array([0]))[0]))


def test_brier_shift_invariance_at_1e8_float32():
  """Issue 10: softmax from z - max z: a common shift of 1e8 changes no bit."""
  z_np = np.array([[0.0, 8.0, -16.0]] * 3, np.float32)  # exact at 1e8 in float32
  y = np.array([0, 1, 2])
  unshifted = assert_shift_exact(lambda z: jaxloss.brier_score(z, y), z_np)
  # rtol: 1 - p_y cancels in float32 where p_y is near 1 (the 2e-7 score of row 1).
  np.testing.assert_allclose(np.asarray(unshifted, np.float64), np_brier(z_np, y), rtol=1e-3)


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("fn", [jaxloss.brier_score, jaxloss.square_loss])
def test_bad_inputs(fn):
  # NumPy inputs: every error is raised while tracing, before anything compiles.
  z = np.zeros((4, 3))
  y = np.zeros(4, np.int32)
  with pytest.raises(TypeError, match="look like one-hot"):
    fn(z, np.eye(3)[[0, 1, 2, 0]])
  with pytest.raises(ValueError, match="these look like one-hot targets"):
    fn(z, np.zeros((4, 3), np.int32))
  with pytest.raises(TypeError, match="Cast with labels.astype"):
    fn(z, np.zeros(4))
  with pytest.raises(ValueError, match="does not match logits shape"):
    fn(z, np.zeros(5, np.int32))
  with pytest.raises(TypeError, match="floating-point"):
    fn(np.zeros((4, 3), np.int32), y)
  with pytest.raises(TypeError, match="boolean"):
    fn(z, y, where=np.ones((4, 3)))
  with pytest.raises(ValueError, match="axis=2 is out of range"):
    fn(z, y, axis=2)
  with pytest.raises(ValueError, match="scalar"):
    fn(jnp.float32(1.0), jnp.int32(0))
