"""Open-set rejection metrics vs independent NumPy references (pairwise AUROC, order statistics)."""

import fractions
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

from jaxloss._src import rejection

# Per-loss reference tests: thorough and slow (many eager shapes compile); the quick
# check is tests/test_contract.py, which walks every loss (see the README).
pytestmark = [pytest.mark.usefixtures("x64", "jitted_public_api"), pytest.mark.slow]


# ---------------------------------------------------------------- references
def np_auroc_pairwise(s_in, s_out):
  """The definition: mean over all (in, out) pairs of 1[s > u] + 1/2 1[s == u]."""
  s = np.asarray(s_in, np.float64)[:, None]
  u = np.asarray(s_out, np.float64)[None, :]
  return float(np.mean((s > u) + 0.5 * (s == u)))


def np_auroc_ranks(s_in, s_out):
  """Mann-Whitney U from average ranks of the pooled sample (for large n)."""
  x = np.concatenate([np.asarray(s_in, np.float64), np.asarray(s_out, np.float64)])
  order = np.argsort(x, kind="stable")
  xs = x[order]
  ranks_sorted = np.empty(len(x))
  i = 0
  while i < len(x):  # average the 1-based ranks of each run of ties
    j = i
    while j + 1 < len(x) and xs[j + 1] == xs[i]:
      j += 1
    ranks_sorted[i:j + 1] = (i + j) / 2 + 1
    i = j + 1
  ranks = np.empty(len(x))
  ranks[order] = ranks_sorted
  n_in, n_out = len(s_in), len(s_out)
  u_stat = ranks[:n_in].sum() - n_in * (n_in + 1) / 2
  return u_stat / (n_in * n_out)


def np_threshold(s_in, recall):
  """Largest candidate t (a sample value) keeping >= recall * n scores (s >= t).

  ``recall`` is read as the decimal it prints as (the documented rule).
  """
  s = np.asarray(s_in, np.float64)
  n = len(s)
  r = fractions.Fraction(repr(float(recall)))
  for t in np.unique(s)[::-1]:  # descending
    if np.sum(s >= t) >= r * n:
      return t
  raise AssertionError("unreachable: the minimum keeps everything")


def np_rejection_rate(s_out, t):
  return float(np.mean(np.asarray(s_out, np.float64) < t))


def np_softmax(z):
  z = np.asarray(z, np.float64)
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def tied_scores(rng, n, low=0, high=6):
  """Integer-valued float scores: many ties."""
  return rng.integers(low, high, size=n).astype(np.float64)


# Jitted entry points for the tests that are not about jit: one XLA compile
# per shape instead of one per primitive (keeps the file fast). Gradients and
# vmap run jitted too (eager, each compiles a transformed copy of every op).
auroc_jit = jax.jit(rejection.auroc)
threshold_jit = jax.jit(rejection.threshold_at_recall, static_argnames="recall")
rate_jit = jax.jit(rejection.rejection_rate)
msp_jit = jax.jit(rejection.max_softmax_score)
mss_jit = jax.jit(rejection.max_sigmoid_score)
ncs_jit = jax.jit(rejection.not_class_score, static_argnames="cls")

# The class-axis test: a cube, so whichever axis holds the classes, moved last it
# gives the same shape and the eager ops compile once for both axes (the random
# values still tell the axes apart).
SHAPE3 = (4, 4, 4)


