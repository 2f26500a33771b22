"""Metrics vs float64 NumPy references: accuracy, NLL, reliability bins and ECE."""

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

import jaxloss
from jaxloss._src import metrics

pytestmark = pytest.mark.usefixtures("x64")


# ---------------------------------------------------------------- references
def np_softmax(z):
  z = np.asarray(z, np.float64)
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def np_accuracy(z, y):
  return (np.argmax(z, -1) == y).astype(np.float64)


def np_nll(z, y):
  z = np.asarray(z, np.float64)
  m = z.max(-1, keepdims=True)
  lse = (m + np.log(np.exp(z - m).sum(-1, keepdims=True)))[..., 0]
  return lse - np.take_along_axis(z, y[..., None], -1)[..., 0]


def np_calibration_bins(z, y, num_bins, keep=None):
  """A straightforward loop: bin b covers (b/n, (b+1)/n], the first bin includes 0."""
  z = np.asarray(z, np.float64).reshape(-1, np.shape(z)[-1])
  y = np.asarray(y).reshape(-1)
  keep = np.ones(len(y), bool) if keep is None else np.asarray(keep).reshape(-1)
  conf = np_softmax(z).max(-1)
  correct = np.argmax(z, -1) == y
  edges = np.arange(num_bins + 1) / num_bins
  counts = np.zeros(num_bins, np.int64)
  mean_conf = np.zeros(num_bins)
  acc = np.zeros(num_bins)
  for b in range(num_bins):
    lo, hi = edges[b], edges[b + 1]
    members = [i for i in range(len(y))
               if keep[i] and (lo < conf[i] <= hi or (b == 0 and conf[i] == 0.0))]
    counts[b] = len(members)
    if members:
      mean_conf[b] = np.mean([conf[i] for i in members])
      acc[b] = np.mean([correct[i] for i in members])
  return counts, mean_conf, acc


def np_ece(z, y, num_bins, keep=None):
  counts, conf, acc = np_calibration_bins(z, y, num_bins, keep)
  total = counts.sum()
  if total == 0:
    return 0.0
  return sum(counts[b] / total * abs(acc[b] - conf[b]) for b in range(num_bins))


def random_inputs(rng, shape, k, scale=3.0):
  return rng.normal(size=shape + (k,)) * scale, rng.integers(0, k, size=shape)


