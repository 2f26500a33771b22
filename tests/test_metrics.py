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

import _compiled
import jaxloss
from jaxloss._src import metrics

# Per-loss reference tests: thorough and slow (many eager shapes compile); the quick
# check is tests/test_contract.py, which walks every loss (see the README).
pytestmark = [pytest.mark.usefixtures("x64"), pytest.mark.slow]

# A few shapes for the whole file: op-by-op (eager) execution compiles every
# jax.numpy operation once per shape and dtype, so tests that share a shape share
# those compilations. Every 2-D test uses [B, K]; the class-axis and multi-axis
# batch tests use SHAPE3, a cube: whichever axis holds the classes, moved last it
# gives the same shape, so the eager ops compile once for every axis (the random
# values still tell the axes apart).
B, K = 24, 4  # examples, classes (B is a multiple of 3 for test_bin_edges)
SHAPE3 = (4, 4, 4)
# Calibration tests bin into these counts (with the default 15); a new bin count
# compiles the binning again.
NUM_BINS = (15, 10, 4, 1)

# The property test and the checks that are not about eager execution call the
# calibration metrics through jit: one program per bin count and shape.
_bins_jit = jax.jit(metrics.calibration_bins, static_argnames="num_bins")
_ece_jit = jax.jit(metrics.expected_calibration_error, static_argnames="num_bins")


# ---------------------------------------------------------------- references
def np_softmax(z):
  z = np.asarray(z, np.float64)
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def np_accuracy(z, y):
  return (np.argmax(z, -1) == y).astype(np.float64)


def np_nll(z, y):
  # From the shifted logits: lse(z) - z_y would cancel for a confident row.
  z = np.asarray(z, np.float64)
  zs = z - z.max(-1, keepdims=True)
  lse = np.log(np.exp(zs).sum(-1))
  return lse - np.take_along_axis(zs, y[..., None], -1)[..., 0]


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
  @parameterized.parameters((B, K), (1, 2))
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
    z = rng.normal(size=SHAPE3)
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
    z = rng.normal(size=(B, K))
    # the predicted set with some entries flipped: exact matches and misses both occur
    t = ((z > 0) ^ (rng.random((B, K)) < 0.2)).astype(np.float64)
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
    # vmap inside jit: one program instead of a batched copy of every eager op.
    z, y = random_inputs(np.random.default_rng(5), (B,), K)
    for fn in (metrics.accuracy, metrics.negative_log_likelihood):
      chex.assert_trees_all_close(jax.jit(jax.vmap(fn))(z, y), fn(z, y), rtol=1e-12)

  def test_nll_grad(self):
    # jit only to save compile time; eager differentiation is
    # test_nll_gradient_of_a_nan_example_is_zero.
    z, y = random_inputs(np.random.default_rng(6), (B,), K)
    check_grads(jax.jit(lambda x: metrics.negative_log_likelihood(x, y)), (z,), order=1,
                modes=("fwd", "rev"))

  def test_brier_is_the_loss_only(self):
    from jaxloss._src import squared
    assert _compiled.original(jaxloss.brier_score) is squared.brier_score
    # no second, lazy route to it from the metrics module
    assert not hasattr(metrics, "brier_score")
    with pytest.raises(AttributeError):
      getattr(metrics, "brier_score")

  def test_built_on_the_core_not_the_public_losses(self):
    for name in ("softmax_cross_entropy", "softmax_cross_entropy_with_integer_labels",
                 "nll_loss", "cross_entropy"):
      assert not hasattr(metrics, name), name

  @chex.variants(with_jit=True, without_jit=True)
  def test_nll_is_nll_loss_of_log_softmax(self):
    z, y = random_inputs(np.random.default_rng(7), (B,), K)
    z[2, 1] = -np.inf  # a masked class
    got = self.variant(metrics.negative_log_likelihood)(z, y)
    want = jaxloss.nll_loss(jax.nn.log_softmax(z), y)
    chex.assert_trees_all_close(got, want, rtol=1e-12)
    assert "takes LOGITS" in metrics.negative_log_likelihood.__doc__
    assert "nll_loss(jax.nn.log_softmax(z), y)" in metrics.negative_log_likelihood.__doc__

  def test_nll_shift_exact(self):
    # Integers multiple of 8 are exact at 1e8 in float32: bit-identical results.
    # [B, K] float32, as test_low_precision computes after its upcast.
    rng = np.random.default_rng(8)
    z = (8.0 * rng.integers(-2, 3, (B, K))).astype(np.float32)
    y = rng.integers(0, K, B)
    z[0], y[0] = [0.0, 0.0, -8.0, 0.0], 2  # a label below the maximum: loss above 8
    for labels in (y, np.eye(K, dtype=np.float32)[y]):
      base = metrics.negative_log_likelihood(z, labels)
      shifted = metrics.negative_log_likelihood(z + np.float32(1e8), labels)
      np.testing.assert_array_equal(shifted, base)
      assert float(base[0]) > 8.0


