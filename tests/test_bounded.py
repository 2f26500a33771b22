"""The two losses of issue #13 vs float64 NumPy references: softmax_absolute_error and
balanced_sigmoid_difference (bounded losses that tell apart why sigmoid-difference collapses).

Few shapes on purpose (each new one compiles): [4, 5] for the references and gradients,
[5, 3] for non-finite rows, [6, 1] for the book's single logit. The contract (jit, vmap,
16-bit inputs, shift invariance, -inf, axis, retrace, trace-time errors) is checked over
every loss in tests/test_contract.py.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss
from _loss_checks import assert_masks_hide_bad_rows

pytestmark = [pytest.mark.usefixtures("x64", "jitted_public_api"), pytest.mark.slow]

B, K = 4, 5


# ---------------------------------------------------------------- references (float64 NumPy)
def np_softmax(z, live):
  """Softmax over the live classes (0 elsewhere); all zeros in a row with none live."""
  z = np.where(live, np.asarray(z, np.float64), -np.inf)
  m = np.max(z, axis=-1, keepdims=True)
  e = np.exp(z - np.where(np.isfinite(m), m, 0.0))
  total = e.sum(-1, keepdims=True)
  return e / np.where(total > 0, total, 1.0)


def np_sigmoid(z):
  z = np.asarray(z, np.float64)
  with np.errstate(over="ignore"):
    return 1.0 / (1.0 + np.exp(-z))


def _live(z, mask):
  live = np.isfinite(np.asarray(z, np.float64))
  return live if mask is None else live & mask


def np_mae(z, y, mask=None):
  """1 - p_y, p the softmax over the live classes (p_y = 0 for a masked label); dead rows 0."""
  live = _live(z, mask)
  p = np_softmax(z, live)
  p_y = np.take_along_axis(p, np.asarray(y)[..., None], -1)[..., 0]
  return np.where(live.any(-1), 1.0 - p_y, 0.0)


def np_mae_targets(z, t, mask=None):
  """1 - sum over the live classes of t p."""
  live = _live(z, mask)
  p = np_softmax(z, live)
  t = np.where(mask if mask is not None else True, np.asarray(t, np.float64), 0.0)
  return np.where(live.any(-1), 1.0 - (t * p).sum(-1), 0.0)


def np_balanced(z, t, mask=None):
  """(mean of 1 - s over positives + mean of s over negatives) / (number of non-empty groups)."""
  s = np_sigmoid(z)
  unmasked = np.ones(s.shape, bool) if mask is None else mask
  pos = np.where(unmasked, np.asarray(t, np.float64), 0.0)
  neg = np.where(unmasked, 1.0 - np.asarray(t, np.float64), 0.0)
  n_pos, n_neg = pos.sum(-1), neg.sum(-1)
  with np.errstate(invalid="ignore", divide="ignore"):
    pos_mean = np.where(n_pos > 0, (pos * (1.0 - s)).sum(-1) / n_pos, 0.0)
    neg_mean = np.where(n_neg > 0, (neg * s).sum(-1) / n_neg, 0.0)
  groups = (n_pos > 0) * 1.0 + (n_neg > 0) * 1.0
  return np.where(groups > 0, (pos_mean + neg_mean) / np.maximum(groups, 1.0), 0.0)


def np_balanced_grad(z, t, mask=None):
  """d loss / dz: -t s' / (G P) on the positive part, (1 - t) s' / (G N) on the negative."""
  s = np_sigmoid(z)
  ds = s * (1.0 - s)
  unmasked = np.ones(s.shape, bool) if mask is None else mask
  pos = np.where(unmasked, t, 0.0)
  neg = np.where(unmasked, 1.0 - t, 0.0)
  n_pos, n_neg = pos.sum(-1, keepdims=True), neg.sum(-1, keepdims=True)
  groups = (n_pos > 0) * 1.0 + (n_neg > 0) * 1.0
  g = (-pos * ds / np.maximum(n_pos, 1e-300) + neg * ds / np.maximum(n_neg, 1e-300))
  return np.where(groups > 0, g / np.maximum(groups, 1.0), 0.0)


def _inputs(seed=0):
  rng = np.random.default_rng(seed)
  z = 2.0 * rng.standard_normal((B, K))
  y = rng.integers(0, K, B)
  return z, y


def _mask(y):
  """Row 0: a non-label class masked; row 1: the label masked; row 2 fully masked."""
  mask = np.ones((B, K), bool)
  mask[0, (y[0] + 1) % K] = False
  mask[1, y[1]] = False
  mask[2] = False
  return mask


# ---------------------------------------------------------------- softmax_absolute_error
def test_mae_values_masks_and_half_l1():
  z, y = _inputs(1)
  mask = _mask(y)
  junk = np.where(mask, z, np.nan)  # anything may stand behind the class mask
  bad_y = y.copy()
  bad_y[3] = K  # out of range
  keep = np.arange(B) != 3
  mae = jaxloss.softmax_absolute_error
  got, masked, kept, unkept = (np.asarray(v) for v in jax.jit(lambda z, junk, y, bad_y: (
      mae(z, y), mae(junk, y, where=mask), mae(z, bad_y, example_mask=keep), mae(z, bad_y)))(
          z, junk, y, bad_y))
  np.testing.assert_allclose(got, np_mae(z, y), rtol=1e-12)
  # half the L1 distance between softmax(z) and the one-hot label (Ghosh et al.'s MAE / 2)
  half_l1 = 0.5 * np.abs(np_softmax(z, np.ones_like(z, bool)) - np.eye(K)[y]).sum(-1)
  np.testing.assert_allclose(got, half_l1, rtol=1e-12)
  assert np.all((got >= 0) & (got <= 1))
  # a masked label has probability 0 -> 1; a fully masked row -> 0
  np.testing.assert_allclose(masked, np_mae(z, y, mask), rtol=1e-12)
  assert abs(masked[1] - 1.0) < 1e-15 and masked[2] == 0.0
  # example_mask: 0 there, and the out-of-range label behind it is never read
  np.testing.assert_allclose(kept, np.where(keep, np_mae(z, y), 0.0), rtol=1e-12)
  assert np.isnan(unkept[3]) and np.all(np.isfinite(unkept[:3]))


def test_mae_probability_targets():
  z, y = _inputs(2)
  onehot = np.eye(K)[y]
  np.testing.assert_allclose(np.asarray(jaxloss.softmax_absolute_error(z, onehot)),
                             np.asarray(jaxloss.softmax_absolute_error(z, y)), rtol=1e-14)
  rng = np.random.default_rng(3)
  t = rng.dirichlet(np.ones(K), B)
  mask = _mask(y)
  for m in (None, mask):
    got = jaxloss.softmax_absolute_error(z, t, where=m)
    np.testing.assert_allclose(np.asarray(got), np_mae_targets(z, t, m), rtol=1e-12)
  # integer and boolean multi-hot targets of the logits' shape are targets, not labels
  multi = np.zeros((B, K), np.int32)
  multi[:, :2] = 1
  np.testing.assert_allclose(np.asarray(jaxloss.softmax_absolute_error(z, multi.astype(bool))),
                             np_mae_targets(z, multi), rtol=1e-12)


def test_mae_gradients():
  """d(1 - p_y)/dz = p_y (p - e_y); d(1 - sum t p)/dz_c = p_c (sum_k t_k p_k - t_c)."""
  z, y = _inputs(4)
  mask = _mask(y)  # row 1: the label is masked, the loss is the constant 1 (gradient 0)
  t = np.random.default_rng(5).dirichlet(np.ones(K), B)
  p = np_softmax(z, mask)
  p_y = np.take_along_axis(p, y[:, None], -1)
  want_labels = p_y * (p - np.eye(K)[y])
  want_targets = p * ((t * p).sum(-1, keepdims=True) - t)
  g_labels, g_targets = jax.jit(lambda z: [
      jax.grad(lambda z: jaxloss.softmax_absolute_error(z, second, where=mask).sum())(z)
      for second in (y, t)])(z)
  np.testing.assert_allclose(np.asarray(g_labels), want_labels, rtol=1e-10, atol=1e-15)
  np.testing.assert_allclose(np.asarray(g_targets), want_targets, rtol=1e-10, atol=1e-15)


def test_mae_is_shift_exact_and_keeps_small_values():
  """A common shift of 1e8 (float32, exact inputs) changes no bit of the value and gradient."""
  z0 = jnp.array([[0.0, 8.0, -16.0, 24.0, 8.0]] * 3, jnp.float32)
  z1 = z0 + jnp.float32(1e8)
  np.testing.assert_array_equal(np.asarray(z1 - jnp.float32(1e8)), np.asarray(z0))
  y = np.array([3, 1, 0])
  value_and_grad = jax.jit(jax.value_and_grad(
      lambda z: jnp.sum(jaxloss.softmax_absolute_error(z, y) * jnp.arange(1, 4, dtype=z.dtype))))
  (v0, g0), (v1, g1) = value_and_grad(z0), value_and_grad(z1)
  assert v0.dtype == g0.dtype == jnp.float32 and 0.0 < float(v0) < 6.0
  np.testing.assert_array_equal(np.asarray(v1), np.asarray(v0))
  np.testing.assert_array_equal(np.asarray(g1), np.asarray(g0))
  # 1 - p_y at p_y near 1 (float32: 1 - p_y would round to 0)
  z = jnp.array([[20.0, 0.0, 0.0]], jnp.float32)
  got = float(jaxloss.softmax_absolute_error(z, jnp.array([0]))[0])
  np.testing.assert_allclose(got, 2 * np.exp(-20.0) / (1 + 2 * np.exp(-20.0)), rtol=1e-5)


# ---------------------------------------------------------------- balanced_sigmoid_difference
def test_balanced_values_and_masks():
  rng = np.random.default_rng(6)
  z = 3.0 * rng.standard_normal((B, K))
  multi = (rng.random((B, K)) < 0.4).astype(np.float64)
  multi[:, 0], multi[:, 1] = 1.0, 0.0  # both groups in every row
  soft = rng.random((B, K))
  for t in (multi, soft):
    got = np.asarray(jaxloss.balanced_sigmoid_difference(z, t))
    np.testing.assert_allclose(got, np_balanced(z, t), rtol=1e-12)
    assert np.all((got >= 0) & (got <= 1))
  # equal group sizes: the plain sigmoid difference
  half = np.tile([1.0, 0.0, 1.0, 0.0, 0.0], (B, 1))
  mask = np.tile([True, True, True, True, False], (B, 1))
  np.testing.assert_allclose(
      np.asarray(jaxloss.balanced_sigmoid_difference(z, half, where=mask)),
      np.asarray(jaxloss.sigmoid_difference(z, half, where=mask)), rtol=1e-12)
  # class mask (junk behind it), example_mask
  mask = rng.random((B, K)) < 0.7
  mask[0] = False  # fully masked row -> 0
  junk = np.where(mask, z, np.nan)
  got = np.asarray(jaxloss.balanced_sigmoid_difference(junk, multi, where=mask))
  np.testing.assert_allclose(got, np_balanced(z, multi, mask), rtol=1e-12)
  assert got[0] == 0.0
  keep = np.arange(B) != 2
  got = np.asarray(jaxloss.balanced_sigmoid_difference(z, soft, example_mask=keep))
  np.testing.assert_allclose(got, np.where(keep, np_balanced(z, soft), 0.0), rtol=1e-12)


def test_balanced_saying_no_to_everything_costs_one_half():
  """Issue #13: on one-hot targets "no" everywhere costs 1/K in sigmoid_difference, 1/2 here."""
  y = np.array([0, 1, 2, 3])
  onehot = np.eye(K)[y]
  no = np.full((B, K), -30.0)
  np.testing.assert_allclose(np.asarray(jaxloss.sigmoid_difference(no, onehot)), 1 / K,
                             rtol=1e-9)
  np.testing.assert_allclose(np.asarray(jaxloss.balanced_sigmoid_difference(no, onehot)), 0.5,
                             rtol=1e-9)
  right = np.where(onehot == 1, 30.0, -30.0)
  assert np.all(np.asarray(jaxloss.balanced_sigmoid_difference(right, onehot)) < 1e-12)


