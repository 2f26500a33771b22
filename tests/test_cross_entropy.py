"""Cross-entropy family vs float64 NumPy references, PyTorch, and its identities."""

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
from jaxloss._src import numerics

# Per-loss reference tests: thorough and slow (many eager shapes compile); the quick
# check is tests/test_contract.py, which walks every loss (see the README).
pytestmark = [pytest.mark.usefixtures("x64", "jitted_public_api"), pytest.mark.slow]

# One shape for the random inputs of the whole file: each public loss compiles
# once per (hyperparameters, shape, dtype), so tests that share the shape share
# programs. Checks made of several calls (values, Jacobians, masked variants) run
# as one jitted program each, one compile instead of one per call.
B, K = 6, 4


# ---------------------------------------------------------------- references
def np_log_softmax(z, mask=None):
  """Float64 log-softmax over the last axis; masked classes -> -inf."""
  z = np.asarray(z, np.float64)
  if mask is not None:
    z = np.where(mask, z, -np.inf)
  m = np.max(z, axis=-1, keepdims=True)
  m = np.where(np.isfinite(m), m, 0.0)
  with np.errstate(divide="ignore", invalid="ignore"):
    lse = m + np.log(np.sum(np.exp(z - m), axis=-1, keepdims=True))
    return z - lse  # -inf - -inf = nan on fully masked rows; callers drop them


def np_ce_targets(z, t, mask=None, w=None):
  lp = np_log_softmax(z, mask)
  t = np.asarray(t, np.float64)
  if w is not None:
    t = t * w
  if mask is not None:
    t = np.where(mask, t, 0.0)
  terms = np.where(t != 0, t * np.where(t != 0, lp, 0.0), 0.0)
  loss = -terms.sum(-1)
  if mask is not None:
    loss = np.where(mask.any(-1), loss, 0.0)
  return loss


def np_ce_labels(z, y, mask=None, w=None, keep=None):
  lp = np_log_softmax(z, mask)
  y_safe = np.where(keep, y, 0) if keep is not None else y
  loss = -np.take_along_axis(lp, y_safe[..., None], -1)[..., 0]
  if w is not None:
    loss = loss * w[y_safe]
  if mask is not None:
    loss = np.where(mask.any(-1), loss, 0.0)
  if keep is not None:
    loss = np.where(keep, loss, 0.0)
  return loss


def np_smoothed_ce(z, y, alpha, w=None):
  k = z.shape[-1]
  t = (1 - alpha) * np.eye(k)[y] + alpha / k
  return np_ce_targets(z, t, w=w)


def random_inputs(rng, shape, num_classes):
  z = rng.normal(size=shape + (num_classes,)) * 3
  y = rng.integers(0, num_classes, size=shape)
  return z, y


