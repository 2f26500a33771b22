"""jaxloss.checked: checkify errors for out-of-range labels, bad targets and NaN logits.

Compile time: an eager call of a checked loss runs checkify's jaxpr op by op,
and recompiles the loss's nested jitted functions on every call; under
`jax.jit` it is one XLA program per wrapper and shape. So the tests use one
shape (``[B, K]`` float64 logits, ``[B]`` labels; the class-axis test its own)
and the wrappers made once below, and call them through `jax.jit` (one
program, shared by the tests that call the same wrapper). Eager calls remain
where eager behaviour is the point: the ``without_jit`` variants of the
chex-variant tests, static keyword arguments passed directly, one NaN check,
and the generic checks of user functions (plain `jax.numpy`, no nested jit).
"""

import functools
import importlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from jax.experimental import checkify

import jaxloss

# `jaxloss.checked` is the function (it shadows its module): fetch the module.
checked_module = importlib.import_module("jaxloss._src.checked")

pytestmark = pytest.mark.usefixtures("x64")

CE = jaxloss.softmax_cross_entropy_with_integer_labels
B, K = 6, 10  # the one shape of the logits (float64) and labels

# Made once: jax.jit compiles per function object and shape, so the tests that
# use the same wrapper share its program (chex's with_jit variant included).
# CHECKED_*: checked wrappers (called eagerly, or jitted by a chex variant);
# JIT_*: jitted. cross_entropy has its default reduction, "mean".
CHECKED_CE = jaxloss.checked(CE)
CHECKED_SCE = jaxloss.checked(jaxloss.softmax_cross_entropy)
CHECKED_XENT_IGNORE = functools.partial(jaxloss.checked(jaxloss.cross_entropy),
                                        ignore_index=-100)
JIT_CE = jax.jit(CE)
JIT_CHECKED_CE = jax.jit(CHECKED_CE)
JIT_CHECKED_NLL = jax.jit(jaxloss.checked(jaxloss.nll_loss))
JIT_CHECKED_XENT = jax.jit(jaxloss.checked(jaxloss.cross_entropy))
JIT_XENT_IGNORE = jax.jit(functools.partial(jaxloss.cross_entropy, ignore_index=-100))


def logits_and_labels(seed=0):
  rng = np.random.default_rng(seed)
  return rng.normal(size=(B, K)), rng.integers(0, K, size=B)