# ---------------------------------------------------------------- AUROC
class AurocTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters((1, 1), (1, 7), (9, 1), (40, 25))
  def test_vs_pairwise_with_ties(self, n_in, n_out):
    rng = np.random.default_rng(n_in * 100 + n_out)
    for trial in range(2):
      s_in = tied_scores(rng, n_in, 0, 4 + trial)
      s_out = tied_scores(rng, n_out, 0, 4)
      got = self.variant(rejection.auroc)(s_in, s_out)
      chex.assert_shape(got, ())
      assert got.dtype == jnp.float64
      chex.assert_trees_all_close(got, np_auroc_pairwise(s_in, s_out), rtol=1e-12, atol=1e-15)

  @chex.variants(with_jit=True, without_jit=True)
  def test_continuous_and_dtypes(self):
    rng = np.random.default_rng(1)
    s_in = rng.normal(1.0, 1.0, size=50)
    s_out = rng.normal(0.0, 1.0, size=30)
    want = np_auroc_pairwise(s_in, s_out)
    got32 = self.variant(rejection.auroc)(s_in.astype(np.float32), s_out.astype(np.float32))
    assert got32.dtype == jnp.float32
    chex.assert_trees_all_close(got32, want, rtol=1e-6)
    got16 = self.variant(rejection.auroc)(s_in.astype(np.float16), s_out.astype(np.float16))
    assert got16.dtype == jnp.float32
    want16 = np_auroc_pairwise(s_in.astype(np.float16), s_out.astype(np.float16))
    chex.assert_trees_all_close(got16, want16, rtol=1e-6)
    gotbf = self.variant(rejection.auroc)(jnp.asarray(s_in, jnp.bfloat16),
                                          jnp.asarray(s_out, jnp.bfloat16))
    assert gotbf.dtype == jnp.float32
    want_bf = np_auroc_pairwise(np.asarray(jnp.asarray(s_in, jnp.bfloat16), np.float64),
                                np.asarray(jnp.asarray(s_out, jnp.bfloat16), np.float64))
    chex.assert_trees_all_close(gotbf, want_bf, rtol=1e-6)
    # Mixed float32 / float64 -> float64.
    assert self.variant(rejection.auroc)(s_in.astype(np.float32), s_out).dtype == jnp.float64

  def test_integer_and_bool_scores(self):
    rng = np.random.default_rng(2)
    s_in = rng.integers(-3, 3, size=20)
    s_out = rng.integers(-3, 2, size=15)
    got = auroc_jit(s_in, s_out)
    assert got.dtype == jnp.float32  # integer scores: float32 result even under x64
    chex.assert_trees_all_close(got, np_auroc_pairwise(s_in, s_out), rtol=1e-6)
    # int64 scores above 2**24 are compared as integers, not rounded to float32.
    big = 2**40
    assert float(auroc_jit(np.array([big + 1]), np.array([big]))) == 1.0
    b_in, b_out = s_in > 0, s_out > 0
    chex.assert_trees_all_close(auroc_jit(b_in, b_out),
                                np_auroc_pairwise(b_in, b_out), rtol=1e-6)

  def test_known_values(self):
    auroc = jax.jit(rejection.auroc)
    assert float(auroc(jnp.array([2.0, 3.0]), jnp.array([0.0, 1.0]))) == 1.0
    assert float(auroc(jnp.array([0.0, 1.0]), jnp.array([2.0, 3.0]))) == 0.0
    assert float(auroc(jnp.ones(5), jnp.ones(3))) == 0.5
    assert float(auroc(jnp.array([1.0, 0.0]), jnp.array([0.5]))) == 0.5

  def test_large_vs_average_ranks(self):
    # 60k x 40k pairs would be a 2.4e9-element matrix: the sort-based path must
    # not need it. Compare with the rank-sum (average ranks) formula.
    rng = np.random.default_rng(3)
    s_in = np.round(rng.normal(0.3, 1.0, size=60_000), 2)  # rounded: ties
    s_out = np.round(rng.normal(0.0, 1.0, size=40_000), 2)
    got = jax.jit(rejection.auroc)(s_in, s_out)
    chex.assert_trees_all_close(got, np_auroc_ranks(s_in, s_out), rtol=1e-12)
    got32 = jax.jit(rejection.auroc)(s_in.astype(np.float32), s_out.astype(np.float32))
    want32 = np_auroc_ranks(s_in.astype(np.float32), s_out.astype(np.float32))
    chex.assert_trees_all_close(got32, want32, rtol=1e-5)

  def test_ranks_reference_agrees_with_pairwise(self):
    rng = np.random.default_rng(4)
    s_in, s_out = tied_scores(rng, 30), tied_scores(rng, 20)
    np.testing.assert_allclose(np_auroc_ranks(s_in, s_out), np_auroc_pairwise(s_in, s_out),
                               rtol=1e-12)

  def test_sklearn(self):
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(5)
    s_in, s_out = tied_scores(rng, 40), tied_scores(rng, 30)
    labels = np.concatenate([np.ones(40), np.zeros(30)])
    want = metrics.roc_auc_score(labels, np.concatenate([s_in, s_out]))
    chex.assert_trees_all_close(rejection.auroc(s_in, s_out), want, rtol=1e-12)

  def test_vmap_over_rows(self):
    rng = np.random.default_rng(6)
    a = rng.integers(0, 5, size=(4, 11)).astype(np.float64)
    b = rng.integers(0, 5, size=(4, 7)).astype(np.float64)
    got = jax.jit(jax.vmap(rejection.auroc))(a, b)
    want = np.array([np_auroc_pairwise(a[i], b[i]) for i in range(4)])
    chex.assert_trees_all_close(got, want, rtol=1e-12)

  def test_traces_once_per_shape(self):
    fn = jax.jit(chex.assert_max_traces(rejection.auroc, n=1))
    rng = np.random.default_rng(7)
    for _ in range(3):
      fn(rng.normal(size=6), rng.normal(size=4))