# ---------------------------------------------------------------- calibration
class CalibrationTest(parameterized.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(*NUM_BINS)
  def test_vs_numpy_loop(self, num_bins):
    z, y = random_inputs(np.random.default_rng(num_bins), (B,), K, scale=2.0)
    bins = self.variant(functools.partial(metrics.calibration_bins, num_bins=num_bins))(z, y)
    want = np_calibration_bins(z, y, num_bins)
    chex.assert_trees_all_close(bins, want, rtol=1e-12)
    assert bins[0].dtype == jnp.int32
    assert int(np.asarray(bins[0]).sum()) == B
    ece = self.variant(functools.partial(
        metrics.expected_calibration_error, num_bins=num_bins))(z, y)
    chex.assert_trees_all_close(ece, np_ece(z, y, num_bins), rtol=1e-12)
    chex.assert_shape(ece, ())

  @chex.variants(with_jit=True, without_jit=True)
  def test_bin_edges(self):
    # Confidences exactly on edges (exact in floating point): [0,0] -> 0.5,
    # [0,0,0,0] -> 0.25 (classes padded with -inf), a saturated row -> 1.0.
    # The three rows repeated to the file's [B, K] shape.
    reps = B // 3
    z = np.tile(np.array([
        [0.0, 0.0, -np.inf, -np.inf],
        [0.0, 0.0, 0.0, 0.0],
        [50.0, -50.0, -np.inf, -np.inf],
    ]), (reps, 1))
    y = np.tile(np.array([1, 0, 0]), reps)
    counts, conf, acc = self.variant(functools.partial(metrics.calibration_bins, num_bins=4))(
        z, y)
    want = np_calibration_bins(z, y, 4)
    chex.assert_trees_all_close((counts, conf, acc), want, rtol=1e-12)
    # 0.25 -> bin 0 (0, .25]; 0.5 -> bin 1 (.25, .5]; 1.0 -> bin 3 (.75, 1].
    np.testing.assert_array_equal(counts, [reps, reps, 0, reps])
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
    z = np.tile(np.array([[3.0, 0.0, 0.0, 0.0]]), (B, 1))  # conf 0.8700 for every example
    y = np.array([0] * (B - 6) + [1] * 6)  # accuracy 1 - 6 / B
    counts, conf, acc = self.variant(metrics.calibration_bins)(z, y)
    want = np_calibration_bins(z, y, 15)
    chex.assert_trees_all_close((counts, conf, acc), want, rtol=1e-12)
    counts = np.asarray(counts)
    assert int(counts.max()) == B and int((counts > 0).sum()) == 1
    p = np_softmax(z[0]).max()
    ece = self.variant(metrics.expected_calibration_error)(z, y)
    chex.assert_trees_all_close(ece, abs(1 - 6 / B - p), rtol=1e-12)
    assert not np.any(np.isnan(conf)) and not np.any(np.isnan(acc))  # empty bins give 0

  @chex.variants(with_jit=True, without_jit=True)
  def test_example_mask_masks_examples(self):
    rng = np.random.default_rng(9)
    z, y = random_inputs(rng, SHAPE3[:-1], SHAPE3[-1])  # a [4, 4] batch of examples
    keep = rng.random(SHAPE3[:-1]) < 0.6
    z_nan = np.where(keep[..., None], z, np.nan)  # masked examples may be garbage
    fn = functools.partial(metrics.calibration_bins, num_bins=4)
    got = self.variant(lambda a, b, w: fn(a, b, example_mask=w))(z_nan, y, keep)
    chex.assert_trees_all_close(got, np_calibration_bins(z, y, 4, keep), rtol=1e-12)
    ece = self.variant(lambda a, b, w: metrics.expected_calibration_error(
        a, b, num_bins=4, example_mask=w))(z_nan, y, keep)
    chex.assert_trees_all_close(ece, np_ece(z, y, 4, keep), rtol=1e-12)
    # masking == dropping the examples (jitted: the kept count is a shape of its own)
    chex.assert_trees_all_close(ece, _ece_jit(z[keep], y[keep], num_bins=4), rtol=1e-12)
    # nothing kept -> zeros, not NaN
    none = metrics.expected_calibration_error(
        z, y, num_bins=4, example_mask=np.zeros(SHAPE3[:-1], bool))
    assert float(none) == 0.0

  @chex.variants(with_jit=True, without_jit=True)
  def test_axis_and_one_hot(self):
    rng = np.random.default_rng(10)
    z, y = random_inputs(rng, SHAPE3[:-1], SHAPE3[-1])  # [4, 4, 4]: examples, classes last
    z_ax1 = np.moveaxis(z, -1, 1)  # classes on axis 1
    onehot = np.moveaxis(np.eye(SHAPE3[-1])[y], -1, 1)
    want = np_ece(z, y, 4)
    for labels in (y, onehot):
      got = self.variant(functools.partial(
          metrics.expected_calibration_error, num_bins=4, axis=1))(z_ax1, labels)
      chex.assert_trees_all_close(got, want, rtol=1e-12)

  def test_perfect_and_worst(self):
    # Confident and right: ECE = 1 - conf ~ 0. Confident and wrong: ECE ~ 1.
    y = np.arange(B) % K
    z = 1e4 * np.eye(K)[y]
    assert float(metrics.expected_calibration_error(z, y)) == pytest.approx(0.0, abs=1e-12)
    assert float(metrics.expected_calibration_error(z, (y + 1) % K)) == pytest.approx(1.0)

  @parameterized.parameters(jnp.float16, jnp.bfloat16)
  def test_low_precision(self, dtype):
    z, y = random_inputs(np.random.default_rng(11), (B,), K, scale=2.0)
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
    z, y = random_inputs(np.random.default_rng(12), (B,), K)
    fn(z, y)
    fn(z + 1.0, (y + 1) % K)

  def test_bad_inputs(self):
    z, y = random_inputs(np.random.default_rng(13), (B,), K)
    with pytest.raises(ValueError, match="num_bins must be a positive"):
      metrics.calibration_bins(z, y, num_bins=0)
    with pytest.raises(TypeError, match="integer class labels"):
      metrics.accuracy(z, y.astype(np.float64))
    with pytest.raises(TypeError, match="example_mask must be boolean"):
      metrics.expected_calibration_error(z, y, example_mask=np.ones(B))
    with pytest.raises(ValueError, match="example_mask shape"):
      metrics.expected_calibration_error(z, y, example_mask=np.ones((B, K), bool))
    with pytest.raises(TypeError, match="where"):
      metrics.expected_calibration_error(z, y, where=np.ones(B, bool))  # the old name
    with pytest.raises(TypeError, match="floating-point"):
      metrics.accuracy(y, z)
    with pytest.raises(ValueError, match="targets shape"):
      metrics.multilabel_accuracy(z, np.ones((B, K - 1)))


# ---------------------------------------------------------------- properties
@hypothesis.given(
    # One shape, few bin counts: each (jitted) metric compiles once per bin count.
    z=hnp.arrays(np.float64, (B, K), elements=st.floats(-20, 20, allow_subnormal=False)),
    y=hnp.arrays(np.int64, (B,), elements=st.integers(0, K - 1)),
    num_bins=st.sampled_from([1, 2, 7, 20]),
)
def test_ece_properties(z, y, num_bins):
  counts, conf, acc = (np.asarray(a) for a in _bins_jit(z, y, num_bins=num_bins))
  assert int(counts.sum()) == B
  assert np.all((conf >= 0) & (conf <= 1)) and np.all((acc >= 0) & (acc <= 1))
  ece = float(_ece_jit(z, y, num_bins=num_bins))
  assert 0.0 <= ece <= 1.0
  np.testing.assert_allclose(ece, np_ece(z, y, num_bins), rtol=1e-9, atol=1e-12)
  # ECE with one bin is |accuracy - mean confidence|.
  one = float(_ece_jit(z, y, num_bins=1))
  want = abs(np_accuracy(z, y).mean() - np_softmax(z).max(-1).mean())
  np.testing.assert_allclose(one, want, rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------- non-finite in, non-finite out
class NonFiniteTest(parameterized.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(np.nan, np.inf)
  def test_per_example_metrics(self, bad):
    z, y = random_inputs(np.random.default_rng(20), (B,), K)
    z[1, 3] = bad
    z[3, 0] = -np.inf  # a masked class: not an error
    t = (np.random.default_rng(21).random((B, K)) < 0.5).astype(np.float64)
    for fn, labels in ((metrics.accuracy, y), (metrics.negative_log_likelihood, y),
                       (metrics.negative_log_likelihood, np.eye(4)[y]),
                       (metrics.multilabel_accuracy, t)):
      got = np.asarray(self.variant(fn)(z, labels))
      assert np.isnan(got[1]), fn.__name__
      assert np.all(np.isfinite(np.delete(got, 1))), fn.__name__
    good = np.delete(np.arange(B), 1)
    chex.assert_trees_all_close(np.asarray(metrics.accuracy(z, y))[good],
                                np_accuracy(z, y)[good])
    chex.assert_trees_all_close(np.asarray(metrics.negative_log_likelihood(z, y))[good],
                                np_nll(np.where(np.isfinite(z), z, -1e300), y)[good],
                                rtol=1e-12)

  def test_nll_gradient_of_a_nan_example_is_zero(self):
    z, y = random_inputs(np.random.default_rng(22), (B,), K)
    z[0, 2] = np.nan
    g = jax.grad(lambda x: jnp.nansum(metrics.negative_log_likelihood(x, y)))(z)
    assert np.all(np.isfinite(g)) and np.all(g[0] == 0.0)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(np.nan, np.inf)
  def test_calibration_nan_when_a_kept_example_is_bad(self, bad):
    rng = np.random.default_rng(23)
    z, y = random_inputs(rng, (B,), K)
    z[4, 1] = bad
    counts, conf, acc = self.variant(functools.partial(metrics.calibration_bins, num_bins=4))(
        z, y)
    assert counts.dtype == jnp.int32 and int(np.asarray(counts).sum()) == B
    assert np.all(np.isnan(conf)) and np.all(np.isnan(acc))
    assert np.isnan(self.variant(metrics.expected_calibration_error)(z, y))
    # left out by example_mask: it takes no part, the result is finite and exact
    keep = np.arange(B) != 4
    got = self.variant(lambda a, b, m: metrics.expected_calibration_error(
        a, b, num_bins=4, example_mask=m))(z, y, keep)
    chex.assert_trees_all_close(got, np_ece(z[keep], y[keep], 4), rtol=1e-12)

  def test_minus_inf_is_a_masked_class(self):
    z = np.array([[0.0, -np.inf, 1.0], [2.0, 0.0, -np.inf]])
    y = np.array([2, 0])
    assert np.all(np.isfinite(metrics.calibration_bins(z, y, num_bins=4)[1]))
    assert np.isfinite(metrics.expected_calibration_error(z, y, num_bins=4))
    np.testing.assert_array_equal(metrics.accuracy(z, y), [1.0, 1.0])


# ---------------------------------------------------------------- API shape
PUBLIC = (metrics.accuracy, metrics.multilabel_accuracy, metrics.negative_log_likelihood,
          metrics.calibration_bins, metrics.expected_calibration_error)


@pytest.mark.parametrize("fn", PUBLIC, ids=lambda f: f.__name__)
def test_options_keyword_only_and_typed(fn):
  import inspect
  import typing
  params = list(inspect.signature(fn).parameters.values())
  assert [p.name for p in params[:2]] in (["logits", "labels"], ["logits", "targets"])
  assert all(p.kind is p.POSITIONAL_OR_KEYWORD for p in params[:2])
  assert all(p.kind is p.KEYWORD_ONLY for p in params[2:]), fn.__name__
  assert "where" not in inspect.signature(fn).parameters  # `where` masks classes
  hints = typing.get_type_hints(fn)
  assert set(hints) == {p.name for p in params} | {"return"}
  assert hints["logits"] == jax.typing.ArrayLike
  if "example_mask" in hints:
    assert hints["example_mask"] == typing.Optional[jax.typing.ArrayLike]
