"""Margin losses phi(y * f) vs float64 NumPy references, their shapes and identities."""

import functools

import chex
import hypothesis
import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from absl.testing import parameterized
from hypothesis import strategies as st
from jax.test_util import check_grads

import jaxloss
from _loss_checks import assert_masks_hide_bad_rows

# Per-loss reference tests: thorough and slow (many eager shapes compile); the quick
# check is tests/test_contract.py, which walks every loss (see the README).
pytestmark = [pytest.mark.usefixtures("x64"), pytest.mark.slow]

# A few shapes for the whole file: op-by-op (eager) execution compiles every
# jax.numpy operation once per shape and dtype, and the eight losses share most of
# their operations, so tests that share a shape share those compilations. The
# losses run eagerly here (the jitted public API was measured slower for this file:
# a jitted loss compiles per loss, an eager op once for all eight); only the
# Jacobians are jitted (eager, they compile a batched copy of every op).
B, K = 5, 3  # every 2-D test; the hand-written inputs below have this shape too
# The class-axis tests: a cube, so whichever axis holds the classes, moved last it
# gives the same shape and the eager ops compile once for every axis (the random
# values still tell the axes apart).
SHAPE3 = (4, 4, 4)


# ---------------------------------------------------------------- references
def _np_smooth_hinge(v):
  with np.errstate(over="ignore", invalid="ignore"):
    return np.where(v <= 0, 0.5 - v, np.where(v < 1, 0.5 * (1 - v) ** 2, 0.0))


def _np_savage(v):
  with np.errstate(over="ignore"):  # e^v = inf for v > 709 gives 1 / inf = 0
    return (1.0 / (1.0 + np.exp(v))) ** 2


NP_PHI = {
    "hinge": lambda v: np.maximum(0.0, 1.0 - v),
    "squared_hinge": lambda v: np.maximum(0.0, 1.0 - v) ** 2,
    "smooth_hinge": _np_smooth_hinge,
    "logistic": lambda v: np.logaddexp(0.0, -v),  # log(1 + e^-v) without overflow
    "exponential": lambda v: np.exp(-v),
    "savage": _np_savage,
    "tangent": lambda v: (2.0 * np.arctan(v) - 1.0) ** 2,
    "square": lambda v: (1.0 - v) ** 2,
}
NAMES = tuple(NP_PHI)
def ovr(name):
  """The public ``ovr_<name>`` loss, looked up at call time (the fixture may wrap it)."""
  return getattr(jaxloss, "ovr_" + name)


# Finite at logits of +-1e4 (exponential overflows, see its docstring).
FINITE_AT_1E4 = ("hinge", "squared_hinge", "smooth_hinge", "logistic", "savage", "tangent",
                 "square")

# A grid of margins including the kinks / piece boundaries 0 and 1 and points
# just beside them, and the minimum tan(1/2) of the tangent loss.
GRID = np.unique(np.concatenate([
    np.linspace(-6.0, 6.0, 241),
    [0.0, 1.0, -1e-9, 1e-9, 1 - 1e-9, 1 + 1e-9, np.tan(0.5), -20.0, 20.0, 50.0],
]))


def np_margin(z, y_sign, name, mask=None):
  """Mean over the (unmasked) classes of phi(y * z); class axis last; 0 for empty rows."""
  per_class = NP_PHI[name](np.asarray(y_sign, np.float64) * np.asarray(z, np.float64))
  if mask is None:
    return per_class.mean(-1)
  total = np.where(mask, per_class, 0.0).sum(-1)
  count = mask.sum(-1)
  return np.where(count > 0, total / np.maximum(count, 1), 0.0)


def random_case(rng, batch_shape, k):
  z = rng.normal(size=batch_shape + (k,)) * 2
  y = rng.integers(0, k, size=batch_shape)
  return z, y


def ovr_signs(y, k):
  return 2.0 * np.eye(k)[y] - 1.0


