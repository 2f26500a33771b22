"""Sigmoid losses vs float64 NumPy references, PyTorch, optax and fast.ai's mnist_loss."""

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
from _loss_checks import assert_masks_hide_bad_rows

# Per-loss reference tests: thorough and slow (many eager shapes compile); the quick
# check is tests/test_contract.py, which walks every loss (see the README).
pytestmark = [pytest.mark.usefixtures("x64", "jitted_public_api"), pytest.mark.slow]

# A few shapes for the whole file: each hyperparameter setting of a loss compiles
# once per shape and dtype, so tests that share a shape share programs. Checks
# made of several calls (values, Jacobians, masked variants) run as one jitted
# program each, one compile instead of one per call.
B, K = 5, 4
SHAPE3 = (3, 4, 5)  # multi-axis batches and the class-axis tests


# ---------------------------------------------------------------- references
def np_sigmoid(z):
  z = np.asarray(z, np.float64)
  with np.errstate(over="ignore"):
    return np.where(z >= 0, 1.0 / (1.0 + np.exp(-np.abs(z))),
                    np.exp(-np.abs(z)) / (1.0 + np.exp(-np.abs(z))))


def np_class_mean(elem, mask):
  if mask is None:
    return elem.mean(-1)
  count = mask.sum(-1)
  total = np.where(mask, elem, 0.0).sum(-1)
  return np.where(count > 0, total / np.maximum(count, 1), 0.0)


def np_sigmoid_difference(z, t, mask=None):
  """|sigmoid(z) - t|, mean over (unmasked) classes."""
  return np_class_mean(np.abs(np_sigmoid(z) - np.asarray(t, np.float64)), mask)


def np_bce(z, t, mask=None, pos_weight=None, weights=None):
  """pw t softplus(-z) + (1 - t) softplus(z), times w, mean over (unmasked) classes."""
  z = np.asarray(z, np.float64)
  t = np.asarray(t, np.float64)
  pw = 1.0 if pos_weight is None else pos_weight
  elem = pw * t * np.logaddexp(0.0, -z) + (1.0 - t) * np.logaddexp(0.0, z)
  if weights is not None:
    elem = elem * weights
  return np_class_mean(elem, mask)


def random_inputs(rng, shape, soft=False):
  z = rng.normal(size=shape) * 3
  if soft:
    t = rng.uniform(size=shape)
  else:
    t = (rng.random(shape) < 0.3).astype(np.float64)  # multi-hot
  return z, t


