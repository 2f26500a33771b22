"""Focal losses and Poly-1 vs float64 NumPy references, PyTorch formulas, and identities."""

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

GAMMAS = (0.0, 0.5, 1.0, 1.5, 2.0)
# One batch shape for most tests: each hyperparameter setting of a loss compiles
# once per shape and dtype, so tests that share the shape share programs. Checks
# made of several calls (values, Jacobians, masked variants) run as one jitted
# program each, one compile instead of one per call.
B, K = 12, 5


# ---------------------------------------------------------------- references
def _np_log_softmax(z, mask):
  """Masked log-softmax over the last axis (float64); masked / -inf -> -inf."""
  z = np.where(mask, np.asarray(z, np.float64), -np.inf)
  m = np.max(z, axis=-1, keepdims=True)
  m = np.where(np.isfinite(m), m, 0.0)
  with np.errstate(divide="ignore"):
    return z - m - np.log(np.sum(np.exp(z - m), axis=-1, keepdims=True))


def np_softmax_family(z, y, *, kind, gamma=2.0, alpha=None, epsilon=1.0, mask=None, w=None,
                      keep=None):
  """Softmax focal ('focal') or Poly-1 ('poly1') loss, class axis last, float64.

  1 - p_y is summed from the other classes' probabilities (no cancellation), an
  independent route from the log1mexp used by the implementation.
  """
  z = np.asarray(z, np.float64)
  k = z.shape[-1]
  mask = np.ones(z.shape, bool) if mask is None else np.broadcast_to(mask, z.shape)
  live = np.any(mask & (z > -np.inf), axis=-1)
  out = np.zeros(z.shape[:-1])
  for idx in np.ndindex(*z.shape[:-1]):
    if (keep is not None and not keep[idx]) or not live[idx]:
      continue
    label = int(y[idx])
    if not 0 <= label < k:
      out[idx] = np.nan
      continue
    log_p = _np_log_softmax(z[idx], mask[idx])
    log_py = log_p[label]
    one_minus_p = np.sum(np.exp(np.delete(log_p, label)))
    if kind == "focal":
      a = 1.0 if alpha is None else (np.asarray(alpha, np.float64).reshape(-1)[
          label if np.ndim(alpha) else 0])
      loss = -a * one_minus_p**gamma * log_py if log_py > -np.inf else np.inf
    else:
      loss = -log_py + epsilon * one_minus_p
    out[idx] = loss * (1.0 if w is None else w[label])
  return out


def np_ce(z, y, **kw):
  return np_softmax_family(z, y, kind="focal", gamma=0.0, **kw)


def _np_sigmoid(x):
  x = np.asarray(x, np.float64)
  e = np.exp(-np.abs(x))
  return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def np_sigmoid_focal(z, t, *, gamma=2.0, alpha=0.25, mask=None):
  """Per element torchvision's formula (stable form), mean over unmasked classes."""
  z, t = np.asarray(z, np.float64), np.asarray(t, np.float64)
  ce = np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))
  one_minus_pt = t * _np_sigmoid(-z) + (1 - t) * _np_sigmoid(z)
  loss = ce * one_minus_pt**gamma
  if alpha is not None and alpha >= 0:
    loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
  if mask is None:
    return loss.mean(-1)
  mask = np.broadcast_to(mask, z.shape)
  n = mask.sum(-1)
  return np.where(n > 0, np.where(mask, loss, 0).sum(-1) / np.maximum(n, 1), 0.0)


def np_bce_mean(z, t):
  """Sigmoid BCE with logits, mean over classes: max(z,0) - z t + log1p(exp(-|z|))."""
  z, t = np.asarray(z, np.float64), np.asarray(t, np.float64)
  return (np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))).mean(-1)


def torch_sigmoid_focal(z, t, gamma, alpha):
  """torchvision.ops.sigmoid_focal_loss (v0.20 source), reduction none, then mean(-1)."""
  inputs, targets = torch.tensor(z, dtype=torch.float64), torch.tensor(t, dtype=torch.float64)
  p = torch.sigmoid(inputs)
  ce_loss = torch.nn.functional.binary_cross_entropy_with_logits(inputs, targets,
                                                                 reduction="none")
  p_t = p * targets + (1 - p) * (1 - targets)
  loss = ce_loss * ((1 - p_t) ** gamma)
  if alpha >= 0:
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    loss = alpha_t * loss
  return loss.mean(-1).numpy()


def torch_softmax_focal(z, y, gamma, alpha=None, weight=None):
  zt, yt = torch.tensor(z, dtype=torch.float64), torch.tensor(y)
  log_py = torch.log_softmax(zt, -1).gather(-1, yt[..., None])[..., 0]
  loss = -(1 - log_py.exp()) ** gamma * log_py
  if alpha is not None:
    loss = torch.as_tensor(alpha, dtype=torch.float64)[yt] * loss
  if weight is not None:
    loss = torch.tensor(weight)[yt] * loss
  return loss.numpy()