def jacobians(fn, z):
  """``(jacrev, jacfwd)`` of ``fn`` at ``z``, one jitted program."""
  return jax.jit(lambda z: (jax.jacrev(fn)(z), jax.jacfwd(fn)(z)))(z)


# ---------------------------------------------------------------- elementwise phi
@pytest.mark.parametrize("name", NAMES)
def test_elementwise_matches_reference(name):
  got = np.asarray(jaxloss.MARGIN_LOSSES[name](jnp.asarray(GRID)))
  np.testing.assert_allclose(got, NP_PHI[name](GRID), rtol=1e-12, atol=1e-300)


def test_margin_losses_mapping():
  assert set(jaxloss.MARGIN_LOSSES) == set(NAMES)
  with pytest.raises(TypeError):
    jaxloss.MARGIN_LOSSES["mine"] = lambda v: v  # read-only
  z, y = random_case(np.random.default_rng(7), (B,), K)
  for name in NAMES:
    chex.assert_trees_all_close(jaxloss.ovr_margin_loss(z, y, kind=name), ovr(name)(z, y),
                                rtol=0)


def test_smooth_hinge_continuity_and_derivative():
  phi = jaxloss.MARGIN_LOSSES["smooth_hinge"]
  dphi = jax.grad(phi)
  eps = 1e-7
  for point, value, slope in ((0.0, 0.5, -1.0), (1.0, 0.0, 0.0)):
    for v in (point - eps, point, point + eps):
      np.testing.assert_allclose(float(phi(v)), value, atol=2 * eps)
      np.testing.assert_allclose(float(dphi(v)), slope, atol=2 * eps)
  # The three pieces: slope -1, -(1 - v), 0.
  for v, slope in ((-3.0, -1.0), (0.25, -0.75), (0.5, -0.5), (4.0, 0.0)):
    np.testing.assert_allclose(float(dphi(v)), slope, rtol=1e-12)


CONVEX = ("hinge", "squared_hinge", "smooth_hinge", "logistic", "exponential", "square")


@pytest.mark.parametrize("name", NAMES)
def test_convexity(name):
  """Second differences on an even grid: >= 0 for the convex losses; savage and
  tangent are non-convex (some second difference is clearly negative)."""
  v = np.linspace(-5.0, 5.0, 1001)
  f = np.asarray(jaxloss.MARGIN_LOSSES[name](jnp.asarray(v)))
  second = f[2:] - 2 * f[1:-1] + f[:-2]
  if name in CONVEX:
    assert second.min() >= -1e-12 * np.abs(f).max()
  else:
    assert second.min() < -1e-6


def test_upper_bounds_of_zero_one_loss():
  """Which losses bound the 0-1 loss [v <= 0] from above, exactly as stated:

  * hinge, squared_hinge, exponential, square, tangent: phi >= [v <= 0];
  * logistic only after dividing by ln 2 (Wikipedia's scaling);
  * smooth_hinge only after doubling (phi(0) = 1/2);
  * savage is no upper bound (phi(0) = 1/4), but is bounded: 0 <= phi <= 1.
  """
  zero_one = (GRID <= 0).astype(np.float64)
  phi = {name: np.asarray(f(jnp.asarray(GRID))) for name, f in jaxloss.MARGIN_LOSSES.items()}
  for name in ("hinge", "squared_hinge", "exponential", "square", "tangent"):
    assert np.all(phi[name] >= zero_one), name
  assert np.all(phi["logistic"] / np.log(2.0) >= zero_one * (1 - 1e-15))
  assert np.all(2 * phi["smooth_hinge"] >= zero_one)
  assert np.all((phi["savage"] >= 0) & (phi["savage"] <= 1))
  at_zero = {name: float(f(0.0)) for name, f in jaxloss.MARGIN_LOSSES.items()}
  np.testing.assert_allclose(
      [at_zero["smooth_hinge"], at_zero["logistic"], at_zero["savage"]],
      [0.5, np.log(2.0), 0.25], rtol=1e-15)


@pytest.mark.parametrize("name", ["tangent", "savage", "hinge", "squared_hinge",
                                  "smooth_hinge", "logistic", "exponential"])
