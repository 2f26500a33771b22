"""Open-set MNIST: which score rejects never-seen digits, and does an "NA" class help?

A classifier trained on some digits meets digits it has never seen. Per seen/unseen split
(``--splits SEEN:NA``, three by default) four models train on the seen digits: ``softmax_ce``
(scores: max softmax, max logit, energy = logsumexp of the logits), ``sigmoid_bce`` (max
sigmoid), ``ce_na`` (a K+1-th "NA" class of synthetic non-digits, `datasets.non_digit_images`;
score 1 - p(NA)) and ``ce_oe`` (the same NA class made of the TRAINING images of the split's
held-out NA digits: outlier exposure; 1 - p(NA)); both NA classes get the same number of
images. Rejection is measured on the test images of the remaining never-seen digits only
(the NA digits' test images are left out for every model: paired, fair comparisons). Each
model's rate is selected by seen accuracy on held-out seen training images (``--val-size``);
the rejection threshold of every score is set on those same validation images, keeping
``--recall`` % of them, then applied once to the test digits: seen test digits kept, unseen
rejected (overall and per digit), and AUROC. Scores are computed in float64 NumPy from the
logits each model returns, as exact log-odds where they are probabilities (float32
probabilities saturate at 1 and tie). Verdicts per split, paired t over seeds, Holm over all
splits and comparisons, ``--score-margin``: every score against max softmax, and real-digit NA
against synthetic NA; seen accuracy against softmax_ce (`harness.compare`). Writes
``separation.png`` and ``histograms.png``. Usage::

  JAXLOSS_MNIST_DIR=../shared/data/mnist python -m experiments.open_set
  python -m experiments.open_set --quick --out /tmp/open_set_quick
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import math
import re
from typing import Any, Mapping, Sequence

import numpy as np

from experiments import cli, harness, outputs, plots, stats

METHODS = ("softmax_ce", "sigmoid_bce", "ce_na", "ce_oe")
LOSS_OF = {"softmax_ce": "softmax_cross_entropy", "sigmoid_bce": "sigmoid_binary_cross_entropy",
           "ce_na": "softmax_cross_entropy", "ce_oe": "softmax_cross_entropy"}
NA_OF = {"ce_na": "synthetic non-digits", "ce_oe": "real held-out digits"}  # the NA class
DATA_OF = {"softmax_ce": "digits", "sigmoid_bce": "digits", "ce_na": "na", "ce_oe": "oe"}
# The arms compared: (model, score) with a name and a label.
ARMS = {"max_softmax": ("softmax_ce", "max_softmax"), "max_logit": ("softmax_ce", "max_logit"),
        "energy": ("softmax_ce", "energy"), "max_sigmoid": ("sigmoid_bce", "max_sigmoid"),
        "na_synthetic": ("ce_na", "not_na"), "na_digits": ("ce_oe", "not_na")}
LABEL = {"max_softmax": "max softmax", "max_logit": "max logit", "energy": "energy",
         "max_sigmoid": "max sigmoid", "na_synthetic": "1 - p(NA) synthetic",
         "na_digits": "1 - p(NA) real digits"}
AXIS = {"max_softmax": "log-odds of max softmax", "max_logit": "max logit",
        "energy": "energy (logsumexp of the logits)", "max_sigmoid": "log-odds of max sigmoid",
        "na_synthetic": "log-odds of 1 - p(NA)", "na_digits": "log-odds of 1 - p(NA)"}
PAIRS = (("max_logit", "max_softmax"), ("energy", "max_softmax"), ("max_sigmoid", "max_softmax"),
         ("na_synthetic", "max_softmax"), ("na_digits", "max_softmax"),
         ("na_digits", "na_synthetic"))
SEPARATION = ("rejection", "auroc")  # the metrics of the score verdicts
RULE_OF = {"sigmoid_bce": "every sigmoid < 0.5", "ce_na": "argmax = NA", "ce_oe": "argmax = NA"}
SPLITS = ("01234:56", "56789:01", "24679:38")


def split_specs(text: str) -> tuple[str, ...]:
  """``"01234:56,56789:01"`` -> ``("01234:56", "56789:01")``: the `Settings.splits` parser."""
  parts = [part.strip() for part in text.split(",")]
  parts = parts[:-1] if len(parts) > 1 and not parts[-1] else parts

  def ok(part):
    found = re.fullmatch(r"(\d{2,}):(\d+)", part)
    digits = part.replace(":", "")
    return bool(found) and len(set(digits)) == len(digits) <= 9
  if not all(map(ok, parts)) or len(set(parts)) != len(parts):
    raise ValueError("must be distinct comma-separated SEEN:NA digit strings such as 01234:56 "
                     "(2 or more seen digits; 1 or more held-out digits whose training images "
                     "make the real-digit NA class; all distinct, and a digit left to evaluate)")
  return tuple(parts)


split_specs.metavar = "LIST"


def split_digits(spec: str) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
  """``"01234:56"`` -> seen ``(0..4)``, NA ``(5, 6)`` and evaluation digits ``(7, 8, 9)``."""
  seen, na = (tuple(int(c) for c in part) for part in spec.split(":"))
  return seen, na, tuple(d for d in range(10) if d not in seen + na)


def split_key(spec: str) -> str:
  """``"01234:56"`` -> ``"s01234n56"`` (variant and data names)."""
  return "s{}n{}".format(*spec.split(":"))


def split_label(spec: str) -> str:
  """``"01234:56"`` -> ``"01234 / 56 / 789"`` (seen / NA digits / evaluated)."""
  return " / ".join("".join(map(str, part)) for part in split_digits(spec))


@dataclasses.dataclass(frozen=True)
class Settings(harness.Settings):
  """open_set's command line: the harness's settings and the open-set knobs."""

  val_size: int = cli.option(5000, "seen training images held out per split: the rate is "
                             "selected and the rejection thresholds are set on them",
                             parse=cli.nonnegative_int, quick=256)
  out: str = cli.option("runs/open_set", "output folder")
  splits: tuple[str, ...] = cli.option(
      SPLITS, "seen/unseen splits, SEEN:NA each: the seen digits trained on, then held-out "
      "digits whose training images make ce_oe's NA class; the other digits' test images are "
      "the never-seen ones", parse=split_specs, quick=SPLITS[:1])
  na_images: int | None = cli.option(None, "training images of each NA class, synthetic and "
                                     "real-digit alike (default the mean count of training "
                                     "images per seen digit)", parse=cli.positive_int)
  recall: int = cli.option(95, "percent (at most 100) of the seen validation images the "
                           "rejection threshold keeps", parse=cli.positive_int)
  score_margin: float = cli.option(1.0, "equivalence margin of the rejection and AUROC verdicts, "
                                   "in percentage points", parse=cli.positive_number)
  hidden: tuple[int, ...] = cli.option((100,), "hidden widths (narrower than the suite's "
                                       "512,512: 4 models x 3 splits fit the compute budget)",
                                       parse=cli.ints, quick=(32,))


def check(s: Settings) -> list[str]:
  """The open-set rules of the settings (before any data is loaded)."""
  return [message for message, bad in (
      (f"--recall: must be a percentage <= 100, got {s.recall}", s.recall > 100),
      ("--val-size: the thresholds are set on held-out seen images: must be >= 1",
       s.val_size < 1),
      ("--seeds: the paired verdicts need at least 2 seeds", len(s.seeds) < 2)) if bad]


# ------------------------------------------------------------------ scores (NumPy, float64)


def _logsumexp(z_NxC: np.ndarray) -> np.ndarray:
  top_N = np.max(z_NxC, axis=-1)
  shift_N = np.where(np.isfinite(top_N), top_N, 0.0)
  with np.errstate(divide="ignore"):
    return shift_N + np.log(np.sum(np.exp(z_NxC - shift_N[:, None]), axis=-1))


def score(name: str, logits_NxC, num_seen: int) -> np.ndarray:
  """``[N]`` float64 score (higher: more like a seen digit), exact from the logits.

  ``max_softmax``: its log-odds ``z_top - logsumexp(other z)``; ``max_logit``: ``max z``;
  ``energy``: ``logsumexp(z)``; ``max_sigmoid``: ``max z``, the log-odds of the max sigmoid;
  ``not_na``: the log-odds of 1 - p(NA), ``logsumexp(z_digits) - z_NA`` (NA: column
  `num_seen`). Log-odds rank as the probabilities do, without float32 ties at p = 1.
  """
  z_NxC = np.asarray(logits_NxC, np.float64)
  if name in ("max_logit", "max_sigmoid"):
    return np.max(z_NxC, axis=-1)
  if name == "energy":
    return _logsumexp(z_NxC)
  if name == "not_na":
    return _logsumexp(z_NxC[:, :num_seen]) - z_NxC[:, num_seen]
  if name == "max_softmax":
    top_N = np.argmax(z_NxC, axis=-1)
    others_NxC = np.where(np.arange(z_NxC.shape[-1]) == top_N[:, None], -np.inf, z_NxC)
    return np.max(z_NxC, axis=-1) - _logsumexp(others_NxC)
  raise ValueError(f"unknown score {name!r}")


def natural_rule(method: str, logits_NxC, num_seen: int) -> np.ndarray:
  """``[N]`` bool: rejected by the model's own "none" (`RULE_OF`): every sigmoid < 0.5
  (max logit < 0), or the NA class's logit the largest."""
  z_NxC = np.asarray(logits_NxC, np.float64)
  if method == "sigmoid_bce":
    return np.max(z_NxC, axis=-1) < 0
  return np.argmax(z_NxC, axis=-1) == num_seen