# ---------------------------------------------------------------- forward vs reference
class ReferenceTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.product(shape=[(B, K), (1, 1), SHAPE3], soft=[False, True])
  def test_sigmoid_difference(self, shape, soft):
    z, t = random_inputs(np.random.default_rng(len(shape) + shape[-1]), shape, soft)
    got = self.variant(jaxloss.sigmoid_difference)(z, t)
    chex.assert_shape(got, shape[:-1])
    chex.assert_trees_all_close(got, np_sigmoid_difference(z, t), rtol=1e-12)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(
      ((B, K), False, None, False), ((1, 1), True, "scalar", False),
      (SHAPE3, True, "class", True), ((B, K), False, "class", False),
      ((B, K), True, None, True))
  def test_bce(self, shape, soft, pw, weighted):
    rng = np.random.default_rng(shape[-1])
    z, t = random_inputs(rng, shape, soft)
    k = shape[-1]
    pos_weight = {None: None, "scalar": 2.5, "class": rng.uniform(0.2, 3.0, k)}[pw]
    w = rng.uniform(0.5, 2.0, k) if weighted else None
    got = self.variant(functools.partial(
        jaxloss.sigmoid_binary_cross_entropy, pos_weight=pos_weight, weights=w))(z, t)
    chex.assert_shape(got, shape[:-1])
    chex.assert_trees_all_close(got, np_bce(z, t, pos_weight=pos_weight, weights=w),
                                rtol=1e-12)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(0, 1, 2, -1)
  def test_axis(self, axis):
    rng = np.random.default_rng(2)
    z, t = random_inputs(rng, SHAPE3, soft=True)
    zl, tl = np.moveaxis(z, axis, -1), np.moveaxis(t, axis, -1)
    k = zl.shape[-1]
    pw = rng.uniform(0.5, 2.0, k)
    w = rng.uniform(0.5, 2.0, k)
    got = self.variant(functools.partial(jaxloss.sigmoid_difference, axis=axis))(z, t)
    chex.assert_trees_all_close(got, np_sigmoid_difference(zl, tl), rtol=1e-12)
    got = self.variant(functools.partial(
        jaxloss.sigmoid_binary_cross_entropy, axis=axis, pos_weight=pw, weights=w))(z, t)
    chex.assert_trees_all_close(got, np_bce(zl, tl, pos_weight=pw, weights=w), rtol=1e-12)

  @chex.variants(with_jit=True, without_jit=True)
  def test_where(self):
    rng = np.random.default_rng(3)
    z, t = random_inputs(rng, (B, K), soft=True)
    mask = rng.random((B, K)) < 0.6
    mask[0] = False  # a fully masked row gives 0
    mask[1] = True
    w = rng.uniform(0.5, 2.0, K)
    pw = rng.uniform(0.5, 2.0, K)
    # Masked classes may hold anything, -inf included.
    z_junk = np.where(mask, z, -np.inf)
    got = self.variant(jaxloss.sigmoid_difference)(z_junk, t, where=mask)
    chex.assert_trees_all_close(got, np_sigmoid_difference(z, t, mask), rtol=1e-12)
    self.assertEqual(float(got[0]), 0.0)
    got = self.variant(functools.partial(
        jaxloss.sigmoid_binary_cross_entropy, weights=w, pos_weight=pw))(z_junk, t, where=mask)
    chex.assert_trees_all_close(got, np_bce(z, t, mask, pw, w), rtol=1e-12)
    self.assertEqual(float(got[0]), 0.0)

  @chex.variants(with_jit=True, without_jit=True)
  def test_where_broadcasts_and_axis(self):
    rng = np.random.default_rng(4)
    z, t = random_inputs(rng, SHAPE3, soft=False)  # classes on axis 1
    mask = np.array([True, False, True, True])[:, None]  # broadcasts to SHAPE3
    full = np.broadcast_to(mask, z.shape)
    zl, tl, ml = (np.moveaxis(a, 1, -1) for a in (z, t, full))
    got = self.variant(functools.partial(jaxloss.sigmoid_binary_cross_entropy, axis=1))(
        z, t, where=mask)
    chex.assert_trees_all_close(got, np_bce(zl, tl, ml), rtol=1e-12)
    got = self.variant(functools.partial(jaxloss.sigmoid_difference, axis=1))(z, t, where=mask)
    chex.assert_trees_all_close(got, np_sigmoid_difference(zl, tl, ml), rtol=1e-12)

  @chex.variants(with_jit=True, without_jit=True)
  def test_vmap_equals_batched(self):
    z, t = random_inputs(np.random.default_rng(5), (B, K), soft=True)
    for f in (jaxloss.sigmoid_difference,
              functools.partial(jaxloss.sigmoid_binary_cross_entropy, pos_weight=2.0,
                                weights=np.arange(1.0, K + 1.0))):
      chex.assert_trees_all_close(self.variant(jax.vmap(f))(z, t), f(z, t), rtol=1e-12)

  def test_full_shape_pos_weight(self):
    rng = np.random.default_rng(6)
    z, t = random_inputs(rng, (B, K), soft=True)
    pw = rng.uniform(0.5, 2.0, (B, K))
    chex.assert_trees_all_close(
        jaxloss.sigmoid_binary_cross_entropy(z, t, pos_weight=pw), np_bce(z, t, pos_weight=pw),
        rtol=1e-12)
    # with axis=0 a [K] vector is per class, a full-shape array follows the logits' layout
    chex.assert_trees_all_close(
        jaxloss.sigmoid_binary_cross_entropy(z.T, t.T, axis=0, pos_weight=pw.T),
        np_bce(z, t, pos_weight=pw), rtol=1e-12)
    pw_k = rng.uniform(0.5, 2.0, K)
    chex.assert_trees_all_close(
        jaxloss.sigmoid_binary_cross_entropy(z.T, t.T, axis=0, pos_weight=pw_k),
        np_bce(z, t, pos_weight=pw_k), rtol=1e-12)