def test_infinite_margin(name):
  """phi(+inf) is finite with zero derivative (also phi(-inf) for tangent, savage)."""
  phi = jaxloss.MARGIN_LOSSES[name]
  points = (np.inf, -np.inf) if name in ("tangent", "savage") else (np.inf,)
  for v in points:
    assert np.isfinite(float(phi(v)))
    np.testing.assert_allclose(float(phi(v)), NP_PHI[name](np.float64(v)), rtol=1e-15)
    assert float(jax.grad(phi)(v)) == 0.0 and float(jax.jacfwd(phi)(v)) == 0.0


# ---------------------------------------------------------------- public functions
class ReferenceTest(parameterized.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.product(name=NAMES, axis=(0, 1, -1))
  def test_against_reference(self, name, axis):
    rng = np.random.default_rng(0)
    z = rng.normal(size=SHAPE3) * 2
    y_shape = list(z.shape)
    k = y_shape.pop(axis)
    y = rng.integers(0, k, size=y_shape)
    mask = rng.random(z.shape) < 0.7
    signs = np.moveaxis(ovr_signs(y, k), -1, axis)
    f = self.variant(functools.partial(ovr(name), axis=axis))
    z_last, mask_last = np.moveaxis(z, axis, -1), np.moveaxis(mask, axis, -1)
    want = np_margin(z_last, ovr_signs(y, k), name, mask_last)
    chex.assert_trees_all_close(f(z, y, where=mask), want, rtol=1e-12)
    chex.assert_trees_all_close(f(z, signs, where=mask), want, rtol=1e-12)
    chex.assert_trees_all_close(
        f(z, y), np_margin(z_last, ovr_signs(y, k), name), rtol=1e-12)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(*NAMES)
  def test_label_encodings_identical(self, name):
    """{-1,+1} and {0,1} targets (float, int, bool) and integer labels agree."""
    rng = np.random.default_rng(1)
    z = rng.normal(size=(B, K)) * 2
    multi_hot = rng.random((B, K)) < 0.4
    f = self.variant(ovr(name))
    want = np_margin(z, np.where(multi_hot, 1.0, -1.0), name)
    for t in (multi_hot, multi_hot.astype(np.float32), multi_hot.astype(np.int32),
              np.where(multi_hot, 1.0, -1.0), np.where(multi_hot, 1, -1).astype(np.int8)):
      chex.assert_trees_all_close(f(z, t), want, rtol=1e-12)
    y = rng.integers(0, K, size=B)
    chex.assert_trees_all_close(f(z, y), f(z, 2 * np.eye(K)[y] - 1), rtol=1e-12)
    chex.assert_trees_all_close(f(z, y), f(z, np.eye(K, dtype=np.int32)[y]), rtol=1e-12)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(*NAMES)
  def test_binary_single_logit(self, name):
    """Binary classification: logits [B, 1] and targets [B, 1] give phi(y * f)."""
    f_B = np.array([2.0, -0.7, 0.0, 1.0, -3.0])
    y_B = np.array([1.0, 1.0, -1.0, -1.0, -1.0])
    assert f_B.shape == (B,)
    got = self.variant(ovr(name))(f_B[:, None], y_B[:, None])
    chex.assert_trees_all_close(got, NP_PHI[name](y_B * f_B), rtol=1e-12)

  @chex.variants(with_jit=True, without_jit=True)
  def test_vmap_equals_batched(self):
    rng = np.random.default_rng(2)
    z, y = random_case(rng, (B,), K)
    for name in NAMES:
      chex.assert_trees_all_close(self.variant(jax.vmap(ovr(name)))(z, y),
                                  ovr(name)(z, y), rtol=1e-12)


def test_logistic_is_sigmoid_bce():
  rng = np.random.default_rng(3)
  z = rng.normal(size=(B, K)) * 3
  t = (rng.random((B, K)) < 0.5).astype(np.float64)
  want = optax.sigmoid_binary_cross_entropy(z, t).mean(-1)
  chex.assert_trees_all_close(jaxloss.ovr_logistic(z, t), want, rtol=1e-12)


def test_no_retrace_for_new_values():
  @jax.jit
  @chex.assert_max_traces(n=1)
  def loss(z, y):
    return jaxloss.ovr_margin_loss(z, y, kind="smooth_hinge").mean()

  rng = np.random.default_rng(4)
  for _ in range(3):
    z, y = random_case(rng, (B,), K)
    loss(jnp.asarray(z), jnp.asarray(y))


def test_fully_masked_row_and_out_of_range_labels():
  z = np.ones((B, K))
  where = np.ones((B, K), bool)
  where[0] = False
  where[3] = False
  y = np.array([0, 1, 7, -1, 2])
  y_in_range = np.array([0, 1, 2, 0, 2])
  for name in NAMES:
    got = np.asarray(ovr(name)(z, y, where=where))
    assert got[0] == 0.0 and np.isfinite(got[1]) and np.isnan(got[2]), name
    assert got[3] == 0.0, name  # a fully masked row is 0 even with a bad label
    g = jax.grad(lambda z: ovr(name)(z, y_in_range, where=where).sum())(z)
    assert np.all(np.asarray(g)[[0, 3]] == 0.0)
    assert np.isnan(np.asarray(ovr(name)(z, y))[2])


# ---------------------------------------------------------------- gradients
@pytest.mark.parametrize("name", NAMES)
def test_gradients(name):
  # Continuous random logits never sit exactly on the kink v = 1 of the hinge.
  rng = np.random.default_rng(5)
  z, y = random_case(rng, (B,), K)
  mask = rng.random((B, K)) < 0.8
  fn = lambda z: ovr(name)(z, y, where=mask)
  check_grads(fn, (z,), order=1, modes=("fwd", "rev"))
  fn_t = lambda z_CxB: ovr(name)(z_CxB, ovr_signs(y, K).T, axis=0)
  check_grads(fn_t, (z.T,), order=1, modes=("fwd", "rev"))


# ---------------------------------------------------------------- numerics
EXTREME = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0], [1e4, 1e4, -1e4], [0.0, -1e4, 1e4],
                    [1e4, 0.0, 0.0]])