def random_int_inputs(rng, batch_shape, k, scale=2.0):
  return rng.normal(size=batch_shape + (k,)) * scale, rng.integers(0, k, size=batch_shape)


def random_targets(rng, shape, soft):
  if soft:
    t = rng.uniform(size=shape)
    t[..., 0] = 0.0  # mix in hard entries
    t[..., 1] = 1.0
    return t
  return (rng.random(shape) < 0.3).astype(np.float64)


def _alpha(kind, k):
  return {"none": None, "scalar": 0.25, "vector": np.linspace(0.2, 1.0, k)}[kind]


# ---------------------------------------------------------------- forward vs reference
class ReferenceTest(parameterized.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.product(gamma=(0.0, 0.5, 2.0, 3.5), alpha=("none", "scalar", "vector"))
  def test_softmax_focal(self, gamma, alpha):
    rng = np.random.default_rng(0)
    z, y = random_int_inputs(rng, (B,), K)
    a = _alpha(alpha, K)
    got = self.variant(functools.partial(jaxloss.softmax_focal_loss, gamma=gamma, alpha=a))(z, y)
    chex.assert_shape(got, (B,))
    chex.assert_trees_all_close(
        got, np_softmax_family(z, y, kind="focal", gamma=gamma, alpha=a), rtol=1e-12)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(0.0, 1.0, 2.0, -1.0)
  def test_poly1(self, epsilon):
    rng = np.random.default_rng(1)
    z, y = random_int_inputs(rng, (B,), K)
    got = self.variant(functools.partial(jaxloss.poly1_cross_entropy, epsilon=epsilon))(z, y)
    chex.assert_trees_all_close(
        got, np_softmax_family(z, y, kind="poly1", epsilon=epsilon), rtol=1e-12)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.product(kind=("focal", "poly1"))
  def test_where_weights_example_mask(self, kind):
    rng = np.random.default_rng(2)
    z, y = random_int_inputs(rng, (B,), K)
    mask = rng.random((12, 5)) < 0.6
    mask[np.arange(12), y] = True
    mask[0] = False  # fully masked row -> 0
    w = rng.uniform(0.5, 2.0, 5)
    keep = rng.random(12) < 0.8
    keep[0] = True
    a = np.linspace(0.3, 0.9, 5)
    if kind == "focal":
      fn = functools.partial(jaxloss.softmax_focal_loss, gamma=1.5, alpha=a, weights=w)
      want = np_softmax_family(z, y, kind=kind, gamma=1.5, alpha=a, mask=mask, w=w, keep=keep)
    else:
      fn = functools.partial(jaxloss.poly1_cross_entropy, epsilon=2.0, weights=w)
      want = np_softmax_family(z, y, kind=kind, epsilon=2.0, mask=mask, w=w, keep=keep)
    got = self.variant(fn)(z, y, where=mask, example_mask=keep)
    chex.assert_trees_all_close(got, want, rtol=1e-12)
    self.assertEqual(float(got[0]), 0.0)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.product(gamma=(0.0, 0.5, 2.0), alpha=(None, 0.25, -1.0), soft=(False, True))
  def test_sigmoid_focal(self, gamma, alpha, soft):
    rng = np.random.default_rng(3)
    z = rng.normal(size=(B, K)) * 3
    t = random_targets(rng, z.shape, soft)
    got = self.variant(functools.partial(jaxloss.sigmoid_focal_loss, gamma=gamma, alpha=alpha))(
        z, t)
    chex.assert_shape(got, (B,))
    chex.assert_trees_all_close(
        got, np_sigmoid_focal(z, t, gamma=gamma, alpha=alpha), rtol=1e-12)

  @chex.variants(with_jit=True, without_jit=True)
  def test_sigmoid_where(self):
    rng = np.random.default_rng(4)
    z = rng.normal(size=(B, K)) * 3
    t = random_targets(rng, z.shape, soft=True)
    mask = rng.random(z.shape) < 0.6
    mask[0] = False
    got = self.variant(jaxloss.sigmoid_focal_loss)(z, t, where=mask)
    chex.assert_trees_all_close(got, np_sigmoid_focal(z, t, mask=mask), rtol=1e-12)
    self.assertEqual(float(got[0]), 0.0)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.product(axis=(0, 1))
  def test_axis(self, axis):
    rng = np.random.default_rng(5)
    z = rng.normal(size=(3, 4, 5)) * 2
    y_shape = list(z.shape)
    k = y_shape.pop(axis)
    y = rng.integers(0, k, size=y_shape)
    t = random_targets(rng, z.shape, soft=True)
    mask = rng.random(z.shape) < 0.7
    z_last, mask_last = np.moveaxis(z, axis, -1), np.moveaxis(mask, axis, -1)
    f = self.variant(functools.partial(jaxloss.softmax_focal_loss, axis=axis, gamma=0.5))
    chex.assert_trees_all_close(
        f(z, y, where=mask),
        np_softmax_family(z_last, y, kind="focal", gamma=0.5, mask=mask_last), rtol=1e-12)
    f = self.variant(functools.partial(jaxloss.poly1_cross_entropy, axis=axis))
    chex.assert_trees_all_close(
        f(z, y, where=mask), np_softmax_family(z_last, y, kind="poly1", mask=mask_last),
        rtol=1e-12)
    f = self.variant(functools.partial(jaxloss.sigmoid_focal_loss, axis=axis))
    chex.assert_trees_all_close(
        f(z, t, where=mask),
        np_sigmoid_focal(z_last, np.moveaxis(t, axis, -1), mask=mask_last), rtol=1e-12)

  @chex.variants(with_jit=True, without_jit=True)
  def test_vmap_equals_batched(self):
    rng = np.random.default_rng(6)
    z, y = random_int_inputs(rng, (B,), K)
    t = random_targets(rng, z.shape, soft=False)
    for f, tgt in ((functools.partial(jaxloss.softmax_focal_loss, alpha=np.ones(K) / 2), y),
                   (jaxloss.poly1_cross_entropy, y), (jaxloss.sigmoid_focal_loss, t)):
      chex.assert_trees_all_close(self.variant(jax.vmap(f))(z, tgt), f(z, tgt), rtol=1e-12)


def test_no_retrace_for_new_values():
  @jax.jit
  @chex.assert_max_traces(n=1)
  def loss(z, y, t, gamma):
    return (jaxloss.softmax_focal_loss(z, y, gamma=gamma).sum()
            + jaxloss.poly1_cross_entropy(z, y).sum()
            + jaxloss.sigmoid_focal_loss(z, t, gamma=gamma).sum())

  rng = np.random.default_rng(7)
  for gamma in (0.5, 2.0, 0.0):
    z, y = random_int_inputs(rng, (B,), K)
    loss(jnp.asarray(z), jnp.asarray(y), jnp.asarray(random_targets(rng, z.shape, True)), gamma)


def test_traced_hyperparameters_match_static():
  rng = np.random.default_rng(8)
  z, y = random_int_inputs(rng, (B,), K)
  t = random_targets(rng, z.shape, soft=True)
  f = jax.jit(lambda g, a, e: (jaxloss.softmax_focal_loss(z, y, gamma=g, alpha=a),
                               jaxloss.sigmoid_focal_loss(z, t, gamma=g, alpha=a),
                               jaxloss.poly1_cross_entropy(z, y, epsilon=e)))
  for g, a, e in ((0.0, 0.3, 0.0), (1.5, -1.0, -1.0)):
    got = f(g, a, e)
    want = (jaxloss.softmax_focal_loss(z, y, gamma=g, alpha=a),
            jaxloss.sigmoid_focal_loss(z, t, gamma=g, alpha=a),
            jaxloss.poly1_cross_entropy(z, y, epsilon=e))
    chex.assert_trees_all_close(got, want, rtol=1e-12)


# ---------------------------------------------------------------- PyTorch formulas
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 3.0])
@pytest.mark.parametrize("alpha", [0.25, 0.9, -1.0])
def test_sigmoid_focal_matches_torchvision_formula(gamma, alpha):
  rng = np.random.default_rng(9)
  z = rng.normal(size=(B, K)) * 3
  t = random_targets(rng, z.shape, soft=gamma == 0.5)
  np.testing.assert_allclose(
      np.asarray(jaxloss.sigmoid_focal_loss(z, t, gamma=gamma, alpha=alpha)),
      torch_sigmoid_focal(z, t, gamma, alpha), rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_softmax_focal_matches_torch_formula(gamma):
  rng = np.random.default_rng(10)
  z, y = random_int_inputs(rng, (B,), K)
  a, w = rng.uniform(0.1, 1.0, 5), rng.uniform(0.5, 2.0, 5)
  np.testing.assert_allclose(
      np.asarray(jaxloss.softmax_focal_loss(z, y, gamma=gamma, alpha=a, weights=w)),
      torch_softmax_focal(z, y, gamma, a, w), rtol=1e-10)
  if gamma == 0.0:  # and torch's own cross_entropy with class weights
    want = torch.nn.functional.cross_entropy(
        torch.tensor(z), torch.tensor(y), weight=torch.tensor(w), reduction="none").numpy()
    np.testing.assert_allclose(
        np.asarray(jaxloss.softmax_focal_loss(z, y, gamma=0.0, weights=w)), want, rtol=1e-12)


# ---------------------------------------------------------------- identities
def test_focal_gamma0_equals_cross_entropy_exactly():
  rng = np.random.default_rng(11)
  z, y = random_int_inputs(rng, (B,), K, scale=5.0)
  z[0, 2] = -np.inf
  z[1, :] = -np.inf  # dead row
  z[2, 0], y[2] = 1e4, 0  # saturated, correct
  z[3, 1], y[3] = -1e4, 1  # saturated, wrong
  mask = rng.random(z.shape) < 0.8
  w = rng.uniform(0.5, 2.0, K)
  keep = rng.random(B) < 0.9
  kw = dict(where=mask, weights=w, example_mask=keep)
  ce = lambda z: jaxloss.softmax_cross_entropy_with_integer_labels(z, y, **kw)
  fns = (lambda z: jaxloss.softmax_focal_loss(z, y, gamma=0.0, **kw),
         lambda z: jaxloss.poly1_cross_entropy(z, y, epsilon=0.0, **kw))
  for fn in fns:  # eager, float64
    np.testing.assert_array_equal(np.asarray(fn(z)), np.asarray(ce(z)))

  @jax.jit
  def values_and_grads(z):
    finite = jnp.isfinite(ce(z))
    g = lambda f: jax.grad(lambda z: jnp.sum(jnp.where(finite, f(z), 0.0)))(z)
    return [(f(z), g(f)) for f in (ce,) + fns]

  for dtype in (jnp.float32, jnp.float64):
    (ce_v, ce_g), *others = values_and_grads(jnp.asarray(z, dtype))
    for v, g in others:
      np.testing.assert_array_equal(np.asarray(v), np.asarray(ce_v))
      np.testing.assert_array_equal(np.asarray(g), np.asarray(ce_g))


def test_sigmoid_focal_gamma0_equals_bce():
  rng = np.random.default_rng(12)
  z = rng.normal(size=(B, K)) * 5
  z[0, 0], z[1, 1] = 1e4, -1e4
  for soft in (False, True):
    t = random_targets(rng, z.shape, soft)
    got = jaxloss.sigmoid_focal_loss(z, t, gamma=0.0, alpha=None)
    np.testing.assert_allclose(np.asarray(got), np_bce_mean(z, t), rtol=1e-13, atol=1e-15)
    # alpha = 1/2 halves every element.
    np.testing.assert_allclose(
        np.asarray(jaxloss.sigmoid_focal_loss(z, t, gamma=0.0, alpha=0.5)),
        np_bce_mean(z, t) / 2, rtol=1e-13, atol=1e-15)


# Few shapes and jitted losses with traced hyperparameters: one compile per shape.
logit_arrays = hnp.arrays(
    np.float64, st.sampled_from([(1, 2), (4, 3), (3, 7)]),
    elements=st.floats(-30, 30, allow_nan=False, allow_subnormal=False))
_jit_ce = jax.jit(jaxloss.softmax_cross_entropy_with_integer_labels)
_jit_focal = jax.jit(lambda z, y, g: jaxloss.softmax_focal_loss(z, y, gamma=g))
_jit_poly1 = jax.jit(lambda z, y, e: jaxloss.poly1_cross_entropy(z, y, epsilon=e))
_jit_sigmoid_focal = jax.jit(lambda z, t, g: jaxloss.sigmoid_focal_loss(z, t, gamma=g, alpha=None))


@hypothesis.given(z=logit_arrays, data=st.data())
def test_softmax_properties(z, data):
  b, k = z.shape
  y = np.asarray(data.draw(hnp.arrays(np.int64, (b,), elements=st.integers(0, k - 1))))
  gamma = data.draw(st.floats(0.01, 5.0))
  epsilon = data.draw(st.floats(0.0, 3.0))
  ce = np.asarray(_jit_ce(z, y))
  focal = np.asarray(_jit_focal(z, y, gamma))
  focal_more = np.asarray(_jit_focal(z, y, gamma + 1.0))
  poly = np.asarray(_jit_poly1(z, y, epsilon))
  poly_m1 = np.asarray(_jit_poly1(z, y, -1.0))
  assert np.all(focal >= 0) and np.all(focal <= ce)
  assert np.all(focal_more <= focal)  # more focusing, smaller loss
  assert np.all(poly >= ce) and np.all(poly <= ce + epsilon)
  assert np.all(poly_m1 >= -1e-12)  # -log p >= 1 - p
  # 1 - p_y is derived from nll = lse - z_y, whose absolute error is ~eps |z|
  # (as in cross-entropy): near p_y = 1 that limits the relative accuracy.
  np.testing.assert_allclose(
      focal, np_softmax_family(z, y, kind="focal", gamma=gamma), rtol=1e-9, atol=1e-13)
  # Invariant to a shift of all logits.
  shift = data.draw(st.floats(-50, 50))
  np.testing.assert_allclose(
      np.asarray(_jit_focal(z + shift, y, gamma)), focal,
      rtol=1e-6, atol=1e-12)


@hypothesis.given(z=logit_arrays, data=st.data())
def test_sigmoid_properties(z, data):
  t = np.asarray(data.draw(hnp.arrays(np.float64, z.shape, elements=st.sampled_from(
      [0.0, 1.0, 0.3, 0.99]))))
  gamma = data.draw(st.floats(0.01, 5.0))
  bce = np_bce_mean(z, t)
  focal = np.asarray(_jit_sigmoid_focal(z, t, gamma))
  assert np.all(focal >= 0) and np.all(focal <= bce * (1 + 1e-12))
  np.testing.assert_allclose(
      focal, np_sigmoid_focal(z, t, gamma=gamma, alpha=None), rtol=1e-9, atol=1e-300)


# ---------------------------------------------------------------- gradients
def test_gradients():
  """check_grads in float64 at moderate logits, with mask, weights and alpha."""
  rng = np.random.default_rng(13)
  z, y = random_int_inputs(rng, (B,), K)
  mask = np.ones_like(z, bool)
  mask[0, (y[0] + 1) % K] = False
  w, a = rng.uniform(0.5, 2.0, K), rng.uniform(0.2, 1.0, K)
  t = random_targets(rng, z.shape, soft=True)
  # jit (with gamma traced) only to save compile time; the eager path is
  # differentiated in the numerics tests below.
  focal = jax.jit(lambda z, g: jaxloss.softmax_focal_loss(
      z, y, gamma=g, alpha=a, weights=w, where=mask))
  poly1 = jax.jit(lambda z, e: jaxloss.poly1_cross_entropy(
      z, y, epsilon=e, weights=w, where=mask))
  sigmoid = jax.jit(lambda z, g: jaxloss.sigmoid_focal_loss(z, t, gamma=g, where=mask))
  for gamma in (0.5, 2.0):
    for fn in (focal, poly1, sigmoid):
      check_grads(lambda z: fn(z, gamma), (z,), order=1, modes=("fwd", "rev"))
    # And with respect to gamma itself.
    check_grads(lambda g: focal(z, g), (gamma,), order=1, modes=("fwd", "rev"))


# ---------------------------------------------------------------- numerics
SAT_LOGITS = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0], [1e4, 1e4, -1e4], [1e4, 0.0, 0.0]])
SAT_LABELS = np.array([0, 0, 2, 0])  # correct, wrong, wrong, correct