def test_no_retrace_for_new_values():
  @jax.jit
  @chex.assert_max_traces(n=1)
  def loss(z, t):
    return (jaxloss.sigmoid_difference(z, t) + jaxloss.sigmoid_binary_cross_entropy(z, t)).mean()

  rng = np.random.default_rng(7)
  for _ in range(3):
    z, t = random_inputs(rng, (B, K))
    loss(jnp.asarray(z), jnp.asarray(t))


# ---------------------------------------------------------------- fast.ai book, torch, optax
def test_sigmoid_difference_is_the_books_mnist_loss():
  """Howard & Gugger ch. 4: one logit per example, shapes [N, 1]."""
  rng = np.random.default_rng(8)
  z = rng.normal(size=(12, 1)) * 2
  t = (rng.random((12, 1)) < 0.5).astype(np.float64)
  sig = np_sigmoid(z)
  book = np.where(t == 1, 1 - sig, sig).mean()  # torch.where(targets==1, 1-p, p).mean()
  got = jaxloss.sigmoid_difference(z, t)
  chex.assert_shape(got, (12,))
  np.testing.assert_allclose(float(got.mean()), book, rtol=1e-12)
  # and the torch original
  p = torch.sigmoid(torch.tensor(z))
  tt = torch.tensor(t)
  np.testing.assert_allclose(float(got.mean()), torch.where(tt == 1, 1 - p, p).mean().item(),
                             rtol=1e-12)


def test_abs_form_equals_where_form_on_hard_targets():
  rng = np.random.default_rng(9)
  z, t = random_inputs(rng, (B, K))
  sig = np_sigmoid(z)
  where_form = np.where(t == 1, 1 - sig, sig).mean(-1)
  got = jaxloss.sigmoid_difference(z, t)
  np.testing.assert_allclose(np.asarray(got), where_form, rtol=1e-12)
  np.testing.assert_allclose(np.asarray(got), np.abs(sig - t).mean(-1), rtol=1e-12)


@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("use_pw,use_w", [(False, False), (True, False), (False, True),
                                          (True, True)])
def test_bce_matches_torch(soft, use_pw, use_w):
  rng = np.random.default_rng(10)
  z, t = random_inputs(rng, (B, K), soft)
  pw = rng.uniform(0.2, 3.0, K) if use_pw else None
  w = rng.uniform(0.2, 3.0, K) if use_w else None
  want = torch.nn.functional.binary_cross_entropy_with_logits(
      torch.tensor(z), torch.tensor(t),
      weight=None if w is None else torch.tensor(w),
      pos_weight=None if pw is None else torch.tensor(pw), reduction="none").mean(-1).numpy()
  got = jaxloss.sigmoid_binary_cross_entropy(z, t, pos_weight=pw, weights=w)
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-10)


def test_bce_matches_optax():
  rng = np.random.default_rng(11)
  for soft in (False, True):
    z, t = random_inputs(rng, SHAPE3, soft)
    want = optax.sigmoid_binary_cross_entropy(jnp.asarray(z), jnp.asarray(t)).mean(-1)
    chex.assert_trees_all_close(jaxloss.sigmoid_binary_cross_entropy(z, t), want, rtol=1e-12)


# ---------------------------------------------------------------- gradients
GRAD_FNS = [
    ("sigdiff", lambda z, t, m: jaxloss.sigmoid_difference(z, t)),
    ("sigdiff+where", lambda z, t, m: jaxloss.sigmoid_difference(z, t, where=m)),
    ("bce", lambda z, t, m: jaxloss.sigmoid_binary_cross_entropy(z, t)),
    ("bce+pw+w+where", lambda z, t, m: jaxloss.sigmoid_binary_cross_entropy(
        z, t, where=m, pos_weight=jnp.array([0.5, 1.0, 2.0, 3.0]),
        weights=jnp.array([1.0, 2.0, 0.5, 1.5]))),
]