# ---------------------------------------------------------------- per-example metrics
class PerExampleTest(parameterized.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters((4, 5), (1, 2), (32, 10))
  def test_accuracy_and_nll(self, batch, k):
    z, y = random_inputs(np.random.default_rng(batch + k), (batch,), k)
    acc = self.variant(metrics.accuracy)(z, y)
    chex.assert_trees_all_close(acc, np_accuracy(z, y))
    chex.assert_shape(acc, (batch,))
    nll = self.variant(metrics.negative_log_likelihood)(z, y)
    chex.assert_trees_all_close(nll, np_nll(z, y), rtol=1e-12)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(0, 1, 2, -1)
  def test_axis_and_one_hot(self, axis):
    rng = np.random.default_rng(3)
    z = rng.normal(size=(3, 4, 5))
    y_shape = list(z.shape)
    k = y_shape.pop(axis)
    y = rng.integers(0, k, size=y_shape)
    z_last = np.moveaxis(z, axis, -1)
    onehot = np.moveaxis(np.eye(k)[y], -1, axis)
    for labels in (y, onehot):
      acc = self.variant(functools.partial(metrics.accuracy, axis=axis))(z, labels)
      chex.assert_trees_all_close(acc, np_accuracy(z_last, y))
      nll = self.variant(functools.partial(metrics.negative_log_likelihood, axis=axis))(
          z, labels)
      chex.assert_trees_all_close(nll, np_nll(z_last, y), rtol=1e-12)

  @chex.variants(with_jit=True, without_jit=True)
  def test_multilabel_accuracy(self):
    rng = np.random.default_rng(4)
    z = rng.normal(size=(64, 3))
    t = (rng.random((64, 3)) < 0.5).astype(np.float64)
    want = np.all((z > 0) == (t > 0.5), -1).astype(np.float64)
    got = self.variant(metrics.multilabel_accuracy)(z, t)
    chex.assert_trees_all_close(got, want)
    assert 0 < want.mean() < 1  # both outcomes occur
    # threshold 0 on logits == sigmoid > 0.5; bool and int targets work too.
    chex.assert_trees_all_close(self.variant(metrics.multilabel_accuracy)(z, t > 0.5), want)
    got_thr = self.variant(functools.partial(metrics.multilabel_accuracy, threshold=0.5))(z, t)
    chex.assert_trees_all_close(got_thr, np.all((z > 0.5) == (t > 0.5), -1).astype(float))
    got_ax = self.variant(functools.partial(metrics.multilabel_accuracy, axis=0))(z.T, t.T)
    chex.assert_trees_all_close(got_ax, want)

  def test_ties_and_out_of_range(self):
    z = jnp.zeros((2, 3))
    chex.assert_trees_all_close(metrics.accuracy(z, jnp.array([0, 1])), jnp.array([1.0, 0.0]))
    chex.assert_trees_all_close(metrics.accuracy(z, jnp.array([3, -1])), jnp.zeros(2))

  def test_vmap_matches_batched(self):
    z, y = random_inputs(np.random.default_rng(5), (8,), 4)
    for fn in (metrics.accuracy, metrics.negative_log_likelihood):
      chex.assert_trees_all_close(jax.vmap(fn)(z, y), fn(z, y), rtol=1e-12)

  def test_nll_grad(self):
    z, y = random_inputs(np.random.default_rng(6), (5,), 4)
    check_grads(lambda x: metrics.negative_log_likelihood(x, y), (z,), order=1,
                modes=("fwd", "rev"))

  def test_brier_is_the_loss(self):
    from jaxloss._src import squared
    assert metrics.brier_score is squared.brier_score
    assert jaxloss.brier_score is squared.brier_score


# ---------------------------------------------------------------- calibration
class CalibrationTest(parameterized.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters((200, 10, 15), (50, 3, 5), (7, 2, 1), (100, 4, 10))
  def test_vs_numpy_loop(self, n, k, num_bins):
    z, y = random_inputs(np.random.default_rng(n + k + num_bins), (n,), k, scale=2.0)
    bins = self.variant(functools.partial(metrics.calibration_bins, num_bins=num_bins))(z, y)
    want = np_calibration_bins(z, y, num_bins)
    chex.assert_trees_all_close(bins, want, rtol=1e-12)
    assert bins[0].dtype == jnp.int32
    assert int(bins[0].sum()) == n
    ece = self.variant(functools.partial(
        metrics.expected_calibration_error, num_bins=num_bins))(z, y)
    chex.assert_trees_all_close(ece, np_ece(z, y, num_bins), rtol=1e-12)
    chex.assert_shape(ece, ())

  @chex.variants(with_jit=True, without_jit=True)
  def test_bin_edges(self):
    # Confidences exactly on edges (exact in floating point): [0,0] -> 0.5,
    # [0,0,0,0] -> 0.25 (classes padded with -inf), a saturated row -> 1.0.
    z = np.array([
        [0.0, 0.0, -np.inf, -np.inf],
        [0.0, 0.0, 0.0, 0.0],
        [50.0, -50.0, -np.inf, -np.inf],
    ])
    y = np.array([1, 0, 0])
    counts, conf, acc = self.variant(functools.partial(metrics.calibration_bins, num_bins=4))(
        z, y)
    want = np_calibration_bins(z, y, 4)
    chex.assert_trees_all_close((counts, conf, acc), want, rtol=1e-12)
    # 0.25 -> bin 0 (0, .25]; 0.5 -> bin 1 (.25, .5]; 1.0 -> bin 3 (.75, 1].
    np.testing.assert_array_equal(counts, [1, 1, 0, 1])
    assert float(conf[0]) == 0.25 and float(conf[1]) == 0.5
    np.testing.assert_array_equal(acc[:2], [1.0, 0.0])

  def test_confidence_zero_in_first_bin(self):
    # Not reachable from a softmax, but the reference convention is exercised
    # through the private binning: conf 0 -> bin 0 (clip of searchsorted - 1).
    edges = jnp.arange(5, dtype=jnp.float64) / 4
    b = jnp.clip(jnp.searchsorted(edges, jnp.array([0.0, 0.25, 0.2500001, 1.0]),
                                  side="left") - 1, 0, 3)
    np.testing.assert_array_equal(b, [0, 0, 1, 3])

  @chex.variants(with_jit=True, without_jit=True)
  def test_all_in_one_bin(self):
    z = np.tile(np.array([[3.0, 0.0, 0.0]]), (10, 1))  # conf 0.9094 for every example
    y = np.array([0] * 7 + [1] * 3)
    counts, conf, acc = self.variant(metrics.calibration_bins)(z, y)
    want = np_calibration_bins(z, y, 15)
    chex.assert_trees_all_close((counts, conf, acc), want, rtol=1e-12)
    assert int(counts.max()) == 10 and int((counts > 0).sum()) == 1
    p = np_softmax(z[0]).max()
    ece = self.variant(metrics.expected_calibration_error)(z, y)
    chex.assert_trees_all_close(ece, abs(0.7 - p), rtol=1e-12)
    assert not np.any(np.isnan(conf)) and not np.any(np.isnan(acc))  # empty bins give 0

  @chex.variants(with_jit=True, without_jit=True)
  def test_where_masks_examples(self):
    rng = np.random.default_rng(9)
    z, y = random_inputs(rng, (4, 30), 6)
    keep = rng.random((4, 30)) < 0.6
    z_nan = np.where(keep[..., None], z, np.nan)  # masked examples may be garbage
    fn = functools.partial(metrics.calibration_bins, num_bins=8)
    got = self.variant(lambda a, b, w: fn(a, b, where=w))(z_nan, y, keep)
    chex.assert_trees_all_close(got, np_calibration_bins(z, y, 8, keep), rtol=1e-12)
    ece = self.variant(lambda a, b, w: metrics.expected_calibration_error(
        a, b, num_bins=8, where=w))(z_nan, y, keep)
    chex.assert_trees_all_close(ece, np_ece(z, y, 8, keep), rtol=1e-12)
    # masking == dropping the examples
    chex.assert_trees_all_close(
        ece, metrics.expected_calibration_error(z[keep], y[keep], num_bins=8), rtol=1e-12)
    # nothing kept -> zeros, not NaN
    none = metrics.expected_calibration_error(z, y, where=np.zeros((4, 30), bool))
    assert float(none) == 0.0

  @chex.variants(with_jit=True, without_jit=True)
  def test_axis_and_one_hot(self):
    rng = np.random.default_rng(10)
    z, y = random_inputs(rng, (5, 6), 4)  # [5, 6, 4]
    z_ax1 = np.moveaxis(z, -1, 1)  # [5, 4, 6]
    onehot = np.moveaxis(np.eye(4)[y], -1, 1)
    want = np_ece(z, y, 10)
    for labels in (y, onehot):
      got = self.variant(functools.partial(
          metrics.expected_calibration_error, num_bins=10, axis=1))(z_ax1, labels)
      chex.assert_trees_all_close(got, want, rtol=1e-12)

  def test_perfect_and_worst(self):
    # Confident and right: ECE = 1 - conf ~ 0. Confident and wrong: ECE ~ 1.
    z = 1e4 * np.eye(5)
    y = np.arange(5)
    assert float(metrics.expected_calibration_error(z, y)) == pytest.approx(0.0, abs=1e-12)
    assert float(metrics.expected_calibration_error(z, (y + 1) % 5)) == pytest.approx(1.0)

  @parameterized.parameters(jnp.float16, jnp.bfloat16)
  def test_low_precision(self, dtype):
    z, y = random_inputs(np.random.default_rng(11), (64,), 5, scale=2.0)
    zl = jnp.asarray(z, dtype)
    ece = metrics.expected_calibration_error(zl, y, num_bins=10)
    assert ece.dtype == jnp.float32
    # the float32 confidences of the rounded logits equal the float64 reference
    # of the same rounded logits up to float32 rounding
    want = np_ece(np.asarray(zl, np.float64), y, 10)
    assert abs(float(ece) - want) < 1e-5
    counts, conf, acc = metrics.calibration_bins(zl, y)
    assert conf.dtype == jnp.float32 and acc.dtype == jnp.float32
    assert metrics.accuracy(zl, y).dtype == jnp.float32
    nll = metrics.negative_log_likelihood(zl, y)
    assert nll.dtype == jnp.float32
    np.testing.assert_allclose(nll, np_nll(np.asarray(zl, np.float64), y), rtol=1e-5)

  def test_large_logits(self):
    z = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]])
    y = np.array([0, 2])
    counts, conf, acc = metrics.calibration_bins(z, y, num_bins=4)
    np.testing.assert_array_equal(counts, [0, 1, 0, 1])  # confidences 1.0 and 0.5
    assert np.all(np.isfinite(conf)) and np.all(np.isfinite(acc))
    assert np.all(np.isfinite(metrics.negative_log_likelihood(z, y)))

  def test_jit_traces_once(self):
    def ece5(z, y):
      return metrics.expected_calibration_error(z, y, num_bins=5)

    fn = jax.jit(chex.assert_max_traces(ece5, n=1))
    z, y = random_inputs(np.random.default_rng(12), (16,), 3)
    fn(z, y)
    fn(z + 1.0, (y + 1) % 3)

  def test_bad_inputs(self):
    z, y = random_inputs(np.random.default_rng(13), (4,), 3)
    with pytest.raises(ValueError, match="num_bins must be a positive"):
      metrics.calibration_bins(z, y, num_bins=0)
    with pytest.raises(TypeError, match="integer class labels"):
      metrics.accuracy(z, y.astype(np.float64))
    with pytest.raises(TypeError, match="example_mask must be boolean"):
      metrics.expected_calibration_error(z, y, where=np.ones(4))
    with pytest.raises(ValueError, match="example_mask shape"):
      metrics.expected_calibration_error(z, y, where=np.ones((4, 3), bool))
    with pytest.raises(TypeError, match="floating-point"):
      metrics.accuracy(y, z)
    with pytest.raises(ValueError, match="targets shape"):
      metrics.multilabel_accuracy(z, np.ones((4, 2)))


# ---------------------------------------------------------------- properties
@hypothesis.settings(max_examples=25, deadline=None)
@hypothesis.given(
    z=hnp.arrays(np.float64, (12, 4), elements=st.floats(-20, 20, allow_subnormal=False)),
    y=hnp.arrays(np.int64, (12,), elements=st.integers(0, 3)),
    num_bins=st.integers(1, 20),
)
def test_ece_properties(z, y, num_bins):
  counts, conf, acc = metrics.calibration_bins(z, y, num_bins=num_bins)
  assert int(counts.sum()) == 12
  assert np.all((conf >= 0) & (conf <= 1)) and np.all((acc >= 0) & (acc <= 1))
  ece = float(metrics.expected_calibration_error(z, y, num_bins=num_bins))
  assert 0.0 <= ece <= 1.0
  np.testing.assert_allclose(ece, np_ece(z, y, num_bins), rtol=1e-9, atol=1e-12)
  # ECE with one bin is |accuracy - mean confidence|.
  one = float(metrics.expected_calibration_error(z, y, num_bins=1))
  want = abs(np_accuracy(z, y).mean() - np_softmax(z).max(-1).mean())
  np.testing.assert_allclose(one, want, rtol=1e-9, atol=1e-12)
