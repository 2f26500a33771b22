"""KL divergence vs a float64 NumPy reference, PyTorch's kl_div, optax, and its identities."""

import functools

import chex
import hypothesis
import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from absl.testing import parameterized
from hypothesis import strategies as st
from jax.test_util import check_grads

import jaxloss

# Per-loss reference tests: thorough and slow (many eager shapes compile); the quick
# check is tests/test_contract.py, which walks every loss (see the README).
pytestmark = [pytest.mark.usefixtures("x64", "jitted_public_api"), pytest.mark.slow]

# A few shapes for the whole file: the loss compiles once per shape and dtype (and
# setting), so tests that share a shape share programs. Checks made of several
# calls (values, Jacobians, masked variants) run as one jitted program each, one
# compile instead of one per call.
B, K = 6, 5
SHAPE3 = (3, 4, 5)  # multi-axis batches and the class-axis tests


# ---------------------------------------------------------------- references
def np_log_softmax(z):
  z = np.asarray(z, np.float64)
  m = np.max(z, axis=-1, keepdims=True)
  return z - m - np.log(np.sum(np.exp(z - m), axis=-1, keepdims=True))


def np_kl(lp, t, mask=None):
  """sum_c t_c (log t_c - lp_c) with 0 log 0 = 0 and 0 * -inf = 0; masked classes dropped."""
  lp = np.asarray(lp, np.float64)
  t = np.asarray(t, np.float64)
  pos = t > 0
  with np.errstate(divide="ignore", invalid="ignore"):
    terms = np.where(pos, t * (np.log(np.where(pos, t, 1.0)) - np.where(pos, lp, 0.0)), 0.0)
  if mask is not None:
    terms = np.where(mask, terms, 0.0)
  return terms.sum(-1)


def np_entropy(t):
  t = np.asarray(t, np.float64)
  return -np.where(t > 0, t * np.log(np.where(t > 0, t, 1.0)), 0.0).sum(-1)


def random_inputs(rng, shape, zeros=True):
  lp = np_log_softmax(rng.normal(size=shape) * 2)
  t = rng.dirichlet(np.ones(shape[-1]), size=shape[:-1])
  if zeros and shape[-1] > 1:  # some exact zeros in the targets
    t = np.where(rng.random(shape) < 0.3, 0.0, t)
    t = t / np.maximum(t.sum(-1, keepdims=True), 1e-300)
  return lp, t


# ---------------------------------------------------------------- forward vs reference
class ReferenceTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(((B, K), True), ((1, 1), False), (SHAPE3, True),
                            ((B, K), False))
  def test_reference(self, shape, zeros):
    lp, t = random_inputs(np.random.default_rng(shape[-1]), shape, zeros)
    got = self.variant(jaxloss.kl_divergence)(lp, t)
    chex.assert_shape(got, shape[:-1])
    chex.assert_trees_all_close(got, np_kl(lp, t), rtol=1e-12, atol=1e-15)

  @chex.variants(with_jit=True, without_jit=True)
  def test_one_hot_targets_are_nll(self):
    rng = np.random.default_rng(1)
    lp, _ = random_inputs(rng, (B, K))
    y = rng.integers(0, K, B)
    got = self.variant(jaxloss.kl_divergence)(lp, np.eye(K)[y])
    chex.assert_trees_all_close(got, -lp[np.arange(B), y], rtol=1e-12)
    chex.assert_trees_all_close(got, jaxloss.nll_loss(lp, y), rtol=1e-12)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(0, 1, 2, -1)
  def test_axis(self, axis):
    lp, t = random_inputs(np.random.default_rng(2), SHAPE3)
    lp_a, t_a = np.moveaxis(lp, -1, axis), np.moveaxis(t, -1, axis)
    got = self.variant(functools.partial(jaxloss.kl_divergence, axis=axis))(lp_a, t_a)
    chex.assert_trees_all_close(got, np_kl(lp, t), rtol=1e-12, atol=1e-15)

  @chex.variants(with_jit=True, without_jit=True)
  def test_where(self):
    rng = np.random.default_rng(3)
    lp, t = random_inputs(rng, (B, K))
    mask = rng.random((B, K)) < 0.6
    mask[0] = False  # fully masked row: 0
    lp_junk = np.where(mask, lp, -np.inf)  # anything may sit behind the mask
    t_junk = np.where(mask, t, 0.7)
    got = self.variant(jaxloss.kl_divergence)(lp_junk, t_junk, where=mask)
    chex.assert_trees_all_close(got, np_kl(lp, t, mask), rtol=1e-12, atol=1e-15)
    self.assertEqual(float(got[0]), 0.0)
    # a class mask that broadcasts
    got = self.variant(jaxloss.kl_divergence)(lp, t, where=mask[1])
    chex.assert_trees_all_close(got, np_kl(lp, t, np.broadcast_to(mask[1], t.shape)),
                                rtol=1e-12, atol=1e-15)

  @chex.variants(with_jit=True, without_jit=True)
  def test_vmap_equals_batched(self):
    lp, t = random_inputs(np.random.default_rng(4), (B, K))
    f = jaxloss.kl_divergence
    chex.assert_trees_all_close(self.variant(jax.vmap(f))(lp, t), f(lp, t), rtol=1e-12)