@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("name,fn", GRAD_FNS)
def test_gradients(name, fn, soft):
  rng = np.random.default_rng(12)
  z, t = random_inputs(rng, (B, K), soft)
  if soft:  # keep |sigmoid(z) - t| away from its kink
    t = np.where(np.abs(np_sigmoid(z) - t) < 0.05, 1.0 - t, t)
  m = np.array([[True, False, True, True]] * B)
  check_grads(lambda z: fn(z, t, m), (z,), order=1, modes=("fwd", "rev"))


def test_sigmoid_difference_gradient_formula():
  rng = np.random.default_rng(13)
  z, t = random_inputs(rng, (B, K))
  s = np_sigmoid(z)
  want = np.where(t == 1, -1.0, 1.0) * s * (1 - s) / K
  g = jax.grad(lambda z: jaxloss.sigmoid_difference(z, t).sum())(z)
  np.testing.assert_allclose(np.asarray(g), want, rtol=1e-10, atol=1e-300)


def test_bce_gradient_is_sigmoid_minus_target():
  rng = np.random.default_rng(14)
  z, t = random_inputs(rng, (B, K), soft=True)
  g = jax.grad(lambda z: jaxloss.sigmoid_binary_cross_entropy(z, t).sum())(z)
  np.testing.assert_allclose(np.asarray(g), (np_sigmoid(z) - t) / K, rtol=1e-10, atol=1e-15)


# ---------------------------------------------------------------- numerics
EXTREME_Z = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 20.0], [30.0, -30.0, -20.0]])
EXTREME_T = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_extreme_logits(dtype):
  z = jnp.asarray(EXTREME_Z, dtype)
  cases = ((jaxloss.sigmoid_difference, np_sigmoid_difference),
           (jaxloss.sigmoid_binary_cross_entropy, np_bce),
           (functools.partial(jaxloss.sigmoid_binary_cross_entropy, pos_weight=2.0),
            functools.partial(np_bce, pos_weight=2.0)))
  # The values and gradients of the three losses, one jitted program.
  outputs = jax.jit(lambda z: [(fn(z, EXTREME_T), jax.grad(lambda z: fn(z, EXTREME_T).sum())(z))
                               for fn, _ in cases])(z)
  for (_, ref), (got, g) in zip(cases, outputs):
    np.testing.assert_allclose(np.asarray(got, np.float64), ref(EXTREME_Z, EXTREME_T),
                               rtol=1e-6)
    assert np.all(np.isfinite(np.asarray(g)))
  # saturated-but-right terms keep their tiny value (no 1 - sigmoid cancellation)
  tiny = jaxloss.sigmoid_difference(jnp.asarray([[20.0]], dtype), np.array([[1.0]]))
  np.testing.assert_allclose(float(tiny[0]), np_sigmoid(-20.0), rtol=1e-5)


NEG_INF_Z = np.array([
    [0.5, -np.inf, 1.0, -np.inf],
    [-np.inf, -np.inf, -np.inf, -np.inf],
    [2.0, np.inf, -np.inf, 0.0],
])
NEG_INF_T = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.5]])