class LabelRangeTest(parameterized.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(-1, 10, 11, -100)
  def test_out_of_range_raises(self, bad):
    z, y = logits_and_labels()
    y[3] = bad
    err, loss = self.variant(CHECKED_CE)(z, y)
    with pytest.raises(checkify.JaxRuntimeError, match=(
        r"softmax_cross_entropy_with_integer_labels: labels must be in \[0, 10\), got a "
        rf"label outside that range \(first offending label: {bad}\)")):
      err.throw()
    # the loss itself is what the unchecked call returns: NaN for that example
    chex.assert_trees_all_close(loss, JIT_CE(z, y))
    assert np.isnan(loss[3]) and np.all(np.isfinite(np.delete(np.asarray(loss), 3)))

  @chex.variants(with_jit=True, without_jit=True)
  def test_valid_labels_pass(self):
    z, y = logits_and_labels()
    y[0], y[1] = 0, 9  # both ends of the range
    err, loss = self.variant(CHECKED_CE)(z, y)
    assert err.get() is None
    err.throw()  # no-op
    chex.assert_trees_all_close(loss, JIT_CE(z, y))

  @chex.variants(with_jit=True, without_jit=True)
  def test_example_mask_skips_labels(self):
    z, y = logits_and_labels()
    y[2] = 99
    keep = np.ones(B, bool)
    keep[2] = False
    fn = self.variant(CHECKED_CE)
    err, loss = fn(z, y, example_mask=keep)
    assert err.get() is None
    assert float(loss[2]) == 0.0
    keep[2], keep[4] = True, False  # the bad label is no longer masked
    err, _ = fn(z, y, example_mask=keep)
    assert "first offending label: 99" in err.get()

  @chex.variants(with_jit=True, without_jit=True)
  def test_ignore_index_skipped(self):
    z, y = logits_and_labels()
    y[1] = -100
    fn = self.variant(CHECKED_XENT_IGNORE)
    err, loss = fn(z, y)
    assert err.get() is None
    chex.assert_trees_all_close(loss, JIT_XENT_IGNORE(z, y))
    y[2] = -1  # not the ignore_index: an error
    err, _ = fn(z, y)
    with pytest.raises(checkify.JaxRuntimeError,
                       match=r"^cross_entropy: labels must be in \[0, 10\)"):
      err.throw()
    # without ignore_index, -100 itself is out of range
    err, _ = JIT_CHECKED_XENT(z, np.where(y == -1, 0, y))
    assert "first offending label: -100" in err.get()

  def test_class_axis(self):
    rng = np.random.default_rng(1)
    z = rng.normal(size=(2, 4, 3))  # classes on axis 1 (PyTorch layout)
    y = rng.integers(0, 4, size=(2, 3))
    fn = jax.jit(jaxloss.checked(functools.partial(
        jaxloss.cross_entropy, axis=1, reduction="none")))
    err, _ = fn(z, y)
    assert err.get() is None
    y[1, 2] = 4
    err, _ = fn(z, y)
    assert "labels must be in [0, 4)" in err.get()

  def test_other_integer_label_losses(self):
    z, y = logits_and_labels()
    y[0] = 10
    smoothing = functools.partial(jaxloss.label_smoothing_cross_entropy, alpha=0.3)
    for fn, checked_fn in (
        (jaxloss.label_smoothing_cross_entropy,
         jax.jit(jaxloss.checked(jaxloss.label_smoothing_cross_entropy))),
        (smoothing, jax.jit(jaxloss.checked(smoothing))),
        (jaxloss.nll_loss, JIT_CHECKED_NLL)):
      err, _ = checked_fn(z, y)
      name = getattr(fn, "func", fn).__name__
      assert err.get().startswith(f"{name}: labels must be in [0, 10)"), err.get()

  def test_jit_with_static_kwargs(self):
    z, y = logits_and_labels()
    y[5] = 12
    hinge = importlib.import_module("jaxloss._src.multiclass_hinge")
    fn = jax.jit(jaxloss.checked(functools.partial(
        hinge.multiclass_hinge_loss, kind="weston_watkins", margin=2.0)))
    err, loss = fn(z, y)
    assert err.get().startswith("multiclass_hinge_loss: labels must be in [0, 10)")
    chex.assert_shape(loss, (B,))
    # strings and Python scalars passed directly (no jit) stay static
    err, _ = jaxloss.checked(hinge.multiclass_hinge_loss)(z, y, kind="weston_watkins")
    assert err.get() is not None

  def test_traces_once_under_jit(self):
    z, y = logits_and_labels()
    fn = jax.jit(jaxloss.checked(chex.assert_max_traces(CE, n=1)))
    fn(z, y)
    err, _ = fn(z + 1.0, (y + 1) % 10)
    assert err.get() is None

  def test_grad_through_checked(self):
    z, y = logits_and_labels()

    def total(x):
      err, loss = CHECKED_CE(x, y)
      return jnp.sum(loss), err

    g, err = jax.jit(jax.grad(total, has_aux=True))(z)
    assert err.get() is None
    chex.assert_trees_all_close(g, jax.jit(jax.grad(lambda x: jnp.sum(CE(x, y))))(z))


class TargetsAndLogitsTest(parameterized.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(1.5, -0.25, np.nan)
  def test_probability_targets(self, bad):
    z, y = logits_and_labels()
    t = np.eye(K)[y]
    err, _ = self.variant(CHECKED_SCE)(z, t)
    assert err.get() is None
    t[2, 3] = bad
    err, _ = self.variant(CHECKED_SCE)(z, t)
    with pytest.raises(checkify.JaxRuntimeError,
                       match=r"softmax_cross_entropy: targets must be in \[0, 1\]"):
      err.throw()

  def test_sigmoid_family_rejects_pm1(self):
    sigmoid = importlib.import_module("jaxloss._src.sigmoid")
    z, y = logits_and_labels()
    pm1 = 2 * np.eye(K)[y] - 1
    for fn in (sigmoid.sigmoid_binary_cross_entropy, sigmoid.sigmoid_difference):
      checked_fn = jax.jit(jaxloss.checked(fn))
      err, _ = checked_fn(z, np.eye(K)[y])
      assert err.get() is None
      err, _ = checked_fn(z, pm1)
      assert err.get().startswith(f"{fn.__name__}: targets must be in [0, 1]")

  def test_margin_losses_allow_pm1(self):
    margin = importlib.import_module("jaxloss._src.ovr_margin")
    z, y = logits_and_labels()
    pm1 = 2 * np.eye(K)[y] - 1
    fn = jax.jit(jaxloss.checked(margin.ovr_hinge))
    err, loss = fn(z, pm1)
    assert err.get() is None
    chex.assert_trees_all_close(loss, jax.jit(margin.ovr_hinge)(z, pm1))
    err, _ = fn(z, 2 * pm1)
    assert err.get().startswith("ovr_hinge: targets must be in [-1, 1]")
    err, _ = fn(z, np.where(np.arange(B) == 0, 10, y))  # integer labels: one-vs-rest
    assert err.get().startswith("ovr_hinge: labels must be in [0, 10)")

  def test_nan_and_inf_logits(self):
    z, y = logits_and_labels()
    z[1, 2] = np.nan
    err, _ = CHECKED_CE(z, y)  # eager
    with pytest.raises(checkify.JaxRuntimeError,
                       match="softmax_cross_entropy_with_integer_labels: logits contain NaN"):
      err.throw()
    z[1, 2] = np.inf
    err, _ = JIT_CHECKED_CE(z, y)
    assert "logits contain +inf" in err.get()
    z[1, 2] = -np.inf  # -inf masks a class: allowed
    y[1] = 0 if y[1] == 2 else y[1]
    err, loss = JIT_CHECKED_CE(z, y)
    assert err.get() is None and np.all(np.isfinite(loss))
    # the first argument's own name is used (nll_loss takes log_probs)
    err, _ = JIT_CHECKED_NLL(np.full((B, K), np.nan), y)
    assert err.get().startswith("nll_loss: log_probs contain NaN")

  def test_unknown_function_generic_checks(self):
    def my_loss(logits, targets, *, axis=-1):
      return jnp.sum(jnp.square(logits - targets), axis=axis)

    z, y = logits_and_labels()
    err, _ = jaxloss.checked(my_loss)(z, 5.0 * np.eye(K)[y])
    assert err.get() is None  # no target range known
    err, _ = jaxloss.checked(my_loss, target_range=(0, 1))(z, 5.0 * np.eye(K)[y])
    assert err.get().startswith("my_loss: targets must be in [0, 1]")

    def my_ce(logits, labels):
      return jax.nn.logsumexp(logits, axis=-1) - jnp.take_along_axis(
          logits, labels[:, None], axis=-1)[:, 0]

    err, _ = jaxloss.checked(my_ce)(z, np.full(B, 10))
    assert err.get().startswith("my_ce: labels must be in [0, 10)")
    # a same-named impostor of a jaxloss function does not borrow its range
    def softmax_cross_entropy(logits, targets):
      return my_loss(logits, targets)

    assert checked_module._declared_target_range(softmax_cross_entropy) is None
    err, _ = jaxloss.checked(softmax_cross_entropy)(z, 5.0 * np.eye(K)[y])
    assert err.get() is None
    assert checked_module._declared_target_range(jaxloss.softmax_cross_entropy) == (0.0, 1.0)

  def test_target_range_none_disables(self):
    z, y = logits_and_labels()
    t = np.eye(K)[y] * 2
    err, _ = jax.jit(jaxloss.checked(jaxloss.softmax_cross_entropy, target_range=None))(z, t)
    assert err.get() is None

  def test_bad_use(self):
    with pytest.raises(TypeError, match="expects a loss function"):
      jaxloss.checked(3)
    with pytest.raises(ValueError, match="target_range"):
      jaxloss.checked(CE, target_range="strict")
    z, y = logits_and_labels()
    # trace-time errors of the loss itself still surface as Python exceptions
    with pytest.raises(TypeError, match="one-hot"):
      jaxloss.checked(CE)(z, np.eye(K)[y])

  def test_no_table_of_names(self):
    for old in ("_RULES", "_rule_for", "_Rule"):
      assert not hasattr(checked_module, old), old

  def test_every_public_loss_is_marked(self):
    """Each loss declares its range; `checked` reads exactly that mark."""
    pm1 = {n for n in dir(jaxloss) if n.startswith("ovr_")}
    marked = {n for n in dir(jaxloss)
              if getattr(getattr(jaxloss, n), "jaxloss_target_range", None) is not None}
    losses = {spec_name for spec_name in
              (jaxloss.get(n).function for n in jaxloss.available())}
    assert losses <= marked
    assert pm1 <= marked and "kl_divergence" in marked and "nll_loss" in marked
    for name in marked:
      fn = getattr(jaxloss, name)
      want = (-1.0, 1.0) if name in pm1 else (0.0, 1.0)
      assert fn.jaxloss_target_range == want, name
      assert checked_module._declared_target_range(fn) == want, name
      assert checked_module._declared_target_range(functools.partial(fn)) == want, name
    # metrics and helpers declare nothing: generic checks
    for name in ("accuracy", "weighted_mean", "smooth_labels", "negative_log_likelihood"):
      assert checked_module._declared_target_range(getattr(jaxloss, name)) is None, name

  def test_mark_travels_with_the_function(self):
    """A loss wrapped or defined elsewhere keeps its checks; the mark decides, not the module."""
    z, y = logits_and_labels()
    pm1 = 2 * np.eye(K)[y] - 1

    @functools.wraps(jaxloss.ovr_hinge)
    def wrapped(logits, targets, **kwargs):
      return jaxloss.ovr_hinge(logits, targets, **kwargs)

    wrapped.__module__ = "my_project.losses"
    checked_wrapped = jax.jit(jaxloss.checked(wrapped))
    err, _ = checked_wrapped(z, pm1)
    assert err.get() is None
    err, _ = checked_wrapped(z, 2 * pm1)
    assert err.get().startswith("ovr_hinge: targets must be in [-1, 1]")

    # a user loss that declares its range with the same decorator
    checks = importlib.import_module("jaxloss._src.checks")

    @checks.declares_targets(checks.UNIT_TARGETS)
    def my_bce(logits, targets, *, example_mask=None):
      return jaxloss.sigmoid_binary_cross_entropy(logits, targets, example_mask=example_mask)

    checked_bce = jax.jit(jaxloss.checked(my_bce))
    err, _ = checked_bce(z, pm1)
    assert err.get().startswith("my_bce: targets must be in [0, 1]")
    keep = np.zeros(B, bool)  # every example masked: nothing to check
    err, _ = checked_bce(z, pm1, example_mask=keep)
    assert err.get() is None
    # a plain lambda around a loss has no mark: generic checks only
    err, _ = jax.jit(jaxloss.checked(lambda logits, t: jaxloss.ovr_hinge(logits, t)))(
        z, 5 * pm1)
    assert err.get() is None

  def test_example_mask_skips_bad_targets(self):
    z, y = logits_and_labels()
    t = np.eye(K)[y]
    t[2, 0] = 7.0
    keep = np.arange(B) != 2
    fn = jax.jit(CHECKED_SCE)
    err, loss = fn(z, t, example_mask=keep)
    assert err.get() is None and float(loss[2]) == 0.0
    err, _ = fn(z, t, example_mask=np.arange(B) != 3)
    assert err.get().startswith("softmax_cross_entropy: targets must be in [0, 1]")

  def test_typed(self):
    import inspect
    import typing
    hints = typing.get_type_hints(jaxloss.checked)
    assert set(hints) == set(inspect.signature(jaxloss.checked).parameters) | {"return"}
