"""Open-set MNIST: do softmax or sigmoid outputs say "none of the above"; does an "NA" class help?

Trained on some digits (``--seen``), a classifier meets digits it has never seen: softmax must
name a known class, sigmoids can all be low, an extra "NA" class is the textbook fix. Methods
(score; natural rule): ``softmax_ce`` (max softmax), ``sigmoid_bce`` (max sigmoid; every
sigmoid < 0.5), ``ce_na`` (a K+1-th class of `datasets.non_digit_images`; 1 - p(NA); argmax =
NA); each rate selected by seen accuracy on held-out seen training images. Test: the seen test
digits, then the unseen ones labelled ``-1 - digit``; `metrics`: seen accuracy, the share of
unseen digits rejected at the threshold keeping ``--recall`` % of the seen ones, and AUROC, on
the scores' exact log-odds (float32 probabilities saturate at 1 and tie). Verdicts vs
softmax_ce: rejection and AUROC (paired t over seeds, Holm over the four, ``--score-margin``),
seen accuracy (`harness.compare`). Also writes ``separation.png``. Usage::

  JAXLOSS_MNIST_DIR=../shared/data/mnist python -m experiments.open_set
  python -m experiments.open_set --quick --out /tmp/open_set_quick
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from typing import Any, Mapping

import numpy as np

from experiments import cli, harness, outputs, plots, stats

METHODS = ("softmax_ce", "sigmoid_bce", "ce_na")
LOSS_OF = {"softmax_ce": "softmax_cross_entropy", "sigmoid_bce": "sigmoid_binary_cross_entropy",
           "ce_na": "softmax_cross_entropy"}
SCORE_OF = {"softmax_ce": "max softmax", "sigmoid_bce": "max sigmoid", "ce_na": "1 - p(NA)"}
RULE_OF = {"sigmoid_bce": "every sigmoid < 0.5", "ce_na": "argmax = NA"}
PAIRS = (("sigmoid_bce", "softmax_ce"), ("ce_na", "softmax_ce"))
SEPARATION = ("rejection", "auroc")  # the metrics of the score verdicts


@dataclasses.dataclass(frozen=True)
class Settings(harness.Settings):
  """open_set's command line: the harness's settings and the open-set knobs."""

  val_size: int = cli.option(5000, "seen training images held out to select the rate on (0: "
                             "none, a single rate)", parse=cli.nonnegative_int, quick=0)
  out: str = cli.option("runs/open_set", "output folder")
  seen: tuple[int, ...] = cli.option((0, 1, 2, 3, 4), "the digits trained on (2 to 9 of them); "
                                     "every other digit is unseen", parse=cli.ints)
  na_images: int | None = cli.option(None, "non-digit training images of the NA class (none: the "
                                     "mean count per seen digit)", parse=cli.positive_int)
  recall: int = cli.option(95, "percent (at most 100) of the seen test digits the rejection "
                           "threshold keeps", parse=cli.positive_int)
  score_margin: float = cli.option(1.0, "equivalence margin of the rejection and AUROC verdicts, "
                                   "in percentage points", parse=cli.positive_number)
  hidden: tuple[int, ...] = cli.option((512, 512), "hidden widths", parse=cli.ints, quick=(32,))


def check(s: Settings) -> list[str]:
  """The open-set rules of the settings (before any data is loaded)."""
  seen_ok = 2 <= len(set(s.seen)) == len(s.seen) <= 9 and set(s.seen) <= set(range(10))
  return [message for message, bad in (
      (f"--seen: must be 2 to 9 distinct digits 0-9, got {list(s.seen)}", not seen_ok),
      (f"--recall: must be a percentage <= 100, got {s.recall}", s.recall > 100),
      ("--seeds: the paired verdicts need at least 2 seeds", len(s.seeds) < 2)) if bad]


def log_odds(method: str, logits_NxC, num_seen: int):
  """``[N]`` log-odds of the method's score, exact from the logits (no float32 ties at p = 1)."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  if method == "sigmoid_bce":  # sigmoid(max z) has log-odds max z
    return jnp.max(logits_NxC, axis=-1)
  if method == "ce_na":  # (1 - p_NA) / p_NA = sum over the digits of e^z / e^z_NA
    return jax.nn.logsumexp(logits_NxC[:, :num_seen], axis=-1) - logits_NxC[:, num_seen]
  top_N = jnp.argmax(logits_NxC, axis=-1)  # softmax_ce: log(p / (1 - p)) = z_top - lse(others)
  others_NxC = jnp.where(jax.nn.one_hot(top_N, logits_NxC.shape[-1], dtype=bool), -jnp.inf,
                         logits_NxC)
  return jnp.max(logits_NxC, axis=-1) - jax.nn.logsumexp(others_NxC, axis=-1)