EXTREME_Y = np.array([0, 0, 2, 0, 1])  # margins of +-1e4 and 0, on both sides


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("name", NAMES)
def test_extreme_logits(name, dtype):
  z = jnp.asarray(EXTREME, dtype)
  fn = lambda z: ovr(name)(z, EXTREME_Y)
  got = np.asarray(fn(z), np.float64)
  g = np.asarray(jax.grad(lambda z: fn(z).sum())(z))
  if name in FINITE_AT_1E4:
    np.testing.assert_allclose(got, np_margin(EXTREME, ovr_signs(EXTREME_Y, 3), name),
                               rtol=1e-6)
    assert np.all(np.isfinite(g)), (name, g)
  else:  # exponential: e^{1e4} overflows to inf (documented), never NaN
    np.testing.assert_allclose(got[0], 1.0 / 3.0, rtol=1e-6)  # margins 1e4, 1e4, 0
    assert np.all(got[1:] == np.inf)  # each row has a margin of -1e4
    assert not np.any(np.isnan(g))


NEG_INF_LOGITS = np.array([
    [0.5, -np.inf, 1.0],
    [-0.5, -np.inf, -np.inf],
    [2.0, 1.0, -np.inf],
    [-np.inf, 0.3, -np.inf],
    [1.0, -np.inf, 0.5],
])
NEG_INF_LABELS = np.array([0, 0, 1, 1, 2])  # -inf only at negative classes: v = +inf there