def test_no_retrace_for_new_values():
  @jax.jit
  @chex.assert_max_traces(n=1)
  def loss(lp, t):
    return jaxloss.kl_divergence(lp, t).mean()

  rng = np.random.default_rng(5)
  for _ in range(3):
    lp, t = random_inputs(rng, (B, K))
    loss(jnp.asarray(lp), jnp.asarray(t))


# ---------------------------------------------------------------- torch / optax parity
@pytest.mark.parametrize("zeros", [False, True])
def test_matches_torch_kl_div(zeros):
  lp, t = random_inputs(np.random.default_rng(6), (B, K), zeros)
  want = torch.nn.functional.kl_div(torch.tensor(lp), torch.tensor(t),
                                    reduction="none").sum(-1).numpy()
  np.testing.assert_allclose(np.asarray(jaxloss.kl_divergence(lp, t)), want, rtol=1e-12,
                             atol=1e-15)


@pytest.mark.parametrize("zeros", [False, True])
def test_matches_optax(zeros):
  lp, t = random_inputs(np.random.default_rng(7), SHAPE3, zeros)
  want = optax.losses.kl_divergence(jnp.asarray(lp), jnp.asarray(t))
  chex.assert_trees_all_close(jaxloss.kl_divergence(lp, t), want, rtol=1e-12, atol=1e-15)
  mask = np.random.default_rng(8).random(SHAPE3) < 0.7
  want = optax.losses.kl_divergence(jnp.asarray(lp), jnp.asarray(t), where=mask)
  chex.assert_trees_all_close(jaxloss.kl_divergence(lp, t, where=mask), want, rtol=1e-12,
                              atol=1e-15)


# ---------------------------------------------------------------- identities (hypothesis)
@hypothesis.given(
    z=hnp.arrays(np.float64, st.sampled_from([(1, 1), (B, K)]),  # the file's shapes: few compiles
                 elements=st.floats(-30, 30, allow_nan=False, allow_subnormal=False)),
    data=st.data())
def test_identities(z, data):
  raw = np.asarray(data.draw(hnp.arrays(
      np.float64, z.shape, elements=st.floats(0, 1, allow_subnormal=False))))
  raw[..., 0] += 1e-3  # no all-zero row
  t = raw / raw.sum(-1, keepdims=True)
  lp = np.asarray(jax.nn.log_softmax(z))
  kl = np.asarray(jaxloss.kl_divergence(lp, t))
  assert np.all(kl >= -1e-9)  # Gibbs' inequality (up to rounding)
  np.testing.assert_allclose(kl, np_kl(lp, t), rtol=1e-9, atol=1e-9)
  # KL = cross-entropy - entropy
  ce = np.asarray(jaxloss.softmax_cross_entropy(z, t))
  np.testing.assert_allclose(kl, ce - np_entropy(t), rtol=1e-8, atol=1e-8)
  # KL(p || p) = 0
  np.testing.assert_allclose(np.asarray(jaxloss.kl_divergence(lp, np.exp(lp))), 0.0,
                             atol=1e-9)


# ---------------------------------------------------------------- gradients
def test_gradients():
  # Each function jitted as a whole (log_softmax included) only to save compile time.
  lp, t = random_inputs(np.random.default_rng(9), (B, K))
  mask = np.array([True, False, True, True, True])
  check_grads(jax.jit(lambda lp: jaxloss.kl_divergence(lp, t)), (lp,), order=1,
              modes=("fwd", "rev"))
  check_grads(jax.jit(lambda lp: jaxloss.kl_divergence(lp, t, where=mask)), (lp,), order=1,
              modes=("fwd", "rev"))
  # through log_softmax, and in the targets (strictly positive ones)
  z = np.random.default_rng(10).normal(size=(B, K))
  check_grads(jax.jit(lambda z: jaxloss.kl_divergence(jax.nn.log_softmax(z), t)), (z,), order=1,
              modes=("fwd", "rev"))
  t_pos = np.random.default_rng(11).dirichlet(np.ones(K), size=B)
  check_grads(jax.jit(lambda t: jaxloss.kl_divergence(lp, t)), (t_pos,), order=1,
              modes=("fwd", "rev"))