_SAT_T = np.eye(3)[SAT_LABELS]
_SAT_FNS = {
    "focal": lambda z, g: jaxloss.softmax_focal_loss(z, SAT_LABELS, gamma=g, alpha=0.5),
    "poly1": lambda z, g: jaxloss.poly1_cross_entropy(z, SAT_LABELS, epsilon=g),
    "sigmoid": lambda z, g: jaxloss.sigmoid_focal_loss(z, _SAT_T, gamma=g),
}


@jax.jit
def _value_and_jacobians(z, gamma):
  return {name: (fn(z, gamma), jax.jacrev(fn)(z, gamma), jax.jacfwd(fn)(z, gamma))
          for name, fn in _SAT_FNS.items()}


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_saturated_logits_finite_value_and_gradient(dtype):
  """optax #1267: (1 - p)^gamma for gamma < 1 has an infinite derivative at p = 1."""
  z = jnp.asarray(SAT_LOGITS, dtype)
  for gamma in GAMMAS:
    out = _value_and_jacobians(z, gamma)
    for name, arrays in out.items():
      for a in arrays:
        assert np.all(np.isfinite(np.asarray(a))), (gamma, name, a)
    # Correct: p_y = 1, loss 0. Wrong: p_y = 0, loss alpha * (lse - z_y).
    np.testing.assert_allclose(np.asarray(out["focal"][0], np.float64),
                               [0.0, 0.5 * 2e4, 0.5 * (2e4 + np.log(2.0)), 0.0], rtol=1e-6)
  # Also un-jitted, with gamma static (a Python float); float64 only (compile time).
  if dtype == jnp.float64:
    g = jax.grad(lambda z: _SAT_FNS["focal"](z, 0.5).sum())(z)
    assert np.all(np.isfinite(np.asarray(g)))


