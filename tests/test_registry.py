"""jaxloss.registry: every built-in name trains, predicts and resolves as documented.

The tests share one batch shape, ``[B, K]`` float64 logits and ``[B]`` labels:
each eager `jax.numpy` call compiles once per shape and dtype, so they reuse what
the first one compiled. The loss of a subset of the batch is computed at that
shape too (`kept_twice`: each kept example twice, the same mean).
"""

import dataclasses
import functools
import importlib
import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

import jaxloss

pytestmark = pytest.mark.usefixtures("x64")

B, K = 8, 10
NAMES = jaxloss.available()
REQUIRED = (
    "softmax_cross_entropy", "sigmoid_difference", "sigmoid_binary_cross_entropy",
    "multilabel_bce", "label_smoothing_cross_entropy", "softmax_focal_loss",
    "sigmoid_focal_loss", "poly1_cross_entropy", "brier_score", "square_loss",
    "multiclass_hinge_loss", "multiclass_hinge_ww", "ovr_hinge", "ovr_squared_hinge",
    "ovr_smooth_hinge", "ovr_logistic", "ovr_exponential", "ovr_savage", "ovr_tangent",
    "ovr_square", "softmax_absolute_error", "balanced_sigmoid_difference",
)
# The old short names, kept as aliases of the canonical (function) names.
OLD_NAMES = {
    "label_smoothing": "label_smoothing_cross_entropy", "softmax_focal": "softmax_focal_loss",
    "sigmoid_focal": "sigmoid_focal_loss", "poly1": "poly1_cross_entropy",
    "brier": "brier_score", "multiclass_hinge": "multiclass_hinge_loss",
}
registry = importlib.import_module("jaxloss._src.registry")


def batch(seed=0):
  rng = np.random.default_rng(seed)
  return rng.normal(size=(B, K)), rng.integers(0, K, size=B)


def kept_twice(keep):
  """Row indices of the ``B // 2`` kept examples, each twice: ``B`` rows with their mean.

  ``loss(z[kept_twice(keep)], y[kept_twice(keep)])`` is the loss of the kept
  examples alone, at the batch's shape (a subset ``z[keep]`` is a new shape).
  """
  kept = np.flatnonzero(keep)
  assert 2 * len(kept) == B, keep
  return np.repeat(kept, 2)


class EveryLossTest(parameterized.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(*NAMES)
  def test_loss_from_labels(self, name):
    spec = jaxloss.get(name)
    z, y = batch()
    targets = spec.targets(y, K)

    def both(logits, labels, targets):  # with jit: one program for the two methods
      return spec.loss_from_labels(logits, labels), spec.loss(logits, targets)

    loss, loss_of_targets = self.variant(both)(z, y, targets)
    chex.assert_shape(loss, ())
    assert np.isfinite(loss), (name, loss)
    # loss_from_labels == loss(logits, targets(labels, K)) == mean of per_example
    chex.assert_trees_all_close(loss_of_targets, loss, rtol=1e-12)
    per_example = spec.per_example(z, targets)
    chex.assert_shape(per_example, (B,))
    chex.assert_trees_all_close(np.mean(per_example), loss, rtol=1e-12)

  @parameterized.parameters(*NAMES)
  def test_grad_finite_and_jit(self, name):
    spec = jaxloss.get(name)
    z, y = batch(1)
    g = jax.jit(jax.grad(spec.loss_from_labels))(z, y)
    chex.assert_shape(g, (B, K))
    assert np.all(np.isfinite(g)), name
    assert np.any(g != 0), name

  @parameterized.parameters(*NAMES)
  def test_correct_logits_beat_wrong_ones(self, name):
    spec = jaxloss.get(name)
    _, y = batch(2)
    right = 10.0 * np.eye(K)[y]  # float64 one-hot logits, made in NumPy
    wrong = 10.0 * np.eye(K)[(y + 1) % K]
    assert spec.loss_from_labels(right, y) < spec.loss_from_labels(wrong, y), name
    # and the prediction at the right logits is right
    if spec.prediction == "argmax":
      np.testing.assert_array_equal(spec.predict(right), y)
    else:
      np.testing.assert_array_equal(spec.predict(right), np.eye(K, dtype=bool)[y])

  @parameterized.parameters(*NAMES)
  def test_predict_probabilities_where(self, name):
    spec = jaxloss.get(name)
    z, y = batch(3)
    pred = spec.predict(z)
    if spec.prediction == "argmax":
      chex.assert_shape(pred, (B,))
      assert jnp.issubdtype(pred.dtype, jnp.integer)
      np.testing.assert_array_equal(pred, np.argmax(z, -1))
    else:
      chex.assert_shape(pred, (B, K))
      assert pred.dtype == jnp.bool_
    p = spec.probabilities(z)
    chex.assert_shape(p, (B, K))
    assert np.all((p >= 0) & (p <= 1))
    if spec.activation != "sigmoid":
      np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-12)
    # a per-example mask in loss: masked examples take no part
    keep = np.arange(B) % 2 == 1
    got = spec.loss_from_labels(z, y, example_mask=keep)
    rows = kept_twice(keep)
    chex.assert_trees_all_close(got, spec.loss_from_labels(z[rows], y[rows]), rtol=1e-12)

  @parameterized.parameters(*NAMES)
  def test_spec_fields(self, name):
    spec = jaxloss.get(name)
    assert spec.name == name
    # the naming rule: a canonical name is its function's name, or a preset's
    assert spec.function == spec.per_example.func.__name__
    assert spec.function == registry.PRESETS.get(name, name)
    assert getattr(jaxloss, spec.function) is spec.per_example.func  # public, same object
    assert spec.target_kind in ("integer", "one_hot", "multi_hot", "pm1")
    assert spec.activation in ("softmax", "sigmoid", "none")
    assert spec.prediction in ("argmax", "threshold")
    assert isinstance(spec.per_example, functools.partial)
    assert spec.per_example.keywords == dict(spec.hyperparams)
    for line in (spec.description, spec.reference):
      assert line and "\n" not in line
    assert spec.multiclass == (name in jaxloss.multiclass())