# ---------------------------------------------------------------- forward vs reference
class ReferenceTest(parameterized.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters((B, K), (1, 2))
  def test_integer_labels(self, batch, k):
    rng = np.random.default_rng(batch * k)
    z, y = random_inputs(rng, (batch,), k)
    got = self.variant(jaxloss.softmax_cross_entropy_with_integer_labels)(z, y)
    chex.assert_trees_all_close(got, np_ce_labels(z, y), rtol=1e-12)
    chex.assert_shape(got, (batch,))

  @chex.variants(with_jit=True, without_jit=True)
  def test_targets_soft(self):
    rng = np.random.default_rng(1)
    z = rng.normal(size=(B, K))
    t = rng.dirichlet(np.ones(K), size=B)
    got = self.variant(jaxloss.softmax_cross_entropy)(z, t)
    chex.assert_trees_all_close(got, np_ce_targets(z, t), rtol=1e-12)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(0, 1, 2, -1)
  def test_axis(self, axis):
    rng = np.random.default_rng(2)
    z = rng.normal(size=(3, 4, 5))
    y_shape = list(z.shape)
    k = y_shape.pop(axis)
    y = rng.integers(0, k, size=y_shape)
    got = self.variant(functools.partial(
        jaxloss.softmax_cross_entropy_with_integer_labels, axis=axis))(z, y)
    want = np_ce_labels(np.moveaxis(z, axis, -1), y)
    chex.assert_trees_all_close(got, want, rtol=1e-12)
    t = np.moveaxis(np.eye(k)[y], -1, axis)
    got_t = self.variant(functools.partial(jaxloss.softmax_cross_entropy, axis=axis))(z, t)
    chex.assert_trees_all_close(got_t, want, rtol=1e-12)

  @chex.variants(with_jit=True, without_jit=True)
  def test_where_and_weights(self):
    rng = np.random.default_rng(3)
    z, y = random_inputs(rng, (B,), K)
    mask = rng.random((B, K)) < 0.7
    mask[np.arange(B), y] = True
    mask[0] = False  # a fully masked row gives 0
    w = rng.uniform(0.5, 2.0, K)
    keep = rng.random(B) < 0.8
    got = self.variant(functools.partial(
        jaxloss.softmax_cross_entropy_with_integer_labels, weights=w))(
            z, y, where=mask, example_mask=keep)
    chex.assert_trees_all_close(got, np_ce_labels(z, y, mask, w, keep), rtol=1e-12)
    self.assertEqual(float(got[0]), 0.0)
    got_t = self.variant(jaxloss.softmax_cross_entropy)(z, np.eye(K)[y], where=mask, weights=w)
    chex.assert_trees_all_close(got_t, np_ce_targets(z, np.eye(K)[y], mask, w), rtol=1e-12)

  @chex.variants(with_jit=True, without_jit=True)
  def test_nll_loss(self):
    rng = np.random.default_rng(4)
    z, y = random_inputs(rng, (B,), K)
    lp = np_log_softmax(z)
    got = self.variant(jaxloss.nll_loss)(lp, y)
    chex.assert_trees_all_close(got, -lp[np.arange(B), y], rtol=1e-12)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(0.0, 0.1, 0.5, 1.0)
  def test_label_smoothing(self, alpha):
    rng = np.random.default_rng(5)
    z, y = random_inputs(rng, (B,), K)
    w = rng.uniform(0.5, 2.0, K)
    f = self.variant(functools.partial(jaxloss.label_smoothing_cross_entropy, alpha=alpha))
    chex.assert_trees_all_close(f(z, y), np_smoothed_ce(z, y, alpha), rtol=1e-12)
    chex.assert_trees_all_close(f(z, np.eye(K)[y]), np_smoothed_ce(z, y, alpha), rtol=1e-12)
    chex.assert_trees_all_close(f(z, y, weights=w), np_smoothed_ce(z, y, alpha, w), rtol=1e-12)

  def test_smooth_labels(self):
    t = np.eye(4)[[1, 3]]
    got = jaxloss.smooth_labels(t, alpha=0.2)
    chex.assert_trees_all_close(got, 0.8 * t + 0.05)
    got_axis0 = jaxloss.smooth_labels(t.T, alpha=0.2, axis=0)
    chex.assert_trees_all_close(got_axis0, (0.8 * t + 0.05).T)
    got_mask = jaxloss.smooth_labels(t, alpha=0.2, where=np.array([True, True, False, True]))
    chex.assert_trees_all_close(got_mask.sum(-1), np.ones(2))
    self.assertEqual(float(got_mask[0, 2]), 0.0)
    with self.assertRaises(TypeError):  # alpha is keyword-only
      jaxloss.smooth_labels(t, 0.2)  # pylint: disable=too-many-function-args


# ---------------------------------------------------------------- PyTorch parity
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 0.3])
@pytest.mark.parametrize("use_weights", [False, True])
@pytest.mark.parametrize("ignore", [False, True])
def test_cross_entropy_matches_torch(reduction, label_smoothing, use_weights, ignore):
  rng = np.random.default_rng(6)
  z, y = random_inputs(rng, (11,), 7)
  if ignore:
    y[[2, 5, 9]] = -100
  w = rng.uniform(0.2, 3.0, 7) if use_weights else None
  want = torch.nn.functional.cross_entropy(
      torch.tensor(z), torch.tensor(y), weight=None if w is None else torch.tensor(w),
      ignore_index=-100, label_smoothing=label_smoothing, reduction=reduction).numpy()
  got = jaxloss.cross_entropy(
      z, y, weights=w, ignore_index=-100 if ignore else None,
      label_smoothing=label_smoothing, reduction=reduction)
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_cross_entropy_spatial_layout_matches_torch(label_smoothing):
  """[N, C, H] logits with classes on axis 1, as PyTorch lays them out."""
  rng = np.random.default_rng(7)
  z = rng.normal(size=(3, 5, 4))
  y = rng.integers(0, 5, size=(3, 4))
  y[0, 1] = 3
  want = torch.nn.functional.cross_entropy(
      torch.tensor(z), torch.tensor(y), ignore_index=3, label_smoothing=label_smoothing)
  got = jaxloss.cross_entropy(z, y, axis=1, ignore_index=3, label_smoothing=label_smoothing)
  np.testing.assert_allclose(np.asarray(got), want.numpy(), rtol=1e-10)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.25])