@jax.jit
def _near_saturation_grads(z, y, gamma):
  fn = lambda z: jaxloss.softmax_focal_loss(z, y, gamma=gamma)
  return jax.grad(lambda z: fn(z).sum())(z), jax.jacfwd(fn)(z)


@pytest.mark.parametrize("gamma", GAMMAS)
def test_near_saturation_gradient_matches_float64(gamma):
  """Margins where 1 - p_y goes from representable to underflowing in float32."""
  margins = np.array([5.0, 20.0, 40.0, 80.0, 100.0, 200.0, 1e3])
  z = np.stack([margins, np.zeros_like(margins), -margins / 2], -1)
  y = np.zeros(len(margins), np.int64)
  g64, _ = _near_saturation_grads(jnp.asarray(z), y, gamma)
  g32, gf = _near_saturation_grads(jnp.asarray(z, jnp.float32), y, gamma)
  g64, g32 = np.asarray(g64), np.asarray(g32, np.float64)
  assert np.all(np.isfinite(g64)) and np.all(np.isfinite(g32))
  assert np.all(np.isfinite(np.asarray(gf)))
  # The gradient is below ~ (1 + gamma) (1 - p)^(1 + gamma): float32 may flush it to 0.
  np.testing.assert_allclose(g32, g64, rtol=1e-3, atol=1e-6)