@pytest.mark.parametrize("name", NAMES)
def test_neg_inf_logits(name):
  z = jnp.asarray(NEG_INF_LOGITS)
  fn = lambda z: ovr(name)(z, NEG_INF_LABELS)
  value = np.asarray(fn(z))
  want = np_margin(NEG_INF_LOGITS, ovr_signs(NEG_INF_LABELS, K), name)
  np.testing.assert_allclose(value, want, rtol=1e-12)
  diag = (np.arange(B), np.arange(B))
  if name == "square":  # (1 - v)^2 = inf at v = +inf: mask such classes instead
    assert np.all(value == np.inf)
  else:
    assert np.all(np.isfinite(value))
    for jac in jacobians(fn, z):
      jac = np.asarray(jac)
      assert np.all(np.isfinite(jac)), (name, jac)
      if name != "tangent":  # phi'(+inf) = 0 for every loss (tangent checked below)
        assert np.all(jac[diag][np.isinf(NEG_INF_LOGITS)] == 0.0)
  # Masking the -inf classes: no NaN for any loss (square included), and the
  # same as dropping them.
  mask = np.isfinite(NEG_INF_LOGITS)
  fm = lambda z: ovr(name)(z, NEG_INF_LABELS, where=mask)
  np.testing.assert_allclose(np.asarray(fm(z)),
                             np_margin(np.where(mask, NEG_INF_LOGITS, 0.0),
                                       ovr_signs(NEG_INF_LABELS, K), name, mask), rtol=1e-12)
  for jac in jacobians(fm, z):
    jac = np.asarray(jac)
    assert np.all(np.isfinite(jac)), (name, jac)
    assert np.all(jac[diag][~mask] == 0.0)


@pytest.mark.parametrize("dtype,tol", [(jnp.float16, 2e-3), (jnp.bfloat16, 2e-2)])
@pytest.mark.parametrize("name", NAMES)
def test_low_precision_inputs(name, dtype, tol):
  """16-bit logits are upcast: exact up to float32 on the rounded inputs, and
  within the input rounding (relative `tol`, |z| < ~8) of the float64 loss."""
  rng = np.random.default_rng(6)
  z, y = random_case(rng, (B,), K)
  z_low = jnp.asarray(z, dtype)
  fn = lambda z: ovr(name)(z, y)
  got = fn(z_low)
  assert got.dtype == jnp.float32
  signs = ovr_signs(y, K)
  np.testing.assert_allclose(np.asarray(got, np.float64),
                             np_margin(np.asarray(z_low, np.float64), signs, name),
                             rtol=1e-5, atol=1e-6)
  # phi is Lipschitz with constant <~ 20 on |v| < 8 except exponential: compare
  # against its relative change.
  np.testing.assert_allclose(np.asarray(got, np.float64), np_margin(z, signs, name),
                             rtol=20 * tol, atol=20 * tol)
  g = jax.grad(lambda z: fn(z).sum())(z_low)
  assert g.dtype == dtype and np.all(np.isfinite(np.asarray(g, np.float32)))


def test_output_dtypes():
  # The output dtype is fixed at trace time: eval_shape traces without compiling.
  z = np.zeros((B, K))
  y = np.zeros(B, np.int32)
  for dtype, out in [(jnp.float16, jnp.float32), (jnp.bfloat16, jnp.float32),
                     (jnp.float32, jnp.float32), (jnp.float64, jnp.float64)]:
    zd = jax.ShapeDtypeStruct(z.shape, dtype)
    for name in NAMES:
      assert jax.eval_shape(ovr(name), zd, y).dtype == out
      assert jax.eval_shape(ovr(name), zd, np.ones((B, K), np.float32)).dtype == out


# ---------------------------------------------------------------- issue 10: NaN / +inf -> NaN
_BAD_Z = np.array([
    [np.nan, np.nan, np.nan],  # all NaN
    [1.0, np.nan, 0.0],  # one NaN class
    [1.0, np.inf, 0.0],  # +inf at a negative class (v = -inf)
    [np.inf, 0.0, 0.0],  # +inf at the positive class (v = +inf): used to be a value
    [0.5, -np.inf, -1.0],  # -inf keeps its meaning: v = +inf at a negative class
])
_BAD_Y = np.zeros(5, np.int64)