def test_cross_entropy_probability_targets_match_torch(label_smoothing):
  rng = np.random.default_rng(8)
  z = rng.normal(size=(6, 4))
  t = rng.dirichlet(np.ones(4), size=6)
  w = rng.uniform(0.5, 2.0, 4)
  for reduction in ("mean", "sum", "none"):
    want = torch.nn.functional.cross_entropy(
        torch.tensor(z), torch.tensor(t), weight=torch.tensor(w),
        label_smoothing=label_smoothing, reduction=reduction).numpy()
    got = jaxloss.cross_entropy(z, t, weights=w, label_smoothing=label_smoothing,
                                reduction=reduction)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-10)


def test_nll_loss_matches_torch():
  rng = np.random.default_rng(9)
  z, y = random_inputs(rng, (8,), 5)
  w = rng.uniform(0.5, 2.0, 5)
  lp = torch.log_softmax(torch.tensor(z), -1)
  want = torch.nn.functional.nll_loss(lp, torch.tensor(y), weight=torch.tensor(w),
                                      reduction="none").numpy()
  np.testing.assert_allclose(np.asarray(jaxloss.nll_loss(lp.numpy(), y, weights=w)), want,
                             rtol=1e-12)


def test_all_ignored_mean_is_zero_not_nan():
  z = np.zeros((3, 4))
  y = np.full(3, -100)
  got = jaxloss.cross_entropy(z, y, ignore_index=-100)
  assert float(got) == 0.0
  grad = jax.grad(lambda z: jaxloss.cross_entropy(z, y, ignore_index=-100))(z)
  assert np.all(np.asarray(grad) == 0.0)


# ---------------------------------------------------------------- gradients
@pytest.mark.parametrize("fn", [
    lambda z, y, t: jaxloss.softmax_cross_entropy_with_integer_labels(z, y),
    lambda z, y, t: jaxloss.softmax_cross_entropy(z, t),
    lambda z, y, t: jaxloss.label_smoothing_cross_entropy(z, y, alpha=0.2),
    lambda z, y, t: jaxloss.nll_loss(jax.nn.log_softmax(z), y),
    lambda z, y, t: jaxloss.cross_entropy(z, y, weights=jnp.arange(1.0, 6.0),
                                          label_smoothing=0.1),
])
def test_gradients(fn):
  # Jitted as a whole (jnp calls included) only to save compile time.
  rng = np.random.default_rng(10)
  z, y = random_inputs(rng, (4,), 5)
  t = rng.dirichlet(np.ones(5), size=4)
  check_grads(jax.jit(lambda z: fn(z, y, t)), (z,), order=2, modes=("fwd", "rev"))


def test_grad_is_softmax_minus_onehot():
  rng = np.random.default_rng(11)
  z, y = random_inputs(rng, (B,), K)
  g = jax.grad(lambda z: jaxloss.softmax_cross_entropy_with_integer_labels(z, y).sum())(z)
  p = np.exp(np_log_softmax(z))
  np.testing.assert_allclose(np.asarray(g), p - np.eye(K)[y], rtol=1e-10, atol=1e-14)


# ---------------------------------------------------------------- jit / vmap / traces
def test_vmap_equals_batched():
  rng = np.random.default_rng(12)
  z, y = random_inputs(rng, (B,), K)
  for fn in (jaxloss.softmax_cross_entropy_with_integer_labels,
             jaxloss.label_smoothing_cross_entropy):
    chex.assert_trees_all_close(jax.vmap(fn)(z, y), fn(z, y), rtol=1e-12)
  t = np.eye(K)[y]
  chex.assert_trees_all_close(
      jax.vmap(jaxloss.softmax_cross_entropy)(z, t), jaxloss.softmax_cross_entropy(z, t),
      rtol=1e-12)


