"""Losses by name: what an experiment needs to train and evaluate with any of them.

``jaxloss.get("ce")`` returns a `LossSpec`: the per-example loss with its
hyperparameters bound, plus what a training loop must know about it — which
targets it takes (`LossSpec.targets` converts integer labels), how to predict
(`LossSpec.predict`) and how to turn logits into probabilities
(`LossSpec.probabilities`, for calibration metrics).

The table of built-ins is a read-only module constant; there is no
``register()``: a new loss is a new `LossSpec` built by hand (it is a plain
frozen dataclass), which keeps the set of names a fixed, reviewable fact.

**Names.** A canonical name is the name of the jaxloss function it runs
(``spec.name == spec.function``), so a name found in a config file is found in
the API reference too. The only exceptions are the PRESETS: a function with
settings bound that make it a different loss to train, which keeps a name of
its own. They are listed in the read-only table `PRESETS` (name -> function):

=====================  ============================  ==============================
preset                 function                      bound settings
=====================  ============================  ==============================
multiclass_hinge_ww    multiclass_hinge_loss         ``kind="weston_watkins"``
                                                     (fixed: cannot be overridden)
multilabel_bce         sigmoid_binary_cross_entropy  multi-hot targets, prediction
                                                     ``logits > 0``, not multi-class
=====================  ============================  ==============================

Older short names stay accepted as aliases (``get`` resolves them; `available`
lists canonical names only).

==============================  ===========  ==========  ==========  ================
name (aliases)                  target_kind  activation  prediction  defaults
==============================  ===========  ==========  ==========  ================
softmax_cross_entropy           integer      softmax     argmax
(ce, cross_entropy)
sigmoid_difference              one_hot      sigmoid     argmax
(mnist_loss, sigdiff)
balanced_sigmoid_difference     one_hot      sigmoid     argmax
sigmoid_binary_cross_entropy    one_hot      sigmoid     argmax
(bce)
multilabel_bce (preset)         multi_hot    sigmoid     threshold   (not multi-class)
label_smoothing_cross_entropy   integer      softmax     argmax      alpha=0.1
(label_smoothing)
softmax_focal_loss              integer      softmax     argmax      gamma=2,
(softmax_focal)                                                      alpha=None
sigmoid_focal_loss              one_hot      sigmoid     argmax      gamma=2,
(sigmoid_focal)                                                      alpha=0.25
poly1_cross_entropy (poly1)     integer      softmax     argmax      epsilon=1
brier_score (brier)             integer      softmax     argmax
softmax_absolute_error (mae)    integer      softmax     argmax
square_loss                     integer      none        argmax      k=1, m=1
multiclass_hinge_loss           integer      none        argmax      crammer_singer,
(multiclass_hinge)                                                   margin=1
multiclass_hinge_ww (preset)    integer      none        argmax      weston_watkins,
                                                                     margin=1
ovr_hinge, ovr_squared_hinge,   integer      none        argmax
ovr_smooth_hinge, ovr_logistic,
ovr_exponential, ovr_savage,
ovr_tangent, ovr_square
==============================  ===========  ==========  ==========  ================
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import types
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from jax.typing import ArrayLike

from jaxloss._src.absolute_error import softmax_absolute_error
from jaxloss._src.cross_entropy import label_smoothing_cross_entropy
from jaxloss._src.cross_entropy import softmax_cross_entropy
from jaxloss._src.focal import poly1_cross_entropy
from jaxloss._src.focal import sigmoid_focal_loss
from jaxloss._src.focal import softmax_focal_loss
from jaxloss._src.multiclass_hinge import multiclass_hinge_loss
from jaxloss._src.ovr_margin import ovr_exponential
from jaxloss._src.ovr_margin import ovr_hinge
from jaxloss._src.ovr_margin import ovr_logistic
from jaxloss._src.ovr_margin import ovr_savage
from jaxloss._src.ovr_margin import ovr_smooth_hinge
from jaxloss._src.ovr_margin import ovr_square
from jaxloss._src.ovr_margin import ovr_squared_hinge
from jaxloss._src.ovr_margin import ovr_tangent
from jaxloss._src.reductions import weighted_mean
from jaxloss._src.sigmoid import balanced_sigmoid_difference
from jaxloss._src.sigmoid import sigmoid_binary_cross_entropy
from jaxloss._src.sigmoid import sigmoid_difference
from jaxloss._src.squared import brier_score
from jaxloss._src.squared import square_loss

__all__ = ["PRESETS", "LossSpec", "available", "get", "multiclass"]

TARGET_KINDS = ("integer", "one_hot", "multi_hot", "pm1")
ACTIVATIONS = ("softmax", "sigmoid", "none")
PREDICTIONS = ("argmax", "threshold")

# Keyword-only parameters that are per-call data or layout, not hyperparameters:
# a spec always works on [..., K] logits with the class axis last.
_NOT_HYPERPARAMS = frozenset({"axis", "where", "example_mask"})


@dataclasses.dataclass(frozen=True)
class LossSpec:
  """A loss selected by name, with its hyperparameters bound.

  Attributes:
    name: canonical name (see `available`).
    per_example: ``(logits [..., K], targets) -> [...]`` per-example losses, the
      jaxloss function with the hyperparameters bound (``functools.partial``).
    target_kind: what ``per_example`` takes as targets: ``"integer"`` class
      ids, ``"one_hot"`` (single label, float), ``"multi_hot"`` (several
      labels, float) or ``"pm1"`` (``2 * one_hot - 1``).
    activation: the link from logits to probabilities: ``"softmax"``,
      ``"sigmoid"`` or ``"none"`` (a margin / regression loss on raw logits).
    prediction: ``"argmax"`` (a class id) or ``"threshold"`` (multi-hot
      ``logits > 0``).
    hyperparams: the bound hyperparameters (read-only mapping).
    description: one line.
    reference: one line.
    multiclass: True for multi-class single-label losses (all built-ins but
      ``"multilabel_bce"``).
    aliases: other names `get` accepts for this loss.
    function: the name of the jaxloss function ``per_example`` runs. Equal to
      ``name`` for every built-in except the `PRESETS`. Left empty in a spec
      built by hand, it is read from ``per_example`` (a ``functools.partial``
      is unwrapped).
  """

  name: str
  per_example: Callable[..., jax.Array]
  target_kind: str
  activation: str
  prediction: str
  hyperparams: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  description: str = ""
  reference: str = ""
  multiclass: bool = True
  aliases: tuple[str, ...] = ()
  function: str = ""

  def __post_init__(self):
    for field, value, allowed in (("target_kind", self.target_kind, TARGET_KINDS),
                                  ("activation", self.activation, ACTIVATIONS),
                                  ("prediction", self.prediction, PREDICTIONS)):
      if value not in allowed:
        raise ValueError(f"LossSpec.{field} must be one of {allowed}, got {value!r}.")
    # A private copy behind a read-only view: neither the caller's dict nor the
    # spec's hyperparams can be changed afterwards.
    object.__setattr__(self, "hyperparams", types.MappingProxyType(dict(self.hyperparams)))
    object.__setattr__(self, "aliases", tuple(self.aliases))
    if not self.function:
      base = self.per_example
      while isinstance(base, functools.partial):
        base = base.func
      object.__setattr__(self, "function", getattr(base, "__name__", type(base).__name__))

  def targets(self, labels: ArrayLike, num_classes: int) -> jax.Array:
    """Integer labels ``[...]`` -> what `per_example` takes, for this target kind.

    ``"integer"``: the labels unchanged; ``"one_hot"`` / ``"multi_hot"``:
    ``jax.nn.one_hot(labels, num_classes)`` in float32; ``"pm1"``: ``2 * one_hot
    - 1``. Floating or boolean input is taken to be targets already (for example
    real multi-hot rows) and only cast to float32 (mapped to +-1 for ``"pm1"``).
    An out-of-range label gives an all-zero one-hot row (all -1 for ``"pm1"``):
    wrap ``per_example`` in `jaxloss.checked` to catch those.
    """
    labels = jnp.asarray(labels)
    if self.target_kind == "integer":
      return labels
    if jnp.issubdtype(labels.dtype, jnp.integer):
      onehot = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
    else:
      onehot = labels.astype(jnp.float32)
    return 2.0 * onehot - 1.0 if self.target_kind == "pm1" else onehot

  def loss(
      self, logits: ArrayLike, targets: ArrayLike, *, example_mask: ArrayLike | None = None,
  ) -> jax.Array:
    """The training loss, ``weighted_mean(per_example(logits, targets), example_mask=...)``.

    ``example_mask`` is an optional boolean PER-EXAMPLE mask (``False`` = leave
    the example out; its logits and targets may be anything); an empty
    selection gives 0.
    """
    return weighted_mean(self.per_example(logits, targets), example_mask=example_mask)

  def loss_from_labels(
      self, logits: ArrayLike, labels: ArrayLike, *, example_mask: ArrayLike | None = None,
  ) -> jax.Array:
    """`loss` on integer labels: ``loss(logits, targets(labels, logits.shape[-1]))``."""
    logits = jnp.asarray(logits)
    return self.loss(logits, self.targets(labels, logits.shape[-1]), example_mask=example_mask)

  def predict(self, logits: ArrayLike) -> jax.Array:
    """Class ids ``argmax(logits, -1)`` ``[...]``, or multi-hot ``logits > 0`` ``[..., K]``."""
    logits = jnp.asarray(logits)
    if self.prediction == "threshold":
      return logits > 0
    return jnp.argmax(logits, axis=-1)

  def probabilities(self, logits: ArrayLike) -> jax.Array:
    """``softmax`` or ``sigmoid`` of the logits, per `activation` (class axis -1).

    For ``activation="none"`` (margin and square losses, whose scores are not
    log-probabilities) this returns the softmax of the logits: a convention, so
    that calibration metrics can be computed for every loss alike, not a claim
    that these scores are calibrated.
    """
    logits = jnp.asarray(logits)
    if self.activation == "sigmoid":
      return jax.nn.sigmoid(logits)
    return jax.nn.softmax(logits, axis=-1)


@dataclasses.dataclass(frozen=True)
class _Entry:
  fn: Callable[..., jax.Array]
  target_kind: str
  activation: str
  prediction: str
  defaults: Mapping[str, Any]
  description: str
  reference: str
  aliases: tuple[str, ...] = ()
  multiclass: bool = True
  fixed: frozenset[str] = frozenset()  # a preset's defining hyperparameters


def _entry(fn, target_kind, activation, description, reference, *, prediction="argmax",
           aliases=(), multiclass=True, fixed=(), **defaults) -> _Entry:
  return _Entry(fn, target_kind, activation, prediction, types.MappingProxyType(defaults),
                description, reference, tuple(aliases), multiclass, frozenset(fixed))


# The canonical names that are not the name of their function: presets, a
# function with settings bound that make it a different loss to train (see the
# module docstring). Name -> the function's name.
PRESETS: Mapping[str, str] = types.MappingProxyType({
    "multiclass_hinge_ww": "multiclass_hinge_loss",
    "multilabel_bce": "sigmoid_binary_cross_entropy",
})


_OVR = "one-vs-rest over the classes ({}); Rifkin & Klautau, JMLR 5 (2004)"

_BUILTINS: Mapping[str, _Entry] = types.MappingProxyType({
    "softmax_cross_entropy": _entry(
        softmax_cross_entropy, "integer", "softmax",
        "Softmax cross-entropy (negative log-likelihood) on integer labels.",
        "Goodfellow, Bengio & Courville, Deep Learning (2016) 6.2.2.3; torch cross_entropy",
        aliases=("ce", "cross_entropy")),
    "sigmoid_difference": _entry(
        sigmoid_difference, "one_hot", "sigmoid",
        "Mean |target - sigmoid(logit)| per class: fast.ai's mnist_loss, one-hot trained.",
        "Howard & Gugger, Deep Learning for Coders with fastai and PyTorch (2020), ch. 4",
        aliases=("mnist_loss", "sigdiff")),
    "balanced_sigmoid_difference": _entry(
        balanced_sigmoid_difference, "one_hot", "sigmoid",
        "Sigmoid difference with positive and negative classes averaged apart, 1/2 each.",
        "Howard & Gugger (2020), ch. 4 mnist_loss, class-balanced; jaxloss issue #13"),
    "sigmoid_binary_cross_entropy": _entry(
        sigmoid_binary_cross_entropy, "one_hot", "sigmoid",
        "Per-class sigmoid binary cross-entropy on one-hot targets, argmax prediction.",
        "torch.nn.BCEWithLogitsLoss; optax.sigmoid_binary_cross_entropy",
        aliases=("bce",)),
    "multilabel_bce": _entry(
        sigmoid_binary_cross_entropy, "multi_hot", "sigmoid",
        "Sigmoid binary cross-entropy for multi-label targets, predicts logits > 0.",
        "torch.nn.BCEWithLogitsLoss; Tsoumakas & Katakis, multi-label overview (2007)",
        prediction="threshold", multiclass=False),
    "label_smoothing_cross_entropy": _entry(
        label_smoothing_cross_entropy, "integer", "softmax",
        "Cross-entropy against label-smoothed targets (1 - alpha) onehot + alpha / K.",
        "Szegedy et al., CVPR 2016, sec. 7; Muller, Kornblith & Hinton, NeurIPS 2019",
        aliases=("label_smoothing",), alpha=0.1),
    "softmax_focal_loss": _entry(
        softmax_focal_loss, "integer", "softmax",
        "Softmax focal loss -(1 - p_y)^gamma log p_y, down-weighting easy examples.",
        "Lin et al., Focal Loss for Dense Object Detection, ICCV 2017",
        aliases=("softmax_focal",), gamma=2.0, alpha=None),
    "sigmoid_focal_loss": _entry(
        sigmoid_focal_loss, "one_hot", "sigmoid",
        "Per-class sigmoid focal loss on one-hot targets, argmax prediction.",
        "Lin et al., ICCV 2017; torchvision.ops.sigmoid_focal_loss",
        aliases=("sigmoid_focal",), gamma=2.0, alpha=0.25),
    "poly1_cross_entropy": _entry(
        poly1_cross_entropy, "integer", "softmax",
        "Poly-1 loss: cross-entropy + epsilon (1 - p_y).",
        "Leng et al., PolyLoss: A Polynomial Expansion Perspective, ICLR 2022",
        aliases=("poly1",), epsilon=1.0),
    "brier_score": _entry(
        brier_score, "integer", "softmax",
        "Brier score: squared distance between softmax probabilities and the one-hot label.",
        "Brier, Verification of Forecasts Expressed in Terms of Probability, MWR 1950",
        aliases=("brier",)),
    "softmax_absolute_error": _entry(
        softmax_absolute_error, "integer", "softmax",
        "Softmax absolute error 1 - p_y: half the L1 distance from softmax to the one-hot label.",
        "Ghosh, Kumar & Sastry, Robust Loss Functions under Label Noise, AAAI 2017 (MAE / 2)",
        aliases=("mae",)),
    "square_loss": _entry(
        square_loss, "integer", "none",
        "Square loss on raw logits with rescaling k (true class) and target m.",
        "Hui & Belkin, Evaluation of Neural Architectures Trained with Square Loss, ICLR 2021",
        k=1.0, m=1.0),
    "multiclass_hinge_loss": _entry(
        multiclass_hinge_loss, "integer", "none",
        "Crammer-Singer multi-class hinge: max(0, margin + max_{c != y} z_c - z_y).",
        "Crammer & Singer, JMLR 2 (2001); torch.nn.functional.multi_margin_loss",
        aliases=("multiclass_hinge",), margin=1.0, kind="crammer_singer", squared=False),
    "multiclass_hinge_ww": _entry(
        multiclass_hinge_loss, "integer", "none",
        "Weston-Watkins multi-class hinge: sum_{c != y} max(0, margin + z_c - z_y).",
        "Weston & Watkins, ESANN 1999; torch.nn.functional.multi_margin_loss",
        fixed=("kind",), margin=1.0, kind="weston_watkins", squared=False),
    **{
        fn.__name__: _entry(
            fn, "integer", "none",
            f"One-vs-rest {fn.__name__[4:].replace('_', ' ')} margin loss, mean over classes.",
            _OVR.format(ref))
        for fn, ref in (
            (ovr_hinge, "Cortes & Vapnik 1995"),
            (ovr_squared_hinge, "squared hinge"),
            (ovr_smooth_hinge, "Rennie & Srebro 2005"),
            (ovr_logistic, "logistic"),
            (ovr_exponential, "Freund & Schapire 1997"),
            (ovr_savage, "Masnadi-Shirazi & Vasconcelos, NeurIPS 2008"),
            (ovr_tangent, "Masnadi-Shirazi, Mahadevan & Vasconcelos, CVPR 2010"),
            (ovr_square, "square"),
        )
    },
})

_ALIASES: Mapping[str, str] = types.MappingProxyType(
    {alias: name for name, entry in _BUILTINS.items() for alias in entry.aliases})


def _check_names() -> None:
  """The naming rule, enforced at import: a broken table never ships.

  Every canonical name is the name of its function, except a preset, whose
  function must be the one `PRESETS` lists; no alias shadows a canonical name.
  """
  for name, entry in _BUILTINS.items():
    function = entry.fn.__name__
    expected = PRESETS.get(name, name)
    if function != expected:
      raise AssertionError(
          f"registry name {name!r} runs {function!r}: canonical names must equal their "
          "function's name (or be listed in PRESETS).")
  if set(PRESETS) - set(_BUILTINS):
    raise AssertionError(f"PRESETS names no built-in: {sorted(set(PRESETS) - set(_BUILTINS))}")
  if set(_ALIASES) & set(_BUILTINS):
    raise AssertionError(
        f"aliases shadow canonical names: {sorted(set(_ALIASES) & set(_BUILTINS))}")


_check_names()


def _normalize(name: str) -> str:
  return name.strip().lower().replace("-", "_")


def _valid_hyperparams(fn: Callable) -> tuple[str, ...]:
  params = inspect.signature(fn).parameters.values()
  return tuple(p.name for p in params
               if p.kind is p.KEYWORD_ONLY and p.name not in _NOT_HYPERPARAMS)


def available() -> list[str]:
  """Sorted canonical names of the built-in losses (aliases not included).

  Example:
    >>> import jaxloss
    >>> "softmax_cross_entropy" in jaxloss.available()
    True
  """
  return sorted(_BUILTINS)


def multiclass() -> list[str]:
  """Sorted canonical names of the multi-class single-label losses.

  Everything in `available` except the multi-label ones (``"multilabel_bce"``),
  i.e. the losses an experiment on single-label data can iterate over.
  """
  return sorted(name for name, entry in _BUILTINS.items() if entry.multiclass)


def get(name: str, **hyperparams: Any) -> LossSpec:
  r"""The `LossSpec` of a built-in loss, by name or alias, hyperparameters bound.

  .. math::
    \mathcal{L}(z, y) = \frac{1}{B}\sum_{i=1}^{B}
      \ell_{\text{name}}(z_i, \operatorname{targets}(y_i); \theta)

  is what ``spec.loss_from_labels(z, y)`` computes, with :math:`\theta` the
  defaults of the table (module docstring) updated by ``hyperparams``.

  Args:
    name: a canonical name from `available` (the jaxloss function's name, or a
      preset's) or an alias (case-insensitive, ``-`` and ``_`` interchangeable).
    **hyperparams: overrides of the defaults; must be keyword-only
      hyperparameters of the underlying function (``axis``, ``where`` and
      ``example_mask`` are per-call, not hyperparameters). A preset's defining
      setting (``kind`` of ``multiclass_hinge_ww``) cannot be overridden.

  Returns:
    A frozen `LossSpec`; ``spec.name`` is the canonical name, also when ``name``
    is an alias.

  Raises:
    ValueError: unknown name (the message lists every valid name and alias).
    TypeError: unknown hyperparameter (the message lists the valid ones), or an
      override of a preset's defining setting.

  Example:
    >>> import jax.numpy as jnp, jaxloss
    >>> spec = jaxloss.get("label_smoothing", alpha=0.2)  # an alias
    >>> print(spec.name, spec.function, dict(spec.hyperparams), spec.target_kind)
    label_smoothing_cross_entropy label_smoothing_cross_entropy {'alpha': 0.2} integer
    >>> logits_BxC = jnp.array([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    >>> print(spec.loss_from_labels(logits_BxC, jnp.array([0, 1])).round(4))
    0.594
    >>> print(spec.predict(logits_BxC))
    [0 1]
    >>> print(jaxloss.get("multiclass_hinge_ww").function)  # a preset
    multiclass_hinge_loss

  Reference: the name-to-loss tables of ``tf.keras.losses.get`` and
  ``timm.loss``, without their mutable registration.
  """
  if not isinstance(name, str):
    raise TypeError(f"loss name must be a string, got {type(name).__name__}.")
  key = _normalize(name)
  key = _ALIASES.get(key, key)
  if key not in _BUILTINS:
    aliases = ", ".join(f"{a} -> {n}" for a, n in sorted(_ALIASES.items()))
    raise ValueError(
        f"Unknown loss {name!r}. Valid names: {', '.join(available())}. "
        f"Aliases: {aliases}.")
  entry = _BUILTINS[key]
  function = entry.fn.__name__
  label = repr(key) if function == key else f"{key!r} ({function})"
  valid = _valid_hyperparams(entry.fn)
  unknown = sorted(set(hyperparams) - set(valid))
  if unknown:
    raise TypeError(
        f"Loss {label} got unknown hyperparameter(s) "
        f"{', '.join(unknown)}; valid hyperparameters: {', '.join(valid) or '(none)'}.")
  changed = sorted(p for p in entry.fixed if p in hyperparams
                   and hyperparams[p] != entry.defaults[p])
  if changed:
    settings = ", ".join(f"{p}={entry.defaults[p]!r}" for p in sorted(entry.fixed))
    raise TypeError(
        f"Loss {label} is a preset: {settings} is what it is, not a hyperparameter "
        f"(got {', '.join(f'{p}={hyperparams[p]!r}' for p in changed)}). Use "
        f"get({function!r}, ...) instead.")
  bound = {**entry.defaults, **hyperparams}
  return LossSpec(
      name=key,
      per_example=functools.partial(entry.fn, **bound),
      target_kind=entry.target_kind,
      activation=entry.activation,
      prediction=entry.prediction,
      hyperparams=bound,
      description=entry.description,
      reference=entry.reference,
      multiclass=entry.multiclass,
      aliases=entry.aliases,
      function=function,
  )