def separation(score_N, seen_N, recall: int) -> dict[str, Any]:
  """Unseen rejected at the threshold keeping `recall` % of seen; AUROC seen vs unseen. As
  `jaxloss.threshold_at_recall`, `rejection_rate` and `auroc`, on masks; NaN without either."""
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  n_in, n_out = jnp.sum(seen_N), jnp.sum(~seen_N)
  seen_first_N = jnp.sort(jnp.where(seen_N, score_N, jnp.inf))  # seen ascending, then inf
  threshold = seen_first_N[jnp.maximum(n_in - (recall * n_in + 99) // 100, 0)]
  unseen_first_N = jnp.sort(jnp.where(seen_N, jnp.inf, score_N))
  below_N = jnp.searchsorted(unseen_first_N, score_N, side="left")
  at_or_below_N = jnp.minimum(jnp.searchsorted(unseen_first_N, score_N, side="right"), n_out)
  auroc = jnp.sum(jnp.where(seen_N, (below_N + at_or_below_N) / (2 * n_out), 0.0)) / n_in
  bad = (n_in == 0) | (n_out == 0) | jnp.any(jnp.isnan(score_N))
  return {"rejection": jnp.where(bad, jnp.nan, jnp.sum(~seen_N & (score_N < threshold)) / n_out),
          "auroc": jnp.where(bad, jnp.nan, auroc)}


def metrics(logits_NxC, labels_N, *, method: str, num_seen: int, recall: int) -> dict[str, Any]:
  """The eval_fn: seen-digit (label >= 0) accuracy as ``test_accuracy``, and `separation`;
  with a natural rule, the shares it rejects: ``rule_unseen_rejected`` / ``rule_seen_rejected``."""
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  seen_N = labels_N >= 0
  correct_N = seen_correct(logits_NxC, labels_N, num_seen=num_seen)["correct"]
  out = {"test_accuracy": jnp.sum(correct_N) / jnp.sum(seen_N),
         **separation(log_odds(method, logits_NxC, num_seen), seen_N, recall)}
  if method in RULE_OF:
    rule_N = (jnp.max(logits_NxC, axis=-1) < 0 if method == "sigmoid_bce"
              else jnp.argmax(logits_NxC, axis=-1) == num_seen)
    out["rule_unseen_rejected"] = jnp.sum(rule_N & ~seen_N) / jnp.sum(~seen_N)
    out["rule_seen_rejected"] = jnp.sum(rule_N & seen_N) / jnp.sum(seen_N)
  return out


def seen_correct(logits_NxC, labels_N, *, num_seen: int) -> dict[str, Any]:
  """The test_fn: ``correct`` ``[N]``, a seen digit named right (unseen: never, in every arm)."""
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  return {"correct": (labels_N >= 0) & (jnp.argmax(logits_NxC[:, :num_seen], axis=-1) == labels_N)}


def variants(s: Settings) -> list[harness.Variant]:
  import jaxloss  # pylint: disable=import-outside-toplevel
  k = len(s.seen)
  return [harness.Variant(
      m, jaxloss.get(LOSS_OF[m]).loss_from_labels,
      eval_fn=functools.partial(metrics, method=m, num_seen=k, recall=s.recall),
      test_fn=functools.partial(seen_correct, num_seen=k),
      train={"hidden": s.hidden, "num_classes": k + (m == "ce_na")},
      data="na" if m == "ce_na" else "digits", describe={"loss": LOSS_OF[m], "score": SCORE_OF[m]})
      for m in METHODS]


def splits(s: Settings, mnist) -> dict[str, harness.Splits]:
  """Seen training images (NA images added for ce_na), held-out seen ones, seen+unseen test."""
  from jaxloss import train as jt  # pylint: disable=import-outside-toplevel
  from experiments import datasets  # pylint: disable=import-outside-toplevel
  known, unseen_images, unseen_digits = datasets.open_set_split(mnist, seen=s.seen)
  n_train = len(known.train_labels) - s.val_size
  if n_train < s.batch_size or not len(known.test_labels) or not len(unseen_digits):
    print(f"error: need --val-size + --batch-size <= {len(known.train_labels)} seen training "
          "images, and seen and unseen test digits: raise --train-subset, --test-subset",
          file=sys.stderr)
    raise SystemExit(2)
  test = (np.concatenate([known.test_images, unseen_images]),
          np.concatenate([known.test_labels, -1 - unseen_digits]).astype(np.int32))
  known = jt.validation_split(known, size=s.val_size, seed=0) if s.val_size else known
  val = (known.test_images, known.test_labels) if s.val_size else None
  na = datasets.with_na_class(known, n_train=s.na_images or round(n_train / len(s.seen)),
                              n_test=0, seed=0)
  return {"digits": harness.Splits((known.train_images, known.train_labels), val, test),
          "na": harness.Splits((na.train_images, na.train_labels), val, test)}


def _percent(outcome: harness.Outcome, metric: str) -> np.ndarray:
  return 100.0 * np.asarray(outcome.test[metric], np.float64)


def score_verdicts(outcomes: Mapping[str, harness.Outcome], margin: float
                   ) -> list[tuple[str, stats.Comparison]]:
  """``(metric, comparison)`` of rejection and AUROC per pair, in points: paired t, Holm."""
  keys = [(m, a, b) for m in SEPARATION for a, b in PAIRS]
  diffs = [_percent(outcomes[a], m) - _percent(outcomes[b], m) for m, a, b in keys]
  p = [stats.paired_t_pvalue(d) for d in diffs]
  return [(m, stats.Comparison(a, b, i, pv, ph, stats.verdict(i, ph, margin=margin), margin,
                               "paired-t")) for (m, a, b), i, pv, ph in zip(
                                   keys, map(stats.paired_t_interval, diffs), p, stats.holm(p))]


def plot_separation(outcomes: Mapping[str, harness.Outcome], s: Settings, path: str) -> None:
  """Rejection at the threshold and AUROC per method: mean, 95% t interval, the seeds."""
  fig, axes = plots.pyplot().subplots(1, 2, figsize=(10, 4))
  for ax, metric in zip(axes, SEPARATION):
    for x, (m, color) in enumerate(zip(METHODS, plots.colors(len(METHODS)))):
      values_S = _percent(outcomes[m], metric)
      i = stats.paired_t_interval(values_S)
      ax.errorbar([x], [i.mean], yerr=[[i.mean - i.low], [i.high - i.mean]], fmt="o", capsize=6,
                  color=color)
      ax.scatter(np.full(values_S.size, x + 0.15), values_S, color=color, s=12, alpha=0.6)
    ax.set_xticks(range(len(METHODS)), [f"{m}\n({SCORE_OF[m]})" for m in METHODS])
    ax.set_ylabel({"rejection": f"unseen digits rejected at {s.recall}% seen kept, %",
                   "auroc": "AUROC seen vs unseen, %"}[metric])
    ax.grid(True, axis="y", alpha=0.3)
  fig.suptitle(f"Open-set MNIST, seen digits {','.join(map(str, s.seen))}: mean, 95% t interval "
               "over seeds, dots = seeds")
  plots.save(fig, path)


def report(s: Settings, outcomes: Mapping[str, harness.Outcome]) -> harness.Report:
  scored = score_verdicts(outcomes, s.score_margin)
  verdicts = scored + [("accuracy", c) for c in harness.compare(outcomes, PAIRS, margin=s.margin)]
  levels = {m: {k: float(np.mean(_percent(o, k))) for k in o.test if k != "correct"}
            for m, o in outcomes.items()}
  verdict = (
      f"At the threshold keeping {s.recall}% of the seen test digits, " + ", ".join(
          f"{m} ({SCORE_OF[m]}) rejects {levels[m]['rejection']:.1f}% of the never-seen digits "
          f"(AUROC {levels[m]['auroc']:.1f}%)" for m in METHODS)
      + f". Against softmax_ce, in points (margin {s.score_margin:g}): " + "; ".join(
          f"{c.a} {m.replace('auroc', 'AUROC')} {c.interval.mean:+.2f} (95% CI "
          f"{c.interval.low:+.2f} to {c.interval.high:+.2f}, Holm p = {c.p_holm:.2g}: "
          f"{c.verdict})" for m, c in scored)
      + ". Seen-digit accuracy: " + "; ".join(c.sentence()[:-1] for m, c in verdicts[4:]) + ".")
  called = {c.a: c.verdict for m, c in scored if m == "rejection"}
  headline = (f"Unseen digits rejected at {s.recall}% seen recall: " + ", ".join(
      f"{SCORE_OF[m]} {levels[m]['rejection']:.1f}%" for m in METHODS)
      + f"; vs softmax CE, sigmoid BCE is {called['sigmoid_bce']} and the NA class "
      f"{called['ce_na']} (margin {s.score_margin:g} percentage points).")
  rows = [f"| {m} | {SCORE_OF[m]} | " + " | ".join(
      "{:.2f} ± {:.2f}".format(*outputs.mean_std(_percent(outcomes[m], k)))
      if k in outcomes[m].test else "-"
      for k in ("test_accuracy", *SEPARATION, "rule_unseen_rejected", "rule_seen_rejected"))
      + f" | {RULE_OF.get(m, 'none: argmax names a digit')} |" for m in METHODS]
  markdown = "\n".join([
      f"Trained on digits {','.join(map(str, s.seen))}; tested on their test images and those of "
      "every other digit. Mean ± std over seeds, in %; thresholds and AUROC rank by each score's "
      "exact log-odds.", "", "| method | score | seen accuracy | unseen rejected | AUROC | natural"
      " rule: unseen rejected | its seen rejected | natural rule |", "|---" * 8 + "|", *rows, "",
      "Paired verdicts (t over seeds, Holm over the four score comparisons; seen accuracy: exact "
      "McNemar, Holm over its two):", "", *[f"- {m}: {c.sentence('points')}" for m, c in verdicts],
      "", "![rejection and AUROC per method](separation.png)"])
  summary = {"recall": s.recall, "score_margin": s.score_margin, "levels": levels,
             "comparisons": [{"metric": m, **dataclasses.asdict(c)} for m, c in verdicts]}
  return harness.Report(verdict, markdown, summary, {
      "separation.png": lambda path: plot_separation(outcomes, s, path)}, headline)


EXPERIMENT = harness.Experiment(
    "open_set", "Do softmax or sigmoid outputs say \"none of the above\" on never-seen digits, "
    "and does an extra \"NA\" class help?", Settings, variants, report, splits, check)


main = functools.partial(harness.main, EXPERIMENT)  # main(argv=None) -> the summary


if __name__ == "__main__":
  main()