class RegistryTest(parameterized.TestCase):

  def test_required_names(self):
    assert set(REQUIRED) <= set(NAMES)
    assert NAMES == sorted(NAMES)
    assert "ce" not in NAMES and "bce" not in NAMES  # no aliases
    assert jaxloss.multiclass() == [n for n in NAMES if n != "multilabel_bce"]

  @parameterized.parameters(
      ("ce", "softmax_cross_entropy"), ("cross_entropy", "softmax_cross_entropy"),
      ("CE", "softmax_cross_entropy"), ("mnist_loss", "sigmoid_difference"),
      ("mnist-loss", "sigmoid_difference"), ("sigdiff", "sigmoid_difference"),
      ("bce", "sigmoid_binary_cross_entropy"), ("ovr-hinge", "ovr_hinge"),
      ("mae", "softmax_absolute_error"), ("MAE", "softmax_absolute_error"),
      *OLD_NAMES.items(), ("Softmax-Focal", "softmax_focal_loss"))
  def test_aliases(self, alias, name):
    spec = jaxloss.get(alias)
    assert spec.name == name
    assert spec.per_example.func is jaxloss.get(name).per_example.func

  def test_kinds_of_named_losses(self):
    sig = jaxloss.get("sigmoid_difference")
    assert (sig.target_kind, sig.activation, sig.prediction) == ("one_hot", "sigmoid", "argmax")
    ml = jaxloss.get("multilabel_bce")
    assert (ml.target_kind, ml.activation, ml.prediction, ml.multiclass) == (
        "multi_hot", "sigmoid", "threshold", False)
    margin = importlib.import_module("jaxloss._src.ovr_margin")
    ovr = jaxloss.get("ovr_savage")
    assert ovr.per_example.func is margin.ovr_savage
    assert (ovr.target_kind, ovr.activation, ovr.prediction) == ("integer", "none", "argmax")
    assert jaxloss.get("multiclass_hinge").hyperparams["kind"] == "crammer_singer"
    assert jaxloss.get("multiclass_hinge_ww").hyperparams["kind"] == "weston_watkins"
    assert dict(jaxloss.get("square_loss").hyperparams) == {"k": 1.0, "m": 1.0}
    assert jaxloss.get("softmax_focal").hyperparams["gamma"] == 2.0

  def test_ce_is_softmax_cross_entropy(self):
    z, y = batch(4)
    spec = jaxloss.get("ce")
    assert spec.per_example.func is jaxloss.softmax_cross_entropy
    assert spec.function == "softmax_cross_entropy" and spec.target_kind == "integer"
    chex.assert_trees_all_close(
        jaxloss.get("ce").per_example(z, y),
        jaxloss.softmax_cross_entropy_with_integer_labels(z, y))
    chex.assert_trees_all_close(
        jaxloss.get("ce").loss_from_labels(z, y),
        jaxloss.cross_entropy(z, y), rtol=1e-12)

  def test_unknown_name_lists_names(self):
    with pytest.raises(ValueError, match="Unknown loss 'nope'") as info:
      jaxloss.get("nope")
    message = str(info.value)
    for name in NAMES:
      assert name in message
    assert "ce -> softmax_cross_entropy" in message
    with pytest.raises(TypeError, match="must be a string"):
      jaxloss.get(3)

  def test_hyperparameter_override(self):
    spec = jaxloss.get("label_smoothing", alpha=0.2)
    assert dict(spec.hyperparams) == {"alpha": 0.2}
    assert dict(jaxloss.get("label_smoothing").hyperparams) == {"alpha": 0.1}  # no state
    z, y = batch(5)
    chex.assert_trees_all_close(
        spec.per_example(z, y), jaxloss.label_smoothing_cross_entropy(z, y, alpha=0.2))
    hinge = jaxloss.get("multiclass_hinge", kind="weston_watkins", margin=2.0)
    assert hinge.hyperparams["margin"] == 2.0
    w = np.linspace(0.5, 1.5, K)
    weighted = jaxloss.get("ce", weights=w)
    chex.assert_trees_all_close(
        weighted.per_example(z, y),
        jaxloss.softmax_cross_entropy_with_integer_labels(z, y, weights=w))

  def test_bad_hyperparameter(self):
    with pytest.raises(TypeError, match=re.escape(
        "Loss 'label_smoothing_cross_entropy' got unknown "
        "hyperparameter(s) gamma; valid hyperparameters: weights, alpha")):
      jaxloss.get("label_smoothing", gamma=2.0)
    with pytest.raises(TypeError, match="valid hyperparameters: .*gamma"):
      jaxloss.get("softmax_focal", epsilon=1.0)
    with pytest.raises(TypeError, match=r"valid hyperparameters: \(none\)"):
      jaxloss.get("ovr_hinge", margin=1.0)
    with pytest.raises(TypeError, match="unknown hyperparameter.*axis"):
      jaxloss.get("ce", axis=0)  # layout, not a hyperparameter
    for per_call in ("where", "example_mask"):
      with pytest.raises(TypeError, match=f"unknown hyperparameter.*{per_call}"):
        jaxloss.get("ce", **{per_call: None})
    with pytest.raises(TypeError, match=re.escape(
        "Loss 'multiclass_hinge_ww' (multiclass_hinge_loss) got unknown")):
      jaxloss.get("multiclass_hinge_ww", gamma=1.0)

  def test_read_only(self):
    spec = jaxloss.get("label_smoothing")
    with pytest.raises(TypeError):
      spec.hyperparams["alpha"] = 0.5
    with pytest.raises(dataclasses.FrozenInstanceError):
      spec.name = "other"
    with pytest.raises(TypeError):
      registry._BUILTINS["mine"] = None
    with pytest.raises(TypeError):
      registry.PRESETS["mine"] = "softmax_cross_entropy"
    assert not hasattr(registry, "register")

  def test_targets(self):
    z, y = batch(6)
    y = jnp.asarray(y)
    eye = np.eye(K, dtype=np.float32)
    spec = jaxloss.get("ce")
    assert spec.targets(y, K) is not None
    np.testing.assert_array_equal(spec.targets(y, K), y)
    onehot = jaxloss.get("bce").targets(y, K)
    assert onehot.dtype == jnp.float32
    np.testing.assert_array_equal(onehot, eye[y])
    np.testing.assert_array_equal(jaxloss.get("multilabel_bce").targets(y, K), eye[y])
    multi_hot = (np.arange(B * K).reshape(B, K) % 3 == 0).astype(np.float64)
    multi_hot[1] = 0.0  # an example with no label
    np.testing.assert_array_equal(jaxloss.get("multilabel_bce").targets(multi_hot, K),
                                  multi_hot)
    pm1 = dataclasses.replace(jaxloss.get("ovr_hinge"), target_kind="pm1")
    np.testing.assert_array_equal(pm1.targets(y, K), 2 * eye[y] - 1)
    # the margin losses accept +-1 targets as well: same loss as integer labels
    chex.assert_trees_all_close(pm1.loss_from_labels(z, y),
                                jaxloss.get("ovr_hinge").loss_from_labels(z, y))

  def test_custom_spec_validation(self):
    with pytest.raises(ValueError, match="target_kind must be one of"):
      jaxloss.LossSpec("x", jaxloss.softmax_cross_entropy, "soft", "softmax", "argmax")
    with pytest.raises(ValueError, match="activation must be one of"):
      jaxloss.LossSpec("x", jaxloss.softmax_cross_entropy, "one_hot", "relu", "argmax")
    params = {"a": 1}
    spec = jaxloss.LossSpec("x", jaxloss.softmax_cross_entropy, "one_hot", "softmax",
                            "argmax", hyperparams=params)
    params["a"] = 2
    assert spec.hyperparams["a"] == 1  # a private copy
    # `function` defaults to the name of the function per_example runs
    assert spec.function == "softmax_cross_entropy"
    wrapped = jaxloss.LossSpec("y", functools.partial(jaxloss.brier_score), "integer",
                               "softmax", "argmax")
    assert wrapped.function == "brier_score"
    named = jaxloss.LossSpec("z", jaxloss.brier_score, "integer", "softmax", "argmax",
                             function="my_brier")
    assert named.function == "my_brier"

  def test_checked_integration(self):
    z, y = batch(7)
    y[0] = K
    for name in ("ce", "label_smoothing", "softmax_focal", "multiclass_hinge", "ovr_hinge"):
      err, _ = jax.jit(jaxloss.checked(jaxloss.get(name).per_example))(z, y)
      assert err.get() is not None and "labels must be in [0, 10)" in err.get(), name