def test_no_retrace_for_new_values():
  @jax.jit
  @chex.assert_max_traces(n=1)
  def loss(z, y):
    return jaxloss.softmax_cross_entropy_with_integer_labels(z, y).mean()

  rng = np.random.default_rng(13)
  for _ in range(3):
    z, y = random_inputs(rng, (B,), K)
    loss(jnp.asarray(z), jnp.asarray(y))


# ---------------------------------------------------------------- numerics
EXTREME = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0], [1e4, 1e4, -1e4]])


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_extreme_logits(dtype):
  z = jnp.asarray(EXTREME, dtype)
  y = np.array([0, 0, 2])
  want = np_ce_labels(EXTREME, y)  # [0, 2e4, 2e4 + log 2]
  fns = (lambda z: jaxloss.softmax_cross_entropy_with_integer_labels(z, y),
         lambda z: jaxloss.softmax_cross_entropy(z, jnp.eye(3, dtype=z.dtype)[y]),
         lambda z: jaxloss.label_smoothing_cross_entropy(z, y, alpha=0.0))
  # The values and gradients of the three losses, one jitted program.
  outputs = jax.jit(lambda z: [(fn(z), jax.grad(lambda z: fn(z).sum())(z)) for fn in fns])(z)
  for got, g in outputs:
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=1e-6)
    assert np.all(np.isfinite(np.asarray(g)))


NEG_INF_LOGITS = np.array([
    [0.5, -np.inf, 1.0, -np.inf],
    [-np.inf, -np.inf, -np.inf, -np.inf],  # a dead row: loss 0
    [2.0, 1.0, -np.inf, 0.0],
])
NEG_INF_LABELS = np.array([0, 1, 3])


@pytest.mark.parametrize("name,fn", [
    ("integer", lambda z: jaxloss.softmax_cross_entropy_with_integer_labels(z, NEG_INF_LABELS)),
    ("targets", lambda z: jaxloss.softmax_cross_entropy(z, jnp.eye(4)[NEG_INF_LABELS])),
    ("smoothing+where", lambda z: jaxloss.label_smoothing_cross_entropy(
        z, NEG_INF_LABELS, alpha=0.1, where=jnp.isfinite(NEG_INF_LOGITS))),
    ("smoothing targets+where", lambda z: jaxloss.label_smoothing_cross_entropy(
        z, jnp.eye(4)[NEG_INF_LABELS], alpha=0.1, where=jnp.isfinite(NEG_INF_LOGITS))),
    ("nll", lambda z: jaxloss.nll_loss(
        numerics.softmax_parts(z, None).log_softmax(), NEG_INF_LABELS,
        where=jnp.isfinite(NEG_INF_LOGITS))),
    ("torch front door", lambda z: jaxloss.cross_entropy(
        z, NEG_INF_LABELS, weights=jnp.array([1.0, 2.0, 3.0, 4.0]), reduction="none")),
])
def test_neg_inf_logits_value_grad_jacfwd_finite(name, fn):
  z = jnp.asarray(NEG_INF_LOGITS)
  # One jitted program: eager Jacobians compile a batched copy of every op.
  value, *jacobians = jax.jit(lambda z: (fn(z), jax.jacrev(fn)(z), jax.jacfwd(fn)(z)))(z)
  value = np.asarray(value)
  assert np.all(np.isfinite(value)), (name, value)
  assert float(value[1]) == 0.0
  for jac in jacobians:
    assert np.all(np.isfinite(np.asarray(jac))), (name, jac)


def test_neg_inf_matches_where_mask():
  z = NEG_INF_LOGITS[[0, 2]]
  y = NEG_INF_LABELS[[0, 2]]
  mask = np.isfinite(z)
  a = jaxloss.softmax_cross_entropy_with_integer_labels(z, y)
  b = jaxloss.softmax_cross_entropy_with_integer_labels(np.where(mask, z, 123.0), y, where=mask)
  chex.assert_trees_all_close(a, b, rtol=1e-12)
  chex.assert_trees_all_close(a, np_ce_labels(z, y), rtol=1e-12)