@pytest.mark.parametrize("name,fn", [
    ("sigdiff", lambda z, where=None: jaxloss.sigmoid_difference(z, NEG_INF_T, where=where)),
    ("bce", lambda z, where=None: jaxloss.sigmoid_binary_cross_entropy(
        z, NEG_INF_T, where=where)),
    ("bce+pw+w", lambda z, where=None: jaxloss.sigmoid_binary_cross_entropy(
        z, NEG_INF_T, where=where, pos_weight=jnp.array([2.0, 0.5, 1.0, 3.0]),
        weights=jnp.array([1.0, 2.0, 3.0, 0.5]))),
])
@pytest.mark.parametrize("masked", [False, True])
def test_infinite_logits_value_grad_jacfwd_finite(name, fn, masked):
  z = jnp.asarray(NEG_INF_Z)
  where = np.isfinite(NEG_INF_Z) if masked else None
  f = functools.partial(fn, where=where)
  finite_z = np.where(np.isfinite(NEG_INF_Z), NEG_INF_Z, 0.0)
  # the value, the value at finite logits and the Jacobians, one jitted program
  value, value_finite, *jacobians = (np.asarray(a) for a in jax.jit(
      lambda z, z_finite: (f(z), f(z_finite), jax.jacrev(f)(z), jax.jacfwd(f)(z)))(z, finite_z))
  if masked:
    assert np.all(np.isfinite(value)), (name, value)
    assert float(value[1]) == 0.0
    chex.assert_trees_all_close(value, value_finite, rtol=1e-12)
  else:  # unmasked -inf with target 0 contributes exactly 0; an unmasked +inf is NaN
    assert np.all(np.isfinite(value[:2])), (name, value)
    assert float(value[1]) == 0.0
    assert np.isnan(float(value[2])), (name, value)
  for jac in jacobians:
    assert np.all(np.isfinite(np.asarray(jac))), (name, jac)
  # reference on the finite entries, with the infinite ones contributing 0
  ref = np_sigmoid_difference if name == "sigdiff" else np_bce
  if name == "bce+pw+w":
    ref = functools.partial(np_bce, pos_weight=np.array([2.0, 0.5, 1.0, 3.0]),
                            weights=np.array([1.0, 2.0, 3.0, 0.5]))
  want = ref(np.where(np.isfinite(NEG_INF_Z), NEG_INF_Z, 0.0), NEG_INF_T,
             mask=np.isfinite(NEG_INF_Z))
  if not masked:
    want = want * np.isfinite(NEG_INF_Z).sum(-1) / 4  # -inf classes count, with term 0
    want[2] = np.nan  # the +inf logit (issue 10: it used to contribute 0)
  chex.assert_trees_all_close(value, want, rtol=1e-12)


def test_neg_inf_logit_with_positive_target():
  """A -inf logit with target 1: the loss is +inf, but gradients stay NaN-free."""
  z = np.array([[-np.inf, 0.0], [1.0, 2.0]])
  t = np.array([[1.0, 0.0], [0.0, 1.0]])
  fns = (jaxloss.sigmoid_binary_cross_entropy, jaxloss.sigmoid_difference)

  @jax.jit
  def outputs(z, t):
    """Every call of this test, one jitted program."""
    return ([(fn(z, t), jax.jacrev(fn)(z, t), jax.jacfwd(fn)(z, t)) for fn in fns],
            jaxloss.sigmoid_binary_cross_entropy(z, t, pos_weight=0.0))

  ((bce, *bce_jacobians), (sd, *sd_jacobians)), bce_pw0 = outputs(z, t)
  assert np.isposinf(float(bce[0])) and np.isfinite(float(bce[1]))
  np.testing.assert_allclose(float(sd[0]), 0.75, rtol=1e-12)  # (1 + sigmoid(0)) / 2
  for jac in bce_jacobians + sd_jacobians:
    assert not np.any(np.isnan(np.asarray(jac)))
  # pos_weight 0 switches the positive part off: no inf
  assert float(bce_pw0[0]) == pytest.approx(np.log(2) / 2)


@pytest.mark.parametrize("dtype,tol", [(jnp.float16, 2e-3), (jnp.bfloat16, 2e-2)])
def test_low_precision_inputs(dtype, tol):
  """16-bit logits are upcast: the only error left is the rounding of the inputs."""
  rng = np.random.default_rng(15)
  z, t = random_inputs(rng, (B, K), soft=True)
  z_low = jnp.asarray(z, dtype)
  t_low = jnp.asarray(t, dtype)
  cases = ((jaxloss.sigmoid_difference, np_sigmoid_difference),
           (jaxloss.sigmoid_binary_cross_entropy, np_bce))
  # The values and gradients of the two losses, one jitted program.
  outputs = jax.jit(lambda z: [(fn(z, t_low), jax.grad(lambda z: fn(z, t_low).sum())(z))
                               for fn, _ in cases])(z_low)
  for (_, ref), (got, g) in zip(cases, outputs):
    assert got.dtype == jnp.float32
    rounded = ref(np.asarray(z_low, np.float64), np.asarray(t_low, np.float64))
    np.testing.assert_allclose(np.asarray(got, np.float64), rounded, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(got, np.float64), ref(z, t), rtol=tol, atol=tol)
    assert g.dtype == dtype and np.all(np.isfinite(np.asarray(g, np.float32)))


