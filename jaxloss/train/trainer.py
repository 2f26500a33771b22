"""Functional training core: pure steps, one jitted program per epoch, seeds in parallel.

Layers, from pure functions to the host-side driver:

* `make_train_step`: ``train_step(state, batch) -> (state, metrics)``, pure.
* `make_train_epoch`: one epoch of one seed: shuffle with an explicit PRNG key
  (``jax.random.permutation``; or keep the data's order), drop the ragged last
  batch (or train on it as one more, smaller step), gather the data into a
  ``[steps, B, ...]`` array on the device and `lax.scan` the step over it;
  returns the new state and the epoch-mean train metrics.
* `make_evaluate`: logits of a whole split in fixed-size chunks (`lax.map`, no
  gradients), then accuracy, NLL, ECE and mean confidence.
* `make_epoch_program`: train epoch + evaluation of every seed, `jax.vmap`-ed
  over the seed axis of the states and keys (the data is shared), as ONE
  function to `jax.jit`. Vmapping turns each layer's matmuls of all seeds into
  one batched matmul, which keeps a CPU's cores busy with a small MLP.
* `iterate_training` / `train`: the host-side driver. It compiles the epoch
  program once (ahead of time, so compile time is reported on its own) and
  calls it once per epoch; the only host round-trip per epoch is reading the
  per-seed metrics at its end.

Grids: besides seeds, one program can train a grid of R points, each a learning
rate and/or values of the loss's hyperparameters (``learning_rates`` and
``loss_params`` of `iterate_training`): ``R * S`` models, vmapped like seeds.
Both are data, not constants of the program: the rate lives in each model's
optimizer state, the loss hyperparameters in its ``TrainState.loss_params``,
so a grid compiles once, like a single run.

Divergence: the losses of jaxloss return NaN for an example whose logits hold a
NaN or ``+inf`` (they never hide a blown-up model behind a finite number), so a
seed whose weights overflow or turn NaN shows a non-finite ``train_loss``. Every
`EpochResult` also carries ``params_finite`` (each seed's parameters checked
after the epoch, inside the same compiled program), and its ``diverged`` flags a
seed with a non-finite training loss or non-finite parameters. The trainer only
reports: a diverged seed keeps training (on NaNs) beside the others.

Calibration metrics (NLL, ECE, confidence) always use ``softmax(logits)`` as the
predicted probabilities, whatever the training loss: a convention that makes
every loss comparable (for margin losses the logits are not trained to be
log-probabilities, so their "calibration" is that of the softmax of the scores).

Randomness: seed ``s`` uses ``jax.random.key(s)`` split into an init key and a
data key; epoch ``e`` shuffles with ``fold_in(data_key, e)``. Runs are therefore
reproducible, and each seed has its own initialization and its own data order.
``TrainConfig(shuffle=False)`` keeps the data's own order in every epoch (as a
PyTorch ``DataLoader`` without ``shuffle``), and ``drop_last=False`` trains on
the ragged last batch too.

Warm starts: ``iterate_training(init_params=...)`` starts every model from
given parameters (e.g. another run's final ones) instead of its seed's fresh
initialization, with a fresh optimizer state; the seed still fixes the data
order, so seed ``s`` of a warm-started run sees the batches of seed ``s`` of a
fresh one.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Callable, Iterator, Mapping, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxloss import softmax_cross_entropy_with_integer_labels
from jaxloss import expected_calibration_error
from jaxloss.train import sharding as sharding_lib
from jaxloss.train.model import MLP
from jaxloss.train.optim import make_optimizer, with_learning_rate

__all__ = [
    "EVAL_METRICS",
    "EpochResult",
    "TRAIN_METRICS",
    "TrainConfig",
    "TrainResult",
    "TrainState",
    "argmax_predict",
    "init_state",
    "iterate_training",
    "make_batched_apply",
    "make_epoch_program",
    "make_evaluate",
    "make_train_epoch",
    "make_train_step",
    "params_finite",
    "seed_keys",
    "train",
]

Array = jax.Array
LossFn = Callable[[Array, Array], Array]
PredictFn = Callable[[Array], Array]
EvalFn = Callable[[Array, Array], Mapping[str, Array]]

TRAIN_METRICS = ("train_loss", "train_accuracy")
EVAL_METRICS = ("test_accuracy", "test_nll", "test_ece", "test_confidence")
ECE_BINS = 15


@flax.struct.dataclass
class TrainState:
  """What changes during training: step counter, parameters, optimizer state (a pytree).

  ``loss_params`` holds the loss hyperparameters of the model as data, name ->
  float32 array (a scalar per model), passed to the loss as keywords by
  `make_train_step`; the empty dict (no leaves) when the loss takes none.
  """

  step: Array
  params: Any
  opt_state: Any
  loss_params: dict = flax.struct.field(default_factory=dict)


def argmax_predict(logits_BxC: Array) -> Array:
  """Default prediction: ``argmax(logits, -1)``, int32 ``[B]``."""
  return jnp.argmax(logits_BxC, axis=-1).astype(jnp.int32)


def init_state(model, tx: optax.GradientTransformation, key: Array, sample_x: Array) -> TrainState:
  """Initial state of one seed: ``model.init(key, sample_x)["params"]`` and ``tx.init``."""
  params = model.init(key, sample_x)["params"]
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))


def make_train_step(apply_fn: Callable, tx: optax.GradientTransformation, loss_fn: LossFn,
                    predict_fn: PredictFn | None = None):
  """A pure training step ``train_step(state, batch) -> (state, metrics)``.

  Args:
    apply_fn: ``apply_fn({"params": params}, images) -> logits [B, C]`` (e.g.
      ``MLP(...).apply``).
    tx: the Optax optimizer.
    loss_fn: ``loss_fn(logits [B, C], labels [B]) -> scalar`` (e.g. a registry
      spec's ``loss_from_labels``); called as ``loss_fn(logits, labels,
      **state.loss_params)`` when the state holds loss hyperparameters.
    predict_fn: ``predict_fn(logits) -> labels [B]`` for the batch accuracy;
      default `argmax_predict`.

  Returns:
    ``train_step(state, (images [B, ...], labels [B] int32))`` returning the
    updated `TrainState` and ``{"train_loss", "train_accuracy"}`` (scalars; the
    loss and accuracy of the batch before the update). ``state.loss_params`` is
    carried over unchanged.
  """
  predict_fn = argmax_predict if predict_fn is None else predict_fn

  def train_step(state: TrainState, batch: tuple[Array, Array]):
    images, labels = batch

    def objective(params):
      logits = apply_fn({"params": params}, images)
      if state.loss_params:
        return loss_fn(logits, labels, **state.loss_params), logits
      return loss_fn(logits, labels), logits

    (loss, logits), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    correct = (predict_fn(logits) == labels).astype(jnp.float32)
    metrics = {"train_loss": loss.astype(jnp.float32), "train_accuracy": jnp.mean(correct)}
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

  return train_step


def make_train_epoch(train_step: Callable, batch_size: int, *, mesh=None, shuffle: bool = True,
                     drop_last: bool = True):
  """One epoch of one seed as a pure function (vmap-, jit- and scan-friendly).

  Args:
    train_step: from `make_train_step`.
    batch_size: examples per step.
    mesh: optional mesh (`jaxloss.train.sharding.make_mesh`): the
      ``[steps, B, ...]`` array is split along ``B`` over its ``"data"`` axis.
    shuffle: draw a new order every epoch from the epoch's key (True), or keep
      the data's order in every epoch (False; the key is unused).
    drop_last: leave out the last ``N % batch_size`` examples of the epoch's
      order (True: a different set every shuffled epoch), or train on them as
      one last step of that smaller batch (False). That step is the step
      function at the ragged batch's own (static) shape, after the `lax.scan`
      of the full batches: exactly the step of a loop over ragged batches, with
      the batch mean of the loss over the real examples only (no padding). It
      is not split over a mesh's ``"data"`` axis.

  Returns:
    ``train_epoch(state, key, images [N, ...], labels [N]) -> (state, metrics)``
    with the epoch means of the step metrics (weighted by the examples of each
    step, so a ragged last step counts for its size).
  """

  def train_epoch(state: TrainState, key: Array, images: Array, labels: Array):
    n = images.shape[0]
    steps = n // batch_size
    rest = 0 if drop_last else n - steps * batch_size
    if steps == 0 and rest == 0:
      raise ValueError(f"batch_size={batch_size} exceeds the {n} training examples.")
    order = jax.random.permutation(key, n) if shuffle else jnp.arange(n)
    if steps:
      idx = order[: steps * batch_size].reshape(steps, batch_size)
      # One gather builds the whole shuffled epoch [steps, B, ...] on the device
      # (uint8 images: 47 MB for MNIST); scan then just slices it step by step.
      xs = sharding_lib.constrain_batch(images[idx], mesh, axis=1)
      ys = sharding_lib.constrain_batch(labels[idx], mesh, axis=1)
      state, metrics = jax.lax.scan(train_step, state, (xs, ys))
      means = jax.tree.map(lambda m: jnp.mean(m, axis=0), metrics)
    if not rest:
      return state, means
    last = order[steps * batch_size:]
    state, ragged = train_step(state, (images[last], labels[last]))
    if not steps:
      return state, ragged
    share = rest / (steps * batch_size + rest)  # the ragged step's share of the examples
    return state, jax.tree.map(lambda a, b: (1.0 - share) * a + share * b, means, ragged)

  return train_epoch


def make_batched_apply(apply_fn: Callable, *, batch_size: int = 1000, mesh=None):
  """Logits of a whole split, computed in fixed-size chunks (no gradients).

  The split is zero-padded to a multiple of ``batch_size``, its logits computed
  chunk by chunk with `lax.map` (memory bounded by one chunk's activations),
  and the padding dropped.

  Returns:
    ``logits_fn(params, images [N, ...]) -> logits [N, C]``, pure (jit and
    vmap it, e.g. ``jax.vmap(logits_fn, in_axes=(0, None))(state.params, x)``
    for the ``[S, N, C]`` logits of every seed).
  """

  def logits_fn(params, images: Array) -> Array:
    n = images.shape[0]
    chunk = min(batch_size, n)
    chunks = -(-n // chunk)
    pad = chunks * chunk - n
    x = jnp.pad(images, [(0, pad)] + [(0, 0)] * (images.ndim - 1))
    x = sharding_lib.constrain_batch(x.reshape((chunks, chunk) + images.shape[1:]), mesh, axis=1)
    logits = jax.lax.map(lambda xb: apply_fn({"params": params}, xb), x)
    return jax.lax.stop_gradient(logits.reshape((chunks * chunk, -1))[:n])

  return logits_fn


def make_evaluate(apply_fn: Callable, *, batch_size: int = 1000,
                  predict_fn: PredictFn | None = None, mesh=None,
                  eval_fn: EvalFn | None = None):
  """Evaluation of one parameter set on a whole split (logits by `make_batched_apply`).

  Args:
    eval_fn: optional ``eval_fn(logits [N, C], labels [N, ...]) -> {name: scalar}``
      replacing the default metrics below (pure and traceable; it runs inside
      the jitted epoch program).

  Returns:
    ``evaluate(params, images [N, ...], labels [N]) -> metrics``; by default
    ``test_accuracy`` (``predict_fn(logits) == labels``), ``test_nll`` (mean
    ``-log softmax(logits)[label]``), ``test_ece`` (15-bin expected calibration
    error of ``softmax(logits)``) and ``test_confidence`` (mean max softmax
    probability), float32 scalars. The padding of the last chunk never enters
    a metric.
  """
  predict_fn = argmax_predict if predict_fn is None else predict_fn
  logits_fn = make_batched_apply(apply_fn, batch_size=batch_size, mesh=mesh)

  def evaluate(params, images: Array, labels: Array):
    logits = logits_fn(params, images)
    if eval_fn is not None:
      return {k: jnp.asarray(v, jnp.float32) for k, v in eval_fn(logits, labels).items()}
    correct = (predict_fn(logits) == labels).astype(jnp.float32)
    confidence = jnp.max(jax.nn.softmax(logits, axis=-1), axis=-1)
    return {
        "test_accuracy": jnp.mean(correct),
        "test_nll": jnp.mean(softmax_cross_entropy_with_integer_labels(logits, labels)),
        "test_ece": expected_calibration_error(logits, labels, num_bins=ECE_BINS),
        "test_confidence": jnp.mean(confidence),
    }

  return evaluate


def make_epoch_program(train_epoch: Callable, evaluate: Callable, *, mesh=None):
  """Train + evaluate every seed for one epoch: a single function for `jax.jit`.

  Returns:
    ``program(states, data_keys, epoch, train_x, train_y, test_x, test_y) ->
    (states, metrics)`` where `states` and `data_keys` carry a leading seed
    axis ``S``, `epoch` is an int32 scalar (a traced argument, so the program
    is compiled once for all epochs), and `metrics` maps each name of
    `TRAIN_METRICS` + `EVAL_METRICS` to an ``[S]`` array.
  """

  def one_seed(state, data_key, epoch, train_x, train_y, test_x, test_y):
    state, train_metrics = train_epoch(state, jax.random.fold_in(data_key, epoch), train_x, train_y)
    return state, {**train_metrics, **evaluate(state.params, test_x, test_y)}

  # With a mesh, the vmapped (model) axis lies along its "models" axis: each
  # device trains whole models, and the "data" axis splits their batches.
  batched = jax.vmap(one_seed, in_axes=(0, 0, None, None, None, None, None),
                     spmd_axis_name=None if mesh is None else sharding_lib.MODELS_AXIS)

  def program(states, data_keys, epoch, train_x, train_y, test_x, test_y):
    states, metrics = batched(states, data_keys, epoch, train_x, train_y, test_x, test_y)
    # The states keep the shardings this program was compiled for (models split
    # over the mesh), so the next epoch's call reuses it; the [M] metrics are
    # replicated, so that every process can read them.
    return (sharding_lib.constrain_models(states, mesh),
            sharding_lib.constrain_replicated(metrics, mesh))

  return program


def params_finite(params) -> Array:
  """Whether every leaf of a parameter pytree is finite (no NaN, no +-inf): a bool scalar.

  ``jax.vmap(params_finite)(states.params)`` gives the ``[S]`` flags of a
  multi-seed state. Pure and traceable.
  """
  leaves = jax.tree.leaves(params)
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves])) if leaves \
      else jnp.asarray(True)


def seed_keys(seeds: Sequence[int]) -> tuple[Array, Array]:
  """Per-seed ``(init_keys [S], data_keys [S])``: ``split(jax.random.key(seed))``."""
  keys = jnp.stack([jax.random.split(jax.random.key(int(s))) for s in seeds])
  return keys[:, 0], keys[:, 1]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Hyperparameters of one training run (shared by all seeds).

  ``schedule="cosine"`` decays the learning rate to 0 over
  ``epochs * (N // batch_size)`` steps. ``eval_batch_size`` only bounds
  evaluation memory; it does not change results beyond float rounding.
  ``precision="bf16"``: bfloat16 matmul inputs, float32 accumulation,
  parameters, optimizer state and loss (`MLP`). ``shuffle`` and ``drop_last``
  are the batching of `make_train_epoch`: the default reshuffles every epoch
  and drops the ragged last batch; ``shuffle=False, drop_last=False`` is a
  PyTorch ``DataLoader(dataset, batch_size)`` (the data's order, every
  example, ``ceil(N / batch_size)`` steps per epoch).
  """

  hidden: tuple[int, ...] = (512, 512)
  activation: str = "relu"
  initializer: str = "lecun_normal"
  num_classes: int = 10
  optimizer: str = "adam"
  learning_rate: float = 1e-3
  schedule: str = "cosine"
  weight_decay: float = 1e-4
  momentum: float = 0.9
  batch_size: int = 128
  epochs: int = 10
  eval_batch_size: int = 1000
  precision: str = "float32"
  shuffle: bool = True
  drop_last: bool = True

  def steps_per_epoch(self, n: int) -> int:
    """Optimizer steps per epoch on `n` training examples (with the ragged one if kept)."""
    return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

  def model(self) -> MLP:
    """The `MLP` this config trains."""
    return MLP(hidden=self.hidden, num_classes=self.num_classes, activation=self.activation,
               initializer=self.initializer, precision=self.precision)

  def __post_init__(self):
    object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
    for name in ("batch_size", "epochs", "eval_batch_size", "num_classes"):
      value = getattr(self, name)
      if not isinstance(value, int) or value < 1:
        raise ValueError(f"TrainConfig.{name} must be a positive int, got {value!r}.")
    for name in ("shuffle", "drop_last"):
      if not isinstance(getattr(self, name), bool):
        raise ValueError(f"TrainConfig.{name} must be a bool, got {getattr(self, name)!r}.")


@dataclasses.dataclass(frozen=True)
class EpochResult:
  """Per-epoch record of a multi-seed run.

  Attributes:
    epoch: 1-based epoch number.
    seeds: the seed of each model, in the order of every per-model array.
      With a grid (``learning_rates`` and/or ``loss_params``) the models are
      point-major: ``R * S`` entries, the seeds of the first grid point, then
      those of the next, ...
    metrics: name -> NumPy ``[S]`` array: ``train_loss``, ``train_accuracy``
      (means over the epoch's steps), ``test_accuracy``, ``test_nll``,
      ``test_ece``, ``test_confidence`` (after the epoch).
    seconds: wall time of this epoch (training + evaluation of all seeds),
      measured after the results are ready on the device; excludes compilation.
    compile_seconds: time spent compiling before this epoch (first epoch only).
    state: the `TrainState` after this epoch, per-seed leading axis, on the
      device(s) (split over a mesh's ``"models"`` axis; `jaxloss.train.sharding.to_host`
      reads it on every process).
    params_finite: NumPy bool ``[S]``: every parameter of the seed is finite after
      this epoch (None when unknown, e.g. a record built by hand).
    learning_rates: the (peak) learning rate of each model, parallel to `seeds`,
      for a grid run (None: a run given neither ``learning_rates`` nor
      ``loss_params``, every model has the config's rate). A ``loss_params``
      grid without ``learning_rates`` has ``config.learning_rate`` everywhere.
    loss_params: loss hyperparameter name -> its value for each model (a tuple
      parallel to `seeds`), for a run given ``loss_params`` (else None).
  """

  epoch: int
  seeds: tuple[int, ...]
  metrics: Mapping[str, np.ndarray]
  seconds: float
  compile_seconds: float
  state: TrainState | None = dataclasses.field(repr=False, default=None)
  params_finite: np.ndarray | None = None
  learning_rates: tuple[float, ...] | None = None
  loss_params: Mapping[str, tuple[float, ...]] | None = None

  def __getitem__(self, name: str) -> np.ndarray:
    return self.metrics[name]

  @property
  def diverged(self) -> np.ndarray:
    """NumPy bool ``[S]``: the seed's ``train_loss`` is not finite (NaN or +-inf), or
    one of its parameters is not finite after this epoch."""
    out = ~np.isfinite(np.asarray(self.metrics["train_loss"], np.float64))
    if self.params_finite is not None:
      out = out | ~np.asarray(self.params_finite, bool)
    return out

  def as_dict(self) -> dict[str, Any]:
    """A JSON-ready dict (lists per seed), e.g. for one line of metrics.jsonl."""
    out: dict[str, Any] = {"epoch": self.epoch, "seeds": list(self.seeds),
                           "seconds": self.seconds, "compile_seconds": self.compile_seconds}
    if self.learning_rates is not None:
      out["learning_rates"] = list(self.learning_rates)
    if self.loss_params is not None:
      out["loss_params"] = {k: list(v) for k, v in self.loss_params.items()}
    out.update({k: [float(v) for v in np.asarray(vals)] for k, vals in self.metrics.items()})
    return out


@dataclasses.dataclass(frozen=True)
class TrainResult:
  """What `train` returns: the per-epoch records and the final per-seed state."""

  history: list[EpochResult]
  state: TrainState

  @property
  def diverged(self) -> dict[Any, int]:
    """Model -> the first epoch whose record flags it as diverged (`EpochResult.diverged`).

    A model is keyed by its seed in a plain run, by ``(learning_rate, seed)``
    in a learning-rate grid, and by ``(learning_rate, params, seed)`` when the
    run has ``loss_params``, where ``params`` is the sorted tuple of the
    model's ``(name, value)`` pairs, e.g. ``(1e-3, (("alpha", 0.1),), 0)``.
    """
    out: dict[Any, int] = {}
    for record in self.history:
      if record.loss_params is not None:
        names = sorted(record.loss_params)
        rates = record.learning_rates or (None,) * len(record.seeds)  # None: a hand-built record
        models = tuple((rate, tuple((k, record.loss_params[k][i]) for k in names), seed)
                       for i, (rate, seed) in enumerate(zip(rates, record.seeds)))
      elif record.learning_rates is not None:
        models = tuple(zip(record.learning_rates, record.seeds))
      else:
        models = record.seeds
      for model, flag in zip(models, record.diverged):
        if flag and model not in out:
          out[model] = record.epoch
    return out


def _grid_points(learning_rates, loss_params):
  """Validated ``(rates | None, {name: values} | None)`` of a grid, R values each."""
  rates = None
  if learning_rates is not None:
    rates = tuple(float(r) for r in learning_rates)
    if not rates or not all(np.isfinite(r) and r > 0 for r in rates):
      raise ValueError(f"learning_rates must be a non-empty sequence of finite rates > 0, "
                       f"got {learning_rates!r}.")
  if loss_params is None:
    return rates, None
  if not isinstance(loss_params, Mapping):
    raise ValueError(f"loss_params must be a mapping name -> sequence of floats, "
                     f"got {loss_params!r}.")
  if not loss_params:  # {}: no loss hyperparameters, as None.
    return rates, None
  params: dict[str, tuple[float, ...]] = {}
  for name, values in loss_params.items():
    if not isinstance(name, str) or not name:
      raise ValueError(f"loss_params names must be non-empty strings, got {name!r}.")
    bad = ValueError(f"loss_params[{name!r}] must be a sequence of floats (one per grid "
                     f"point), got {values!r}.")
    try:
      if isinstance(values, (str, bytes)) or np.ndim(values) != 1:
        raise bad
      values = tuple(float(v) for v in values)
    except (TypeError, ValueError):
      raise bad from None
    if not values:
      raise ValueError(f"loss_params[{name!r}] must not be empty (one value per grid point).")
    if not all(np.isfinite(v) for v in values):
      raise ValueError(f"loss_params[{name!r}] must hold finite values, got {values!r}.")
    params[name] = values
  lengths = {name: len(values) for name, values in params.items()}
  if rates is not None:
    lengths = {"learning_rates": len(rates), **lengths}
  if len(set(lengths.values())) > 1:
    detail = ", ".join(f"{name}: {n}" for name, n in lengths.items())
    raise ValueError(f"loss_params (and learning_rates) must all have the same length, one "
                     f"value per grid point; got lengths {detail}.")
  return rates, params


def _given_params(given, fresh):
  """`given` parameters checked against the `fresh` ones (structure, shapes), in their dtypes."""
  have, want = jax.tree.structure(given), jax.tree.structure(fresh)
  if have != want:
    raise ValueError(f"init_params do not match this config's model: {have} where the model "
                     f"has {want}.")
  out = []
  for (path, x), y in zip(jax.tree_util.tree_flatten_with_path(given)[0], jax.tree.leaves(fresh)):
    if np.shape(x) != y.shape:
      raise ValueError(f"init_params{jax.tree_util.keystr(path)} has shape {np.shape(x)} where "
                       f"this config and its {y.shape[0]} models need {y.shape}.")
    out.append(jnp.asarray(x, y.dtype))
  return jax.tree.unflatten(want, out)


def iterate_training(config: TrainConfig, data, *, loss_fn: LossFn,
                     predict_fn: PredictFn | None = None, seeds: Sequence[int] = (0, 1, 2),
                     mesh="auto", eval_fn: EvalFn | None = None,
                     resume=None,
                     learning_rates: Sequence[float] | None = None,
                     loss_params: Mapping[str, Sequence[float]] | None = None,
                     init_params=None) -> Iterator[EpochResult]:
  """Trains ``len(seeds)`` MLPs in parallel, yielding an `EpochResult` per epoch.

  Args:
    config: a `TrainConfig`.
    data: anything with ``train_images, train_labels, test_images,
      test_labels`` (e.g. `jaxloss.train.data.Mnist`, NumPy or device arrays);
      images ``[N, H, W]`` uint8, labels ``[N]`` int32 (or float ``[N, C]``
      targets, e.g. multi-hot, which `loss_fn` and `eval_fn` must accept). Put
      on the device once (pass ``data.subset(train=..., test=...)`` for a quick
      run).
    loss_fn: ``loss_fn(logits [B, C], labels [B]) -> scalar`` training loss,
      e.g. ``jaxloss.get(name).loss_from_labels``; with ``loss_params``,
      ``loss_fn(logits, labels, **{name: float32 scalar})``.
    predict_fn: ``logits [B, C] -> labels [B]`` for the accuracies (default argmax).
    seeds: one model per seed, trained side by side (vmapped) in one program.
    mesh: ``"auto"`` (with several devices, `jaxloss.train.sharding.auto_mesh`:
      as many devices along ``"models"`` as divide the model count, the rest
      data parallel), None (default device only), or a mesh from
      `jaxloss.train.sharding.make_mesh`. Its ``"models"`` size must divide
      the model count, its ``"data"`` size the batch size. The devices may span
      several processes (`jaxloss.train.distributed`): every process then runs
      this same call, and each trains the models of its own devices.
    eval_fn: optional metrics of the test split, see `make_evaluate`.
    resume: optional ``(states, completed_epochs)`` to continue a run, or a
      callable ``resume(fresh_states) -> (states, completed_epochs) | None``
      given the freshly initialised states (e.g. ``lambda like:
      checkpoints.restore(folder, like=like)``); None starts from scratch.
      `states` is the per-seed state after epoch ``completed_epochs`` of a run
      with the same config, seeds and data. Shuffling is keyed by (seed, epoch)
      and the schedule by the step in the state, so the epochs that follow are
      those of an uninterrupted run. The states carry the learning rates and
      loss hyperparameters they were trained with: those are used (resuming
      with other values is the caller's responsibility), while the arguments
      fix the grid's size and the states' structure.
    learning_rates: optional grid of R (peak) learning rates: trains ``R * S``
      models, every seed at every rate (the same initialization and data order
      for a seed at all rates: paired), in the same single compiled program.
      The rate is data in each model's optimizer state (see
      `jaxloss.train.make_optimizer`), so a grid compiles once, like one run.
      Per-model arrays are rate-major: reshape them to ``[R, S]``. None trains
      every seed at ``config.learning_rate``.
    loss_params: optional grid of R values of the loss's hyperparameters,
      name -> a sequence of R finite floats (the same R for every name, and
      that of ``learning_rates`` when both are given: grid point ``r`` is
      ``learning_rates[r]`` with ``{name: loss_params[name][r]}``; without
      ``learning_rates`` every point trains at ``config.learning_rate``).
      Trains ``R * S`` models, point-major like the rate grid, in the same
      single compiled program: the values are data, float32 scalars in each
      model's ``TrainState.loss_params``, passed as ``loss_fn(logits, labels,
      **loss_params)``, so `loss_fn` must accept them traced. E.g.
      ``loss_fn=lambda z, y, alpha: jaxloss.get("label_smoothing_cross_entropy",
      alpha=alpha).loss_from_labels(z, y)`` with ``loss_params={"alpha": (0.0,
      0.1)}``. None (or ``{}``) calls ``loss_fn(logits, labels)``.
    init_params: optional parameters to start from instead of the seeds' fresh
      initialization: a pytree of the model's parameters with a leading model
      axis, one entry per model in the order of `EpochResult.seeds` (``S``, or
      ``R * S`` point-major with a grid), e.g. the final ``state.params`` of
      another run of the same model. Every model gets a fresh optimizer state
      (step 0, the schedule from its start, no moments carried over); its seed
      still fixes its data order. A changed structure or shape is a ValueError.
      `resume` states, when given, take precedence (they hold the continued
      parameters).

  Yields:
    One `EpochResult` per epoch. Generating it is the only host round-trip of
    the epoch. Its ``diverged`` flags the seeds whose training loss or
    parameters are no longer finite; they keep training beside the others (on
    NaNs), and it is the caller's choice to stop. With ``loss_params`` it carries
    each model's values (`EpochResult.loss_params`) and rate
    (``learning_rates``).
  """
  seeds = tuple(int(s) for s in seeds)
  if not seeds:
    raise ValueError("seeds must not be empty.")
  rates, params = _grid_points(learning_rates, loss_params)
  set_rates = rates is not None  # If not, the optimizer state's rate stays as without a grid.
  if params is not None and rates is None:
    rates = (float(config.learning_rate),) * len(next(iter(params.values())))
  if rates is not None:  # Point-major: [R, S] flattened.
    n_points, n_seeds = len(rates), len(seeds)
    rates = tuple(r for r in rates for _ in range(n_seeds))
    if params is not None:
      params = {k: tuple(v for v in vals for _ in range(n_seeds)) for k, vals in params.items()}
    seeds = seeds * n_points
  mesh = sharding_lib.auto_mesh(len(seeds)) if isinstance(mesh, str) and mesh == "auto" else mesh
  n_data, n_models = sharding_lib.data_size(mesh), sharding_lib.models_size(mesh)
  if len(seeds) % n_models:
    raise ValueError(f"the {len(seeds)} models (seeds x grid points) must be divisible by the "
                     f"{n_models} devices of the mesh's models axis.")
  if config.batch_size % n_data:
    raise ValueError(f"batch_size={config.batch_size} must be divisible by the {n_data} "
                     f"devices of the mesh's data axis.")

  repl, per_model = sharding_lib.replicated(mesh), sharding_lib.models_sharded(mesh)
  # Integer labels become int32; float targets (multi-hot, soft) stay float.
  train_y, test_y = (y.astype(np.int32) if np.issubdtype(y.dtype, np.integer) else y
                     for y in (data.train_labels, data.test_labels))
  train_x, train_y, test_x, test_y = sharding_lib.put(
      (data.train_images, train_y, data.test_images, test_y), repl)
  steps_per_epoch = config.steps_per_epoch(train_x.shape[0])
  if steps_per_epoch == 0:
    raise ValueError(
        f"batch_size={config.batch_size} exceeds the {train_x.shape[0]} training examples.")
  eval_batch = config.eval_batch_size
  if mesh is not None:  # Evaluation chunks are split over the data axis too.
    eval_batch = max(n_data, eval_batch - eval_batch % n_data)

  model = config.model()
  tx = make_optimizer(config.optimizer, config.learning_rate, schedule=config.schedule,
                      total_steps=config.epochs * steps_per_epoch,
                      weight_decay=config.weight_decay, momentum=config.momentum)
  step = make_train_step(model.apply, tx, loss_fn, predict_fn)
  program = make_epoch_program(
      make_train_epoch(step, config.batch_size, mesh=mesh, shuffle=config.shuffle,
                       drop_last=config.drop_last),
      make_evaluate(model.apply, batch_size=eval_batch, predict_fn=predict_fn, mesh=mesh,
                    eval_fn=eval_fn),
      mesh=mesh)

  t0 = time.perf_counter()
  init_keys, data_keys = seed_keys(seeds)
  sample_x = np.asarray(jax.device_get(data.train_images[:1]))
  # Initialised eagerly (op by op), not jitted: a jitted init is a fresh XLA
  # compile for every run (seconds on CPU), while eager ops hit JAX's per-op
  # cache after the first run of a process.
  states = jax.vmap(functools.partial(init_state, model, tx, sample_x=sample_x))(init_keys)
  if init_params is not None:
    given = _given_params(init_params, states.params)
    states = states.replace(params=given, opt_state=jax.vmap(tx.init)(given))
  if set_rates:
    states = states.replace(opt_state=with_learning_rate(states.opt_state, np.asarray(rates)))
  if params is not None:
    states = states.replace(loss_params={k: jnp.asarray(np.asarray(v, np.float32))
                                         for k, v in params.items()})
  states = sharding_lib.put(states, per_model)
  completed = 0
  if callable(resume):
    resume = resume(states)
  if resume is not None:
    resumed, completed = resume
    if not 0 <= int(completed) <= config.epochs:
      raise ValueError(f"resume epoch {completed} is outside 0..{config.epochs}.")
    if jax.tree.structure(resumed) != jax.tree.structure(states):
      raise ValueError("resume states do not match this config's model and optimizer.")
    for have, want in zip(jax.tree.leaves(resumed), jax.tree.leaves(states)):
      if have.shape != want.shape:
        raise ValueError(f"resume states have a leaf of shape {have.shape} where this "
                         f"config (and {len(seeds)} seeds) needs {want.shape}.")
    states, completed = sharding_lib.put(resumed, per_model), int(completed)
  data_keys = sharding_lib.put(data_keys, per_model)
  epoch0 = sharding_lib.put(np.zeros((), np.int32), repl)
  args = (data_keys, epoch0, train_x, train_y, test_x, test_y)
  # Ahead-of-time compilation: one compile for all epochs (the epoch number is a
  # traced argument), timed separately from the epochs. The state is not
  # donated: on CPU donation made no measurable difference (the epoch's
  # [steps, B, ...] batch array dwarfs the state), and without it every
  # record's `state` stays valid.
  def program_and_check(states, *args):
    states, metrics = program(states, *args)
    finite = sharding_lib.constrain_replicated(jax.vmap(params_finite)(states.params), mesh)
    return states, metrics, finite

  compiled = jax.jit(program_and_check).lower(states, *args).compile()
  compile_seconds = time.perf_counter() - t0

  for epoch in range(completed + 1, config.epochs + 1):
    t0 = time.perf_counter()
    epoch_arr = sharding_lib.put(np.asarray(epoch, np.int32), repl)
    states, metrics, finite = compiled(states, data_keys, epoch_arr, *args[2:])
    jax.block_until_ready((states, metrics, finite))
    seconds = time.perf_counter() - t0
    metrics, finite = jax.device_get((metrics, finite))
    metrics = {k: np.asarray(v) for k, v in metrics.items()}
    yield EpochResult(epoch=epoch, seeds=seeds, metrics=metrics, seconds=seconds,
                      compile_seconds=compile_seconds if epoch == completed + 1 else 0.0,
                      state=states, params_finite=np.asarray(finite, bool),
                      learning_rates=rates, loss_params=params)


def train(config: TrainConfig, data, *, loss_fn: LossFn, predict_fn: PredictFn | None = None,
          seeds: Sequence[int] = (0, 1, 2), on_epoch: Callable[[EpochResult], Any] | None = None,
          mesh="auto", eval_fn: EvalFn | None = None,
          learning_rates: Sequence[float] | None = None,
          loss_params: Mapping[str, Sequence[float]] | None = None,
          init_params=None) -> TrainResult:
  """Runs `iterate_training` to the end; calls ``on_epoch(record)`` after each epoch.

  The keywords are those of `iterate_training`: ``learning_rates`` and/or
  ``loss_params`` train a grid of ``R * S`` models in one program (see
  `TrainResult.diverged` for how its models are keyed); ``init_params`` starts
  them from given parameters.

  Returns:
    A `TrainResult` with the list of `EpochResult` records and the final state
    (the records' own ``state`` is dropped, set to None, except the last one's).
  """
  history: list[EpochResult] = []
  for record in iterate_training(config, data, loss_fn=loss_fn, predict_fn=predict_fn,
                                 seeds=seeds, mesh=mesh, eval_fn=eval_fn,
                                 learning_rates=learning_rates, loss_params=loss_params,
                                 init_params=init_params):
    if history:  # Keep only the latest state alive (device memory).
      history[-1] = dataclasses.replace(history[-1], state=None)
    history.append(record)
    if on_epoch is not None:
      on_epoch(record)
  if not history:
    raise ValueError("config.epochs must be >= 1.")
  return TrainResult(history=history, state=history[-1].state)
