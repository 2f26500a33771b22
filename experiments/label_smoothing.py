"""Label smoothing on MNIST, clean and noisy labels: accuracy, calibration after temperature
scaling, and robustness once the nets memorize the noise.

Label smoothing trains against ``(1 - alpha) * onehot + alpha / K``. Its target for the
true class, ``1 - alpha (K - 1) / K``, is 0.82 at alpha = 0.2 with K = 10 classes, and a net
that fits it has about that mean confidence: an ECE of about accuracy minus that target,
whatever else label smoothing does. So the raw ECE is not the finding. This experiment asks
the two questions behind it:

1. **After temperature scaling, does label smoothing still differ from cross-entropy?** One
   scalar ``T`` per trained model is fit by minimizing the NLL on the validation split
   (`experiments.calibration.fit_temperature`: float64 NumPy, a bounded grid-then-golden
   search on ``log T``) and applied to the test logits. Per alpha: ECE with 15 equal-width
   bins and with 15 equal-mass (adaptive) bins, NLL, mean confidence, before and after; the
   accuracy does not change (``T > 0`` keeps the argmax). Each alpha > 0 is compared with
   alpha = 0 at the same noise rate on the after-scaling NLL, ECE and adaptive ECE (paired t
   over seeds, Holm per metric across the pairs, equivalence margins ``--nll-margin`` and
   ``--ece-margin``), and on accuracy (exact McNemar, Holm, ``--margin``).
2. **Does label smoothing protect accuracy once the nets memorize noisy labels?** Training
   labels are flipped (`datasets.symmetric_label_noise`, ``--noise-rates``, one fixed seed,
   BEFORE the validation split, so the validation labels are noisy too; test labels clean).

The alphas ``0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2`` (small ones included) of a noise rate
train in ONE program (traced alpha, the harness's ``sweep``); every (noise, alpha) gets the
harness protocol: a bracketed learning-rate grid, selection at the final horizon on the
validation labels as given (noisy for a noisy run: the labels a user has), 5 paired seeds.

**Setting, and why.** Memorizing 20% wrong labels takes thousands of Adam steps: far
beyond 25 CPU minutes for 7 alphas x 5 seeds x 5+ rates of the 784-512-512 net on 50k
images (one epoch of that sweep alone is ~19 min). The nets here are 784-128-10 MLPs on the
first 4,500 training images (3,000 to train, 1,500 held out for selection and temperature),
batch 32 (four times the steps of batch 128 for the same arithmetic), cosine decay over 60
epochs; both noise rates share it, so they differ only in their labels. A real check (alpha
0 and 0.2, noise 0.2, seeds 0 and 1, 3,000 training images, 60 epochs) fit 99.9% and 99.6%
of the noisy training labels at the rate 3.16e-3 (100% and 98.6% at 1e-2), while the rates
the validation selected, 1e-4 and 3.16e-4, fit 75-83%. What was cut is the number of
variants (a data subset and a small net), not the seeds or the grid.

**Memorization and selection.** Selecting the rate on validation at a fixed horizon picks
the rate that memorizes least: a small rate is early stopping in disguise. So the report
gives, besides the protocol's selected nets (their training accuracy on the noisy labels
included), a control: the smallest rate of the grid at which EVERY net (each alpha, each
seed) fits at least ``--memorized`` (99%) of its noisy training labels, a rule on training
data alone, fixed before any held-out number is read. There, every alpha > 0 is compared with
alpha = 0 on the clean test labels (McNemar, Holm over that family). The training accuracy
on the noisy labels is measured once at the end on the whole training split
(``final_splits``), and per epoch as the running mean over the epoch's batches.

**Which labels calibrate.** The test labels are clean, so calibration is judged against
clean labels; ``T`` is fit on the validation images with their true labels: a small
trusted set (1,500 images), the realistic way to calibrate under label noise. A ``T`` fit
on the noisy validation labels calibrates the model to the noise (by construction it is
under-confident on clean data by about the noise rate, whatever the loss); it is reported as
the no-trusted-set case. With clean labels the two fits are the same.

**Accuracy over time.** Each epoch is evaluated on the validation split (the protocol's),
both on its given labels (the selection metric) and on its true labels (``clean_accuracy``):
held-out images of the test distribution with clean labels, the test curve's stand-in that
keeps the test set looked at once; its final value sits next to the test accuracy.

Writes ``alpha.png`` (accuracy, confidence against the smoothed target, NLL and ECE before
and after scaling, vs alpha), ``reliability.png`` (before/after temperature) and
``curves.png`` (noisy runs: training accuracy on the noisy labels and held-out accuracy per
epoch, at the selected rates and at the memorizing rate). Cost of the defaults: 350 models
(7 alphas x 5 seeds x 5 rates x 2 noise rates), plus 35 per grid extension (expect one or
two: the noisy run's winner tends to sit on the low edge, the clean one's near the high
edge), x 60 epochs x 3,000 images: 1,260 to 1,510 model-epochs of 50k images. Measured
against the README's reference (784-512-512: 3.2 s per model-epoch), one epoch of the 175
models of a noise rate costs ~9.3 s on the 2-core CPU (the 1,500 validation images
evaluated every epoch included): ~23-25 minutes in all, compilation and the final
evaluations included. Usage::

  JAXLOSS_MNIST_DIR=/work/shared/data/mnist python -m experiments.label_smoothing
  python -m experiments.label_smoothing --quick --out /tmp/ls_quick
  python -m experiments.label_smoothing --alphas 0,0.1 --noise-rates 0,0.4 --seeds 3
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from typing import Any, Mapping, Sequence

import numpy as np

from experiments import calibration, cli, harness, outputs, plots, stats

NUM_CLASSES = 10
CURVE_METRICS = ("train_accuracy", "clean_accuracy")  # the per-epoch curves of curves.png


@dataclasses.dataclass(frozen=True)
class Settings(harness.Settings):
  """label_smoothing's command line: the harness's (other defaults), alphas, noise, model."""

  out: str = cli.option("runs/label_smoothing", "output folder")
  epochs: int = cli.option(60, "training epochs, the same for selection and the reported runs "
                           "(long enough that the larger rates memorize the noisy labels)",
                           parse=cli.positive_int, quick=2)
  batch_size: int = cli.option(32, "training batch size", parse=cli.positive_int, quick=128)
  val_size: int = cli.option(1500, "training images held out: the rate is selected and the "
                             "temperature fit on them", parse=cli.nonnegative_int, quick=512)
  train_subset: int | None = cli.option(
      4500, "use the first N training images only (the validation images included)",
      parse=cli.positive_int, quick=2048)
  alphas: tuple[float, ...] = cli.option(
      (0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2), "label-smoothing strengths in [0, 1], trained "
      "in one program per noise rate; must include 0 (plain cross-entropy, the baseline)",
      parse=cli.numbers(0.0, 1.0), quick=(0.0, 0.2))
  noise_rates: tuple[float, ...] = cli.option(
      (0.0, 0.2), "fractions of the training (and validation) labels flipped to another class",
      parse=cli.numbers(0.0, 1.0, high_open=True))
  noise_seed: int = cli.option(0, "seed of the label noise", parse=cli.nonnegative_int)
  hidden: tuple[int, ...] = cli.option((128,), "hidden widths ('' for a linear model)",
                                       parse=cli.ints, quick=(32,))
  schedule: str = cli.option("cosine", "learning-rate schedule (cosine: decay to 0 over the "
                             "epochs)", choices=("constant", "cosine"))
  memorized: float = cli.option(
      0.99, "training accuracy on the noisy labels that counts as memorized: the control rate "
      "is the smallest rate at which every net reaches it", parse=cli.number(0.0, 1.0,
                                                                               low_open=True))
  nll_margin: float = cli.option(0.01, "equivalence margin of the NLL verdicts, in nats",
                                 parse=cli.positive_number)
  ece_margin: float = cli.option(0.25, "equivalence margin of the ECE verdicts, in ECE points "
                                 "(percent)", parse=cli.positive_number)


def check(s: Settings) -> list[str]:
  out = []
  if 0.0 not in s.alphas:
    out.append(f"--alphas: must include 0 (plain cross-entropy, the baseline), got "
               f"{','.join(f'{a:g}' for a in s.alphas)}")
  if not s.val_size:
    out.append("--val-size: must be above 0: the rate is selected and the temperature fit "
               "on the validation split")
  return out


def data_key(rate: float) -> str:
  return f"noise{rate:g}"


def outcome_name(rate: float, alpha: float) -> str:
  """The harness's name of a swept outcome, e.g. ``noise0.2-alpha=0.1``."""
  return f"{data_key(rate)}-alpha={alpha:g}"