@jax.jit
def _auroc_both_ways(a_tx, b_tx):
  """auroc(a, b) and auroc(b, a) for each row: raw scores and transforms of them."""
  return jax.vmap(rejection.auroc)(a_tx, b_tx), jax.vmap(rejection.auroc)(b_tx, a_tx)


# Strictly increasing transforms keep every order and every tie (exact in
# float64 on these small integers).
_INCREASING = (lambda x: x, lambda x: x**3 + 5 * x, lambda x: np.exp(x / 8),
               lambda x: 2.0 * x - 100.0)


@hypothesis.given(
    # A few fixed lengths, so the jitted check compiles a handful of times.
    a=st.sampled_from([1, 30]).flatmap(lambda n: hnp.arrays(
        np.float64, n, elements=st.integers(-5, 5).map(float))),
    b=st.sampled_from([1, 23]).flatmap(lambda n: hnp.arrays(
        np.float64, n, elements=st.integers(-5, 5).map(float))),
)
def test_auroc_properties(a, b):
  ab, ba = _auroc_both_ways(np.stack([f(a) for f in _INCREASING]),
                            np.stack([f(b) for f in _INCREASING]))
  ab, ba = np.asarray(ab), np.asarray(ba)
  assert np.all((ab >= 0.0) & (ab <= 1.0))
  np.testing.assert_allclose(ab + ba, 1.0, atol=1e-12)
  np.testing.assert_allclose(ab[0], np_auroc_pairwise(a, b), atol=1e-12)
  # Invariance to strictly increasing transforms.
  np.testing.assert_allclose(ab, ab[0], atol=1e-12)