@pytest.mark.parametrize("dtype,tol", [(jnp.float16, 2e-3), (jnp.bfloat16, 2e-2)])
def test_low_precision_inputs(dtype, tol):
  """16-bit logits are upcast: the only error left is the rounding of the inputs."""
  rng = np.random.default_rng(14)
  z, y = random_inputs(rng, (B,), K)
  z_low = jnp.asarray(z, dtype)
  want = np_ce_labels(np.asarray(z_low, np.float64), y)  # reference on the rounded inputs
  fns = (jaxloss.softmax_cross_entropy_with_integer_labels,
         lambda z, y: jaxloss.softmax_cross_entropy(z, jnp.eye(K, dtype=z.dtype)[y]),
         lambda z, y: jaxloss.label_smoothing_cross_entropy(z, y, alpha=0.0))
  # The values and gradients of the three losses, one jitted program.
  outputs = jax.jit(lambda z: [(fn(z, y), jax.grad(lambda z: fn(z, y).sum())(z))
                               for fn in fns])(z_low)
  for got, g in outputs:
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=1e-5, atol=1e-5)
    # And within `tol` of the float64 loss on the unrounded logits.
    np.testing.assert_allclose(np.asarray(got, np.float64), np_ce_labels(z, y),
                               rtol=tol, atol=tol * 5)
    assert g.dtype == dtype and np.all(np.isfinite(np.asarray(g, np.float32)))


def test_output_dtypes():
  # The output dtype is fixed at trace time: eval_shape traces without compiling.
  y = np.zeros(B, np.int32)
  for dtype, out in [(jnp.float16, jnp.float32), (jnp.bfloat16, jnp.float32),
                     (jnp.float32, jnp.float32), (jnp.float64, jnp.float64)]:
    assert jax.eval_shape(jaxloss.softmax_cross_entropy_with_integer_labels,
                          jax.ShapeDtypeStruct((B, K), dtype), y).dtype == out


def test_out_of_range_label_is_nan_unchecked():
  z = np.zeros((B, K))
  got = np.asarray(jaxloss.softmax_cross_entropy_with_integer_labels(
      z, np.array([0, K, -1, 1, 2, 3])))
  assert np.isfinite(got[0]) and np.isnan(got[1]) and np.isnan(got[2])
  assert np.all(np.isfinite(got[3:]))


# ---------------------------------------------------------------- identities (hypothesis)
logit_arrays = hnp.arrays(
    np.float64, st.sampled_from([(1, 2), (B, K)]),  # the file's shapes: few compiles
    elements=st.floats(-50, 50, allow_nan=False, allow_subnormal=False))


@hypothesis.given(z=logit_arrays, data=st.data())
def test_identities(z, data):
  b, k = z.shape
  y = np.asarray(data.draw(hnp.arrays(np.int64, (b,), elements=st.integers(0, k - 1))))
  shift = data.draw(st.floats(-100, 100))
  ce = np.asarray(jaxloss.softmax_cross_entropy_with_integer_labels(z, y))
  assert np.all(ce >= 0)
  np.testing.assert_allclose(ce, np.asarray(jaxloss.nll_loss(jax.nn.log_softmax(z), y)),
                             rtol=1e-9, atol=1e-9)
  np.testing.assert_allclose(
      ce, np.asarray(jaxloss.label_smoothing_cross_entropy(z, y, alpha=0.0)),
      rtol=1e-9, atol=1e-9)
  np.testing.assert_allclose(
      ce, np.asarray(jaxloss.softmax_cross_entropy(z, np.eye(k)[y])), rtol=1e-9, atol=1e-9)
  np.testing.assert_allclose(
      ce, np.asarray(jaxloss.softmax_cross_entropy_with_integer_labels(z + shift, y)),
      rtol=1e-8, atol=1e-8)
  smoothed = np.asarray(jaxloss.label_smoothing_cross_entropy(z, y, alpha=0.3))
  assert np.all(smoothed >= 0)