def test_balanced_rows_without_positives_or_negatives():
  """An empty group takes no part; the other has weight 1. Value, grad and jacfwd NaN-free."""
  rng = np.random.default_rng(7)
  z = 2.0 * rng.standard_normal((B, K))
  t = np.zeros((B, K))
  t[1] = 1.0  # row 0: no positive; row 1: no negative
  t[2, 0] = t[3, 4] = 1.0
  mask = np.ones((B, K), bool)
  mask[2, 0] = False  # row 2: its only positive masked -> no positive left
  mask[3] = False  # row 3: nothing left -> 0
  fn = lambda z: jaxloss.balanced_sigmoid_difference(z, t, where=mask)
  got, jac, g, plain = jax.jit(lambda z: (  # one program: each new one compiles
      fn(z), jax.jacfwd(fn)(z), jax.grad(lambda z: fn(z).sum())(z),
      jaxloss.sigmoid_difference(z, t)))(z)
  got = np.asarray(got)
  s = np_sigmoid(z)
  np.testing.assert_allclose(got[:3], [s[0].mean(), (1 - s[1]).mean(), s[2, 1:].mean()],
                             rtol=1e-12)
  assert got[3] == 0.0
  np.testing.assert_allclose(got, np_balanced(z, t, mask), rtol=1e-12)
  np.testing.assert_allclose(got[:2], np.asarray(plain)[:2], rtol=1e-12)
  assert np.all(np.isfinite(np.asarray(jac)))
  np.testing.assert_allclose(np.asarray(g), np_balanced_grad(z, t, mask), rtol=1e-10,
                             atol=1e-15)
  assert np.all(np.asarray(g)[3] == 0.0)
  # the book's single logit [N, 1]: every row has one group only -> sigmoid_difference
  z1 = rng.standard_normal((6, 1))
  t1 = np.array([[1.0], [0.0], [1.0], [0.0], [0.0], [1.0]])
  balanced, plain = jax.jit(lambda z: (jaxloss.balanced_sigmoid_difference(z, t1),
                                        jaxloss.sigmoid_difference(z, t1)))(z1)
  np.testing.assert_allclose(np.asarray(balanced), np.asarray(plain), rtol=1e-12)