# ---------------------------------------------------------------- threshold / rejection
class ThresholdTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(
      (1, 0.95), (10, 0.8), (10, 0.75), (20, 0.95), (100, 0.95), (37, 0.5), (50, 1.0),
      (7, 0.01), (1000, 0.9), (30, 0.3))
  def test_vs_reference(self, n, recall):
    rng = np.random.default_rng(n)
    for s in (rng.normal(size=n), tied_scores(rng, n, 0, 5)):
      t = self.variant(functools.partial(rejection.threshold_at_recall, recall=recall))(s)
      chex.assert_shape(t, ())
      assert float(t) == np_threshold(s, recall)
      # The documented order-statistic rule, in exact rational arithmetic.
      j = int(np.floor((1 - fractions.Fraction(repr(recall))) * n))
      assert float(t) == np.sort(s)[j]
      # At least `recall` of the in-scores are kept, and no larger sample value would.
      kept = np.mean(s >= float(t))
      assert kept >= recall - 1e-12
      assert np.mean(s > float(t)) < recall

  def test_decimal_recall_rule(self):
    # 0.95 * 20 must keep 19 (j = 1), 0.9 * 10 keeps 9 (j = 1), 0.3 * 10 keeps 3 (j = 7).
    s = jnp.arange(20.0)
    assert float(threshold_jit(s, recall=0.95)) == 1.0
    assert float(threshold_jit(s[:10], recall=0.9)) == 1.0
    assert float(threshold_jit(s[:10], recall=0.3)) == 7.0
    assert float(threshold_jit(s[:10], recall=1.0)) == 0.0
    assert float(threshold_jit(s[:10], recall=0.01)) == 9.0  # keeps ceil(0.1) = 1
    # NumPy scalars are read by their printed decimal too (float32 0.3 > 0.3 in binary).
    assert float(threshold_jit(s[:10], recall=np.float32(0.3))) == 7.0
    assert float(threshold_jit(s[:10], recall=np.float16(0.7))) == 3.0
    assert float(threshold_jit(s[:10], recall=1)) == 0.0

  @parameterized.parameters(np.float32, np.float64)
  def test_traced_recall_matches_static(self, dtype):
    rng = np.random.default_rng(8)
    fn = jax.jit(rejection.threshold_at_recall)
    for n in (1, 7, 10, 20, 100, 999):
      s = rng.normal(size=n)
      for r in (0.01, 0.1, 0.3, 0.5, 0.7, 0.75, 0.9, 0.95, 0.99, 1.0):
        got = fn(s, recall=jnp.asarray(r, dtype))
        assert float(got) == float(rejection.threshold_at_recall(s, recall=r)), (n, r)

  def test_dtypes(self):
    # Output dtypes are fixed at trace time: eval_shape traces without compiling.
    s = np.array([0.5, 0.25, 0.75, 1.0])
    threshold = functools.partial(jax.eval_shape, rejection.threshold_at_recall)
    rate = functools.partial(jax.eval_shape, rejection.rejection_rate)
    assert threshold(s.astype(np.float16)).dtype == jnp.float32
    assert threshold(jnp.asarray(s, jnp.bfloat16)).dtype == jnp.float32
    assert threshold(s.astype(np.float32)).dtype == jnp.float32
    assert threshold(s).dtype == jnp.float64
    assert threshold(np.array([3, 1, 2], np.int32)).dtype == jnp.int32
    assert rate(s.astype(np.float32), 0.5).dtype == jnp.float32
    assert rate(s.astype(np.float16), 0.5).dtype == jnp.float32
    assert rate(s, 0.5).dtype == jnp.float64
    assert rate(np.array([1, 2, 3]), 2).dtype == jnp.float32
    assert rejection.rejection_rate(s.astype(np.float32), 0.5).dtype == jnp.float32  # eager
    assert rejection.rejection_rate(s.astype(np.float32), np.float64(0.5)).dtype == jnp.float64

  @chex.variants(with_jit=True, without_jit=True)
  def test_rejection_rate_vs_numpy(self):
    rng = np.random.default_rng(9)
    u = tied_scores(rng, 50)
    for t in (-1.0, 0.0, 2.0, 2.5, 5.0, 6.0):
      got = self.variant(rejection.rejection_rate)(u, t)
      chex.assert_trees_all_close(got, np_rejection_rate(u, t), rtol=1e-12)
      got_arr = self.variant(rejection.rejection_rate)(u, jnp.asarray(t))
      chex.assert_trees_all_close(got_arr, np_rejection_rate(u, t), rtol=1e-12)
    # Strictly below: scores equal to the threshold are kept, not rejected.
    assert float(rejection.rejection_rate(jnp.array([1.0, 1.0, 0.0]), 1.0)) == pytest.approx(1 / 3)

  def test_vmap(self):
    rng = np.random.default_rng(10)
    s = rng.normal(size=(5, 40))
    u = rng.normal(size=(5, 30))
    ts = jax.jit(jax.vmap(functools.partial(rejection.threshold_at_recall, recall=0.9)))(s)
    np.testing.assert_array_equal(ts, [np_threshold(row, 0.9) for row in s])
    rates = jax.jit(jax.vmap(rejection.rejection_rate))(u, ts)
    chex.assert_trees_all_close(rates, np.array([np_rejection_rate(u[i], ts[i]) for i in range(5)]))

  def test_fpr_at_95_tpr_pipeline(self):
    # Perfectly separated scores: the 95%-recall threshold rejects all OOD inputs.
    s_in = jnp.linspace(1.0, 2.0, 100)
    s_out = jnp.linspace(-1.0, 0.5, 60)
    t = threshold_jit(s_in, recall=0.95)
    assert float(rate_jit(s_out, t)) == 1.0
    assert int(jnp.sum(s_in >= t)) == 95