def threshold_at_recall(scores_N, recall: int) -> float:
  """The largest threshold keeping at least `recall` % of `scores_N` (kept: ``s >= t``), as
  `jaxloss.threshold_at_recall`; NaN with a NaN score."""
  s_N = np.sort(np.asarray(scores_N, np.float64))
  n = s_N.size
  kept = min(max((recall * n + 99) // 100, 1), n)
  return math.nan if np.isnan(s_N).any() else float(s_N[n - kept])


def auroc(in_N, out_M) -> float:
  """P(seen score > unseen score) + P(tie) / 2, as `jaxloss.auroc`; NaN with a NaN score."""
  in_N, out_M = np.asarray(in_N, np.float64), np.sort(np.asarray(out_M, np.float64))
  if np.isnan(in_N).any() or np.isnan(out_M).any():
    return math.nan
  below = np.searchsorted(out_M, in_N, side="left") + np.searchsorted(out_M, in_N, side="right")
  return float(np.mean(below / (2.0 * out_M.size)))


def separation(val_N, test_M, labels_M, recall: int) -> dict[str, Any]:
  """The threshold keeping `recall` % of the seen validation scores `val_N`, applied to the
  test scores `test_M` (labels ``>= 0`` seen, ``-1 - digit`` unseen): the shares (0..1) of
  seen test digits ``seen_kept`` and of unseen ones ``rejection`` (and ``by_digit``), and
  the threshold-free ``auroc`` on the test digits."""
  test_M, labels_M = np.asarray(test_M, np.float64), np.asarray(labels_M)
  t = threshold_at_recall(val_N, recall)
  seen_M = labels_M >= 0
  rejected_M = test_M < t
  nan = math.isnan(t) or np.isnan(test_M).any()
  share = lambda mask: math.nan if nan else float(np.mean(rejected_M[mask]))
  return {"threshold": t, "seen_kept": math.nan if nan else 1.0 - share(seen_M),
          "rejection": share(~seen_M), "auroc": auroc(test_M[seen_M], test_M[~seen_M]),
          "by_digit": {int(-1 - y): share(labels_M == y)
                       for y in np.unique(labels_M[~seen_M])[::-1]}}  # digits ascending


# ------------------------------------------------------------------ models (JAX)


def seen_accuracy(logits_NxC, labels_N, *, num_seen: int) -> dict[str, Any]:
  """The eval_fn: ``test_accuracy``, the seen digits (label >= 0) named right by the argmax
  over the digit classes (an NA class takes no part)."""
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  correct_N = per_example(logits_NxC, labels_N, num_seen=num_seen)["correct"]
  return {"test_accuracy": jnp.sum(correct_N) / jnp.sum(labels_N >= 0)}


def per_example(logits_NxC, labels_N, *, num_seen: int) -> dict[str, Any]:
  """The test_fn: ``correct`` ``[N]`` (a seen digit named right; unseen: never), and the
  ``logits`` ``[N, C]`` (float32) and ``labels`` ``[N]`` the report scores in NumPy."""
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  correct_N = (labels_N >= 0) & (jnp.argmax(logits_NxC[:, :num_seen], axis=-1) == labels_N)
  return {"correct": correct_N, "logits": logits_NxC.astype(jnp.float32), "labels": labels_N}


def variants(s: Settings) -> list[harness.Variant]:
  import jaxloss  # pylint: disable=import-outside-toplevel
  out = []
  for spec in s.splits:
    k = len(split_digits(spec)[0])
    for m in METHODS:
      out.append(harness.Variant(
          f"{split_key(spec)}.{m}", jaxloss.get(LOSS_OF[m]).loss_from_labels,
          eval_fn=functools.partial(seen_accuracy, num_seen=k),
          test_fn=functools.partial(per_example, num_seen=k),
          train={"hidden": s.hidden, "num_classes": k + (m in NA_OF)},
          data=f"{split_key(spec)}.{DATA_OF[m]}", final_splits=("val",),
          describe={"split": spec, "method": m, "loss": LOSS_OF[m],
                    **({"na_class": NA_OF[m]} if m in NA_OF else {})}))
  return out


def data_splits(s: Settings, mnist) -> dict[str, harness.Splits]:
  """Per split: seen training images (plus an NA class of synthetic non-digits, or of the NA
  digits' training images), held-out seen ones, and the test images of the seen digits then
  of the evaluation digits (labels ``-1 - digit``); the NA digits' test images are left out."""
  from jaxloss import train as jt  # pylint: disable=import-outside-toplevel
  from experiments import datasets  # pylint: disable=import-outside-toplevel
  out = {}
  for spec in s.splits:
    seen, na_digits, eval_digits = split_digits(spec)
    known, unseen_images, unseen_digits = datasets.open_set_split(mnist, seen=seen)
    evaluated = np.isin(unseen_digits, eval_digits)
    n_train = len(known.train_labels) - s.val_size
    if (n_train < s.batch_size or set(known.train_labels) != set(range(len(seen)))
        or set(known.test_labels) != set(range(len(seen))) or not evaluated.any()):
      raise ValueError(f"split {spec}: need --val-size + --batch-size <= "
                       f"{len(known.train_labels)} seen training images, and every seen digit "
                       "and an evaluation digit among the test images: raise --train-subset, "
                       "--test-subset")
    test = (np.concatenate([known.test_images, unseen_images[evaluated]]),
            np.concatenate([known.test_labels, -1 - unseen_digits[evaluated]]).astype(np.int32))
    known = jt.validation_split(known, size=s.val_size, seed=0)
    val = (known.test_images, known.test_labels)
    n_na = s.na_images or round(n_train / len(seen))
    pool = mnist.train_images[np.isin(mnist.train_labels, na_digits)]
    if len(pool) < n_na:
      raise ValueError(f"split {spec}: the NA digits {','.join(map(str, na_digits))} have "
                       f"{len(pool)} training images, fewer than the {n_na} NA images asked for: "
                       "lower --na-images")
    key = split_key(spec)
    out[f"{key}.digits"] = harness.Splits((known.train_images, known.train_labels), val, test)
    for data, images in (("na", None), ("oe", pool)):
      na = datasets.with_na_class(known, n_train=n_na, n_test=0, seed=0, images=images)
      out[f"{key}.{data}"] = harness.Splits((na.train_images, na.train_labels), val, test)
  return out


# ------------------------------------------------------------------ report


def evaluate(outcomes: Mapping[str, harness.Outcome], s: Settings) -> dict[str, Any]:
  """Per split key -> arm -> ``[seeds]`` percentages: ``rejection``, ``seen_kept``,
  ``auroc``, ``accuracy`` (the arm's model), the natural rule's ``rule_unseen_rejected`` /
  ``rule_seen_rejected`` (where it has one), and ``by_digit`` {digit: ``[seeds]``}."""
  out: dict[str, Any] = {}
  for spec in s.splits:
    k, key = len(split_digits(spec)[0]), split_key(spec)
    out[key] = {}
    for arm, (method, name) in ARMS.items():
      o = outcomes[f"{key}.{method}"]
      val, test = o.on("val"), o.test
      rows = []
      for i in range(len(test["logits"])):
        sep = separation(score(name, val["logits"][i], k), score(name, test["logits"][i], k),
                         test["labels"][i], s.recall)
        if method in RULE_OF:
          rule_N, seen_N = natural_rule(method, test["logits"][i], k), test["labels"][i] >= 0
          sep["rule_unseen_rejected"] = float(np.mean(rule_N[~seen_N]))
          sep["rule_seen_rejected"] = float(np.mean(rule_N[seen_N]))
        rows.append(sep)
      metrics = {m: 100.0 * np.array([r[m] for r in rows]) for m in rows[0]
                 if m not in ("threshold", "by_digit")}
      metrics["accuracy"] = o.accuracy()
      metrics["by_digit"] = {d: 100.0 * np.array([r["by_digit"][d] for r in rows])
                             for d in rows[0]["by_digit"]}
      out[key][arm] = metrics
  return out


def _paired(diffs) -> tuple[stats.Interval, float]:
  """The paired t interval and p-value of `diffs`; a NaN interval and p = 1 (no verdict) when
  one is not finite (a model diverged)."""
  d = np.asarray(diffs, np.float64)
  if not np.all(np.isfinite(d)):  # a diverged model: no verdict
    return stats.Interval(math.nan, math.nan, math.nan, d.size, 0.95), 1.0
  return stats.paired_t_interval(d), stats.paired_t_pvalue(d)


def score_verdicts(levels: Mapping[str, Any], margin: float
                   ) -> list[tuple[str, str, stats.Comparison]]:
  """``(split key, metric, comparison)`` for every split, `SEPARATION` metric and `PAIRS`
  pair, in points: paired t over seeds, Holm over all of them together."""
  keys = [(k, m, a, b) for k in levels for m in SEPARATION for a, b in PAIRS]
  tested = [_paired(levels[k][a][m] - levels[k][b][m]) for k, m, a, b in keys]
  p_holm = stats.holm([p for _, p in tested])
  return [(k, m, stats.Comparison(a, b, i, p, ph, stats.verdict(i, ph, margin=margin), margin,
                                  "paired-t"))
          for (k, m, a, b), (i, p), ph in zip(keys, tested, p_holm)]


def tally(verdicts: Sequence[str]) -> str:
  """``["better", "better", "inconclusive"]`` -> ``"better in 2/3 splits, inconclusive in 1"``."""
  counts = collections.Counter(verdicts)
  order = [v for v in ("better", "worse", "equivalent", "inconclusive") if v in counts]
  first, *rest = order
  return (f"{first} in {counts[first]}/{_splits(len(verdicts))}"
          + "".join(f", {v} in {counts[v]}" for v in rest))


def _splits(n: int) -> str:
  return f"{n} split{'s' if n != 1 else ''}"


def _points(x: float) -> str:
  return f"{x:g} point{'s' if x != 1 else ''}"


def _mean(values) -> float:
  return float(np.mean(values))


def _cell(values) -> str:
  return "{:.2f} ± {:.2f}".format(*outputs.mean_std(values))


def plot_separation(levels: Mapping[str, Any], s: Settings, path: str) -> None:
  """Rejection at the validation threshold and AUROC per arm and split: mean, 95% t interval
  over seeds, the seeds."""
  fig, axes = plots.pyplot().subplots(1, 2, figsize=(13, 4.5))
  colors = plots.colors(len(s.splits))
  for ax, metric in zip(axes, SEPARATION):
    for j, (spec, color) in enumerate(zip(s.splits, colors)):
      for x, arm in enumerate(ARMS):
        values_S = levels[split_key(spec)][arm][metric]
        where = x + 0.25 * (j - (len(s.splits) - 1) / 2) / max(len(s.splits) - 1, 1)
        if np.all(np.isfinite(values_S)):
          i = stats.paired_t_interval(values_S)
          ax.errorbar([where], [i.mean], yerr=[[i.mean - i.low], [i.high - i.mean]], fmt="o",
                      capsize=4, color=color, label=split_label(spec) if x == 0 else None)
        ax.scatter(np.full(values_S.size, where + 0.04), values_S, color=color, s=8, alpha=0.5)
    ax.set_xticks(range(len(ARMS)), [LABEL[a].replace(") ", ")\n") for a in ARMS], fontsize=8)
    ax.set_ylabel({"rejection": f"never-seen rejected at {s.recall}% seen validation kept, %",
                   "auroc": "AUROC seen vs never-seen test digits, %"}[metric])
    low, high = ax.get_ylim()  # few seeds: intervals can reach past 0 or 100
    ax.set_ylim(max(low, -1.0), min(high, 101.0))
    ax.grid(True, axis="y", alpha=0.3)
  axes[0].legend(title="seen / NA / evaluated digits", fontsize=8)
  fig.suptitle("Open-set MNIST: mean and 95% t interval over seeds per split, dots = seeds")
  plots.save(fig, path)


def plot_histograms(outcomes: Mapping[str, harness.Outcome], s: Settings, path: str) -> None:
  """Per split (row) and arm (column), first seed: the score of the seen and of the
  never-seen test digits, and the threshold set on validation (dashed)."""
  plt = plots.pyplot()
  fig, axes = plt.subplots(len(s.splits), len(ARMS), figsize=(3.2 * len(ARMS),
                                                                 2.6 * len(s.splits)),
                           squeeze=False)
  for row, spec in zip(axes, s.splits):
    k, key = len(split_digits(spec)[0]), split_key(spec)
    for ax, (arm, (method, name)) in zip(row, ARMS.items()):
      o = outcomes[f"{key}.{method}"]
      test_N = score(name, o.test["logits"][0], k)
      seen_N = o.test["labels"][0] >= 0
      t = threshold_at_recall(score(name, o.on("val")["logits"][0], k), s.recall)
      finite_N = test_N[np.isfinite(test_N)]
      if finite_N.size:
        low, high = np.quantile(finite_N, [0.005, 0.995])
        bins = np.linspace(low, high if high > low else low + 1.0, 41)
        for mask, label, color in ((seen_N, "seen", "tab:blue"),
                                   (~seen_N, "never seen", "tab:orange")):
          ax.hist(np.clip(test_N[mask], bins[0], bins[-1]), bins=bins, density=True, alpha=0.55,
                  label=label, color=color)
      if math.isfinite(t):
        ax.axvline(t, color="black", linestyle="--", linewidth=1)
      ax.set_title(f"{split_label(spec)}: {LABEL[arm]}", fontsize=8)
      ax.set_xlabel(AXIS[arm], fontsize=7)
      ax.tick_params(labelsize=7)
  axes[0][0].legend(fontsize=7)
  fig.suptitle("Scores of the seen and never-seen test digits (seed "
               f"{s.seeds[0]}; the end bins hold the outer 0.5%); dashed: the threshold keeping "
               f"{s.recall}% of the seen validation images")
  plots.save(fig, path)


def _sentences(s: Settings, levels, mean, scored, accuracy) -> tuple[str, str]:
  """The verdict (three sentences) and the headline, from the numbers."""
  by_pair = collections.defaultdict(list)
  for _, metric, c in scored:
    by_pair[metric, c.a, c.b].append(c)
  effect = lambda a, b: _mean([c.interval.mean for c in by_pair["rejection", a, b]])
  called = {p: tally([c.verdict for c in cs]) for p, cs in by_pair.items()}
  kept = [_mean(levels[k][a]["seen_kept"]) for k in levels for a in ARMS]
  accuracy_of = {m: [c for c in accuracy if c.a.endswith("." + m)] for m in METHODS[1:]}
  verdict = (
      f"At thresholds set on held-out seen digits to keep {s.recall}% of them (the seen test "
      f"digits kept: {min(kept):.1f} to {max(kept):.1f}%), the never-seen test digits rejected, "
      f"mean of {_splits(len(levels))} x {len(s.seeds)} seeds: " + ", ".join(
          f"{LABEL[a]} {mean[a]['rejection']:.1f}%" for a in ARMS)
      + f". Per split (paired t over seeds, Holm over all {len(scored)} score comparisons, "
      f"margin {_points(s.score_margin)}), rejection against max softmax: " + "; ".join(
          f"{LABEL[a]} {called['rejection', a, b]} (mean {effect(a, b):+.1f})"
          for a, b in PAIRS[:-1]) + "; real-digit NA against synthetic NA: "
      f"{called['rejection', *PAIRS[-1]]} (mean {effect(*PAIRS[-1]):+.1f} points). Seen "
      f"accuracy against softmax_ce (exact McNemar, Holm over {len(accuracy)}): " + "; ".join(
          f"{m} {tally([c.verdict for c in cs])} (mean "
          f"{_mean([c.interval.mean for c in cs]):+.2f} points)" for m, cs in accuracy_of.items())
      + ".")
  short = {**LABEL, "na_synthetic": "NA synthetic", "na_digits": "NA real digits"}
  headline = (f"Never-seen digits rejected at {s.recall}% recall (validation thresholds, mean "
              f"of {_splits(len(levels))}): " + ", ".join(
                  f"{short[a]} {mean[a]['rejection']:.1f}%" for a in ARMS)
              + f" (vs synthetic: {called['rejection', *PAIRS[-1]]}).")
  return verdict, headline


def _markdown(s: Settings, levels, mean, scored, accuracy) -> str:
  """The report's tables: splits, levels, per-digit rejection, verdicts; and the figures."""
  label_of = {split_key(spec): split_label(spec) for spec in s.splits}
  seen_of = {split_key(spec): spec.split(":")[0] for spec in s.splits}
  split_rows = ["| " + " | ".join([spec, *(",".join(map(str, d)) for d in split_digits(spec))])
                + " |" for spec in s.splits]
  rule = lambda v, f: (f(v["rule_unseen_rejected"]) + " / " + f(v["rule_seen_rejected"])
                       if "rule_unseen_rejected" in v else "-")
  level_rows = [
      f"| {label_of[key]} | {LABEL[arm]} | " + " | ".join(
          _cell(v[m]) for m in ("accuracy", "seen_kept", "rejection", "auroc"))
      + f" | {RULE_OF[ARMS[arm][0]] + ': ' if 'rule_seen_rejected' in v else ''}"
      f"{rule(v, _cell)} |" for key in levels for arm, v in levels[key].items()]
  level_rows += [
      f"| mean of the splits | {LABEL[arm]} | " + " | ".join(
          f"{m[k]:.2f}" for k in ("accuracy", "seen_kept", "rejection", "auroc"))
      + f" | {rule(m, lambda x: f'{x:.2f}')} |"
      for arm, m in (mean.items() if len(levels) > 1 else ())]
  columns = [(key, d) for key in levels for d in levels[key]["max_softmax"]["by_digit"]]
  digit_rows = [f"| {LABEL[arm]} | " + " | ".join(
      f"{_mean(levels[key][arm]['by_digit'][d]):.1f}" for key, d in columns) + " |"
      for arm in ARMS]
  verdict_rows = [
      f"| {label_of[key]} | {LABEL[c.a]} vs {LABEL[c.b]} | {metric} | {c.interval.mean:+.2f} | "
      f"{c.interval.low:+.2f} to {c.interval.high:+.2f} | {c.p_value:.2g} | {c.p_holm:.2g} | "
      f"{c.verdict} |" for key, metric, c in scored]
  net = "-".join(map(str, (784, *s.hidden))) + "-K"
  cut = ("" if tuple(s.hidden) == (512, 512) else
         " (narrower than the suite's 512-512 so that every split, method, seed and rate of the "
         "protocol fits the compute budget: the width was cut, not the seeds or the grid)")
  return "\n".join([
      f"Per split, four MLPs {net}{cut} train on the seen digits: softmax_ce (scored by max "
      "softmax, max logit and energy = logsumexp of the logits), sigmoid_bce (max sigmoid), "
      "ce_na (an NA class of synthetic non-digits: noise, blobs, strokes, stripes) and ce_oe "
      "(an NA class of the real training images of the split's NA digits: outlier exposure); "
      "both NA classes get the same number of images, the mean count per seen digit unless "
      "--na-images says otherwise. Every model is tested on the seen test digits and the test "
      "digits of the evaluation digits only (never trained on by any model: the NA digits' "
      "test images are left out for all), so every comparison is paired on the same images. "
      f"Thresholds keep {s.recall}% of the held-out seen validation images and are applied "
      "once to the test digits; scores are float64 from the logits, probabilities as exact "
      "log-odds.", "",
      "| split | seen digits | NA digits (ce_oe's NA class) | evaluation digits (never seen) |",
      "|---|---|---|---|", *split_rows, "",
      "Mean ± std over seeds, in %: the seen accuracy of the arm's model (argmax over the digit "
      "classes), the seen test digits kept and the never-seen test digits rejected at the "
      "validation threshold, AUROC seen vs never-seen, and the model's own \"none\" rule "
      "(never-seen / seen rejected). Split: seen / NA / evaluation digits.", "",
      "| split | score | seen accuracy | seen test kept | never-seen rejected | AUROC | natural "
      "rule: never-seen / seen rejected |", "|---" * 7 + "|", *level_rows, "",
      "Never-seen digits rejected per digit at the validation threshold, mean over seeds, % "
      "(column: digit, split by its seen digits):", "",
      "| score | " + " | ".join(f"{d} ({seen_of[key]})" for key, d in columns) + " |",
      "|---" * (len(columns) + 1) + "|", *digit_rows, "",
      f"Score verdicts per split, in points (paired t over {len(s.seeds)} seeds; Holm over all "
      f"{len(scored)}; margin {s.score_margin:g}):", "",
      "| split | comparison | metric | effect | 95% CI | p | Holm p | verdict |",
      "|---" * 8 + "|", *verdict_rows, "",
      f"Seen accuracy (exact McNemar on the seen test digits, Holm over {len(accuracy)}; margin "
      f"{s.margin:g}):", "", *[f"- {c.sentence('points')}" for c in accuracy], "",
      "![rejection and AUROC per score and split](separation.png)", "",
      "![score histograms, seen vs never-seen test digits](histograms.png)"])


def report(s: Settings, outcomes: Mapping[str, harness.Outcome]) -> harness.Report:
  levels = evaluate(outcomes, s)
  scored = score_verdicts(levels, s.score_margin)
  accuracy = harness.compare(outcomes, [(f"{key}.{m}", f"{key}.softmax_ce") for key in levels
                                        for m in METHODS[1:]], margin=s.margin)
  first = next(iter(levels.values()))
  mean = {a: {m: _mean([_mean(levels[k][a][m]) for k in levels]) for m in first[a]
              if m != "by_digit"} for a in ARMS}  # over the splits of the means over seeds
  verdict, headline = _sentences(s, levels, mean, scored, accuracy)
  summary = {
      "recall": s.recall, "score_margin": s.score_margin,
      "splits": {split_key(spec): dict(zip(("seen", "na", "evaluated"), split_digits(spec)))
                 for spec in s.splits},
      "levels": {k: {a: {m: (v if m != "by_digit" else {str(d): x for d, x in v.items()})
                         for m, v in levels[k][a].items()} for a in ARMS} for k in levels},
      "mean_of_splits": mean,
      "comparisons": [{"split": k, "metric": m, **dataclasses.asdict(c)} for k, m, c in scored]
      + [{"split": c.a.split(".")[0], "metric": "accuracy", **dataclasses.asdict(c)}
         for c in accuracy]}
  return harness.Report(verdict, _markdown(s, levels, mean, scored, accuracy), summary, {
      "separation.png": lambda path: plot_separation(levels, s, path),
      "histograms.png": lambda path: plot_histograms(outcomes, s, path)}, headline)


EXPERIMENT = harness.Experiment(
    "open_set", "Which score rejects never-seen digits, and does an \"NA\" class (synthetic, or "
    "real held-out digits) help?", Settings, variants, report, data_splits, check)


main = functools.partial(harness.main, EXPERIMENT)  # main(argv=None) -> the summary


if __name__ == "__main__":
  main()
