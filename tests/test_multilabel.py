"""Multi-label decoding and set scores vs independent NumPy references (argsort, F1 counts)."""

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

import jaxloss
from jaxloss._src import multilabel

# Per-loss reference tests: thorough and slow (many eager shapes compile); the quick
# check is tests/test_contract.py, which walks every loss (see the README).
pytestmark = [pytest.mark.usefixtures("x64", "jitted_public_api"), pytest.mark.slow]

# A few shapes for the whole file: op-by-op (eager) execution compiles every
# jax.numpy operation once per shape and dtype, so tests that share a shape share
# those compilations. vmap runs jitted (eager, it compiles a batched copy of
# every op).
B, K = 12, 5
# Multi-axis batches and the class-axis tests: a cube, so whichever axis holds the
# classes, moved last it gives the same shape and the eager ops compile once for
# every axis (the random values still tell the axes apart).
SHAPE3 = (4, 4, 4)


# ---------------------------------------------------------------- references
def np_top_k(z, k):
  """k highest per row (last axis) by a stable argsort: equal logits -> lower index first."""
  z = np.asarray(z, np.float64)
  order = np.argsort(-z, axis=-1, kind="stable")[..., :k]
  out = np.zeros(z.shape)
  np.put_along_axis(out, order, 1.0, axis=-1)
  return out


def np_per_class_f1(p, t):
  """Loop over classes: 2TP / (2TP + FP + FN), 0/0 -> 1."""
  p = np.asarray(p).reshape(-1, np.shape(p)[-1]) > 0.5
  t = np.asarray(t).reshape(-1, np.shape(t)[-1]) > 0.5
  out = []
  for c in range(p.shape[1]):
    tp = int(np.sum(p[:, c] & t[:, c]))
    fp = int(np.sum(p[:, c] & ~t[:, c]))
    fn = int(np.sum(~p[:, c] & t[:, c]))
    out.append(1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn))
  return np.array(out)


def np_exact(p, t):
  return np.all((np.asarray(p) > 0.5) == (np.asarray(t) > 0.5), axis=-1).astype(np.float64)


def random_multi_hot(rng, shape, rate=0.3):
  return (rng.random(shape) < rate).astype(np.float64)