def test_gradient_formulas():
  lp, t = random_inputs(np.random.default_rng(12), (B, K))
  g = jax.grad(lambda lp: jaxloss.kl_divergence(lp, t).sum())(lp)
  np.testing.assert_allclose(np.asarray(g), -t, rtol=1e-12)
  # d/dt: log t + 1 - lp where t > 0; finite (0 by the double where) where t == 0
  gt = np.asarray(jax.grad(lambda t: jaxloss.kl_divergence(lp, t).sum())(t))
  assert np.all(np.isfinite(gt))
  pos = t > 0
  np.testing.assert_allclose(gt[pos], np.log(t[pos]) + 1 - lp[pos], rtol=1e-10)


# ---------------------------------------------------------------- numerics
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_extreme_inputs(dtype):
  z = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0]])
  lp = np_log_softmax(z)  # [0, -2e4, -1e4], ...
  t = np.array([[0.5, 0.25, 0.25], [1.0, 0.0, 0.0]])

  @jax.jit
  def outputs(lp, z):
    """The value and both gradients, one jitted program."""
    return (jaxloss.kl_divergence(lp, t),
            jax.grad(lambda lp: jaxloss.kl_divergence(lp, t).sum())(lp),
            # and through log_softmax of +-1e4 logits
            jax.grad(lambda z: jaxloss.kl_divergence(jax.nn.log_softmax(z), t).sum())(z))

  got, *grads = outputs(jnp.asarray(lp, dtype), jnp.asarray(z, dtype))
  np.testing.assert_allclose(np.asarray(got, np.float64), np_kl(lp, t), rtol=1e-6)
  for g in grads:
    assert np.all(np.isfinite(np.asarray(g)))


NEG_INF_LP = np.array([
    [np.log(0.4), -np.inf, np.log(0.6), -np.inf],
    [-np.inf, -np.inf, -np.inf, -np.inf],
    [np.log(0.5), np.log(0.25), -np.inf, np.log(0.25)],
])
NEG_INF_T = np.array([[0.5, 0.0, 0.5, 0.0], [0.0, 0.0, 0.0, 0.0], [0.25, 0.25, 0.0, 0.5]])


@pytest.mark.parametrize("masked", [False, True])
def test_neg_inf_with_zero_target_value_grad_jacfwd_finite(masked):
  where = np.isfinite(NEG_INF_LP) if masked else None
  f = functools.partial(jaxloss.kl_divergence, targets=NEG_INF_T, where=where)

  @jax.jit
  def outputs(lp, t):
    """The value and the Jacobians, one jitted program."""
    ft = lambda t: jaxloss.kl_divergence(lp, t, where=where)  # noqa: E731
    return (f(lp), (jax.jacrev(f)(lp), jax.jacfwd(f)(lp)),
            (jax.jacrev(ft)(t), jax.jacfwd(ft)(t)))

  value, lp_jacobians, t_jacobians = outputs(jnp.asarray(NEG_INF_LP), jnp.asarray(NEG_INF_T))
  assert np.all(np.isfinite(np.asarray(value)))
  assert float(value[1]) == 0.0
  chex.assert_trees_all_close(value, np_kl(NEG_INF_LP, NEG_INF_T), rtol=1e-12)
  for jac in lp_jacobians:
    assert np.all(np.isfinite(np.asarray(jac)))
  # in the targets too (gradient at t = 0 and lp = -inf)
  for jac in t_jacobians:
    assert not np.any(np.isnan(np.asarray(jac)))


def test_neg_inf_with_positive_target_is_inf():
  lp = jnp.array([[-jnp.inf, 0.0]])
  t = jnp.array([[0.5, 0.5]])
  # value and gradient, one jitted program
  value, g = jax.jit(lambda lp: (jaxloss.kl_divergence(lp, t),
                                 jax.grad(lambda lp: jaxloss.kl_divergence(lp, t).sum())(lp)))(lp)
  assert np.isposinf(float(value[0]))
  assert not np.any(np.isnan(np.asarray(g)))