@pytest.mark.parametrize("name", NAMES)
def test_nan_or_pos_inf_logit_gives_nan(name):
  """Issue 10: a NaN or +inf in an unmasked class gives exactly NaN (zero gradient
  there); -inf stays a value; example_mask=False gives 0; a class mask hides it."""
  fn = lambda z, **kw: ovr(name)(z, _BAD_Y, **kw)
  z = jnp.asarray(_BAD_Z)
  value = np.asarray(fn(z))
  assert np.all(np.isnan(value[:4])), (name, value)
  np.testing.assert_allclose(value[4], np_margin(_BAD_Z[4:], ovr_signs(_BAD_Y[4:], 3), name)[0],
                             rtol=1e-12)
  f4 = lambda z: ovr(name)(z, _BAD_Y[:4])  # the bad rows only (square: v = +inf is inf)
  for jac in jacobians(f4, z[:4]):
    assert np.all(np.asarray(jac) == 0.0), (name, jac)
  assert_masks_hide_bad_rows(fn, _BAD_Z, value, num_bad=4)


# ---------------------------------------------------------------- properties (hypothesis)
logit_arrays = hnp.arrays(
    # The file's shapes (one class, and K classes): no new compiles per example.
    np.float64, st.sampled_from([(B, 1), (B, K)]),
    elements=st.floats(-30, 30, allow_nan=False, allow_subnormal=False))


@hypothesis.given(z=logit_arrays, data=st.data())
def test_properties(z, data):
  b, k = z.shape
  y = np.asarray(data.draw(hnp.arrays(np.int64, (b,), elements=st.integers(0, k - 1))))
  mask = np.asarray(data.draw(hnp.arrays(np.bool_, (b, k))))
  for name in NAMES:
    f = ovr(name)
    loss = np.asarray(f(z, y))
    assert np.all(loss >= 0), name
    np.testing.assert_allclose(loss, np.asarray(f(z, ovr_signs(y, k))), rtol=1e-12)
    np.testing.assert_allclose(loss, np.asarray(f(z, np.eye(k)[y])), rtol=1e-12)
    masked = np.asarray(f(z, y, where=mask))
    assert np.all(masked >= 0) and np.all(masked[~mask.any(-1)] == 0.0), name
    # The mean over classes is at most the largest per-class loss.
    per_class = np.asarray(jaxloss.MARGIN_LOSSES[name](jnp.asarray(ovr_signs(y, k) * z)))
    assert np.all(loss <= per_class.max(-1) * (1 + 1e-12)), name


# ---------------------------------------------------------------- bad input
def test_bad_inputs():
  # NumPy inputs: the errors are raised before any computation (nothing compiles).
  z = np.zeros((B, K))
  y = np.zeros(B, np.int32)
  with pytest.raises(TypeError, match="must be integer class labels"):
    jaxloss.ovr_hinge(z, np.zeros(B))
  with pytest.raises(TypeError, match=r"targets\[\.\.\., None\]"):
    jaxloss.ovr_logistic(np.zeros((B, 1)), np.ones(B))
  with pytest.raises(ValueError, match="must be the logits' shape"):
    jaxloss.ovr_hinge(z, np.zeros((B, 2), np.int32))
  with pytest.raises(ValueError, match="must be the logits' shape"):
    jaxloss.ovr_square(z, np.zeros(3, np.int32))
  with pytest.raises(ValueError, match="valid kinds are 'hinge', 'squared_hinge'"):
    jaxloss.ovr_margin_loss(z, y, kind="huber")
  with pytest.raises(TypeError, match="floating-point"):
    jaxloss.ovr_hinge(np.zeros((B, K), np.int32), y)
  with pytest.raises(TypeError, match="boolean"):
    jaxloss.ovr_hinge(z, y, where=np.ones((B, K)))
  with pytest.raises(ValueError, match="axis=2 is out of range"):
    jaxloss.ovr_hinge(z, y, axis=2)
  with pytest.raises(ValueError, match="scalar"):
    jaxloss.ovr_hinge(jnp.float32(1.0), jnp.float32(1.0))