def smoothed_target(alpha: float) -> float:
  """The smoothed target's probability of the labelled class, ``1 - alpha (K - 1) / K``."""
  return 1.0 - alpha * (NUM_CLASSES - 1) / NUM_CLASSES


def splits(s: Settings, mnist) -> dict[str, harness.Splits]:
  """Per noise rate: noisy training labels, then the validation split; clean test labels.

  The validation and test labels are ``[N, 2]``: the label as given (noisy for validation)
  and the true one (`evaluate` and `per_example` read both); the training labels are the
  given ones, ``[N]``.
  """
  from experiments import datasets  # pylint: disable=import-outside-toplevel
  clean_N = np.asarray(mnist.train_labels, np.int32)
  test_N = np.asarray(mnist.test_labels, np.int32)
  out = {}
  for rate in s.noise_rates:
    noisy_N, _ = datasets.symmetric_label_noise(clean_N, rate=rate, num_classes=NUM_CLASSES,
                                                seed=s.noise_seed)
    both = dataclasses.replace(mnist, train_labels=np.stack([noisy_N, clean_N], axis=1),
                               test_labels=np.stack([test_N, test_N], axis=1))
    sp = harness.default_splits(s, both)["mnist"]
    out[data_key(rate)] = harness.Splits((sp.train[0], sp.train[1][:, 0]), sp.val, sp.test)
  return out


def smoothed_loss(logits_BxC, labels_B, alpha):
  """Label-smoothed cross-entropy with a traced `alpha` (0: plain cross-entropy)."""
  import jaxloss  # pylint: disable=import-outside-toplevel
  return jaxloss.get("label_smoothing_cross_entropy", alpha=alpha).loss_from_labels(
      logits_BxC, labels_B)