NEG_INF_LOGITS = np.array([
    [0.5, -np.inf, 1.0, -np.inf],
    [-np.inf, -np.inf, -np.inf, -np.inf],  # everything -inf -> 0
    [2.0, 1.0, -np.inf, 0.0],
    [3.0, -np.inf, -np.inf, -np.inf],  # only the label left: p_y = 1
])
NEG_INF_LABELS = np.array([0, 1, 3, 0])


_NEG_INF_FINITE = np.isfinite(NEG_INF_LOGITS)
_NEG_INF_T = np.where(_NEG_INF_FINITE, np.eye(4)[NEG_INF_LABELS], 0.0)
_NEG_INF_FNS = {
    "focal": lambda z, g, **kw: jaxloss.softmax_focal_loss(
        z, NEG_INF_LABELS, gamma=g, alpha=np.ones(4) / 2, weights=jnp.arange(1.0, 5.0), **kw),
    "poly1": lambda z, g, **kw: jaxloss.poly1_cross_entropy(
        z, NEG_INF_LABELS, epsilon=g + 0.5, weights=jnp.arange(1.0, 5.0), **kw),
    "sigmoid": lambda z, g, **kw: jaxloss.sigmoid_focal_loss(z, _NEG_INF_T, gamma=g, **kw),
}