def test_output_dtypes_and_target_kinds():
  z = np.array([[0.5, -1.0, 2.0]])
  # The output dtype is fixed at trace time: eval_shape traces without compiling.
  for dtype, out in [(jnp.float16, jnp.float32), (jnp.bfloat16, jnp.float32),
                     (jnp.float32, jnp.float32), (jnp.float64, jnp.float64)]:
    for fn in (jaxloss.sigmoid_difference, jaxloss.sigmoid_binary_cross_entropy):
      assert jax.eval_shape(fn, jax.ShapeDtypeStruct(z.shape, dtype),
                            np.array([[1.0, 0.0, 0.0]])).dtype == out
  # integer and boolean multi-hot targets of the logits' shape are accepted
  for fn in (jaxloss.sigmoid_difference, jaxloss.sigmoid_binary_cross_entropy):
    want, got_int, got_bool = jax.jit(lambda z, fn=fn: (
        fn(z, np.array([[1.0, 0.0, 1.0]])), fn(z, np.array([[1, 0, 1]])),
        fn(z, np.array([[True, False, True]]))))(z)
    chex.assert_trees_all_close(got_int, want)
    chex.assert_trees_all_close(got_bool, want)


# ---------------------------------------------------------------- issue 10: NaN / +inf -> NaN
_BAD_Z = np.array([
    [np.nan, np.nan, np.nan],  # all NaN
    [1.0, np.nan, 0.0],  # one NaN class
    [1.0, np.inf, 0.0],  # +inf with target 0
    [np.inf, 0.0, 0.0],  # +inf with target 1: used to give 0 for that class
    [0.5, -np.inf, -1.0],  # -inf keeps its meaning: probability 0, a value
])
_BAD_T = np.array([[1.0, 0.0, 0.0]] * 5)


@pytest.mark.parametrize("name,fn", [
    ("sigdiff", lambda z, **kw: jaxloss.sigmoid_difference(z, _BAD_T, **kw)),
    ("bce", lambda z, **kw: jaxloss.sigmoid_binary_cross_entropy(z, _BAD_T, **kw)),
    ("bce+pw+w", lambda z, **kw: jaxloss.sigmoid_binary_cross_entropy(
        z, _BAD_T, pos_weight=jnp.array([2.0, 0.5, 1.0]), weights=jnp.array([1.0, 2.0, 3.0]),
        **kw)),
])
def test_nan_or_pos_inf_logit_gives_nan(name, fn):
  """Issue 10: a NaN or +inf in an unmasked class makes the example's loss exactly NaN
  (zero gradient there); -inf stays a value; example_mask=False gives 0."""
  z = jnp.asarray(_BAD_Z)
  # value and Jacobians, one jitted program
  value, *jacobians = (np.asarray(a) for a in jax.jit(
      lambda z: (fn(z), jax.jacrev(fn)(z), jax.jacfwd(fn)(z)))(z))
  assert np.all(np.isnan(value[:4])), (name, value)
  assert np.isfinite(value[4])  # -inf with target 0 contributes 0
  ref = np_sigmoid_difference if name == "sigdiff" else np_bce
  if name == "bce+pw+w":
    ref = functools.partial(np_bce, pos_weight=np.array([2.0, 0.5, 1.0]),
                            weights=np.array([1.0, 2.0, 3.0]))
  want = ref(np.array([[0.5, 0.0, -1.0]]), _BAD_T[:1], mask=np.array([[True, False, True]]))
  np.testing.assert_allclose(value[4], want[0] * 2 / 3, rtol=1e-12)
  for jac in jacobians:
    assert np.all(np.isfinite(jac)) and np.all(jac[:4] == 0.0), (name, jac)
  assert_masks_hide_bad_rows(fn, _BAD_Z, value, num_bad=4)


# ---------------------------------------------------------------- properties (hypothesis)
@hypothesis.given(
    z=hnp.arrays(np.float64, st.sampled_from([(1, 1), (B, K)]),  # the file's shapes: few compiles
                 elements=st.floats(-50, 50, allow_nan=False, allow_subnormal=False)),
    data=st.data())