def test_balanced_gradients():
  rng = np.random.default_rng(8)
  z = 2.0 * rng.standard_normal((B, K))
  multi = (rng.random((B, K)) < 0.4).astype(np.float64)
  multi[:, 0], multi[:, 1] = 1.0, 0.0
  soft = rng.random((B, K))
  grads = jax.jit(lambda z: [
      jax.grad(lambda z: jaxloss.balanced_sigmoid_difference(z, t).sum())(z)
      for t in (multi, soft)])(z)
  for g, t in zip(grads, (multi, soft)):
    np.testing.assert_allclose(np.asarray(g), np_balanced_grad(z, t), rtol=1e-10, atol=1e-15)


def test_balanced_minus_inf_is_the_limit():
  z, _ = _inputs(9)
  t = np.zeros((B, K))
  t[:, 0] = 1.0
  z_inf = z.copy()
  z_inf[:, 0] = -np.inf  # positive class at -inf: term 1
  z_inf[:, 1] = -np.inf  # negative class at -inf: term 0
  far = np.where(np.isinf(z_inf), -1e30, z_inf)
  fn = functools.partial(jaxloss.balanced_sigmoid_difference, targets=t)
  at_inf, at_far, *jacs = jax.jit(lambda a, b: (
      fn(a), fn(b), jax.jacrev(fn)(a), jax.jacfwd(fn)(a)))(z_inf, far)
  np.testing.assert_allclose(np.asarray(at_inf), np_balanced(far, t), rtol=1e-12)
  np.testing.assert_allclose(np.asarray(at_inf), np.asarray(at_far), rtol=1e-12)
  for jac in jacs:
    assert np.all(np.isfinite(np.asarray(jac)))