# ---------------------------------------------------------------- integer labels, targets door
def test_softmax_cross_entropy_accepts_integer_labels():
  """Integer labels of the per-example shape go to the integer-label loss (same result)."""
  rng = np.random.default_rng(15)
  z, y = random_inputs(rng, (B,), K)
  mask = rng.random((B, K)) < 0.7
  mask[np.arange(B), y] = True
  w = rng.uniform(0.5, 2.0, K)
  keep = np.array([True, True, False, True, True, True])
  kw = dict(where=mask, weights=w, example_mask=keep)
  got = jaxloss.softmax_cross_entropy(z, y, **kw)
  np.testing.assert_array_equal(
      np.asarray(got), np.asarray(jaxloss.softmax_cross_entropy_with_integer_labels(z, y, **kw)))
  chex.assert_trees_all_close(got, np_ce_labels(z, y, mask, w, keep), rtol=1e-12)
  chex.assert_trees_all_close(
      got, jaxloss.softmax_cross_entropy(z, np.eye(K)[y], **kw), rtol=1e-12)
  # axis: labels have the logits' shape without the class axis
  got_t = jaxloss.softmax_cross_entropy(z.T, y, axis=0)
  chex.assert_trees_all_close(got_t, np_ce_labels(z, y), rtol=1e-12)


# ---------------------------------------------------------------- non-finite in, non-finite out
_NAN_Z = np.array([
    [np.nan, np.nan, np.nan],  # all NaN
    [1.0, np.nan, 0.0],  # one NaN class (not the label)
    [np.nan, 1.0, 0.0],  # NaN at the label
    [1.0, np.inf, 0.0],  # +inf
    [0.5, 1.0, -1.0],  # finite
])
_NAN_Y = np.zeros(5, np.int64)
_CE_FAMILY = {
    "integer": lambda z, y, **kw: jaxloss.softmax_cross_entropy_with_integer_labels(z, y, **kw),
    "targets": lambda z, y, **kw: jaxloss.softmax_cross_entropy(z, jnp.eye(3)[y], **kw),
    "smoothing": lambda z, y, **kw: jaxloss.label_smoothing_cross_entropy(
        z, y, alpha=0.1, **kw),
    "smoothing targets": lambda z, y, **kw: jaxloss.label_smoothing_cross_entropy(
        z, jnp.eye(3)[y], alpha=0.1, **kw),
    "nll": lambda z, y, **kw: jaxloss.nll_loss(z, y, **kw),  # z read as log-probabilities
    "torch front door": lambda z, y, **kw: jaxloss.cross_entropy(
        z, y, weights=jnp.array([1.0, 2.0, 3.0]), label_smoothing=0.1, reduction="none",
        **kw),
}


@pytest.mark.parametrize("name", list(_CE_FAMILY))
def test_nan_or_pos_inf_logit_gives_nan(name):
  """Issue 10: an all-NaN row, one NaN class and a +inf class all give exactly NaN,
  with a finite (zero) gradient there; the other rows are untouched."""
  fn = functools.partial(_CE_FAMILY[name], y=_NAN_Y)
  keep = np.array([False, False, False, False, True])
  where = np.array([True, False, True])

  @jax.jit
  def outputs(z, z_junk):
    """Every call of this test, one jitted program."""
    return (fn(z), _CE_FAMILY[name](z[4:], _NAN_Y[4:]), jax.jacrev(fn)(z), jax.jacfwd(fn)(z),
            fn(z, example_mask=keep), fn(z[1:4], y=_NAN_Y[1:4], where=where),
            fn(z_junk, y=_NAN_Y[1:4], where=where))

  value, last_row, jac_rev, jac_fwd, masked_out, behind, junk = (
      np.asarray(a) for a in outputs(jnp.asarray(_NAN_Z), np.where(where, _NAN_Z[1:4], 7.0)))
  assert np.all(np.isnan(value[:4])), (name, value)
  assert np.isfinite(value[4])
  np.testing.assert_array_equal(value[4], last_row[0])
  for jac in (jac_rev, jac_fwd):
    assert np.all(np.isfinite(jac)), (name, jac)
    assert np.all(jac[:4] == 0.0) and np.all(jac[:, :4] == 0.0), (name, jac)
  # example_mask=False rows give 0 whatever their logits.
  assert np.all(masked_out[:4] == 0.0) and masked_out[4] == value[4]
  # A NaN or +inf behind the class mask takes no part.
  np.testing.assert_array_equal(behind[[0, 2]], junk[[0, 2]])
  assert np.all(np.isfinite(behind[[0, 2]])) and np.isnan(behind[1])  # NaN at the label