def test_properties(z, data):
  t_hard = np.asarray(data.draw(hnp.arrays(np.float64, z.shape, elements=st.sampled_from(
      [0.0, 1.0]))))
  t_soft = np.asarray(data.draw(hnp.arrays(
      np.float64, z.shape, elements=st.floats(0, 1, allow_subnormal=False))))
  for t in (t_hard, t_soft):
    sd = np.asarray(jaxloss.sigmoid_difference(z, t))
    bce = np.asarray(jaxloss.sigmoid_binary_cross_entropy(z, t))
    assert np.all((sd >= 0) & (sd <= 1))
    assert np.all(bce >= 0)
    np.testing.assert_allclose(sd, np_sigmoid_difference(z, t), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(bce, np_bce(z, t), rtol=1e-9, atol=1e-12)
  # on hard targets each BCE term is -log(1 - |sigmoid(z) - t|) >= |sigmoid(z) - t|
  sd = np.asarray(jaxloss.sigmoid_difference(z, t_hard))
  bce = np.asarray(jaxloss.sigmoid_binary_cross_entropy(z, t_hard))
  assert np.all(bce >= sd - 1e-12)
  # pos_weight = 1 and weights = 1 change nothing
  k = z.shape[-1]
  chex.assert_trees_all_close(
      jaxloss.sigmoid_binary_cross_entropy(z, t_soft, pos_weight=1.0, weights=np.ones(k)),
      jaxloss.sigmoid_binary_cross_entropy(z, t_soft), rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("fn", [jaxloss.sigmoid_difference,
                                jaxloss.sigmoid_binary_cross_entropy])
def test_bad_inputs(fn):
  # NumPy inputs: every error is raised while tracing, before anything compiles.
  z = np.zeros((4, 3))
  with pytest.raises(ValueError, match="got integer labels"):
    fn(z, np.zeros(4, np.int32))
  with pytest.raises(ValueError, match="must equal logits shape"):
    fn(z, np.zeros((4, 4)))
  with pytest.raises(TypeError, match="floating-point"):
    fn(np.zeros((4, 3), np.int32), z)
  with pytest.raises(ValueError, match="scalar"):
    fn(jnp.float32(1.0), jnp.float32(1.0))
  with pytest.raises(TypeError, match="boolean"):
    fn(z, z, where=np.ones((4, 3)))
  with pytest.raises(ValueError, match="does not broadcast"):
    fn(z, z, where=np.ones((2, 3), bool))
  with pytest.raises(ValueError, match="axis=2 is out of range"):
    fn(z, z, axis=2)


def test_bad_bce_weights():
  z = np.zeros((4, 3))
  with pytest.raises(ValueError, match="one per class"):
    jaxloss.sigmoid_binary_cross_entropy(z, z, weights=np.ones(4))
  with pytest.raises(ValueError, match="pos_weight must be a scalar"):
    jaxloss.sigmoid_binary_cross_entropy(z, z, pos_weight=np.ones(4))


@pytest.mark.parametrize("t", [0.0, 0.3, 1.0])
def test_bce_gradient_at_zero_logit_is_sigmoid_minus_target(t):
  # JAX differentiates maximum(z, 0) as 1/2 but abs(z) as 1 at z = 0; a loss built
  # from both gets -t there instead of sigmoid(0) - t (found by experiments.gradients).
  def f(z):
    return jaxloss.sigmoid_binary_cross_entropy(z[None, None], jnp.array([[t]]))[0]

  def f_pw(z):
    return jaxloss.sigmoid_binary_cross_entropy(
        z[None, None], jnp.array([[t]]), pos_weight=jnp.array([2.0]))[0]

  # the three derivatives, one jitted program
  grad, jacfwd, grad_pw = jax.jit(lambda z: (jax.grad(f)(z), jax.jacfwd(f)(z),
                                             jax.grad(f_pw)(z)))(jnp.float64(0.0))
  np.testing.assert_allclose(grad, 0.5 - t, atol=1e-12)
  np.testing.assert_allclose(jacfwd, 0.5 - t, atol=1e-12)
  np.testing.assert_allclose(grad_pw, 0.5 * (1 - t) - 2.0 * t * 0.5, atol=1e-12)