def evaluate(logits_NxC, labels):
  """The metrics of a split (traced): ``test_accuracy`` on the labels as given (the
  selection metric; noisy on a noisy validation split) and ``test_confidence`` (mean max
  softmax); with ``[N, 2]`` labels (given, true) also ``clean_accuracy``, ``test_nll`` and
  ``test_ece`` (15 bins) on the true labels. The training split has its given labels only."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import jaxloss  # pylint: disable=import-outside-toplevel
  given_N = labels if labels.ndim == 1 else labels[:, 0]
  pred_N = jnp.argmax(logits_NxC, axis=-1)
  out = {"test_accuracy": jnp.mean(pred_N == given_N),
         "test_confidence": jnp.mean(jnp.max(jax.nn.softmax(logits_NxC, axis=-1), axis=-1))}
  if labels.ndim == 2:
    true_N = labels[:, 1]
    out |= {"clean_accuracy": jnp.mean(pred_N == true_N),
            "test_nll": jnp.mean(jaxloss.softmax_cross_entropy_with_integer_labels(
                logits_NxC, true_N)),
            "test_ece": jaxloss.expected_calibration_error(logits_NxC, true_N,
                                                           num_bins=calibration.BINS)}
  return out


def per_example(logits_NxC, labels):
  """What the final evaluation keeps per example, for the NumPy fits of the report: on the
  validation and test splits (``[N, 2]`` labels) the logits, the labels and ``correct``
  against the true label; nothing on the training split."""
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  if labels.ndim == 1:
    return {}
  return {"correct": jnp.argmax(logits_NxC, axis=-1) == labels[:, 1], "logits": logits_NxC,
          "labels": labels.astype(jnp.int8)}


def variants(s: Settings) -> list[harness.Variant]:
  return [harness.Variant(data_key(rate), smoothed_loss, eval_fn=evaluate, test_fn=per_example,
                          train={"hidden": s.hidden, "num_classes": NUM_CLASSES,
                                 "schedule": s.schedule},
                          sweep={"alpha": tuple(sorted(s.alphas))}, data=data_key(rate),
                          final_splits=("val", "train"),
                          describe={"noise_rate": rate, "noise_seed": s.noise_seed})
          for rate in s.noise_rates]


# ---------------------------------------------------------------- the numbers of the report

_CAL_KEYS = ("temperature", "ece_before", "ece_after", "adaptive_ece_before",
             "adaptive_ece_after", "nll_before", "nll_after", "confidence_before",
             "confidence_after")
# After-scaling metrics compared with alpha 0: key -> (scale to the margin's unit, margin).
COMPARED = {"nll_after": (1.0, "nll_margin"), "ece_after": (100.0, "ece_margin"),
            "adaptive_ece_after": (100.0, "ece_margin")}


def calibrate_seeds(val: Mapping[str, np.ndarray], test: Mapping[str, np.ndarray],
                    column: int) -> dict[str, np.ndarray]:
  """`calibration.calibrate` per seed: ``T`` fit on the validation logits against label
  column `column` (0: as given, 1: true), measured on the test's true labels.

  Returns key -> ``[seeds]`` (``at_bound`` bool); NaN for a seed with non-finite logits."""
  rows = []
  for s in range(len(test["logits"])):
    try:
      rows.append(calibration.calibrate(val["logits"][s], val["labels"][s][:, column],
                                        test["logits"][s], test["labels"][s][:, 1]))
    except ValueError:  # a diverged seed: non-finite logits
      rows.append({k: math.nan for k in _CAL_KEYS} | {"at_bound": False})
  return {k: np.array([r[k] for r in rows]) for k in (*_CAL_KEYS, "at_bound")}


def _interval(values) -> stats.Interval | None:
  """The 95% t interval of the mean of the finite `values` (None with fewer than 2)."""
  x = np.asarray(values, np.float64)
  return stats.paired_t_interval(x[np.isfinite(x)]) if np.isfinite(x).sum() > 1 else None


def lower_is_better(diffs: Sequence[np.ndarray], margin: float) -> list[dict[str, Any]]:
  """Paired comparisons of a lower-is-better metric, one per array of ``a - b`` differences
  over seeds: mean, 95% t CI, paired t p-value Holm-adjusted across `diffs`, and the verdict
  for arm ``a`` ("better" = lower, `stats.verdict` on the negated effect); an array with a
  non-finite value gets the verdict "n/a"."""
  ok = [bool(np.all(np.isfinite(d))) and len(d) > 1 for d in diffs]
  p_holm = iter(stats.holm([stats.paired_t_pvalue(d) for d, k in zip(diffs, ok) if k]))
  out = []
  for d, k in zip(diffs, ok):
    if not k:
      out.append({"diff": math.nan, "low": math.nan, "high": math.nan, "p_holm": math.nan,
                  "verdict": "n/a"})
      continue
    i, p = stats.paired_t_interval(d), next(p_holm)
    flipped = stats.Interval(-i.mean, -i.high, -i.low, i.n, i.confidence)
    out.append({"diff": i.mean, "low": i.low, "high": i.high, "p_holm": p,
                "verdict": stats.verdict(flipped, p, margin=margin)})
  return out


def grid_points(outcome: harness.Outcome) -> dict[tuple[float, float], Any]:
  """``(lr, alpha) -> runs.RunResult`` of every point the variant trained (its whole grid,
  extensions included), from one of its swept outcomes."""
  out = {}
  for result in outcome.selected.results:
    for i, point in enumerate(result.points()):
      out[(point["lr"], point["alpha"])] = result.point(i)
  return out


def train_accuracy(point) -> np.ndarray:
  """``[seeds]`` final accuracy on the (noisy) training labels, the whole training split."""
  return np.asarray(point.test["train/test_accuracy"], np.float64)


def memorizing_rate(points: Mapping[tuple[float, float], Any], alphas: Sequence[float],
                    threshold: float) -> float | None:
  """The smallest rate at which every net of every alpha fits at least `threshold` of its
  training labels (training data only), or None."""
  for lr in sorted({lr for lr, _ in points}):
    if all((lr, a) in points and np.all(train_accuracy(points[(lr, a)]) >= threshold)
           for a in alphas):
      return lr
  return None


def _accuracy_effects(comparisons: Sequence[stats.Comparison]) -> dict[str, dict[str, Any]]:
  return {c.a: {"acc_diff": c.interval.mean, "acc_low": c.interval.low,
                "acc_high": c.interval.high, "acc_p_holm": c.p_holm, "acc_verdict": c.verdict}
          for c in comparisons}


def summarize(s: Settings, outcomes: Mapping[str, harness.Outcome]) -> dict[str, Any]:
  """Every number of the report.

  Returns ``{"rows": [...], "control": {rate: [...]}, "train_by_rate": {rate: {lr: {alpha:
  percent}}}}``: one row per (noise
  rate, alpha) at its selected rate (test accuracy, training accuracy on the noisy labels,
  confidence vs the smoothed target, ``T`` and the calibration before/after, the paired
  effects against alpha 0); per noisy rate the memorization control rows (empty when no
  rate memorized); and per noisy rate the final training accuracy of every (alpha, rate).
  """
  alphas = sorted(s.alphas)
  paired = len(s.seeds) > 1 and len(alphas) > 1
  pairs = [(outcome_name(r, a), outcome_name(r, 0.0)) for r in s.noise_rates
           for a in alphas if a > 0]
  cal, cal_given = {}, {}
  for rate in s.noise_rates:
    for alpha in alphas:
      name = outcome_name(rate, alpha)
      o = outcomes[name]
      cal[name] = calibrate_seeds(o.on("val"), o.test, column=1)
      cal_given[name] = cal[name] if rate == 0 else calibrate_seeds(o.on("val"), o.test, 0)
  effects: dict[str, dict[str, Any]] = {name: {} for name in outcomes}
  if paired:
    for name, e in _accuracy_effects(harness.compare(outcomes, pairs, margin=s.margin)).items():
      effects[name] |= e
    for key, (scale, margin) in COMPARED.items():
      found = lower_is_better([scale * (cal[a][key] - cal[b][key]) for a, b in pairs],
                              getattr(s, margin))
      for (a, _), f in zip(pairs, found):
        effects[a] |= {f"{key}_{k}": v for k, v in f.items()}
    conf = [np.asarray(outcomes[a].test["test_confidence"], np.float64)
            - outcomes[b].test["test_confidence"] for a, b in pairs]
    for (a, _), d, p in zip(pairs, conf, stats.holm([stats.paired_t_pvalue(d) for d in conf])):
      j = stats.paired_t_interval(d)
      effects[a] |= {"conf_diff": j.mean, "conf_low": j.low, "conf_high": j.high,
                     "conf_p_holm": p}

  rows = []
  for rate in s.noise_rates:
    for alpha in alphas:
      name = outcome_name(rate, alpha)
      o, c, g = outcomes[name], cal[name], cal_given[name]
      row = {"outcome": name, "noise_rate": rate, "alpha": alpha, "lr": o.selected.lr}
      row["acc_mean"], row["acc_std"] = outputs.mean_std(o.accuracy())
      row["heldout_acc"] = 100 * float(np.nanmean(o.curve("clean_accuracy")[-1]))
      row["train_acc"] = 100 * float(np.mean(o.on("train")["test_accuracy"]))
      row["target"] = smoothed_target(alpha)
      row |= {k: float(np.nanmean(c[k])) for k in _CAL_KEYS}
      row["at_bound"] = int(np.sum(c["at_bound"]))
      row["temperatures"] = [float(t) for t in c["temperature"]]  # per seed
      if rate > 0:
        row |= {f"given_{k}": float(np.nanmean(g[k])) for k in
                ("temperature", "ece_after", "adaptive_ece_after", "nll_after")}
      rows.append(row | effects[name])

  control, train_by_rate = {}, {}
  for rate in (r for r in s.noise_rates if r > 0):
    points = grid_points(outcomes[outcome_name(rate, 0.0)])
    train_by_rate[rate] = {f"{lr:g}": {f"{a:g}": 100 * float(np.mean(train_accuracy(points[
        (lr, a)]))) for a in alphas if (lr, a) in points} for lr in sorted({p[0] for p in points})}
    lr = memorizing_rate(points, alphas, s.memorized)
    if lr is None:
      control[rate] = []
      continue
    names = {a: outcome_name(rate, a) for a in alphas}
    at = {names[a]: points[(lr, a)] for a in alphas}
    found = {}
    if paired:
      found = _accuracy_effects(stats.compare_pairs(
          {n: 100 * np.asarray(p.test["test_accuracy"], np.float64) for n, p in at.items()},
          [(names[a], names[0.0]) for a in alphas if a > 0],
          correct={n: p.test["correct"] for n, p in at.items()}, margin=s.margin))
    control[rate] = []
    for a in alphas:
      p = at[names[a]]
      row = {"outcome": names[a], "noise_rate": rate, "alpha": a, "lr": lr,
             "train_acc": 100 * float(np.mean(train_accuracy(p))),
             "heldout_acc": 100 * float(np.nanmean(p.curve("clean_accuracy")[-1]))}
      row["acc_mean"], row["acc_std"] = outputs.mean_std(100 * np.asarray(
          p.test["test_accuracy"], np.float64))
      control[rate].append(row | found.get(names[a], {}))
  return {"rows": rows, "control": control, "train_by_rate": train_by_rate}


# ---------------------------------------------------------------- text

def _label(rate: float) -> str:
  return "clean labels" if rate == 0 else f"{100 * rate:g}% noisy labels"


def _p(p: float) -> str:
  return "p < 0.0001" if p < 1e-4 else f"p = {p:.2g}"


def _counts(rows: Sequence[Mapping[str, Any]], key: str) -> str:
  """E.g. ``"2 worse, 4 equivalent"`` from the verdicts ``key`` of `rows`."""
  found = [r[key] for r in rows]
  return ", ".join(f"{found.count(v)} {v}" for v in ("better", "worse", "equivalent",
                                                     "inconclusive", "n/a") if v in found)


def _extreme(rows: Sequence[Mapping[str, Any]], key: str, unit: str, digits: int) -> str:
  """The largest effect of `key` among `rows`, with its CI, Holm p and verdict."""
  r = max((r for r in rows if np.isfinite(r[f"{key}_diff"])),
          key=lambda r: abs(r[f"{key}_diff"]), default=None)
  if r is None:
    return "no finite effect"
  return (f"largest alpha={r['alpha']:g} {r[f'{key}_diff']:+.{digits}f} {unit} (95% CI "
          f"{r[f'{key}_low']:+.{digits}f} to {r[f'{key}_high']:+.{digits}f}, Holm "
          f"{_p(r[f'{key}_p_holm'])}, {r[f'{key}_verdict']})")


def _best_accuracy(rows: Sequence[Mapping[str, Any]]) -> str:
  b = max(rows, key=lambda r: r["acc_diff"])
  return (f"best alpha={b['alpha']:g} {b['acc_diff']:+.2f} points (95% CI {b['acc_low']:+.2f} "
          f"to {b['acc_high']:+.2f}, Holm {_p(b['acc_p_holm'])}, {b['acc_verdict']})")


def _span(values: Sequence[float]) -> str:
  lo, hi = min(values), max(values)
  return f"{lo:.1f}%" if f"{lo:.1f}" == f"{hi:.1f}" else f"{lo:.1f}-{hi:.1f}%"


def verdict_text(summary: Mapping[str, Any], s: Settings) -> tuple[str, str]:
  """The verdict (one sentence per noise rate) and the headline (empty without comparisons)."""
  sentences, heads = [], []
  rows = summary["rows"]
  for rate in dict.fromkeys(r["noise_rate"] for r in rows):
    base, *others = [r for r in rows if r["noise_rate"] == rate]
    head = (f"{_label(rate).capitalize()} (nets at the selected rates fit "
            f"{_span([r['train_acc'] for r in [base, *others]])} of their training labels): "
            f"cross-entropy {base['acc_mean']:.2f}% test accuracy")
    if not others or "acc_diff" not in others[0]:
      tail = ", ".join(f"alpha={r['alpha']:g} {r['acc_mean']:.2f}%" for r in others)
      sentences.append(head + (f", {tail}" if tail else "") + " (no paired comparison).")
      continue
    text = (head + f"; label smoothing's accuracy: {_counts(others, 'acc_verdict')}, "
            f"{_best_accuracy(others)}; after temperature scaling its test NLL: "
            f"{_counts(others, 'nll_after_verdict')}, {_extreme(others, 'nll_after', 'nats', 3)}"
            f", and its ECE: {_counts(others, 'ece_after_verdict')}")
    best = max(others, key=lambda r: r["acc_diff"])
    nll = max(others, key=lambda r: abs(np.nan_to_num(r["nll_after_diff"])))
    heads.append(f"{_label(rate)}: best alpha={best['alpha']:g} {best['acc_diff']:+.2f} points "
                 f"({best['acc_verdict']}), scaled NLL at alpha={nll['alpha']:g} "
                 f"{nll['nll_after_diff']:+.3f} ({nll['nll_after_verdict']})")
    control = summary["control"].get(rate)
    if control is not None and rate > 0:
      if not control:
        text += (f"; no rate of the grid had every net fit {100 * s.memorized:g}% of the noisy "
                 "training labels (no memorization control)")
      elif len(control) > 1 and "acc_diff" in control[1]:
        c_base, *c_others = control
        text += (f"; at the memorizing rate {c_base['lr']:g} (every net fits >= "
                 f"{100 * s.memorized:g}% of the noisy training labels) cross-entropy reaches "
                 f"{c_base['acc_mean']:.2f}% and label smoothing: "
                 f"{_counts(c_others, 'acc_verdict')}, {_best_accuracy(c_others)}")
        best = max(c_others, key=lambda r: r["acc_diff"])
        heads.append(f"memorizing nets: best alpha={best['alpha']:g} {best['acc_diff']:+.2f} "
                     f"points ({best['acc_verdict']})")
    sentences.append(text + ".")
  headline = ("Label smoothing vs cross-entropy, " + "; ".join(heads) + ".") if heads else ""
  return " ".join(sentences), headline


def _effect(r: Mapping[str, Any], key: str, digits: int) -> str:
  if f"{key}_diff" not in r:
    return "baseline" if r["alpha"] == 0 else "n/a"
  if r[f"{key}_verdict"] == "n/a":
    return "n/a"
  return (f"{r[f'{key}_diff']:+.{digits}f} ({r[f'{key}_low']:+.{digits}f} to "
          f"{r[f'{key}_high']:+.{digits}f}), {_p(r[f'{key}_p_holm'])}, {r[f'{key}_verdict']}")


def table_markdown(summary: Mapping[str, Any], s: Settings) -> str:
  model = "-".join(str(w) for w in (784, *s.hidden, NUM_CLASSES))
  n_train = (s.train_subset or 60000) - s.val_size
  rows = summary["rows"]
  out = [
      f"MLP {model} ReLU, Adam with {s.schedule} schedule, batch {s.batch_size}, {s.epochs} "
      f"epochs, {n_train} training and {s.val_size} validation images (the first "
      f"{s.train_subset or 60000} of MNIST's training set), seeds {list(s.seeds)}; label noise "
      f"(seed {s.noise_seed}) before the validation split, clean test labels; the rate "
      "selected per (noise, alpha) on the validation labels as given. Mean over seeds. "
      "Effects are alpha minus alpha 0 at the same noise rate, with their paired 95% t CI over "
      "seeds and Holm-adjusted p (accuracy: exact McNemar on the test digits, margin "
      f"{s.margin:g} points; NLL, ECE: paired t, margins {s.nll_margin:g} nats and "
      f"{s.ece_margin:g} ECE points; each metric its own Holm family). \"better\" is higher "
      "accuracy, lower NLL or ECE.", "",
      "**Accuracy, fit and confidence** (train acc: the final nets on their noisy training "
      "labels; held-out acc: the validation images with their true labels, last epoch; "
      "target: the smoothed target's probability of the label, 1 - alpha (K-1)/K):", "",
      "| noise | alpha | lr | test acc % | Δ test acc (points) | train acc % | held-out acc % "
      "| confidence | target | Δ confidence |", "|---|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    conf = "baseline" if r["alpha"] == 0 else "n/a"
    if "conf_diff" in r:
      conf = (f"{r['conf_diff']:+.3f} ({r['conf_low']:+.3f} to {r['conf_high']:+.3f}), "
              f"{_p(r['conf_p_holm'])}")
    out.append(f"| {r['noise_rate']:g} | {r['alpha']:g} | {r['lr']:g} | {r['acc_mean']:.2f} ± "
               f"{r['acc_std']:.2f} | {_effect(r, 'acc', 2)} | {r['train_acc']:.1f} | "
               f"{r['heldout_acc']:.2f} | {r['confidence_before']:.3f} | {r['target']:.3f} | "
               f"{conf} |")
  out += ["", "**Calibration before → after temperature scaling** (T fit per model on the "
          "validation images with their true labels by minimizing the NLL, applied to the test "
          "logits; accuracy is unchanged by T; ECE in %, 15 equal-width or 15 equal-mass bins; "
          "at bound: seeds whose T hit the search bounds 0.01 or 100):", "",
          "| noise | alpha | T | at bound | ECE % | adaptive ECE % | NLL | confidence |",
          "|---|---|---|---|---|---|---|---|"]
  for r in rows:
    out.append(f"| {r['noise_rate']:g} | {r['alpha']:g} | {r['temperature']:.3f} | "
               f"{r['at_bound']} | {100 * r['ece_before']:.2f} → {100 * r['ece_after']:.2f} | "
               f"{100 * r['adaptive_ece_before']:.2f} → {100 * r['adaptive_ece_after']:.2f} | "
               f"{r['nll_before']:.3f} → {r['nll_after']:.3f} | {r['confidence_before']:.3f} → "
               f"{r['confidence_after']:.3f} |")
  if any(r["alpha"] > 0 for r in rows):
    out += ["", "**After temperature scaling, label smoothing vs cross-entropy** (Δ = alpha "
            "minus alpha 0 after scaling):", "",
            "| noise | alpha | Δ NLL (nats) | Δ ECE (points) | Δ adaptive ECE (points) |",
            "|---|---|---|---|---|"]
  for r in rows:
    if r["alpha"] > 0:
      out.append(f"| {r['noise_rate']:g} | {r['alpha']:g} | {_effect(r, 'nll_after', 3)} | "
                 f"{_effect(r, 'ece_after', 2)} | {_effect(r, 'adaptive_ece_after', 2)} |")
  noisy = [r for r in rows if r["noise_rate"] > 0]
  if noisy:
    out += ["", "**Without a trusted set** (noisy runs: T fit on the noisy validation labels, "
            "measured on the clean test labels; it calibrates to the noise):", "",
            "| noise | alpha | T | ECE % | adaptive ECE % | NLL |", "|---|---|---|---|---|---|"]
    out += [f"| {r['noise_rate']:g} | {r['alpha']:g} | {r['given_temperature']:.3f} | "
            f"{100 * r['given_ece_after']:.2f} | {100 * r['given_adaptive_ece_after']:.2f} | "
            f"{r['given_nll_after']:.3f} |" for r in noisy]
  for rate, by_rate in summary["train_by_rate"].items():
    control = summary["control"].get(rate, [])
    rates = list(by_rate)
    chosen = f"{control[0]['lr']:g}" if control else "none of them"
    out += ["", f"**Memorization, {_label(rate)}**: final accuracy % on the noisy training "
            "labels per rate (mean over seeds; * the rate selected on validation; the control "
            f"rate is the smallest at which every net reaches {100 * s.memorized:g}%: {chosen}):",
            "",
            "| alpha | " + " | ".join(f"lr {lr}" for lr in rates) + " |",
            "|---|" + "---|" * len(rates)]
    for alpha in sorted(s.alphas):
      sel = next(r["lr"] for r in rows if r["noise_rate"] == rate and r["alpha"] == alpha)
      out.append(f"| {alpha:g} | " + " | ".join(
          f"{by_rate[lr].get(f'{alpha:g}', math.nan):.1f}{'*' if float(lr) == sel else ''}"
          for lr in rates) + " |")
    if control:
      out += ["", f"At the memorizing rate {control[0]['lr']:g} (not selected on validation; "
              "the same rate for every alpha; test accuracy of those nets, McNemar, Holm over "
              "this family):", "",
              "| alpha | train acc % | held-out acc % | test acc % | Δ test acc (points) |",
              "|---|---|---|---|---|"]
      out += [f"| {r['alpha']:g} | {r['train_acc']:.1f} | {r['heldout_acc']:.2f} | "
              f"{r['acc_mean']:.2f} ± {r['acc_std']:.2f} | {_effect(r, 'acc', 2)} |"
              for r in control]
  out += ["", "![Accuracy, confidence, NLL and ECE vs alpha](alpha.png)", "",
          "![Reliability before and after temperature scaling](reliability.png)"]
  if summary["train_by_rate"]:
    out += ["", "![Noisy labels: training accuracy and held-out accuracy per epoch](curves.png)"]
  return "\n".join(out)


# ---------------------------------------------------------------- figures

def _alpha_axis(ax, alphas: Sequence[float], label: str) -> None:
  ax.set_xticks(range(len(alphas)), [f"{a:g}" for a in alphas])
  ax.set(xlabel="label smoothing alpha", ylabel=label)
  ax.grid(True, alpha=0.3)
  ax.legend(fontsize=7)


def plot_alpha(s: Settings, outcomes: Mapping[str, harness.Outcome],
               summary: Mapping[str, Any], path: str) -> None:
  """Vs alpha (evenly spaced), one colour per noise rate: test accuracy (95% t CI), mean
  confidence against the smoothed target, NLL and ECE before (dashed) and after scaling."""
  fig, axes = plots.pyplot().subplots(2, 2, figsize=(11, 8))
  alphas, x = sorted(s.alphas), np.arange(len(s.alphas))
  for rate, color in zip(s.noise_rates, plots.colors(len(s.noise_rates))):
    rows = [r for r in summary["rows"] if r["noise_rate"] == rate]
    accs = [outcomes[outcome_name(rate, a)].accuracy() for a in alphas]
    cis = [_interval(v) for v in accs]
    mean = np.array([np.nanmean(v) for v in accs])
    err = np.array([[m - i.low, i.high - m] if i else [0, 0] for m, i in zip(mean, cis)]).T
    axes[0, 0].errorbar(x, mean, yerr=err, marker="o", capsize=3, color=color,
                        label=_label(rate))
    axes[0, 1].plot(x, [r["confidence_before"] for r in rows], marker="o", color=color,
                    label=f"confidence, {_label(rate)}")
    axes[0, 1].plot(x, mean / 100, ls=":", color=color, label=f"accuracy, {_label(rate)}")
    for ax, key, scale in ((axes[1, 0], "nll", 1.0), (axes[1, 1], "ece", 100.0)):
      ax.plot(x, [scale * r[f"{key}_before"] for r in rows], ls="--", marker=".", color=color,
              label=f"before, {_label(rate)}")
      ax.plot(x, [scale * r[f"{key}_after"] for r in rows], marker="o", color=color,
              label=f"after T, {_label(rate)}")
  axes[0, 1].plot(x, [smoothed_target(a) for a in alphas], ls="--", color="black",
                  label="target 1 - alpha (K-1)/K")
  axes[1, 1].set_yscale("log", nonpositive="clip")  # after scaling ~1%, before up to 30%
  for ax, label in zip(axes.flat, ("test accuracy % (clean test labels)",
                                   "mean max softmax probability (test)", "test NLL (nats)",
                                   "test ECE % (15 equal-width bins, log scale)")):
    _alpha_axis(ax, alphas, label)
  plots.plain_log_ticks(axes[1, 1].yaxis)
  fig.suptitle("Final test metrics, mean over seeds (accuracy: 95% t CI); T fit on validation")
  plots.save(fig, path)


def _pooled_reliability(o: harness.Outcome, temperatures) -> tuple[np.ndarray, ...]:
  """Equal-width reliability bins of the test split pooled over seeds, at per-seed `T`."""
  test = o.test
  counts, conf, acc = np.zeros(calibration.BINS), np.zeros(calibration.BINS), np.zeros(
      calibration.BINS)
  for s, t in enumerate(temperatures):
    if not np.isfinite(t):
      continue
    n, c, a = calibration.reliability(test["logits"][s], test["labels"][s][:, 1], t)
    counts, conf, acc = counts + n, conf + np.nan_to_num(c * n), acc + np.nan_to_num(a * n)
  with np.errstate(invalid="ignore", divide="ignore"):
    return counts, conf / counts, acc / counts


def reliability_alphas(alphas: Sequence[float]) -> list[float]:
  """The alphas of the reliability diagram: 0, the middle one and the largest."""
  alphas = sorted(alphas)
  return list(dict.fromkeys([alphas[0], alphas[len(alphas) // 2], alphas[-1]]))


def plot_reliability(s: Settings, outcomes: Mapping[str, harness.Outcome],
                     summary: Mapping[str, Any], path: str) -> None:
  """Reliability diagrams of the test split (pooled over seeds), one row per noise rate and
  one column per alpha (`reliability_alphas`): before and after temperature scaling."""
  shown = reliability_alphas(s.alphas)
  fig, axes = plots.pyplot().subplots(len(s.noise_rates), len(shown), squeeze=False,
                                      figsize=(3.8 * len(shown), 3.6 * len(s.noise_rates)))
  for row, rate in enumerate(s.noise_rates):
    for col, alpha in enumerate(shown):
      ax, o = axes[row, col], outcomes[outcome_name(rate, alpha)]
      t_S = np.array(next(r["temperatures"] for r in summary["rows"]
                          if r["outcome"] == outcome_name(rate, alpha)))
      ax.plot([0, 1], [0, 1], color="grey", lw=0.8)
      for temps, label, style in ((np.ones_like(t_S), "before (T = 1)", "--"),
                                  (t_S, f"after (T ≈ {np.nanmean(t_S):.2f})", "-")):
        counts, conf, acc = _pooled_reliability(o, temps)
        keep = counts > 0
        ax.plot(conf[keep], acc[keep], ls=style, marker="o", ms=3, label=label)
      ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (bin mean)", ylabel="accuracy",
             title=f"{_label(rate)}, alpha={alpha:g}")
      ax.grid(True, alpha=0.3)
      ax.legend(fontsize=7, loc="upper left")
  fig.suptitle("Test reliability (15 equal-width bins, pooled over seeds)")
  plots.save(fig, path)


def plot_curves(s: Settings, outcomes: Mapping[str, harness.Outcome],
                summary: Mapping[str, Any], path: str) -> None:
  """Noisy runs, per epoch, mean over seeds: accuracy on the noisy training labels (running
  mean over the epoch's batches; dashed: the share of clean labels) and held-out accuracy
  (validation images, true labels; x: the final test accuracy), at the selected rates and at
  the memorizing rate."""
  noisy = [r for r in s.noise_rates if r > 0]
  panels = [(rate, lr) for rate in noisy for lr in (
      None, *([summary["control"][rate][0]["lr"]] if summary["control"].get(rate) else []))]
  fig, axes = plots.pyplot().subplots(len(panels), 2, squeeze=False,
                                      figsize=(11, 3.8 * len(panels)))
  alphas = sorted(s.alphas)
  for (rate, lr), ax_row in zip(panels, axes):
    points = grid_points(outcomes[outcome_name(rate, 0.0)]) if lr is not None else {}
    for alpha, color in zip(alphas, plots.colors(len(alphas))):
      o = outcomes[outcome_name(rate, alpha)]
      result = points[(lr, alpha)] if lr is not None else o.selected.result
      for ax, metric in zip(ax_row, CURVE_METRICS):
        curve = 100 * result.curve(metric)
        with warnings.catch_warnings():
          warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN epoch (diverged seeds)
          mean = np.nanmean(curve, axis=1)
        ax.plot(np.arange(1, len(mean) + 1), mean, color=color,
                label=f"alpha={alpha:g}" + (f" (lr {o.selected.lr:g})" if lr is None else ""))
      test = 100 * np.nanmean(np.asarray(result.test["test_accuracy"], np.float64))
      ax_row[1].plot([result.epochs], [test], marker="x", ms=8, ls="none", color=color)
    ax_row[0].axhline(100 * (1 - rate), color="grey", ls="--", lw=0.8,
                      label="the clean labels only")
    ax_row[1].plot([], [], marker="x", ls="none", color="grey", label="test accuracy (final)")
    where = "selected rates" if lr is None else f"memorizing rate {lr:g}"
    for ax, label in zip(ax_row, ("accuracy % on the noisy training labels",
                                  "held-out accuracy % (true labels)")):
      ax.set(xlabel="epoch", ylabel=label, title=f"{_label(rate)}, {where}")
      ax.grid(True, alpha=0.3)
      ax.legend(fontsize=7)
  fig.suptitle("Noisy labels over training (mean over seeds)")
  plots.save(fig, path)


def report(s: Settings, outcomes: Mapping[str, harness.Outcome]) -> harness.Report:
  summary = summarize(s, outcomes)
  verdict, headline = verdict_text(summary, s)
  figures = {"alpha.png": lambda path: plot_alpha(s, outcomes, summary, path),
             "reliability.png": lambda path: plot_reliability(s, outcomes, summary, path)}
  if summary["train_by_rate"]:
    figures["curves.png"] = lambda path: plot_curves(s, outcomes, summary, path)
  json_summary = {"rows": summary["rows"],
                  "control": {f"{k:g}": v for k, v in summary["control"].items()},
                  "train_by_rate": {f"{k:g}": v for k, v in summary["train_by_rate"].items()}}
  return harness.Report(verdict, table_markdown(summary, s), json_summary, figures, headline)


EXPERIMENT = harness.Experiment(
    "label_smoothing", "Label smoothing on MNIST, clean and noisy labels: accuracy, calibration "
    "after temperature scaling, and accuracy once the nets memorize the noise", Settings,
    variants, report, splits=splits, check=check,
    description="Label smoothing (alphas, trained in one program per noise rate) x symmetric "
                "training-label noise on MNIST: clean-test accuracy; ECE (equal-width and "
                "adaptive bins) and NLL before and after a temperature fit on validation; "
                "training accuracy on the noisy labels and a memorizing-rate control; each "
                "alpha > 0 against plain cross-entropy with paired, Holm-corrected tests.")


main = functools.partial(harness.main, EXPERIMENT)  # main(argv=None) -> the summary


if __name__ == "__main__":
  main()