@jax.jit
def _neg_inf_outputs(z, gamma):
  """Value, jacrev, jacfwd of each loss, and the value with the -inf classes masked."""
  behind_mask = jnp.where(_NEG_INF_FINITE, z, 123.0)
  return {name: (fn(z, gamma), jax.jacrev(fn)(z, gamma), jax.jacfwd(fn)(z, gamma),
                 fn(behind_mask, gamma, where=_NEG_INF_FINITE))
          for name, fn in _NEG_INF_FNS.items()}


def test_neg_inf_masked_classes():
  finite = _NEG_INF_FINITE
  z = jnp.asarray(NEG_INF_LOGITS)
  diag = (np.arange(4), np.arange(4))
  for gamma in (0.0, 0.5, 2.0):
    out = _neg_inf_outputs(z, gamma)
    for name, (value, jrev, jfwd, masked) in out.items():
      value = np.asarray(value)
      assert np.all(np.isfinite(value)), (name, value)
      if name != "sigmoid":
        assert value[1] == 0.0 and value[3] == 0.0
        # A -inf class is the same as a masked one (with any value behind the mask).
        chex.assert_trees_all_close(value, masked, rtol=1e-12)
        chex.assert_trees_all_close(value, np_softmax_family(
            NEG_INF_LOGITS, NEG_INF_LABELS, kind=name, gamma=gamma, alpha=np.ones(4) / 2,
            epsilon=gamma + 0.5, w=np.arange(1.0, 5.0)), rtol=1e-12)
      else:
        # Sigmoid: a -inf logit with target 0 costs nothing, but (unmasked) it
        # still counts in the mean over classes.
        want = np_sigmoid_focal(np.where(finite, NEG_INF_LOGITS, 0.0), _NEG_INF_T, gamma=gamma,
                                mask=finite)
        chex.assert_trees_all_close(value, want * finite.sum(-1) / 4, rtol=1e-12)
        chex.assert_trees_all_close(masked, want, rtol=1e-12)
      for jac in (jrev, jfwd):
        jac = np.asarray(jac)
        assert np.all(np.isfinite(jac)), (name, jac)
        assert np.all(jac[diag][~finite] == 0.0)  # -inf classes get zero gradient
  # Jacobians at a static gamma < 1 as well (a Python float, not traced; softmax
  # focal only: compile time), one jitted program.
  f = functools.partial(_NEG_INF_FNS["focal"], g=0.5)
  for jac in jax.jit(lambda z: (jax.jacrev(f)(z), jax.jacfwd(f)(z)))(z):
    assert np.all(np.isfinite(np.asarray(jac)))


_P0_Y = np.array([0, 0])
_P0_WHERE = np.array([[False, True, True], [True, True, True]])


@jax.jit
def _p_zero_outputs(z, gamma):
  fns = (lambda z: jaxloss.softmax_focal_loss(z, _P0_Y, gamma=gamma, where=_P0_WHERE),
         lambda z: jaxloss.poly1_cross_entropy(z, _P0_Y, epsilon=gamma, where=_P0_WHERE))
  return [(f(z), jax.jacrev(f)(z), jax.jacfwd(f)(z)) for f in fns]


def test_label_at_masked_or_neg_inf_class_is_inf_without_nan():
  """Documented: as in cross-entropy, the loss is +inf when p_y = 0."""
  z = np.array([[0.5, 1.0, -1.0], [-np.inf, 1.0, 0.0]])
  for gamma in (0.0, 0.5, 2.0):
    for value, jrev, jfwd in _p_zero_outputs(z, gamma):
      assert np.all(np.asarray(value) == np.inf)
      assert not np.any(np.isnan(np.asarray(jrev))) and not np.any(np.isnan(np.asarray(jfwd)))
  t = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])  # sigmoid: target 1 at a -inf logit
  assert float(jaxloss.sigmoid_focal_loss(z, t)[1]) == np.inf


