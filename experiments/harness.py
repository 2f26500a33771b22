"""The experiment harness: an experiment declares what it studies, the harness runs it.

An experiment module declares an `Experiment`: its settings (a frozen dataclass deriving
from `Settings`, whose fields are its command line, see `experiments.cli`), its variants
(`Variant`: loss, model, data, loss-hyperparameter grids, evaluation), optionally its data
(``splits``; default: MNIST with ``val_size`` training images held out) and its report
(``report(settings, outcomes) -> Report``). The harness owns the rest: the device line,
loading, every variant's protocol (`experiments.protocol`) on resumable runs
(`experiments.runs`), the progress bar and the files in ``--out`` (``config.json``,
``metrics.jsonl``, ``summary.json``/``.csv``/``.md``, the figures). `plan` lists what an
experiment will train (models, epochs, examples, FLOPs) without training it, and `estimate`
turns that into minutes with `measure_speed` (`experiments.all` prints it before starting).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import numpy as np

from experiments import cli, outputs, protocol, runs, stats

__all__ = ["Cost", "Experiment", "Outcome", "Report", "Settings", "Speed", "Splits", "Variant",
           "compare", "compile_fast", "default_splits", "estimate", "fit_speed", "join_processes",
           "load", "main", "measure_speed", "plan", "settings_of"]

_NOT_COMPARED = ("out", "no_progress", "mnist_dir", "data_dir")  # settings that change no number


@dataclasses.dataclass(frozen=True)
class Settings:
  """The settings every experiment has; an experiment derives its own and may redefine them."""

  seeds: tuple[int, ...] = cli.option(
      (0, 1, 2, 3, 4), "a count N (seeds 0..N-1) or a comma-separated list; every variant "
      "gets the same seeds, so comparisons are paired", parse=cli.seeds, quick=(0, 1))
  lrs: tuple[float, ...] = cli.option(
      protocol.half_decades(), "Adam peak learning rates, selected per variant on the "
      "validation split (the grid grows past an edge that wins)", parse=cli.rates,
      quick=(3e-3,))
  epochs: int = cli.option(10, "training epochs, the same for selection and the reported runs",
                           parse=cli.positive_int, quick=2)
  batch_size: int = cli.option(128, "training batch size", parse=cli.positive_int)
  val_size: int = cli.option(10000, "training images held out to select on (0: no selection, "
                             "a single rate, test after every epoch)", parse=cli.nonnegative_int,
                             quick=512)
  margin: float = cli.option(0.15, "equivalence margin of the verdicts, in accuracy points",
                             parse=cli.positive_number)
  train_subset: int | None = cli.option(None, "use the first N training images only",
                                        parse=cli.positive_int, quick=2048)
  test_subset: int | None = cli.option(None, "use the first N test images only",
                                       parse=cli.positive_int, quick=512)
  mnist_dir: str | None = cli.option(
      None, "folder with the four MNIST .gz files (default $JAXLOSS_MNIST_DIR; without it TFDS "
      "downloads them)")
  data_dir: str | None = cli.option(None, "TFDS data dir (default $JAXLOSS_DATA_DIR, else "
                                    "~/tensorflow_datasets)")
  out: str = cli.option("runs/experiment", "output folder")
  no_progress: bool = cli.option(False, "hide the progress bar")
  quick: bool = False


@dataclasses.dataclass(frozen=True)
class Variant:
  """One arm of an experiment.

  Attributes:
    name: its name in tables and run ids (letters, digits, ``._-``).
    loss_fn: ``loss_fn(logits [B, C], labels, **params) -> scalar``.
    predict_fn / eval_fn / test_fn: see `experiments.runs.RunSpec`.
    train: `jaxloss.train.TrainConfig` fields (hidden, num_classes, optimizer, schedule,
      ...; epochs and batch size default to the settings').
    params: loss-hyperparameter grid ``{name: values}``, selected jointly with the rate.
    sweep: loss hyperparameters swept, not selected: every combination is its own outcome,
      named ``NAME-k=v`` (e.g. ``ls-alpha=0.1``), all trained in one program.
    rates: this variant's rate grid (default: the settings' ``lrs``).
    seeds: this variant's seeds (default: the settings' ``seeds``), e.g. a selected table
      with 5 seeds beside a headline with 3 in one experiment.
    data: the key of its splits (see `Experiment.splits`).
    metric: the validation metric the selection maximizes.
    final_splits: splits besides test that the trained models are evaluated on once, at
      the end, with the same functions (``"val"``, ``"train"``); read them with
      `Outcome.on`. E.g. ``("val",)`` to fit a temperature or thresholds on validation.
    describe: JSON-ready facts about it for ``summary.json``.
    keep_final: keep its models' final parameters (``final_params.npz``), e.g. for a later
      variant's `start_from`.
    start_from: the name of an earlier variant of the experiment (with `keep_final`, the
      same seeds and network, no sweep) whose selected models start this one's, seed s from
      seed s, with a fresh optimizer state (`runs.RunSpec.init_params`); None: each seed's
      fresh initialization.
    rate_from: the name of an earlier variant (no sweep) whose selected rate this one
      trains at: one rate, nothing selected. None: its own `rates`.
  """

  name: str
  loss_fn: Callable
  predict_fn: Callable | None = None
  eval_fn: Callable | None = None
  test_fn: Callable | None = None
  train: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  params: Mapping[str, tuple[float, ...]] = dataclasses.field(default_factory=dict)
  sweep: Mapping[str, tuple[float, ...]] = dataclasses.field(default_factory=dict)
  rates: tuple[float, ...] | None = None
  seeds: tuple[int, ...] | None = None
  data: str = "mnist"
  metric: str = "test_accuracy"
  final_splits: tuple[str, ...] = ()
  describe: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  keep_final: bool = False
  start_from: str | None = None
  rate_from: str | None = None


@dataclasses.dataclass(frozen=True)
class Splits:
  """``(images, labels)`` pairs: train, validation (None: no selection) and test."""

  train: tuple[Any, Any]
  val: tuple[Any, Any] | None
  test: tuple[Any, Any]


@dataclasses.dataclass
class Outcome:
  """What one variant gave: its selection and its selected, reported models."""

  variant: Variant
  selected: protocol.Selected

  @property
  def test(self) -> dict[str, np.ndarray]:
    """Test metric -> ``[seeds]`` (``"correct"``: ``[seeds, N]`` per-example correctness)."""
    return {k: v for k, v in self.selected.result.test.items() if "/" not in k}

  def on(self, split: str) -> dict[str, np.ndarray]:
    """The final evaluation on `split` (``"test"`` or one of the variant's ``final_splits``):
    metric -> ``[seeds]``, and the test_fn's outputs ``[seeds, ...]``. The metric names
    keep their ``test_`` prefix whatever the split."""
    if split == "test":
      return self.test
    if split not in self.variant.final_splits:
      raise KeyError(f"{self.variant.name} was not evaluated on {split!r} (its "
                     f"final_splits: {self.variant.final_splits})")
    prefix = split + "/"
    return {k[len(prefix):]: v for k, v in self.selected.result.test.items()
            if k.startswith(prefix)}

  def accuracy(self) -> np.ndarray:
    """Final test accuracy in percent, one per seed."""
    return 100.0 * np.asarray(self.test["test_accuracy"], np.float64)

  def curve(self, metric: str) -> np.ndarray:
    """``[epochs, seeds]`` of `metric` on the evaluation split (validation, or test)."""
    return self.selected.result.curve(metric)


@dataclasses.dataclass(frozen=True)
class Report:
  """An experiment's conclusions: a ``verdict`` of at most three sentences with effects and
  CIs (it opens summary.md), Markdown details, JSON-ready ``summary`` fields, ``figures``
  (file name -> ``draw(path)``) and a ``headline`` of at most ~40 words for REPORT.md."""

  verdict: str
  markdown: str = ""
  summary: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  figures: Mapping[str, Callable[[str], Any]] = dataclasses.field(default_factory=dict)
  headline: str = ""


@dataclasses.dataclass(frozen=True)
class Experiment:
  """What an experiment module declares (see the module docstring)."""

  name: str
  title: str
  settings: type
  variants: Callable[[Any], Sequence[Variant]]
  report: Callable[[Any, Mapping[str, Outcome]], Report]
  splits: Callable[[Any, Any], Mapping[str, Splits]] | None = None
  check: Callable[[Any], list[str]] | None = None
  description: str = ""


def default_splits(settings: Settings, mnist) -> dict[str, Splits]:
  """MNIST: ``val_size`` training images held out (`validation_split`, seed 0), or none."""
  from jaxloss import train as jt  # pylint: disable=import-outside-toplevel

  test = (mnist.test_images, mnist.test_labels)
  if not settings.val_size:
    return {"mnist": Splits((mnist.train_images, mnist.train_labels), None, test)}
  split = jt.validation_split(mnist, size=settings.val_size, seed=0)
  return {"mnist": Splits((split.train_images, split.train_labels),
                          (split.test_images, split.test_labels), test)}


def compare(outcomes: Mapping[str, Outcome], pairs: Sequence[tuple[str, str]], *,
            margin: float, metric: str = "test_accuracy",
            correct: str = "correct") -> list[stats.Comparison]:
  """Paired verdicts on a final test accuracy (`stats.compare_pairs`: t interval over seeds,
  exact McNemar on the per-example correctness `correct` of the test_fn, Holm)."""
  names = {n for pair in pairs for n in pair}
  return stats.compare_pairs(
      {n: 100.0 * np.asarray(outcomes[n].test[metric], np.float64) for n in names}, pairs,
      correct={n: outcomes[n].test[correct] for n in names}, margin=margin)


def _problems(s: Settings) -> list[str]:
  """The rules every experiment's settings follow (MNIST has 60000 training images)."""
  n_train = min(s.train_subset or 60000, 60000)
  out = []
  if s.val_size >= n_train:
    out.append(f"--val-size: must be below the {n_train} training images, got {s.val_size}")
  elif s.batch_size > n_train - s.val_size:
    out.append(f"--batch-size: must be at most the {n_train - s.val_size} training images "
               f"(after the validation split), got {s.batch_size}")
  if not s.val_size and len(s.lrs) > 1:
    out.append("--val-size 0 trains without selection: give a single learning rate")
  return out


def _refuse(message: str) -> None:
  print(f"error: {message}", file=sys.stderr)
  raise SystemExit(2)


def _settings_record(settings) -> dict[str, Any]:
  return {k: v for k, v in cli.to_dict(settings).items() if k not in _NOT_COMPARED}


def _check_out(settings) -> None:
  path = os.path.join(settings.out, "config.json")
  if not os.path.exists(path):
    return
  with open(path) as f:
    stored = json.load(f).get("settings", {})
  wanted = runs.without_new_defaults(stored, outputs.json_ready(_settings_record(settings)),
                                     runs.dataclass_defaults(type(settings)))
  if stored != wanted:
    diff = runs.differences(stored, wanted)
    _refuse(f"{settings.out} holds results of other settings ({diff}). Nothing was changed "
            f"there. Use another --out, or delete that folder to start again.")


def compile_fast() -> None:
  """Has XLA compile for speed, not fast code: for smoke runs, whose numbers do not matter.

  Most of a quick run is compilation; these settings halve it on CPU (as in the tests'
  conftest): XLA at -O0, and the CPU backend's cheaper fusion emitter. The latter is an
  XLA flag, read when JAX starts its backend (so only before that), and an unknown flag
  aborts the process: a child process checks first that this jaxlib accepts it.
  """
  flag, flags = "--xla_cpu_use_fusion_emitters=false", os.environ.get("XLA_FLAGS", "")
  if "jax" not in sys.modules and "xla_cpu_use_fusion_emitters" not in flags:
    probe = subprocess.run(
        [sys.executable, "-c", "import jax.numpy as jnp; jnp.zeros(1).block_until_ready()"],
        env={**os.environ, "XLA_FLAGS": f"{flags} {flag}", "JAX_PLATFORMS": "cpu"},
        capture_output=True, timeout=120, check=False)
    if probe.returncode == 0:
      os.environ["XLA_FLAGS"] = f"{flags} {flag}".strip()
  import jax  # pylint: disable=import-outside-toplevel

  jax.config.update("jax_disable_most_optimizations", True)


def join_processes() -> None:
  """Joins a multi-process run described by the environment (`experiments.launch`, a
  cluster; see `jaxloss.train.distributed`), once per process; a bad description is one
  ``error:`` line."""
  from jaxloss.train import distributed  # pylint: disable=import-outside-toplevel

  try:
    distributed.initialize()
  except ValueError as err:
    _refuse(str(err))


def load(settings):
  """MNIST from the settings' data options, subset as asked; a missing or damaged dataset
  is one ``error:`` line and exit status 2.

  ``$JAXLOSS_MNIST_NPZ`` names a `jaxloss.train.Mnist.save` copy to read instead of going
  through tensorflow-datasets, for a machine without TensorFlow (e.g. a GPU host)."""
  from jaxloss import train as jt  # pylint: disable=import-outside-toplevel
  from jaxloss.train import distributed  # pylint: disable=import-outside-toplevel

  t0 = time.perf_counter()
  npz = os.environ.get("JAXLOSS_MNIST_NPZ")
  if npz:
    try:
      mnist = jt.Mnist.load(npz)
    except (jt.MnistNotFoundError, jt.MnistCorruptError) as err:
      _refuse(f"$JAXLOSS_MNIST_NPZ: {err}")
  else:
    mnist = None
    if distributed.process_count() > 1:
      # Several processes: process 0 prepares the dataset (once) while the others wait;
      # then they read it, and a failure is refused the same way by every process (a
      # process 0 that failed meets its error again below).
      if distributed.is_writer():
        try:
          mnist = jt.load_mnist(mnist_dir=settings.mnist_dir, data_dir=settings.data_dir)
        except Exception:  # pylint: disable=broad-except
          pass
      distributed.barrier("MNIST prepared by process 0")
    if mnist is None:
      try:
        mnist = jt.load_mnist(mnist_dir=settings.mnist_dir, data_dir=settings.data_dir)
      except (jt.MnistNotFoundError, jt.MnistCorruptError) as err:
        _refuse(str(err))
    distributed.barrier("MNIST loaded")
  mnist = mnist.subset(settings.train_subset, settings.test_subset)
  print(f"MNIST: {mnist.train_images.shape[0]} train / {mnist.test_images.shape[0]} test "
        f"images loaded in {time.perf_counter() - t0:.1f} s"
        + (f" from $JAXLOSS_MNIST_NPZ ({npz})" if npz else ""), flush=True)
  return mnist


def _config(variant: Variant, settings, rates: Sequence[float] | None = None):
  from jaxloss import train as jt  # pylint: disable=import-outside-toplevel

  return jt.TrainConfig(**{"learning_rate": (rates or variant.rates or settings.lrs)[0],
                           "epochs": settings.epochs, "batch_size": settings.batch_size,
                           **variant.train})


def _dependency_problems(variants: Sequence[Variant], settings) -> list[str]:
  """What is wrong with the variants' `start_from` and `rate_from` (before any training)."""
  problems, before = [], {}
  for v in variants:
    for field in ("start_from", "rate_from"):
      source = before.get(name := getattr(v, field))
      if name is None:
        continue
      if source is None:
        problems.append(f"{v.name}: {field} {name!r} is not an earlier variant")
      elif source.sweep:
        problems.append(f"{v.name}: {field} {name!r} sweeps {', '.join(source.sweep)}")
    if (source := before.get(v.start_from)) is not None:
      if not source.keep_final:
        problems.append(f"{v.name}: start_from {source.name!r} keeps no final parameters "
                        "(keep_final)")
      if tuple(source.seeds or settings.seeds) != tuple(v.seeds or settings.seeds):
        problems.append(f"{v.name}: start_from {source.name!r} has other seeds")
      a, b = _config(source, settings), _config(v, settings)
      if (a.hidden, a.num_classes) != (b.hidden, b.num_classes) or source.data != v.data:
        problems.append(f"{v.name}: start_from {source.name!r} has another network or data")
    before[v.name] = v
  return problems


def _final_splits_problem(variant: Variant, splits: Splits) -> str | None:
  if unknown := sorted(set(variant.final_splits) - {"val", "train"}):
    return f"{variant.name}: final_splits must be among val, train; got {', '.join(unknown)}"
  if "val" in variant.final_splits and splits.val is None:
    return (f"{variant.name} is evaluated on the validation split at the end, and there is "
            "none: give --val-size above 0")
  return None


def _dependencies(variant: Variant) -> dict[str, str]:
  return {k: v for k, v in (("starts_from", variant.start_from),
                            ("rate_from", variant.rate_from)) if v}


def _run_variant(variant: Variant, settings, splits: Splits, bar,
                 before: Mapping[str, Outcome]) -> dict[str, Outcome]:
  """`variant`'s protocol; `before`: the outcomes of the earlier variants (`start_from`)."""
  rates = (before[variant.rate_from].selected.lr,) if variant.rate_from else (
      variant.rates or settings.lrs)
  init = before[variant.start_from].selected.result.final_params if variant.start_from else None
  config = _config(variant, settings, rates)

  def make_spec(tag, learning_rates, loss_params):
    describe = {"variant": variant.name, **variant.describe, **_dependencies(variant),
                "eval": "validation" if splits.val is not None else "test",
                "train_examples": int(np.shape(splits.train[1])[0])}
    return runs.RunSpec(f"{variant.name}-{tag}", config, variant.loss_fn, variant.predict_fn,
                        variant.eval_fn, tuple(variant.seeds or settings.seeds), describe,
                        learning_rates, loss_params, variant.test_fn,
                        keep_final=variant.keep_final, init_params=init)

  pairs = {"val": splits.val, "train": splits.train}
  bar.set_postfix_str(variant.name)
  selected = protocol.select_and_test(
      make_spec, rates, params=variant.params, sweep=variant.sweep,
      train=splits.train, val=splits.val, test=splits.test, out_dir=settings.out,
      metric=variant.metric, also={k: pairs[k] for k in variant.final_splits} or None,
      bar=bar, say=bar.write)
  names = {key: variant.name + "".join(f"-{k}={v:g}" for k, v in zip(variant.sweep, key))
           for key in selected}
  return {names[key]: Outcome(variant, sel) for key, sel in selected.items()}


def _summary_rows(outcomes: Mapping[str, Outcome]) -> list[dict[str, Any]]:
  rows = []
  for name, o in outcomes.items():
    row: dict[str, Any] = {"variant": name, **o.selected.point}
    for metric, values in o.test.items():
      if metric != "correct" and np.ndim(values) == 1:
        row[f"{metric}_mean"], row[f"{metric}_std"] = outputs.mean_std(values)
    rows.append(row)
  return rows


def _selection_markdown(outcomes: Mapping[str, Outcome]) -> str:
  lines = ["| variant | selected | validation score per point (mean over seeds) |", "|---|---|---|"]
  for name, o in outcomes.items():
    cells = ", ".join(
        " ".join(f"{k} {v:g}" for k, v in row.items()
                 if k not in ("score", "std", "status", "run_id"))
        + f": {row['score']:.4g}" for row in o.selected.table)
    chosen = " ".join(f"{k} {v:g}" for k, v in o.selected.point.items())
    grown = f" (grid grown to {', '.join(f'{r:g}' for r in o.selected.extended)})" \
        if o.selected.extended else f" ({o.variant.rate_from}'s rate, not selected)" \
        if o.variant.rate_from else ""
    if edge := o.selected.edge:
      grown += f"; **on the {edge} edge of the rates tried: the optimum is not bracketed**"
    lines.append(f"| {name} | {chosen}{grown} | {cells} |")
  return "\n".join(lines)


def settings_of(experiment: Experiment, argv: Sequence[str] | None = None):
  """The experiment's settings from the command line `argv` (its flags, the harness's rules
  and the experiment's `check`); a bad value is one ``error:`` line and exit status 2."""
  return cli.parse(experiment.settings, argv, prog=f"python -m experiments.{experiment.name}",
                   description=experiment.description or experiment.title,
                   check=lambda s: _problems(s) + list(experiment.check(s) if
                                                        experiment.check else []))


def _variants(experiment: Experiment, settings) -> list[Variant]:
  try:
    return list(experiment.variants(settings))
  except (KeyError, ValueError, TypeError) as err:
    _refuse(str(err).strip("'\""))


def _splits(experiment: Experiment, settings, mnist) -> Mapping[str, Splits]:
  try:
    return (experiment.splits or default_splits)(settings, mnist)
  except ValueError as err:  # e.g. too few images left for the settings
    _refuse(str(err))


@dataclasses.dataclass(frozen=True)
class Cost:
  """What one variant's protocol trains (`plan`), before any grid extension.

  Attributes:
    variant: its name.
    run_id: the folder of its first run under ``OUT/runs/`` (``NAME-grid``).
    models: grid points x seeds, trained as one program.
    epochs: training epochs of each model.
    examples: training examples per epoch of each model (whole batches).
    eval_examples: examples evaluated per epoch (validation, or test without one).
    final_examples: examples evaluated once at the end (test and ``final_splits``).
    weights: multiply-adds of one example's forward pass (the MLP's weight count).
    extension_models: the models one grid extension adds (a rate x the other points).
    max_extensions: how many extensions the protocol may add (0 without selection).
    done: the first run is finished in ``OUT`` (it is read back, not trained).
    batch: the training batch size (`model_steps`).
  """

  variant: str
  run_id: str
  models: int
  epochs: int
  examples: int
  eval_examples: int
  final_examples: int
  weights: int
  extension_models: int = 0
  max_extensions: int = 0
  done: bool = False
  batch: int = 128

  @property
  def flops_per_example(self) -> int:
    """Training FLOPs of one example in one model: 6 per weight (forward 2, backward 4)."""
    return 6 * self.weights

  def flops(self, models: int | None = None) -> float:
    """Training and evaluation FLOPs of `models` models (default: the run's)."""
    per_model = (self.epochs * (self.flops_per_example * self.examples
                                + 2 * self.weights * self.eval_examples)
                 + 2 * self.weights * self.final_examples)
    return float(self.models if models is None else models) * per_model

  def model_steps(self, models: int | None = None) -> float:
    """Optimizer steps summed over `models` models (default: the run's)."""
    return float(self.models if models is None else models) * self.epochs * (
        self.examples // max(self.batch, 1))

  @property
  def model_epochs(self) -> float:
    """Models x epochs x training examples / 50000 (the unit of the suite's budget)."""
    return self.models * self.epochs * self.examples / 50000


def _mlp_weights(input_size: int, hidden: Sequence[int], num_classes: int) -> int:
  widths = (input_size, *hidden, num_classes)
  return sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))