# ---------------------------------------------------------------- issue 10: NaN / +inf -> NaN
_BAD_LP = np.array([
    [np.nan, np.nan, np.nan],  # all NaN
    [0.0, np.nan, -np.inf],  # one NaN, against a zero target
    [0.0, np.inf, -np.inf],  # +inf against a zero target
    [0.0, -np.inf, -np.inf],  # -inf against zero targets keeps its meaning
])
_BAD_T = np.array([[1.0, 0.0, 0.0]] * 4)


def test_nan_or_pos_inf_log_prediction_gives_nan():
  """A NaN or +inf in an unmasked class gives exactly NaN even against a zero
  target (zero gradient there); example_mask=False gives 0; a class mask hides it."""
  fn = lambda lp, **kw: jaxloss.kl_divergence(lp, _BAD_T, **kw)  # noqa: E731
  where = np.array([True, False, True])

  @jax.jit
  def outputs(lp):
    """Every call of this test, one jitted program."""
    return (fn(lp), jax.jacrev(fn)(lp), jax.jacfwd(fn)(lp),
            fn(lp, example_mask=np.array([False, False, False, True])), fn(lp, where=where))

  value, jac_rev, jac_fwd, masked_out, hidden = (
      np.asarray(a) for a in outputs(jnp.asarray(_BAD_LP)))
  assert np.all(np.isnan(value[:3])) and value[3] == 0.0, value
  for jac in (jac_rev, jac_fwd):
    assert np.all(np.isfinite(jac)) and np.all(jac[:3] == 0.0), jac
  assert np.all(masked_out[:3] == 0.0) and masked_out[3] == 0.0
  assert np.isnan(hidden[0]) and np.all(hidden[1:] == 0.0), hidden


@pytest.mark.parametrize("dtype,tol", [(jnp.float16, 2e-3), (jnp.bfloat16, 2e-2)])
def test_low_precision_inputs(dtype, tol):
  """16-bit inputs are upcast: the only error left is the rounding of the inputs."""
  lp, t = random_inputs(np.random.default_rng(13), (B, K))
  lp_low, t_low = jnp.asarray(lp, dtype), jnp.asarray(t, dtype)
  # value and gradient, one jitted program
  got, g = jax.jit(lambda lp: (jaxloss.kl_divergence(lp, t_low), jax.grad(
      lambda lp: jaxloss.kl_divergence(lp, t_low).sum())(lp)))(lp_low)
  assert got.dtype == jnp.float32
  rounded = np_kl(np.asarray(lp_low, np.float64), np.asarray(t_low, np.float64))
  np.testing.assert_allclose(np.asarray(got, np.float64), rounded, rtol=1e-5, atol=1e-6)
  # KL is a difference of two O(1) sums: judge the rounding error on their scale
  scale = np.abs(t * lp).sum(-1) + np.abs(np_entropy(t))
  assert np.all(np.abs(np.asarray(got, np.float64) - np_kl(lp, t)) <= tol * scale + tol)
  assert g.dtype == dtype and np.all(np.isfinite(np.asarray(g, np.float32)))


def test_output_dtypes():
  # The output dtype is fixed at trace time: eval_shape traces without compiling.
  t = np.full((B, K), 1 / K)
  for dtype, out in [(jnp.float16, jnp.float32), (jnp.bfloat16, jnp.float32),
                     (jnp.float32, jnp.float32), (jnp.float64, jnp.float64)]:
    assert jax.eval_shape(jaxloss.kl_divergence, jax.ShapeDtypeStruct((B, K), dtype),
                          t).dtype == out


# ---------------------------------------------------------------- bad input
def test_bad_inputs():
  # NumPy inputs: every error is raised while tracing, before anything compiles.
  lp = np.zeros((4, 3))
  with pytest.raises(ValueError, match="got integer labels"):
    jaxloss.kl_divergence(lp, np.zeros(4, np.int32))
  with pytest.raises(ValueError, match="must equal logits shape"):
    jaxloss.kl_divergence(lp, np.zeros((4, 4)))
  with pytest.raises(TypeError, match="log_predictions must be a floating-point"):
    jaxloss.kl_divergence(np.zeros((4, 3), np.int32), lp)
  with pytest.raises(ValueError, match="scalar"):
    jaxloss.kl_divergence(jnp.float32(0.0), jnp.float32(1.0))
  with pytest.raises(TypeError, match="boolean"):
    jaxloss.kl_divergence(lp, lp, where=np.ones((4, 3)))
  with pytest.raises(ValueError, match="axis=2 is out of range"):
    jaxloss.kl_divergence(lp, lp, axis=2)