# ---------------------------------------------------------------- decoding
class DecodeTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters((1, 1), (B, K))
  def test_top_k_vs_argsort(self, batch, num_classes):
    rng = np.random.default_rng(batch * 10 + num_classes)
    z_cont = rng.normal(size=(batch, num_classes))
    z_ties = rng.integers(0, 3, size=(batch, num_classes)).astype(np.float64)  # many ties
    for z in (z_cont, z_ties):
      for k in sorted({0, 1, num_classes // 2, num_classes}):
        got = self.variant(functools.partial(multilabel.top_k_multi_hot, k=k))(z)
        assert got.dtype == jnp.float64
        np.testing.assert_array_equal(got, np_top_k(z, k))
        np.testing.assert_array_equal(np.sum(got, -1), np.full(batch, k))

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(0, 1, 2, -1)
  def test_top_k_axis(self, axis):
    rng = np.random.default_rng(3)
    z = rng.integers(-2, 2, size=SHAPE3).astype(np.float32)
    got = self.variant(functools.partial(multilabel.top_k_multi_hot, k=2, axis=axis))(z)
    assert got.dtype == jnp.float32 and got.shape == z.shape
    want = np.moveaxis(np_top_k(np.moveaxis(z, axis, -1), 2), -1, axis)
    np.testing.assert_array_equal(got, want)

  def test_top_k_tie_break_like_lax(self):
    z = jnp.array([[1.0, 3.0, 3.0, 3.0, 0.0]])
    np.testing.assert_array_equal(multilabel.top_k_multi_hot(z, k=2), [[0, 1, 1, 0, 0]])
    _, idx = jax.lax.top_k(z, 2)
    np.testing.assert_array_equal(idx, [[1, 2]])

  @parameterized.parameters(jnp.float16, jnp.bfloat16)
  def test_low_precision(self, dtype):
    z = jnp.asarray(np.random.default_rng(4).normal(size=(B, K)), dtype)
    ref = np.asarray(z, np.float64)
    got = multilabel.top_k_multi_hot(z, k=3)
    assert got.dtype == jnp.float32
    np.testing.assert_array_equal(got, np_top_k(ref, 3))
    got = multilabel.threshold_multi_hot(z)
    assert got.dtype == jnp.float32
    np.testing.assert_array_equal(got, (ref > 0).astype(float))

  @chex.variants(with_jit=True, without_jit=True)
  def test_threshold(self):
    rng = np.random.default_rng(5)
    z = rng.normal(size=(B, K))
    z[0, 0] = 0.0  # exactly on the threshold: not predicted
    got = self.variant(multilabel.threshold_multi_hot)(z)
    np.testing.assert_array_equal(got, (z > 0).astype(float))
    assert float(got[0, 0]) == 0.0
    got = self.variant(functools.partial(multilabel.threshold_multi_hot, threshold=0.5))(z)
    np.testing.assert_array_equal(got, (z > 0.5).astype(float))
    per_class = np.array([-1.0, 0.0, 0.5, 1.0, 2.0])
    got = self.variant(functools.partial(multilabel.threshold_multi_hot, threshold=per_class))(z)
    np.testing.assert_array_equal(got, (z > per_class[None, :]).astype(float))
    # logit > 0  <=>  sigmoid > 0.5, the multilabel_accuracy convention.
    t = random_multi_hot(rng, z.shape)
    np.testing.assert_array_equal(
        multilabel.exact_set_accuracy(self.variant(multilabel.threshold_multi_hot)(z), t),
        jaxloss.multilabel_accuracy(z, t))

  def test_vmap(self):
    z = np.random.default_rng(6).normal(size=(B, K))
    for fn in (functools.partial(multilabel.top_k_multi_hot, k=2),
               multilabel.threshold_multi_hot):
      np.testing.assert_array_equal(jax.jit(jax.vmap(fn))(z), fn(z))

  def test_traces_once(self):
    def top2(z):
      return multilabel.top_k_multi_hot(z, k=2)
    fn = jax.jit(chex.assert_max_traces(top2, n=1))
    rng = np.random.default_rng(7)
    for _ in range(3):
      fn(rng.normal(size=(B, K)))


# ---------------------------------------------------------------- scores
class ScoreTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(((B, K),), (SHAPE3,), ((K,),))
  def test_f1_and_exact_vs_numpy(self, shape):
    rng = np.random.default_rng(sum(shape))
    p = random_multi_hot(rng, shape, 0.4)
    t = random_multi_hot(rng, shape, 0.3)
    t[..., -1] = 0.0
    p[..., -1] = 0.0  # a class with no positives and no predictions -> F1 = 1
    f1 = self.variant(multilabel.per_class_f1)(p, t)
    chex.assert_shape(f1, (shape[-1],))
    assert f1.dtype == jnp.float64
    chex.assert_trees_all_close(f1, np_per_class_f1(p, t), rtol=1e-12)
    assert float(f1[-1]) == 1.0
    macro = self.variant(multilabel.macro_f1)(p, t)
    chex.assert_shape(macro, ())
    chex.assert_trees_all_close(macro, np_per_class_f1(p, t).mean(), rtol=1e-12)
    exact = self.variant(multilabel.exact_set_accuracy)(p, t)
    chex.assert_shape(exact, shape[:-1])
    np.testing.assert_array_equal(exact, np_exact(p, t))

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(0, 1, 2)
  def test_axis(self, axis):
    rng = np.random.default_rng(11)
    p = random_multi_hot(rng, SHAPE3, 0.5)
    t = random_multi_hot(rng, SHAPE3, 0.5)
    p_last, t_last = np.moveaxis(p, axis, -1), np.moveaxis(t, axis, -1)
    f1 = self.variant(functools.partial(multilabel.per_class_f1, axis=axis))(p, t)
    chex.assert_trees_all_close(f1, np_per_class_f1(p_last, t_last), rtol=1e-12)
    exact = self.variant(functools.partial(multilabel.exact_set_accuracy, axis=axis))(p, t)
    np.testing.assert_array_equal(exact, np_exact(p_last, t_last))

  def test_dtypes_and_binarization(self):
    rng = np.random.default_rng(12)
    p = random_multi_hot(rng, (B, K), 0.5)
    t = random_multi_hot(rng, (B, K), 0.5)
    want = np_per_class_f1(p, t)
    for pp, tt in ((p > 0.5, t > 0.5), (p.astype(np.int32), t.astype(np.int8)),
                   (p.astype(np.float32), t.astype(np.float32))):
      f1 = multilabel.per_class_f1(pp, tt)
      assert f1.dtype == jnp.float32
      chex.assert_trees_all_close(f1, want, rtol=1e-6)
      assert multilabel.exact_set_accuracy(pp, tt).dtype == jnp.float32
    assert multilabel.per_class_f1(p, t > 0.5).dtype == jnp.float64
    # Soft values are binarized at 0.5.
    soft_p = np.where(p > 0.5, 0.8, 0.2)
    chex.assert_trees_all_close(multilabel.per_class_f1(soft_p, t), want, rtol=1e-12)

  def test_known_values(self):
    p = jnp.array([[1, 0], [1, 0], [0, 0]])
    t = jnp.array([[1, 0], [0, 0], [1, 0]])
    # class 0: TP=1 FP=1 FN=1 -> 0.5; class 1: nothing -> 1.
    np.testing.assert_allclose(multilabel.per_class_f1(p, t), [0.5, 1.0])
    np.testing.assert_allclose(multilabel.per_class_f1(jnp.zeros((3, 2)), jnp.ones((3, 2))),
                               [0.0, 0.0])
    np.testing.assert_allclose(multilabel.macro_f1(t, t), 1.0)

  def test_sklearn(self):
    skm = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(13)
    p = random_multi_hot(rng, (30, 6)).astype(int)
    t = random_multi_hot(rng, (30, 6)).astype(int)
    p[:, 0] = t[:, 0] = 0
    chex.assert_trees_all_close(multilabel.per_class_f1(p, t),
                                skm.f1_score(t, p, average=None, zero_division=1.0), rtol=1e-12)
    chex.assert_trees_all_close(multilabel.macro_f1(p, t),
                                skm.f1_score(t, p, average="macro", zero_division=1.0), rtol=1e-12)

  def test_vmap(self):
    rng = np.random.default_rng(14)
    p = random_multi_hot(rng, SHAPE3)  # stacked batches of examples
    t = random_multi_hot(rng, SHAPE3)
    got = jax.jit(jax.vmap(multilabel.per_class_f1))(p, t)
    chex.assert_trees_all_close(got, np.stack([np_per_class_f1(p[i], t[i]) for i in range(len(p))]),
                                rtol=1e-12)
    np.testing.assert_array_equal(jax.jit(jax.vmap(multilabel.exact_set_accuracy))(p[0], t[0]),
                                  multilabel.exact_set_accuracy(p[0], t[0]))

  def test_decode_then_score(self):
    rng = np.random.default_rng(15)
    z = rng.normal(size=(B, K))
    t = np_top_k(z + 0.5 * rng.normal(size=z.shape), 2)
    pred = jax.jit(lambda z: multilabel.top_k_multi_hot(z, k=2))(z)
    chex.assert_trees_all_close(multilabel.macro_f1(pred, t),
                                np_per_class_f1(np_top_k(z, 2), t).mean(), rtol=1e-12)


_multi_hot = functools.partial(hnp.arrays, np.float64, (B, K), elements=st.sampled_from([0.0, 1.0]))


@hypothesis.given(p=_multi_hot(), t=_multi_hot())
def test_f1_properties(p, t):
  f1 = np.asarray(_f1_jit(p, t))
  assert np.all((f1 >= 0.0) & (f1 <= 1.0))
  np.testing.assert_allclose(f1, np_per_class_f1(p, t), rtol=1e-12)
  np.testing.assert_array_equal(_f1_jit(t, p), f1)  # symmetric in predictions / targets
  np.testing.assert_array_equal(_f1_jit(t, t), np.ones(K))
  exact = np.asarray(_exact_jit(p, t))
  np.testing.assert_array_equal(exact, np_exact(p, t))
  # Exact match of every row implies F1 = 1 for every class.
  if exact.all():
    np.testing.assert_array_equal(f1, np.ones(K))


_f1_jit = jax.jit(multilabel.per_class_f1)
_exact_jit = jax.jit(multilabel.exact_set_accuracy)


@hypothesis.given(
    z=hnp.arrays(np.float64, (B, K), elements=st.integers(-2, 2).map(float)),
    k=st.integers(0, K),
)
def test_top_k_properties(z, k):
  got = np.asarray(multilabel.top_k_multi_hot(z, k=k))
  np.testing.assert_array_equal(got, np_top_k(z, k))
  np.testing.assert_array_equal(got.sum(-1), np.full(B, k))
  # Every selected logit is >= every unselected one in its row.
  for row, sel in zip(z, got > 0.5):
    if 0 < k < K:
      assert row[sel].min() >= row[~sel].max()


# ---------------------------------------------------------------- bad inputs
def test_bad_decode_inputs():
  z = jnp.zeros((2, 3))
  with pytest.raises(ValueError, match=r"k=4 is out of range: it must be in \[0, 3\]"):
    multilabel.top_k_multi_hot(z, k=4)
  with pytest.raises(ValueError, match=r"k=-1 is out of range"):
    multilabel.top_k_multi_hot(z, k=-1)
  with pytest.raises(TypeError, match="k must be a Python int"):
    multilabel.top_k_multi_hot(z, k=1.0)
  with pytest.raises(TypeError, match="k must be a Python int"):
    multilabel.top_k_multi_hot(z, k=jnp.array(1))
  with pytest.raises(TypeError, match="floating-point"):
    multilabel.top_k_multi_hot(jnp.zeros((2, 3), jnp.int32), k=1)
  with pytest.raises(TypeError, match="floating-point"):
    multilabel.threshold_multi_hot(jnp.zeros((2, 3), jnp.int32))
  with pytest.raises(ValueError, match="axis=2 is out of range"):
    multilabel.top_k_multi_hot(z, k=1, axis=2)
  with pytest.raises(ValueError, match=r"threshold shape \(2,\) does not broadcast"):
    multilabel.threshold_multi_hot(z, threshold=jnp.zeros(2))


def test_bad_score_inputs():
  p = jnp.zeros((4, 3))
  with pytest.raises(ValueError, match=r"predictions shape \(4, 3\) must equal targets shape \(4, 2\)"):
    multilabel.per_class_f1(p, jnp.zeros((4, 2)))
  with pytest.raises(ValueError, match="look.* like integer class labels"):
    multilabel.macro_f1(p, jnp.zeros(4, jnp.int32))
  with pytest.raises(ValueError, match="must equal targets shape"):
    multilabel.exact_set_accuracy(p, jnp.zeros((3, 3)))
  with pytest.raises(ValueError, match="class axis.*got a scalar"):
    multilabel.per_class_f1(jnp.float32(1), jnp.float32(1))
  with pytest.raises(TypeError, match="targets must be real"):
    multilabel.per_class_f1(p, jnp.zeros((4, 3), jnp.complex64))
  with pytest.raises(ValueError, match="axis=-3 is out of range"):
    multilabel.per_class_f1(p, p, axis=-3)


# ---------------------------------------------------------------- API shape
PUBLIC = (multilabel.top_k_multi_hot, multilabel.threshold_multi_hot, multilabel.per_class_f1,
          multilabel.macro_f1, multilabel.exact_set_accuracy)


@pytest.mark.parametrize("fn", PUBLIC, ids=lambda f: f.__name__)
def test_options_keyword_only_and_typed(fn):
  import inspect
  import typing
  params = list(inspect.signature(fn).parameters.values())
  data = 1 if fn.__name__.endswith("multi_hot") else 2
  assert all(p.kind is p.POSITIONAL_OR_KEYWORD for p in params[:data]), fn.__name__
  assert all(p.kind is p.KEYWORD_ONLY for p in params[data:]), fn.__name__
  hints = typing.get_type_hints(fn)
  assert set(hints) == {p.name for p in params} | {"return"}
  assert hints["return"] is jax.Array
  for p in params[:data]:
    assert hints[p.name] == jax.typing.ArrayLike


def test_k_is_keyword_only():
  z = jnp.array([[0.1, 2.0, -1.0]])
  with pytest.raises(TypeError):
    multilabel.top_k_multi_hot(z, 2)  # pylint: disable=too-many-function-args
  np.testing.assert_array_equal(multilabel.top_k_multi_hot(z, k=2), [[1.0, 1.0, 0.0]])