@hypothesis.given(
    s=hnp.arrays(np.float64, st.sampled_from([1, 7, 20, 60]),  # few shapes: few compiles
                 elements=st.floats(-1e3, 1e3, allow_nan=False, allow_subnormal=False)),
    recall=st.sampled_from([0.01, 0.1, 0.25, 0.5, 0.8, 0.9, 0.95, 0.99, 1.0]),
)
def test_threshold_keeps_recall(s, recall):
  t = rejection.threshold_at_recall(s, recall=recall)
  # Treating the in-scores as "out" scores: the rejected share is at most 1 - recall.
  rejected = float(rejection.rejection_rate(s, t))
  assert 1.0 - rejected >= recall - 1e-12
  assert float(t) == np_threshold(s, recall)


# ---------------------------------------------------------------- scores
class ScoreTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(0, -1)
  def test_vs_numpy_axis(self, axis):
    rng = np.random.default_rng(11)
    z = rng.normal(size=SHAPE3) * 3
    z_last = np.moveaxis(z, axis, -1)
    p = np_softmax(z_last)
    msp = self.variant(functools.partial(rejection.max_softmax_score, axis=axis))(z)
    chex.assert_trees_all_close(msp, p.max(-1), rtol=1e-12)
    mss = self.variant(functools.partial(rejection.max_sigmoid_score, axis=axis))(z)
    chex.assert_trees_all_close(mss, (1 / (1 + np.exp(-z_last))).max(-1), rtol=1e-12)
    k = z_last.shape[-1]
    for cls in (0, k - 1, -1):
      ncs = self.variant(functools.partial(rejection.not_class_score, cls=cls, axis=axis))(z)
      chex.assert_trees_all_close(ncs, 1.0 - p[..., cls], rtol=1e-12)

  def test_traced_cls(self):
    z = np.random.default_rng(12).normal(size=(6, 4))
    fn = jax.jit(rejection.not_class_score)
    for cls in (0, 2, -1):
      chex.assert_trees_all_close(fn(z, cls=jnp.asarray(cls)), 1.0 - np_softmax(z)[:, cls],
                                  rtol=1e-12)

  def test_precision_near_zero(self):
    # p(NA) ~ 1: 1 - p would cancel to 0; the logsumexp form keeps ~exp(-30).
    z = jnp.array([[0.0, 30.0]], jnp.float32)
    got = ncs_jit(z, cls=1)
    chex.assert_trees_all_close(got, np.exp(-30.0) / (1 + np.exp(-30.0)), rtol=1e-5)

  def test_single_class(self):
    z = jnp.array([[1.0], [-2.0]])
    np.testing.assert_array_equal(ncs_jit(z, cls=0), [0.0, 0.0])
    np.testing.assert_array_equal(msp_jit(z), [1.0, 1.0])
    g = jax.grad(lambda x: ncs_jit(x, cls=0).sum())(z)
    np.testing.assert_array_equal(g, np.zeros((2, 1)))

  def test_extreme_and_masked_logits(self):
    z = jnp.array([[1e4, -1e4, 0.0], [0.0, -jnp.inf, 0.0], [-1e4, -1e4, -1e4]])
    values = []
    for fn in (rejection.max_softmax_score, rejection.max_sigmoid_score,
               functools.partial(rejection.not_class_score, cls=0)):
      # value, gradient and forward-mode Jacobian: one jitted program
      val, *derivatives = jax.jit(lambda x, f=fn: (
          f(x), jax.grad(lambda x: f(x).sum())(x), jax.jacfwd(f)(x)))(z)
      assert np.all(np.isfinite(val))
      for g in derivatives:
        assert not np.any(np.isnan(g))
      values.append(val)
    chex.assert_trees_all_close(values[0], np.array([1.0, 0.5, 1 / 3]), rtol=1e-12)
    chex.assert_trees_all_close(values[2], np.array([0.0, 0.5, 2 / 3]), rtol=1e-12, atol=1e-300)

  @parameterized.parameters(jnp.float16, jnp.bfloat16)
  def test_low_precision(self, dtype):
    z = np.random.default_rng(13).normal(size=(8, 5)) * 3
    zl = jnp.asarray(z, dtype)
    ref = np.asarray(zl, np.float64)
    p = np_softmax(ref)
    for got, want in ((msp_jit(zl), p.max(-1)),
                      (mss_jit(zl), (1 / (1 + np.exp(-ref))).max(-1)),
                      (ncs_jit(zl, cls=2), 1 - p[:, 2])):
      assert got.dtype == jnp.float32
      chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-6)

  def test_grads_and_vmap(self):
    z = np.random.default_rng(14).normal(size=(4, 5))
    fns = (rejection.max_softmax_score, functools.partial(rejection.not_class_score, cls=3),
           rejection.max_sigmoid_score)
    for i, fn in enumerate(fns):
      if i < 2:  # the two with a max-shift trick (max_sigmoid is sigmoid(max z))
        check_grads(jax.jit(fn), (z,), order=1, modes=("fwd", "rev"))
      chex.assert_trees_all_close(jax.jit(jax.vmap(fn))(z), fn(z), rtol=1e-12)
    # the output dtype is fixed at trace time: eval_shape traces without compiling
    assert jax.eval_shape(rejection.max_softmax_score,
                          z.astype(np.float32)).dtype == jnp.float32