class NamingRuleTest(parameterized.TestCase):
  """Canonical name == function name, except the read-only PRESETS table."""

  def test_rule_holds_for_every_builtin(self):
    for name in NAMES:
      spec = jaxloss.get(name)
      if name in registry.PRESETS:
        assert spec.function == registry.PRESETS[name] != name
      else:
        assert spec.function == name, name

  def test_presets_table(self):
    assert dict(registry.PRESETS) == {
        "multiclass_hinge_ww": "multiclass_hinge_loss",
        "multilabel_bce": "sigmoid_binary_cross_entropy",
    }
    for preset, function in registry.PRESETS.items():
      assert preset in NAMES and function in NAMES  # the plain function is there too
      assert preset in registry.__doc__
    # what each preset binds, that the plain entry does not
    ww, cs = jaxloss.get("multiclass_hinge_ww"), jaxloss.get("multiclass_hinge_loss")
    assert (ww.hyperparams["kind"], cs.hyperparams["kind"]) == ("weston_watkins", "crammer_singer")
    ml, bce = jaxloss.get("multilabel_bce"), jaxloss.get("sigmoid_binary_cross_entropy")
    assert (ml.target_kind, ml.prediction, ml.multiclass) == ("multi_hot", "threshold", False)
    assert (bce.target_kind, bce.prediction, bce.multiclass) == ("one_hot", "argmax", True)

  def test_preset_setting_is_fixed(self):
    assert jaxloss.get("multiclass_hinge_ww", kind="weston_watkins", margin=2.0).hyperparams[
        "margin"] == 2.0
    with pytest.raises(TypeError, match=re.escape(
        "Loss 'multiclass_hinge_ww' (multiclass_hinge_loss) is a preset: kind='weston_watkins'")):
      jaxloss.get("multiclass_hinge_ww", kind="crammer_singer")
    # the plain function takes any kind
    assert jaxloss.get("multiclass_hinge_loss", kind="weston_watkins").hyperparams[
        "kind"] == "weston_watkins"

  def test_a_broken_table_fails_at_import(self):
    # _check_names runs at import; fed a misnamed entry it raises.
    bad = dict(registry._BUILTINS)
    bad["brier"] = bad["brier_score"]
    with pytest.MonkeyPatch.context() as mp:
      mp.setattr(registry, "_BUILTINS", bad)
      with pytest.raises(AssertionError, match="'brier' runs 'brier_score'"):
        registry._check_names()
    registry._check_names()  # the real table passes

  @parameterized.parameters(*OLD_NAMES.items())
  def test_old_names_are_aliases_only(self, old, new):
    assert old not in NAMES and new in NAMES
    spec = jaxloss.get(old)
    assert spec.name == new and spec.function == new
    assert old in spec.aliases
    assert dict(spec.hyperparams) == dict(jaxloss.get(new).hyperparams)

  def test_loss_example_mask_keyword_only(self):
    import inspect
    import typing
    spec = jaxloss.get("ce")
    z, y = batch(8)
    keep = np.arange(B) < B // 2
    for method in (spec.loss, spec.loss_from_labels):
      params = inspect.signature(method).parameters
      assert params["example_mask"].kind is inspect.Parameter.KEYWORD_ONLY
      assert "where" not in params  # `where` is a class mask in jaxloss
      hints = typing.get_type_hints(method)
      assert hints["return"] is jax.Array and hints["logits"] == jax.typing.ArrayLike
    with pytest.raises(TypeError):
      spec.loss_from_labels(z, y, where=keep)  # pylint: disable=unexpected-keyword-arg
    with pytest.raises(TypeError):
      spec.loss_from_labels(z, y, keep)  # pylint: disable=too-many-function-args
    rows = kept_twice(keep)
    chex.assert_trees_all_close(spec.loss_from_labels(z, y, example_mask=keep),
                                spec.loss_from_labels(z[rows], y[rows]), rtol=1e-12)