# ---------------------------------------------------------------- both: NaN, errors, checked
_BAD_Z = np.array([
    [np.nan, np.nan, np.nan],  # all NaN
    [1.0, np.nan, 0.0],  # NaN in class 1
    [1.0, np.inf, 0.0],  # +inf in class 1
    [np.inf, 0.0, 0.0],  # +inf in class 0
    [0.5, -np.inf, -1.0],  # -inf: a value (or a masked class), never NaN
])
_BAD_Y = np.zeros(5, np.int32)


@pytest.mark.parametrize("name", ["softmax_absolute_error", "balanced_sigmoid_difference"])
def test_nan_or_plus_inf_gives_nan_for_that_example(name):
  if name == "softmax_absolute_error":
    fn = lambda z, **kw: jaxloss.softmax_absolute_error(z, _BAD_Y, **kw)
    clean = np_mae(_BAD_Z[4:], _BAD_Y[4:])  # -inf: a masked class
  else:
    fn = lambda z, **kw: jaxloss.balanced_sigmoid_difference(z, np.eye(3)[_BAD_Y], **kw)
    clean = np_balanced(np.where(np.isinf(_BAD_Z[4:]), -1e30, _BAD_Z[4:]), np.eye(3)[[0]])
  value, jac = jax.jit(lambda z: (fn(z), jax.jacrev(fn)(z)))(jnp.asarray(_BAD_Z))
  value, jac = np.asarray(value), np.asarray(jac)
  assert np.all(np.isnan(value[:4])), value
  np.testing.assert_allclose(value[4:], clean, rtol=1e-12)
  assert np.all(np.isfinite(jac)) and np.all(jac[:4] == 0.0)
  assert_masks_hide_bad_rows(fn, _BAD_Z, value, num_bad=4)