def plan(experiment: Experiment, settings, mnist) -> list[Cost]:
  """What `experiment` trains under `settings`, one `Cost` per variant, without training.

  `mnist`: the dataset `main` would get (its subsets are applied here); the experiment's
  splits are built to read their sizes. The grid of a variant is its rates x its loss
  hyperparameter values (``params`` and ``sweep``) x its seeds; with a validation split and
  two rates or more, the protocol may add up to `protocol.MAX_EXTENSIONS` rates per
  direction, each one rate x the other points x the seeds (`Cost.extension_models`).
  """
  variants = _variants(experiment, settings)
  splits = _splits(experiment, settings, mnist.subset(settings.train_subset,
                                                      settings.test_subset))
  out = []
  for v in variants:
    config, split = _config(v, settings), splits[v.data]
    n_train = int(np.shape(split.train[1])[0])
    steps = (config.steps_per_epoch(n_train) if hasattr(config, "steps_per_epoch")
             else n_train // config.batch_size)
    combos = int(np.prod([len(x) for x in (*v.params.values(), *v.sweep.values())]))
    rates = (None,) if v.rate_from else v.rates or settings.lrs  # rate_from: one, not known yet
    seeds = v.seeds or settings.seeds
    selects = split.val is not None and len(rates) > 1
    evaluated = split.val if split.val is not None else split.test
    final = int(np.shape(split.test[1])[0]) + sum(
        int(np.shape({"val": split.val, "train": split.train}[k][1])[0])
        for k in v.final_splits if (k != "val" or split.val is not None))
    run_id = f"{v.name}-grid"
    out.append(Cost(
        v.name, run_id, len(rates) * combos * len(seeds), config.epochs,
        min(steps * config.batch_size, n_train), int(np.shape(evaluated[1])[0]), final,
        _mlp_weights(int(np.prod(np.shape(split.train[0])[1:])), config.hidden,
                     config.num_classes),
        combos * len(seeds) if selects else 0, protocol.MAX_EXTENSIONS if selects else 0,
        os.path.exists(os.path.join(settings.out, "runs", run_id, "result.json")),
        config.batch_size))
  return out


class Speed(NamedTuple):
  """This machine's training speed (`measure_speed`): time = FLOPs x `seconds_per_flop` +
  model-steps x `seconds_per_model_step`, plus `compile_seconds` per program."""

  seconds_per_flop: float
  compile_seconds: float
  seconds_per_model_step: float = 0.0


def estimate(costs: Sequence[Cost], seconds_per_flop: float, compile_seconds: float,
             seconds_per_model_step: float = 0.0) -> tuple[float, float]:
  """Seconds to train `costs` (finished runs count 0), and the most with grid extensions.

  Each run costs its FLOPs x `seconds_per_flop`, its model-steps (`Cost.model_steps`) x
  `seconds_per_model_step` (what small matrices and small batches cost beyond their FLOPs)
  and `compile_seconds` (one program); the second number adds every possible extension in
  one direction (`Cost.max_extensions` runs of `Cost.extension_models` models each, every
  one a program of its own).
  """
  def seconds(c: Cost, models: int | None = None) -> float:
    return (c.flops(models) * seconds_per_flop + c.model_steps(models) * seconds_per_model_step
            + compile_seconds)

  base = sum(seconds(c) for c in costs if not c.done)
  extra = sum(c.max_extensions * seconds(c, c.extension_models) for c in costs)
  return base, base + extra


# The two probes of `measure_speed`: (hidden widths, batch size). A wide net at batch 128
# (FLOP-bound) and a narrow one at batch 32 (step-bound), as the experiments' nets range.
PROBES = (((512, 512), 128), ((64,), 32))


def fit_speed(times: Sequence[float], costs: Sequence[Cost], compile_seconds: float) -> Speed:
  """The `Speed` whose two terms reproduce the two probes' epoch `times` exactly (solving
  ``t = flops a + steps b``); b is clipped at 0 (then a fits the first probe alone)."""
  (f1, s1), (f2, s2) = ((c.flops(), c.model_steps()) for c in costs)
  det = f1 * s2 - f2 * s1
  a, b = ((times[0] * s2 - times[1] * s1) / det, (f1 * times[1] - f2 * times[0]) / det) \
      if det else (times[0] / f1, 0.0)
  if b < 0 or a <= 0:
    a, b = times[0] / f1, 0.0
  return Speed(a, compile_seconds, b)


def measure_speed(*, models: int = 16, examples: int = 2048, epochs: int = 2) -> Speed:
  """This machine's `Speed`, timed on two small runs (`PROBES`), a few seconds each.

  Each trains `models` MLPs as one vmapped program on `examples` random 28x28 images (Adam),
  the way the experiments train; its last epoch's time is one equation of `fit_speed`. The
  compile seconds are the wide probe's (the larger program).
  """
  import jaxloss  # pylint: disable=import-outside-toplevel
  from jaxloss import train as jt  # pylint: disable=import-outside-toplevel

  rng = np.random.default_rng(0)
  n_eval = max(examples // 4, 1)
  data = jt.Mnist(rng.integers(0, 256, (examples, 28, 28), dtype=np.uint8),
                  rng.integers(0, 10, examples).astype(np.int32),
                  rng.integers(0, 256, (n_eval, 28, 28), dtype=np.uint8),
                  rng.integers(0, 10, n_eval).astype(np.int32))
  times, costs, compiled = [], [], []
  for hidden, batch in PROBES:
    config = jt.TrainConfig(hidden=tuple(hidden), epochs=epochs, batch_size=batch)
    records = list(jt.iterate_training(config, data, seeds=tuple(range(models)), mesh=None,
                                       loss_fn=jaxloss.get("ce").loss_from_labels))
    times.append(records[-1].seconds)
    compiled.append(sum(r.compile_seconds for r in records))
    costs.append(Cost("probe", "probe", models, 1, (examples // batch) * batch, n_eval, 0,
                      _mlp_weights(28 * 28, hidden, 10), batch=batch))
  return fit_speed(times, costs, compiled[0])


def main(experiment: Experiment, argv: Sequence[str] | None = None, *,
         mnist=None) -> dict[str, Any]:
  """Runs `experiment` from the command line `argv`; returns the summary written.

  `mnist`: full MNIST already loaded (`experiments.all` loads it once for every script);
  the settings' subsets still apply. A ``--quick`` run calls `compile_fast`.
  """
  prog = f"python -m experiments.{experiment.name}"
  settings = settings_of(experiment, argv)
  variants = _variants(experiment, settings)
  if problems := _dependency_problems(variants, settings):
    _refuse("; ".join(problems))
  _check_out(settings)
  t_start = time.perf_counter()
  if settings.quick:
    compile_fast()
  join_processes()
  env = outputs.print_device()
  mnist = load(settings) if mnist is None else mnist.subset(settings.train_subset,
                                                            settings.test_subset)
  splits = _splits(experiment, settings, mnist)
  for variant in variants:
    if problem := _final_splits_problem(variant, splits[variant.data]):
      _refuse(problem)
  os.makedirs(settings.out, exist_ok=True)
  config = {"experiment": experiment.name, "settings": _settings_record(settings),
            "command": cli.command(prog, sys.argv[1:] if argv is None else argv),
            "environment": env}
  outputs.write_json(os.path.join(settings.out, "config.json"), outputs.json_ready(config))

  outcomes: dict[str, Outcome] = {}
  rows: list[dict[str, Any]] = []
  total = sum(_config(v, settings).epochs for v in variants)
  with outputs.progress(total, experiment.name, disable=settings.no_progress) as bar:
    for variant in variants:
      try:
        found = _run_variant(variant, settings, splits[variant.data], bar, outcomes)
      except runs.RunMismatchError as err:
        _refuse(str(err))
      outcomes.update(found)
      split = "validation" if splits[variant.data].val is not None else "test"
      results = next(iter(found.values())).selected.results
      rows += [{"variant": variant.name, "split": split, **r} for res in results for r in res.rows]
      outputs.write_text(os.path.join(settings.out, "metrics.jsonl"), "".join(
          json.dumps(outputs.json_ready(r)) + "\n" for r in rows))

  report = experiment.report(settings, outcomes)
  # Every run's training and evaluation time, in whichever invocations trained it.
  run_seconds = {r.run_id: r.wall_seconds for o in outcomes.values() for r in o.selected.results}
  summary = {"experiment": experiment.name, "title": experiment.title,
             "verdict": report.verdict, "headline": report.headline or report.verdict,
             "settings": _settings_record(settings),
             "variants": {n: {"selected": o.selected.point, "extended": o.selected.extended,
                              "edge": o.selected.edge,
                              "selection": o.selected.table,
                              "test": {k: v for k, v in o.test.items() if np.ndim(v) == 1},
                              **o.variant.describe, **_dependencies(o.variant)}
                          for n, o in outcomes.items()},
             **report.summary, "train_seconds": float(sum(run_seconds.values())),
             "wall_seconds": time.perf_counter() - t_start}
  table = _summary_rows(outcomes)
  markdown = f"## {experiment.title}\n\n**Verdict.** {report.verdict}\n\n{report.markdown}\n"
  if selected := {n: o for n, o in outcomes.items() if splits[o.variant.data].val is not None}:
    markdown += ("\nLearning-rate selection on the validation split:\n\n"
                 f"{_selection_markdown(selected)}\n")
  out = settings.out
  outputs.write_json(os.path.join(out, "summary.json"), outputs.json_ready(summary))
  outputs.write_text(os.path.join(out, "summary.csv"), outputs.csv_text(table))
  outputs.write_text(os.path.join(out, "summary.md"), markdown)
  for name, draw in report.figures.items():
    draw(os.path.join(out, name))
  config["wall_seconds"] = summary["wall_seconds"]
  outputs.write_json(os.path.join(out, "config.json"), outputs.json_ready(config))
  if outputs.is_writer():  # the other processes of a multi-process run stay quiet
    print(markdown)
    print(f"wrote {out}/ in {summary['wall_seconds']:.0f} s", flush=True)
  return outputs.json_ready(summary)