def test_nan_regression_examples():
  """The two reproducers of issue 10, verbatim."""
  assert np.isnan(float(jaxloss.softmax_cross_entropy_with_integer_labels(
      jnp.full((1, 3), jnp.nan), jnp.array([0]))[0]))
  assert np.isnan(float(jaxloss.softmax_cross_entropy_with_integer_labels(
      jnp.array([[1.0, jnp.nan, 0.0]]), jnp.array([0]))[0]))


# ---------------------------------------------------------------- shift invariance at 1e8
_SHIFT_Z = np.array([[0.0, 8.0, -16.0]] * 3, np.float32)  # exact at 1e8 in float32
_SHIFT_Y = np.array([0, 1, 2])
_SHIFT_T = np.eye(3)[_SHIFT_Y]
_SHIFT_FNS = {
    "integer": lambda z: jaxloss.softmax_cross_entropy_with_integer_labels(z, _SHIFT_Y),
    "targets": lambda z: jaxloss.softmax_cross_entropy(z, _SHIFT_T),
    "smoothing": lambda z: jaxloss.label_smoothing_cross_entropy(z, _SHIFT_Y, alpha=0.1),
    "smoothing targets": lambda z: jaxloss.label_smoothing_cross_entropy(
        z, _SHIFT_T, alpha=0.1),
    "torch front door": lambda z: jaxloss.cross_entropy(
        z, _SHIFT_Y, label_smoothing=0.2, reduction="none"),
}


@pytest.mark.parametrize("name", list(_SHIFT_FNS))
def test_shift_invariance_at_1e8_float32(name):
  """Issue 10: lse(z) - z_y at z ~ 1e8 cancels in float32; z - max z first is exact."""
  unshifted = assert_shift_exact(_SHIFT_FNS[name], _SHIFT_Z)
  # And the unshifted value is right (not, e.g., 0 both ways).
  if name in ("integer", "targets"):  # atol: lse = log(1 + e^-8) is off by ~eps in float32
    np.testing.assert_allclose(np.asarray(unshifted, np.float64),
                               np_ce_labels(_SHIFT_Z, _SHIFT_Y), rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------- bad input
def test_bad_inputs():
  # NumPy inputs: every error is raised while tracing, before anything compiles.
  z = np.zeros((4, 3))
  y = np.zeros(4, np.int32)
  one_hot = np.eye(3)[[0, 1, 2, 0]]
  with pytest.raises(TypeError, match="floating-point"):
    jaxloss.softmax_cross_entropy_with_integer_labels(np.zeros((4, 3), np.int32), y)
  with pytest.raises(TypeError, match="look like one-hot"):
    jaxloss.softmax_cross_entropy_with_integer_labels(z, one_hot)
  with pytest.raises(ValueError, match="does not match logits shape"):
    jaxloss.softmax_cross_entropy_with_integer_labels(z, np.zeros(5, np.int32))
  with pytest.raises(ValueError, match="must equal logits shape"):
    jaxloss.softmax_cross_entropy(z, np.zeros((4, 4)))
  with pytest.raises(ValueError, match="one per class"):
    jaxloss.softmax_cross_entropy_with_integer_labels(z, y, weights=np.ones(4))
  with pytest.raises(TypeError, match="boolean"):
    jaxloss.softmax_cross_entropy_with_integer_labels(z, y, where=np.ones((4, 3)))
  with pytest.raises(ValueError, match="per-example shape"):
    jaxloss.softmax_cross_entropy_with_integer_labels(z, y, example_mask=np.ones(3, bool))
  with pytest.raises(ValueError, match="axis=2 is out of range"):
    jaxloss.softmax_cross_entropy_with_integer_labels(z, y, axis=2)
  with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]"):
    jaxloss.label_smoothing_cross_entropy(z, y, alpha=1.5)
  with pytest.raises(ValueError, match="reduction must be"):
    jaxloss.cross_entropy(z, y, reduction="avg")
  with pytest.raises(ValueError, match="integer labels only"):
    jaxloss.cross_entropy(z, one_hot, ignore_index=0)
  with pytest.raises(ValueError, match="scalar"):
    jaxloss.softmax_cross_entropy(jnp.float32(1.0), jnp.float32(1.0))