def test_bad_inputs():
  z, y = jnp.zeros((B, K)), jnp.zeros(B, jnp.int32)
  mae, bal = jaxloss.softmax_absolute_error, jaxloss.balanced_sigmoid_difference
  with pytest.raises(ValueError, match="does not match logits shape"):
    mae(z, jnp.zeros(B + 1, jnp.int32))
  with pytest.raises(ValueError, match="must equal logits shape .* in softmax_absolute_error"):
    mae(z, jnp.zeros(B))  # float labels: neither labels nor targets
  with pytest.raises(ValueError, match="in balanced_sigmoid_difference, got integer labels"):
    bal(z, y)
  with pytest.raises(ValueError, match="must equal logits shape"):
    bal(z, jnp.zeros((B, K + 1)))
  for fn, second in ((mae, y), (bal, jnp.zeros((B, K)))):
    with pytest.raises(TypeError, match="floating-point"):
      fn(jnp.zeros((B, K), jnp.int32), second)
    with pytest.raises(TypeError, match="where must be a boolean"):
      fn(z, second, where=jnp.ones((B, K)))
    with pytest.raises(TypeError, match="example_mask must be boolean"):
      fn(z, second, example_mask=jnp.ones(B))
    with pytest.raises(TypeError):
      fn(z, second, weights=jnp.ones(K))  # no per-class weights on these two


def test_checked_and_registry():
  z, y = _inputs(10)
  err, _ = jax.jit(jaxloss.checked(jaxloss.softmax_absolute_error))(
      z, np.where(np.arange(B) == 1, K, y))
  assert err.get().startswith(f"softmax_absolute_error: labels must be in [0, {K})")
  pm1 = 2.0 * np.eye(K)[y] - 1.0
  err, _ = jax.jit(jaxloss.checked(jaxloss.balanced_sigmoid_difference))(z, pm1)
  assert err.get().startswith("balanced_sigmoid_difference: targets must be in [0, 1]")
  mae, balanced = jaxloss.get("mae"), jaxloss.get("balanced_sigmoid_difference")
  assert (mae.name, mae.function, mae.target_kind, mae.activation) == (
      "softmax_absolute_error", "softmax_absolute_error", "integer", "softmax")
  assert (balanced.name, balanced.target_kind, balanced.activation) == (
      "balanced_sigmoid_difference", "one_hot", "sigmoid")
  means = jax.jit(lambda z, y: [spec.loss_from_labels(z, y) for spec in (mae, balanced)])(z, y)
  np.testing.assert_allclose(np.asarray(means),
                             [np.mean(np_mae(z, y)), np.mean(np_balanced(z, np.eye(K)[y]))],
                             rtol=1e-12)