# ---------------------------------------------------------------- bad inputs
def test_bad_scores():
  with pytest.raises(ValueError, match="must be 1-D"):
    rejection.auroc(jnp.zeros((3, 2)), jnp.zeros(3))
  with pytest.raises(ValueError, match=r"scores_out must be 1-D.*got shape \(\)"):
    rejection.auroc(jnp.zeros(3), jnp.float32(1.0))
  with pytest.raises(ValueError, match="at least one score"):
    rejection.auroc(jnp.zeros(3), jnp.zeros(0))
  with pytest.raises(TypeError, match="real"):
    rejection.auroc(jnp.zeros(3, jnp.complex64), jnp.zeros(3))
  with pytest.raises(ValueError, match="must be 1-D"):
    rejection.threshold_at_recall(jnp.zeros((4, 4)))
  with pytest.raises(ValueError, match="at least one score"):
    rejection.rejection_rate(jnp.zeros(0), 0.5)


@pytest.mark.parametrize("recall", [0.0, -0.1, 1.5, float("nan")])
def test_bad_recall(recall):
  with pytest.raises(ValueError, match=r"recall must be in \(0, 1\]"):
    rejection.threshold_at_recall(jnp.arange(5.0), recall=recall)


def test_bad_recall_and_threshold_arrays():
  with pytest.raises(ValueError, match="recall must be a scalar"):
    rejection.threshold_at_recall(jnp.arange(5.0), recall=jnp.array([0.5, 0.9]))
  with pytest.raises(TypeError, match="recall must be a floating-point scalar"):
    rejection.threshold_at_recall(jnp.arange(5.0), recall=jnp.array(1))
  with pytest.raises(ValueError, match="threshold must be a scalar"):
    rejection.rejection_rate(jnp.arange(5.0), jnp.array([0.5]))


def test_bad_logits_and_cls():
  with pytest.raises(TypeError, match="floating-point"):
    rejection.max_softmax_score(jnp.array([[1, 2]]))
  with pytest.raises(TypeError, match="floating-point"):
    rejection.max_sigmoid_score(jnp.array([[1, 2]]))
  with pytest.raises(ValueError, match="axis=2 is out of range"):
    rejection.max_softmax_score(jnp.zeros((2, 3)), axis=2)
  with pytest.raises(ValueError, match=r"cls=3 is out of range for 3 classes"):
    rejection.not_class_score(jnp.zeros((2, 3)), cls=3)
  with pytest.raises(ValueError, match=r"cls=-4 is out of range"):
    rejection.not_class_score(jnp.zeros((2, 3)), cls=-4)
  with pytest.raises(TypeError, match="integer class index"):
    rejection.not_class_score(jnp.zeros((2, 3)), cls=1.0)