@pytest.mark.parametrize("dtype,tol", [(jnp.float16, 2e-3), (jnp.bfloat16, 2e-2)])
def test_low_precision_inputs(dtype, tol):
  rng = np.random.default_rng(14)
  z, y = random_int_inputs(rng, (B,), K)
  t = random_targets(rng, z.shape, soft=False)
  z_low = jnp.asarray(z, dtype)
  z_low64 = np.asarray(z_low, np.float64)
  cases = (
      (lambda z: jaxloss.softmax_focal_loss(z, y, gamma=1.5),
       lambda z: np_softmax_family(z, y, kind="focal", gamma=1.5)),
      (lambda z: jaxloss.poly1_cross_entropy(z, y),
       lambda z: np_softmax_family(z, y, kind="poly1")),
      (lambda z: jaxloss.sigmoid_focal_loss(z, t, gamma=0.5),
       lambda z: np_sigmoid_focal(z, t, gamma=0.5)),
  )
  for fn, ref in cases:
    # value and gradient, one jitted program
    got, g = jax.jit(lambda z, fn=fn: (fn(z), jax.grad(lambda z: fn(z).sum())(z)))(z_low)
    assert got.dtype == jnp.float32
    # Float32 accuracy on the rounded inputs...
    np.testing.assert_allclose(np.asarray(got, np.float64), ref(z_low64), rtol=1e-4, atol=1e-6)
    # ...and within the input rounding of the float64 loss (|z| < ~8).
    np.testing.assert_allclose(np.asarray(got, np.float64), ref(z), rtol=20 * tol, atol=tol)
    assert g.dtype == dtype and np.all(np.isfinite(np.asarray(g, np.float32)))


def test_output_dtypes():
  y = np.array([0, 1])
  for dtype, out in [(jnp.float16, jnp.float32), (jnp.bfloat16, jnp.float32),
                     (jnp.float32, jnp.float32), (jnp.float64, jnp.float64)]:
    zd = jax.ShapeDtypeStruct((2, 3), dtype)
    for fn, tgt in ((jaxloss.softmax_focal_loss, y), (jaxloss.poly1_cross_entropy, y),
                    (jaxloss.sigmoid_focal_loss, np.eye(3)[y])):
      assert jax.eval_shape(fn, zd, tgt).dtype == out


def test_out_of_range_label_is_nan():
  z = np.zeros((4, 3))
  y = np.array([0, 3, -1, 5])
  keep = np.array([True, True, True, False])
  # the three losses, one jitted program
  outputs = jax.jit(lambda z: (
      jaxloss.softmax_focal_loss(z, y, weights=np.ones(3), example_mask=keep),
      jaxloss.softmax_focal_loss(z, y, gamma=0.0, alpha=np.ones(3), example_mask=keep),
      jaxloss.poly1_cross_entropy(z, y, example_mask=keep)))(z)
  for got in outputs:
    got = np.asarray(got)
    assert got[0] > 0 and np.isnan(got[1]) and np.isnan(got[2]) and got[3] == 0.0
  err, _ = jaxloss.checked(jaxloss.softmax_focal_loss)(z, y)
  with pytest.raises(Exception, match="label"):
    err.throw()


# ---------------------------------------------------------------- issue 10: NaN rows, shift
_BAD_Z = np.array([
    [np.nan, np.nan, np.nan],  # all NaN
    [1.0, np.nan, 0.0],  # one NaN class (not the label)
    [1.0, np.inf, 0.0],  # +inf
    [0.5, 1.0, -1.0],  # finite
])
_BAD_Y = np.zeros(4, np.int64)
_BAD_FNS = {
    "focal": lambda z, **kw: jaxloss.softmax_focal_loss(z, _BAD_Y, gamma=0.5, **kw),
    "focal+alpha+w": lambda z, **kw: jaxloss.softmax_focal_loss(
        z, _BAD_Y, gamma=2.0, alpha=np.array([0.2, 0.5, 0.7]), weights=np.arange(1.0, 4.0),
        **kw),
    "poly1": lambda z, **kw: jaxloss.poly1_cross_entropy(z, _BAD_Y, epsilon=2.0, **kw),
    "sigmoid": lambda z, **kw: jaxloss.sigmoid_focal_loss(z, np.eye(3)[_BAD_Y], **kw),
}