# ---------------------------------------------------------------- non-finite in, non-finite out
class NonFiniteTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(np.nan, np.inf)
  def test_bad_logit_gives_nan_score(self, bad):
    z = np.random.default_rng(15).normal(size=(4, 5))
    z[1, 2] = bad
    z[3, 0] = -np.inf  # a masked class, not an error
    want_p = np_softmax(np.where(np.isneginf(z), -np.inf, np.where(np.isfinite(z), z, 0.0)))
    for fn, want in ((rejection.max_softmax_score, want_p.max(-1)),
                     (rejection.max_sigmoid_score,
                      (1 / (1 + np.exp(-np.where(np.isneginf(z), -np.inf, z)))).max(-1)),
                     (functools.partial(rejection.not_class_score, cls=4),
                      1.0 - want_p[:, 4])):
      got = np.asarray(self.variant(fn)(z))
      assert np.isnan(got[1]), fn
      assert np.all(np.isfinite(np.delete(got, 1))), fn
      np.testing.assert_allclose(np.delete(got, 1), np.delete(want, 1), rtol=1e-12)
      # the gradient of a NaN example is 0 (finite), the others are untouched
      g = jax.jit(jax.grad(lambda x, f=fn: jnp.nansum(f(x))))(z)
      assert np.all(np.isfinite(g)) and np.all(g[1] == 0.0), fn

  def test_dead_row_gives_nan_softmax_scores(self):
    z = jnp.array([[-jnp.inf, -jnp.inf], [0.0, 1.0]])
    assert np.isnan(msp_jit(z)[0]) and np.isfinite(msp_jit(z)[1])
    assert np.isnan(ncs_jit(z, cls=0)[0]) and np.isfinite(ncs_jit(z, cls=0)[1])
    assert float(mss_jit(z)[0]) == 0.0  # sigmoid: -inf is a value, probability 0

  @parameterized.parameters("in", "out")
  def test_nan_score_gives_nan(self, where_nan):
    s_in = np.array([0.9, 0.8, 0.4, 0.7])
    s_out = np.array([0.1, 0.4, 0.75])
    if where_nan == "in":
      s_in[2] = np.nan
    else:
      s_out[0] = np.nan
    assert np.isnan(auroc_jit(s_in, s_out))
    assert np.isnan(rejection.auroc(s_in, s_out))
    scores = s_in if where_nan == "in" else s_out
    assert np.isnan(threshold_jit(scores, recall=0.5))
    assert np.isnan(rate_jit(scores, 0.5))
    assert np.isnan(rejection.rejection_rate(s_out, np.nan))  # a NaN threshold too
    # +-inf scores are ordered values, not errors
    assert float(auroc_jit(np.array([np.inf, 1.0]), np.array([-np.inf]))) == 1.0
    assert float(threshold_jit(np.array([np.inf, -np.inf]), recall=1.0)) == -np.inf

  def test_nan_pipeline(self):
    # A NaN logit reaches the end of the FPR@95 pipeline as NaN.
    z = np.random.default_rng(16).normal(size=(20, 3))
    z[5, 1] = np.nan
    s_in = msp_jit(z)
    t = threshold_jit(s_in, recall=0.95)
    assert np.isnan(t)
    assert np.isnan(rate_jit(msp_jit(z[::-1] + 1.0), t))


# ---------------------------------------------------------------- API shape
PUBLIC = (rejection.auroc, rejection.threshold_at_recall, rejection.rejection_rate,
          rejection.max_softmax_score, rejection.max_sigmoid_score, rejection.not_class_score)


@pytest.mark.parametrize("fn", PUBLIC, ids=lambda f: f.__name__)
def test_options_keyword_only_and_typed(fn):
  import inspect
  import typing
  sig = inspect.signature(fn)
  data = {"auroc": 2, "rejection_rate": 2}.get(fn.__name__, 1)
  params = list(sig.parameters.values())
  assert all(p.kind is p.POSITIONAL_OR_KEYWORD for p in params[:data]), fn.__name__
  assert all(p.kind is p.KEYWORD_ONLY for p in params[data:]), fn.__name__
  hints = typing.get_type_hints(fn)
  assert set(hints) == {p.name for p in params} | {"return"}, fn.__name__
  assert hints["return"] is jax.Array
  for p in params[:data]:
    assert hints[p.name] == jax.typing.ArrayLike, (fn.__name__, p.name)


def test_keyword_only_calls():
  with pytest.raises(TypeError):
    rejection.threshold_at_recall(jnp.arange(5.0), 0.5)  # pylint: disable=too-many-function-args
  with pytest.raises(TypeError):
    rejection.not_class_score(jnp.zeros((2, 3)), 1)  # pylint: disable=too-many-function-args