@pytest.mark.parametrize("name", list(_BAD_FNS))
def test_nan_or_pos_inf_logit_gives_nan(name):
  """A NaN or +inf in an unmasked class gives exactly NaN (zero gradient there);
  example_mask=False gives 0 and a class mask hides it."""
  fn = _BAD_FNS[name]
  where = np.array([True, False, True])

  @jax.jit
  def outputs(z, z_junk):
    """Every call of this test, one jitted program."""
    return (fn(z), jax.jacrev(fn)(z), jax.jacfwd(fn)(z),
            fn(z, example_mask=np.array([False, False, False, True])), fn(z, where=where),
            fn(z_junk, where=where))

  value, jac_rev, jac_fwd, masked_out, hidden, junk = (
      np.asarray(a) for a in outputs(jnp.asarray(_BAD_Z), np.where(where, _BAD_Z, 7.0)))
  assert np.all(np.isnan(value[:3])) and np.isfinite(value[3]), (name, value)
  for jac in (jac_rev, jac_fwd):
    assert np.all(np.isfinite(jac)) and np.all(jac[:3] == 0.0), (name, jac)
  assert np.all(masked_out[:3] == 0.0) and masked_out[3] == value[3]
  assert np.isnan(hidden[0])  # classes 0 and 2 are still NaN
  np.testing.assert_array_equal(hidden[1:], junk[1:])
  assert np.all(np.isfinite(hidden[1:]))


_SHIFT_Z = np.array([[0.0, 8.0, -16.0]] * 3, np.float32)  # exact at 1e8 in float32
_SHIFT_Y = np.array([0, 1, 2])


@pytest.mark.parametrize("name,fn", [
    ("focal gamma=0", lambda z: jaxloss.softmax_focal_loss(z, _SHIFT_Y, gamma=0.0)),
    ("focal gamma=0.5", lambda z: jaxloss.softmax_focal_loss(z, _SHIFT_Y, gamma=0.5)),
    ("focal gamma=2+alpha", lambda z: jaxloss.softmax_focal_loss(
        z, _SHIFT_Y, gamma=2.0, alpha=np.array([0.2, 0.5, 0.7], np.float32))),
    ("poly1", lambda z: jaxloss.poly1_cross_entropy(z, _SHIFT_Y, epsilon=2.0)),
])
def test_shift_invariance_at_1e8_float32(name, fn):
  """Issue 10: computed from z - max z, so a common shift of 1e8 changes no bit."""
  unshifted = assert_shift_exact(fn, _SHIFT_Z)
  if name == "poly1":  # and right (atol: lse = log(1 + e^-8) is off by ~eps in float32)
    np.testing.assert_allclose(np.asarray(unshifted, np.float64), np_softmax_family(
        _SHIFT_Z, _SHIFT_Y, kind="poly1", epsilon=2.0), rtol=1e-6, atol=2e-7)


# ---------------------------------------------------------------- bad input
def test_bad_inputs():
  # NumPy inputs: every error is raised while tracing, before anything compiles.
  z = np.zeros((4, 3))
  y = np.zeros(4, np.int32)
  t = np.zeros((4, 3))
  for fn in (jaxloss.softmax_focal_loss, jaxloss.poly1_cross_entropy):
    with pytest.raises(TypeError, match="look like one-hot"):
      fn(z, np.eye(3)[[0, 1, 2, 0]])
    with pytest.raises(ValueError, match="does not match logits shape"):
      fn(z, np.zeros(5, np.int32))
    with pytest.raises(TypeError, match="floating-point"):
      fn(np.zeros((4, 3), np.int32), y)
    with pytest.raises(ValueError, match="one per class"):
      fn(z, y, weights=np.ones(4))
    with pytest.raises(TypeError, match="boolean"):
      fn(z, y, where=np.ones((4, 3)))
    with pytest.raises(ValueError, match="per-example shape"):
      fn(z, y, example_mask=np.ones(3, bool))
    with pytest.raises(ValueError, match="axis=2 is out of range"):
      fn(z, y, axis=2)
  for bad in (-0.5, -1, float("nan")):
    with pytest.raises(ValueError, match="gamma must be >= 0"):
      jaxloss.softmax_focal_loss(z, y, gamma=bad)
    with pytest.raises(ValueError, match="gamma must be >= 0"):
      jaxloss.sigmoid_focal_loss(z, t, gamma=bad)
  with pytest.raises(ValueError, match=r"alpha must be None, a scalar or one value per class"):
    jaxloss.softmax_focal_loss(z, y, alpha=np.ones(4))
  with pytest.raises(ValueError, match="alpha must be <= 1"):
    jaxloss.sigmoid_focal_loss(z, t, alpha=1.5)
  with pytest.raises(ValueError, match="got integer labels"):
    jaxloss.sigmoid_focal_loss(z, y)
  with pytest.raises(ValueError, match="must equal logits shape"):
    jaxloss.sigmoid_focal_loss(z, np.zeros((4, 2)))
  with pytest.raises(TypeError, match="boolean"):
    jaxloss.sigmoid_focal_loss(z, t, where=np.ones((4, 3)))
  with pytest.raises(ValueError, match="scalar"):
    jaxloss.sigmoid_focal_loss(jnp.float32(0.0), t)
