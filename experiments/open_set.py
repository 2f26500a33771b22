"""Open-set MNIST: do softmax or sigmoid outputs say "none of the above"; does an "NA" class help?

The question: a classifier trained on some digits meets digits it has never
seen. Softmax probabilities always sum to 1 over the known classes, so the model
must name one; one-vs-rest sigmoids can all be low ("none of the above"). And an
extra "NA" (not applicable) class trained on non-digit images is the textbook
fix. Which of the three rejects never-seen digits best, and at what cost on the
known ones?

Protocol:

* Data: `experiments.datasets.open_set_split` with seen digits 0-4 (``--seen``):
  the models train on the training images of those digits only. The test
  images of the seen digits are the "seen" set, the test images of the other
  digits (5-9) the "unseen", never-seen set.
* Methods (same MLP, 784-512-512-K ReLU, Adam with cosine decay):

  1. ``softmax_ce``: softmax cross-entropy, K = 5 outputs; score = max softmax
     probability (`jaxloss.max_softmax_score`).
  2. ``sigmoid_bce``: per-class sigmoid binary cross-entropy on one-hot targets
     (``jaxloss.get("sigmoid_binary_cross_entropy")``), K = 5; score = max
     sigmoid (`jaxloss.max_sigmoid_score`); its natural "none" rule:
     every sigmoid below 0.5.
  3. ``ce_na``: cross-entropy with a 6th "NA" class, trained on synthetic
     non-digit images (`experiments.datasets.with_na_class`, as many NA
     images as one seen digit has on average, ``--na-images``); score =
     1 - p(NA) (`jaxloss.not_class_score`), alternative score = the
     largest digit probability; natural rule: argmax = NA. Its seen accuracy is
     the argmax over the 5 digit classes; the share of seen digits it sends to
     NA is reported apart.

* One evaluation split = seen test images first, then unseen test images, with
  labels 0..K-1 for the seen digits and ``-1 - digit`` for an unseen digit
  (all negative, e.g. 7 -> -8). The eval_fn knows both sizes at trace time and
  slices, so every metric is computed inside the jitted epoch program after
  every epoch: seen accuracy, the share of unseen digits rejected at the
  threshold that keeps 95% of the seen digits (`jaxloss.threshold_at_recall`
  + `jaxloss.rejection_rate`, also per unseen digit), AUROC seen-vs-unseen
  (`jaxloss.auroc`), the natural rules' rates, and score histograms.
* Ties: in float32 many probabilities are exactly 1.0 (a logit margin of ~17
  already rounds to 1), and ties would distort the 95% threshold and the AUROC.
  Thresholds and AUROC therefore rank by each score's log-odds
  ``log(s / (1 - s))``, computed exactly from the logits (same order as the
  probability in exact arithmetic, no saturation); histograms and the 0.5 rule
  use the probabilities themselves.
* Fair learning rates (the suite's protocol): each method picks its peak rate
  from ``--lrs`` by the seen-digit accuracy (for the NA model: argmax over the
  digit classes) on a validation split held out from the seen training images (`jaxloss.train.validation_split`, ``--val-size``), with
  ONE seed (the first of ``--seeds``) and ``--select-epochs`` epochs; the final
  runs use all seeds and ``--epochs``. The test images are never used to select.
* ``--quick`` (a smoke run, numbers meaningless): 2048 train / 512 test images,
  hidden (32,), 2 epochs, 2 seeds and ONE learning rate (3e-3), so no selection
  runs: each run costs an XLA compilation of ~4 CPU-seconds here, and the
  9 runs of a 2-rate grid would not fit the 15 s of a smoke run. Pass
  ``--quick --lrs 1e-3,3e-3`` to smoke-test the selection too.

Outputs in ``--out``: ``config.json``, ``metrics.jsonl`` (every row of every run,
selection runs included, with ``run``, ``stage``, ``method``, ``lr``),
``summary.md`` (a report section with a generated verdict), ``summary.json``,
``histograms.png`` (score histograms seen vs unseen, first seed, final epoch)
and ``curves.png`` (rejection, AUROC and seen accuracy vs epoch). Runs live in
``OUT/runs/`` and are resumable (`experiments.runs`).

Example::

  JAXLOSS_MNIST_DIR=../shared/data/mnist python -m experiments.open_set
  python -m experiments.open_set --quick --out /tmp/open_set_quick
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from typing import Any, Mapping, Sequence

import numpy as np

from experiments import common

METHODS = ("softmax_ce", "sigmoid_bce", "ce_na")
LOSS_OF = {"softmax_ce": "softmax_cross_entropy", "sigmoid_bce": "sigmoid_binary_cross_entropy",
           "ce_na": "softmax_cross_entropy"}
METHOD_LABEL = {"softmax_ce": "softmax CE", "sigmoid_bce": "sigmoid BCE",
                "ce_na": "CE + NA class"}
# (method, score key, label): the scores each method is judged by; the first one
# of a method is its main score.
SCORES = (("softmax_ce", "msp", "max softmax"),
          ("sigmoid_bce", "max_sigmoid", "max sigmoid"),
          ("ce_na", "not_na", "1 - p(NA)"),
          ("ce_na", "max_digit", "max digit probability"))
SCORE_LABEL = {key: label for _, key, label in SCORES}
METHOD_OF_SCORE = {key: method for method, key, _ in SCORES}
# Range of the log-odds histograms. On the probability scale nearly all confident
# scores share the last bin; their log-odds spread out (30 is p = 1 - 1e-13;
# larger values are counted in the last bin).
LOG_ODDS_RANGE = (-10.0, 30.0)
RULE_LABEL = {"sigmoid_bce": "every sigmoid < 0.5", "ce_na": "argmax = NA"}

DEFAULTS = {"epochs": 10, "select_epochs": 3, "hidden": (512, 512), "val_size": 5000,
            "train_subset": None, "test_subset": None}
QUICK = {"epochs": 2, "select_epochs": 1, "hidden": (32,), "val_size": 256,
         "train_subset": 2048, "test_subset": 512, "seeds": (0, 1), "lrs": (3e-3,)}


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="python -m experiments.open_set",
      description="Open-set MNIST: train on digits 0-4 with softmax CE, sigmoid BCE and CE with "
                  "an extra NA class (trained on synthetic non-digits); measure how well each "
                  "rejects the never-seen digits 5-9 (rejection at 95% seen recall, AUROC, the "
                  "natural 'none' rules). Writes config.json, metrics.jsonl, summary.md/.json, "
                  "histograms.png and curves.png to --out.",
      formatter_class=common.HelpFormatter)
  common.add_suite_args(parser, out="runs/open_set")
  group = parser.add_argument_group("experiment")
  group.add_argument("--epochs", type=int, default=None,
                     help=f"epochs of the final runs (default: {DEFAULTS['epochs']}; --quick: "
                          f"{QUICK['epochs']})")
  group.add_argument("--select-epochs", type=int, default=None,
                     help="epochs of each learning-rate selection run (one seed, cosine over "
                          f"these epochs; default: {DEFAULTS['select_epochs']}; --quick: "
                          f"{QUICK['select_epochs']})")
  group.add_argument("--hidden", type=common.parse_ints, default=None,
                     help="hidden widths, comma-separated (default: 512,512; --quick: 32)")
  group.add_argument("--val-size", type=int, default=None,
                     help="validation images held out from the seen digits' training images "
                          f"for the rate selection (default: {DEFAULTS['val_size']}; --quick: "
                          f"{QUICK['val_size']})")
  group.add_argument("--seen", type=common.parse_ints, default="0,1,2,3,4",
                     help="the digits trained on; every other digit is unseen")
  group.add_argument("--na-images", type=int, default=None,
                     help="synthetic non-digit training images of the NA class (default: the "
                          "mean number of training images per seen digit)")
  group.add_argument("--recall", type=float, default=0.95,
                     help="share of seen test digits the rejection threshold keeps")
  group.add_argument("--bins", type=int, default=20,
                     help="histogram bins of the scores on [0, 1]")
  return parser


@dataclasses.dataclass(frozen=True)
class Settings:
  """The resolved configuration (flags, with --quick's values where a flag was left alone)."""

  seeds: tuple[int, ...]
  lrs: tuple[float, ...]
  epochs: int
  select_epochs: int
  hidden: tuple[int, ...]
  val_size: int
  train_subset: int | None
  test_subset: int | None
  seen: tuple[int, ...]
  na_images: int | None
  recall: float
  bins: int
  quick: bool


def resolve_settings(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Settings:
  """Fills the flags left at their default; ``--quick`` swaps in its tiny values.

  A flag given explicitly keeps its value under ``--quick`` (for ``--seeds`` and
  ``--lrs``: a value different from the default).
  """
  base = QUICK if args.quick else DEFAULTS

  def pick(name):
    value = getattr(args, name)
    return base[name] if value is None else value

  seeds, lrs = args.seeds, tuple(args.lrs)
  if args.quick and seeds == common.parse_seeds(parser.get_default("seeds")):
    seeds = QUICK["seeds"]
  if args.quick and lrs == common.parse_floats(parser.get_default("lrs")):
    lrs = QUICK["lrs"]
  settings = Settings(
      seeds=tuple(seeds), lrs=tuple(lrs), epochs=pick("epochs"),
      select_epochs=pick("select_epochs"), hidden=tuple(pick("hidden")),
      val_size=pick("val_size"), train_subset=pick("train_subset"),
      test_subset=pick("test_subset"), seen=tuple(args.seen), na_images=args.na_images,
      recall=args.recall, bins=args.bins, quick=args.quick)
  if settings.epochs < 1 or settings.select_epochs < 1:
    parser.error("--epochs and --select-epochs must be >= 1")
  if not 0.0 < settings.recall <= 1.0:
    parser.error("--recall must be in (0, 1]")
  if settings.bins < 1:
    parser.error("--bins must be >= 1")
  if (len(set(settings.seen)) != len(settings.seen) or len(settings.seen) < 2
      or not set(settings.seen) < set(range(10))):
    parser.error("--seen must list at least two distinct digits 0-9, not all ten")
  if settings.na_images is not None and settings.na_images < 1:
    parser.error("--na-images must be >= 1")
  return settings


# --------------------------------------------------------------------------- data


def unseen_code(digits):
  """Label of an unseen digit in the evaluation split: ``-1 - digit`` (always negative)."""
  return -1 - np.asarray(digits, np.int32)


def eval_split(seen_images, seen_labels, unseen_images, unseen_digits):
  """The ONE evaluation split: seen test images first, then the unseen ones.

  Returns:
    ``(images, labels, n_seen)``: images concatenated in that order, int32
    labels (the seen labels ``0..K-1`` unchanged, ``-1 - digit`` for an unseen
    digit) and the number of seen images (the eval_fn slices at it).
  """
  images = np.concatenate([np.asarray(seen_images), np.asarray(unseen_images)])
  labels = np.concatenate([np.asarray(seen_labels, np.int32),
                           unseen_code(unseen_digits).astype(np.int32)])
  return images, labels, int(len(seen_labels))


def na_count(train_labels, num_seen: int) -> int:
  """As many NA images as one seen digit has on average: ``round(N / K)``."""
  return max(1, int(round(len(train_labels) / num_seen)))


# --------------------------------------------------------------------------- scores


def score_probability(score: str, logits, num_seen: int):
  """The score on the probability scale ``[N]`` (histograms, fixed-probability rules)."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

  import jaxloss  # pylint: disable=import-outside-toplevel

  if score == "msp":
    return jaxloss.max_softmax_score(logits)
  if score == "max_sigmoid":
    return jaxloss.max_sigmoid_score(logits)
  if score == "not_na":
    return jaxloss.not_class_score(logits, cls=num_seen)
  if score == "max_digit":
    return jnp.max(jax.nn.softmax(logits, axis=-1)[:, :num_seen], axis=-1)
  raise ValueError(f"unknown score {score!r}")


def _log_odds_of_class(logits, idx):
  """``log(p_idx / (1 - p_idx))`` under softmax: ``z_idx - logsumexp_{c != idx} z_c``.

  Exact for any margin: no ``1 - p`` cancellation and no rounding of ``p`` to 1.
  """
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

  onehot = jax.nn.one_hot(idx, logits.shape[-1], dtype=jnp.bool_)
  z_idx = jnp.take_along_axis(logits, idx[:, None], axis=-1)[:, 0]
  rest = jax.nn.logsumexp(jnp.where(onehot, -jnp.inf, logits), axis=-1)
  return z_idx - rest


def score_log_odds(score: str, logits, num_seen: int):
  """``logit(score)`` ``[N]`` computed exactly from the logits: the ranking key.

  Same order as `score_probability` in exact arithmetic, but without float32
  saturation at probability 1 (which makes ties): thresholds and AUROC use it.
  """
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

  if score == "msp":
    return _log_odds_of_class(logits, jnp.argmax(logits, axis=-1))
  if score == "max_sigmoid":  # sigmoid(max z) has log-odds max z.
    return jnp.max(logits, axis=-1)
  if score == "not_na":  # (1 - p_NA) / p_NA = sum_{digits} e^z / e^{z_NA}.
    return jax.nn.logsumexp(logits[:, :num_seen], axis=-1) - logits[:, num_seen]
  if score == "max_digit":
    return _log_odds_of_class(logits, jnp.argmax(logits[:, :num_seen], axis=-1))
  raise ValueError(f"unknown score {score!r}")


def histogram(values, bins: int, lo: float = 0.0, hi: float = 1.0):
  """Counts ``[bins]`` of `values` in equal bins on ``[lo, hi]``, pure JAX.

  A bincount of ``floor((v - lo) / (hi - lo) * bins)``: compiles in a fraction
  of the time of ``jnp.histogram`` (over a second per call site on this CPU).
  ``hi`` falls in the last bin; values outside the range are clipped into the
  end bins (so the counts always sum to ``len(values)``).
  """
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

  idx = jnp.floor((values - lo) * (bins / (hi - lo))).astype(jnp.int32)
  return jnp.bincount(jnp.clip(idx, 0, bins - 1), length=bins)


def make_eval_fn(method: str, *, num_seen: int, n_seen: int, n_unseen: int = 0,
                 unseen_digits: Sequence[int] = (), recall: float = 0.95, bins: int = 20):
  """The eval_fn of a run: every metric of one evaluation split, pure JAX.

  The split holds `n_seen` seen images (labels ``0..num_seen-1``) followed by
  `n_unseen` unseen ones (labels ``-1 - digit``), see `eval_split`; with
  ``n_unseen=0`` (validation) only the seen metrics are computed.

  Metrics (float32; "share" in [0, 1]):
    ``seen_accuracy``: argmax over the `num_seen` digit logits == label.
    ``seen_to_na`` (ce_na): share of seen digits whose argmax is the NA class.
    ``eval_layout_ok``: 1 if the labels are non-negative exactly on the first
      `n_seen` examples (guards the static slicing).
    Per score S of the method (see `SCORES`):
      ``S_threshold``: log-odds threshold keeping `recall` of the seen digits;
      ``S_rejected``: share of unseen digits strictly below it;
      ``S_seen_kept``: share of seen digits at or above it (>= recall);
      ``S_auroc``: AUROC seen (positive) vs unseen;
      ``S_rejected_by_digit``: ``[len(unseen_digits)]`` rejected share per
        unseen digit (NaN for a digit absent from the split);
      ``S_hist_seen`` / ``S_hist_unseen``: ``[bins]`` counts of the
        probability-scale score on [0, 1];
      ``S_lohist_seen`` / ``S_lohist_unseen``: ``[bins]`` counts of its
        log-odds on `LOG_ODDS_RANGE` (outside values in the end bins);
      ``S_p1_seen`` / ``S_p1_unseen``: share whose float32 probability is 1.
    ``rule_unseen_rejected`` / ``rule_seen_rejected`` (sigmoid_bce: every
      sigmoid < 0.5; ce_na: argmax = NA): the natural rule's rejected shares.
  """
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

  import jaxloss  # pylint: disable=import-outside-toplevel

  if method not in METHODS:
    raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
  scores = [key for m, key, _ in SCORES if m == method]
  codes = tuple(int(c) for c in unseen_code(unseen_digits)) if len(unseen_digits) else ()

  def eval_fn(logits, labels):
    z_in, y_in = logits[:n_seen], labels[:n_seen]
    out = {"seen_accuracy": jnp.mean(jnp.argmax(z_in[:, :num_seen], axis=-1) == y_in)}
    if method == "ce_na":
      out["seen_to_na"] = jnp.mean(jnp.argmax(z_in, axis=-1) == num_seen)
    if n_unseen == 0:
      return out
    z_out, y_out = logits[n_seen:n_seen + n_unseen], labels[n_seen:n_seen + n_unseen]
    out["eval_layout_ok"] = jnp.all(y_in >= 0) & jnp.all(y_out < 0)
    for score in scores:
      r_in = score_log_odds(score, z_in, num_seen)
      r_out = score_log_odds(score, z_out, num_seen)
      t = jaxloss.threshold_at_recall(r_in, recall=recall)
      out[f"{score}_threshold"] = t
      out[f"{score}_rejected"] = jaxloss.rejection_rate(r_out, t)
      out[f"{score}_seen_kept"] = 1.0 - jaxloss.rejection_rate(r_in, t)
      out[f"{score}_auroc"] = jaxloss.auroc(r_in, r_out)
      if codes:
        is_digit = y_out[:, None] == jnp.asarray(codes, y_out.dtype)[None, :]
        count = jnp.sum(is_digit, axis=0)
        hit = jnp.sum(is_digit & (r_out < t)[:, None], axis=0)
        out[f"{score}_rejected_by_digit"] = jnp.where(
            count > 0, hit / jnp.maximum(count, 1), jnp.nan)
      p_in = score_probability(score, z_in, num_seen)
      p_out = score_probability(score, z_out, num_seen)
      out[f"{score}_hist_seen"] = histogram(p_in, bins)
      out[f"{score}_hist_unseen"] = histogram(p_out, bins)
      out[f"{score}_lohist_seen"] = histogram(r_in, bins, *LOG_ODDS_RANGE)
      out[f"{score}_lohist_unseen"] = histogram(r_out, bins, *LOG_ODDS_RANGE)
      out[f"{score}_p1_seen"] = jnp.mean(p_in >= 1.0)
      out[f"{score}_p1_unseen"] = jnp.mean(p_out >= 1.0)
    if method == "sigmoid_bce":
      s_in = score_probability("max_sigmoid", z_in, num_seen)
      s_out = score_probability("max_sigmoid", z_out, num_seen)
      out["rule_unseen_rejected"] = jaxloss.rejection_rate(s_out, 0.5)
      out["rule_seen_rejected"] = jaxloss.rejection_rate(s_in, 0.5)
    elif method == "ce_na":
      out["rule_unseen_rejected"] = jnp.mean(jnp.argmax(z_out, axis=-1) == num_seen)
      out["rule_seen_rejected"] = out["seen_to_na"]
    return out

  return eval_fn


# --------------------------------------------------------------------------- training


def train_method(make_spec, lrs: Sequence[float], data, val_data, out_dir: str, *, bar=None,
                 keys: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], list[dict]]:
  """The suite protocol for one method: `runs.tune_and_run`, then every row of its runs.

  Finished selection runs are read back through `runs.run` (never retrained)
  to collect their rows.

  Returns:
    ``(entry, rows)``: ``entry`` has the chosen ``lr``, the selection ``table``,
    the ``final`` `RunResult` and ``results`` (run id -> `RunResult`, selection
    runs included); ``rows`` are the metrics rows of all its runs with
    ``stage`` ("select"/"final"), ``lr`` and `keys` added.
  """
  from experiments import runs  # pylint: disable=import-outside-toplevel

  keys = dict(keys or {})
  tuned = runs.tune_and_run(make_spec, lrs, data, val_data, out_dir, metric="seen_accuracy",
                            bar=bar)
  results, rows = {}, []
  for row in tuned.table:
    sel = runs.run(make_spec(row["lr"], "select"), val_data, out_dir)
    results[sel.run_id] = sel
    rows += [{**r, "stage": "select", **keys, "lr": row["lr"]} for r in sel.rows]
  results[tuned.result.run_id] = tuned.result
  rows += [{**r, "stage": "final", **keys, "lr": tuned.lr} for r in tuned.result.rows]
  return {"lr": tuned.lr, "table": tuned.table, "final": tuned.result,
          "results": results}, rows


# --------------------------------------------------------------------------- summary


def _finite(values) -> np.ndarray:
  x = np.asarray(values, np.float64).ravel()
  return x[np.isfinite(x)]


def stat(values, scale: float = 100.0) -> dict[str, Any]:
  """``{"mean", "std", "values"}`` over the finite per-seed values, times `scale`."""
  x = _finite(values) * scale
  mean, std = common.mean_std(x)
  return {"mean": mean, "std": std, "values": [float(v) for v in x]}


def _sigmoid(t: float) -> float:
  return 1.0 / (1.0 + math.exp(-t)) if t >= 0 else math.exp(t) / (1.0 + math.exp(t))


def probability_text(log_odds: float) -> str:
  """``sigmoid(log_odds)`` as text; ``1 - 2.3e-06`` style near 1 (computed without cancelling)."""
  if not math.isfinite(log_odds):
    return "n/a"
  if log_odds < math.log(999.0):  # p < 0.999
    return f"p = {_sigmoid(log_odds):.3f}"
  return f"p = 1 - {_sigmoid(-log_odds):.1e}"


def fmt(s: Mapping[str, Any], digits: int = 1) -> str:
  if s is None or not math.isfinite(s["mean"]):
    return "n/a"
  return f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f}"


def compare_phrase(a: str, sa: Mapping[str, Any], b: str, sb: Mapping[str, Any],
                   what: str) -> str:
  """'A beats B in WHAT by x points (p ± q vs r ± s)' or 'no clear difference'; higher = better.

  The suite's rule: a gap within twice the larger std over seeds is no clear
  difference.
  """
  if not (math.isfinite(sa["mean"]) and math.isfinite(sb["mean"])):
    return f"{what}: {a} {fmt(sa)} vs {b} {fmt(sb)} (not comparable)"
  gap = sa["mean"] - sb["mean"]
  if abs(gap) <= 2 * max(sa["std"], sb["std"]):
    return (f"no clear difference in {what} between {a} and {b} ({fmt(sa)} vs {fmt(sb)}; "
            f"the gap of {abs(gap):.1f} is within twice the seeds' std)")
  (win, sw), (lose, sl) = ((a, sa), (b, sb)) if gap > 0 else ((b, sb), (a, sa))
  return f"{win} beats {lose} in {what} by {abs(gap):.1f} points ({fmt(sw)} vs {fmt(sl)})"


def _clear_gap(sa: Mapping[str, Any], sb: Mapping[str, Any]) -> int:
  """+1 / -1 if A is clearly above / below B (gap beyond twice the larger std), else 0."""
  if not (math.isfinite(sa["mean"]) and math.isfinite(sb["mean"])):
    return 0
  gap = sa["mean"] - sb["mean"]
  if abs(gap) <= 2 * max(sa["std"], sb["std"]):
    return 0
  return 1 if gap > 0 else -1


def _amount(share_pct: float) -> str:
  if share_pct >= 90:
    return "nearly all"
  if share_pct >= 50:
    return "most"
  if share_pct >= 10:
    return "a minority"
  return "almost none"


def verdict(summary: Mapping[str, Any]) -> str:
  """The verdict paragraph, generated from the numbers of `summary` (see `summarize`)."""
  sc, me = summary["scores"], summary["methods"]
  recall = 100 * summary["settings"]["recall"]
  k = len(summary["settings"]["seen"])
  parts = []
  if summary["settings"]["quick"]:
    parts.append("(quick mode: tiny data and model, the numbers are meaningless.)")
  msp = sc["msp"]
  parts.append(
      f"Softmax CE never says \"none\" by itself: its top probability is at least 1/{k} and its "
      f"argmax always names a seen digit. Thresholded to keep {recall:.0f}% of the seen test "
      f"digits, max softmax rejects {fmt(msp['rejected'])}% of the never-seen digits "
      f"(AUROC {fmt(msp['auroc'])}%).")
  bce = me["sigmoid_bce"]
  rule = bce["rule_unseen_rejected"]
  if math.isfinite(rule["mean"]):
    parts.append(
        "Sigmoid BCE's built-in \"none\" (every sigmoid below 0.5) fires on "
        f"{_amount(rule['mean'])} of the unseen digits ({fmt(rule)}%) while rejecting "
        f"{fmt(bce['rule_seen_rejected'])}% of the seen ones; at the same {recall:.0f}% "
        "threshold as softmax, "
        + compare_phrase("max sigmoid", sc["max_sigmoid"]["rejected"], "max softmax",
                         msp["rejected"], "rejection of unseen digits") + ".")
  na = me["ce_na"]
  not_na, max_digit = sc["not_na"], sc["max_digit"]
  verdicts = [_clear_gap(sc[key]["rejected"], msp["rejected"]) for key in ("not_na", "max_digit")]
  if max(verdicts) > 0:
    answer = "Yes"
  elif min(verdicts) < 0 and max(verdicts) < 0:
    answer = "No, it hurts: both of its scores reject fewer unseen digits than plain max softmax"
  elif verdicts[0] < 0:
    answer = "No: 1 - p(NA) rejects fewer unseen digits than plain max softmax"
  else:
    answer = "Not clearly"
  parts.append(
      f"Does the NA class (trained on {summary['settings']['na_images_final']} synthetic "
      f"non-digit images) help? {answer}. By argmax it takes {fmt(na['rule_unseen_rejected'])}% "
      f"of the unseen digits and {fmt(na['seen_to_na'])}% of the seen ones; as a score, "
      + compare_phrase("1 - p(NA)", not_na["rejected"], "max softmax of plain CE",
                       msp["rejected"], f"rejection at {recall:.0f}% seen recall")
      + "; " + compare_phrase("1 - p(NA)", not_na["auroc"], "plain CE", msp["auroc"], "AUROC")
      + ". With its max digit probability as the score instead: "
      + compare_phrase("max digit probability", max_digit["rejected"],
                       "max softmax of plain CE", msp["rejected"], "rejection") + ".")
  parts.append(
      "Seen-digit accuracy: "
      + compare_phrase("CE + NA", na["seen_accuracy"], "softmax CE",
                       me["softmax_ce"]["seen_accuracy"], "accuracy") + "; "
      + compare_phrase("sigmoid BCE", bce["seen_accuracy"], "softmax CE",
                       me["softmax_ce"]["seen_accuracy"], "accuracy") + ".")
  ranked = sorted((key for key in sc if math.isfinite(sc[key]["auroc"]["mean"])),
                  key=lambda key: -sc[key]["auroc"]["mean"])
  if len(ranked) >= 2:
    best, second = ranked[0], ranked[1]
    a, b = sc[best]["auroc"], sc[second]["auroc"]
    clear = abs(a["mean"] - b["mean"]) > 2 * max(a["std"], b["std"])
    parts.append(
        f"Best separation of seen from unseen digits: {SCORE_LABEL[best]} "
        f"({METHOD_LABEL[METHOD_OF_SCORE[best]]}), AUROC {fmt(a)}%, "
        + ("clearly ahead of" if clear else "not clearly ahead of")
        + f" {SCORE_LABEL[second]} ({METHOD_LABEL[METHOD_OF_SCORE[second]]}, {fmt(b)}%).")
  diverged = summary.get("diverged") or {}
  if diverged:
    parts.append("Diverged: " + "; ".join(f"{run}: seeds {seeds}" for run, seeds in
                                          sorted(diverged.items())) + ".")
  else:
    parts.append("No run diverged.")
  return " ".join(parts)


def summarize(finals: Mapping[str, Any], tuned: Mapping[str, Any], settings: Settings,
              extra: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
  """The key numbers (percent, mean ± std over seeds) and the per-epoch curves.

  Returns:
    ``(summary, curves)``: `summary` is JSON-ready (with the generated verdict);
    `curves` maps a method or score key to ``{metric: [epochs, seeds]}`` arrays.
  """
  methods, scores, curves = {}, {}, {}
  for method in METHODS:
    res = finals[method]
    entry = {"lr": tuned[method]["lr"], "selection": tuned[method]["table"],
             "seen_accuracy": stat(res.final("seen_accuracy")),
             "status": res.status, "wall_seconds": res.wall_seconds}
    for key in ("seen_to_na", "rule_unseen_rejected", "rule_seen_rejected"):
      entry[key] = stat(res.final(key))  # NaN (n/a) where the method has no such metric.
    entry["eval_layout_ok"] = bool(np.all(res.final("eval_layout_ok") == 1.0))
    methods[method] = entry
    curves[method] = {"seen_accuracy": res.curve("seen_accuracy")}
  for method, score, _ in SCORES:
    res = finals[method]
    entry = {key: stat(res.final(f"{score}_{key}"))
             for key in ("rejected", "auroc", "seen_kept", "p1_seen", "p1_unseen")}
    entry["threshold_log_odds"] = stat(res.final(f"{score}_threshold"), scale=1.0)
    by_digit = [r[f"{score}_rejected_by_digit"] for s in res.seeds
                if (r := res.last_row(s)) is not None and r["epoch"] == res.epochs]
    entry["rejected_by_digit"] = (
        [stat([row[i] for row in by_digit]) for i in range(len(extra["unseen_digits"]))]
        if by_digit else [])
    scores[score] = entry
    curves[score] = {"rejected": res.curve(f"{score}_rejected"),
                     "auroc": res.curve(f"{score}_auroc")}
  diverged = {}
  for method in METHODS:
    for run_id, result in tuned[method]["results"].items():
      if result.diverged:
        diverged[run_id] = sorted(result.diverged)
  summary = {"settings": {**dataclasses.asdict(settings), **extra}, "methods": methods,
             "scores": scores, "diverged": diverged}
  summary["verdict"] = verdict(summary)
  return summary, curves


def summary_markdown(summary: Mapping[str, Any], command: str, figures: Sequence[str]) -> str:
  """The report section (question, setup, command, tables, figures, verdict)."""
  st, me, sc = summary["settings"], summary["methods"], summary["scores"]
  recall = 100 * st["recall"]
  seen = ",".join(str(d) for d in st["seen"])
  unseen = st["unseen_digits"]
  model = "-".join(str(w) for w in (784, *st["hidden"])) + "-K ReLU"
  lines = [
      "## Do softmax or sigmoid outputs say \"none of the above\" on digits the model has never "
      "seen, and does an extra \"NA\" class help?" + (" (quick mode)" if st["quick"] else ""),
      "",
      f"Setup: MNIST, trained on digits {seen} only ({st['train_examples']} training images; "
      f"the NA model also on {st['na_images_final']} synthetic non-digit images of "
      "`datasets.non_digit_images`: noise, blobs, strokes, stripes). Evaluated on ONE split: the "
      f"{st['n_seen']} test images of the seen digits and the {st['n_unseen']} test images of the "
      f"never-seen digits {','.join(str(d) for d in unseen)}, all metrics computed inside the "
      f"jitted epoch program. MLP {model} (K = {len(st['seen'])}, 6 with NA), Adam with cosine "
      f"decay, batch 128, {st['epochs']} epochs, seeds {list(st['seeds'])}; on {st['device']}; "
      f"wall time {st['wall_seconds'] / 60:.1f} min (this invocation).",
      "",
      (f"Learning rates (same grid {list(st['lrs'])} for every method) selected by seen-digit "
       f"accuracy on {st['val_size']} validation images held out from the seen digits' "
       f"training images, with one seed ({st['seeds'][0]}) and {st['select_epochs']} epochs; the "
       "test images are never used to select." if len(st["lrs"]) > 1 else
       f"One learning rate ({st['lrs'][0]:g}) for every method: no selection.")
      + " Rejection: the threshold keeps "
      f"{recall:.0f}% of the seen test digits (`jaxloss.threshold_at_recall`), the table gives "
      "the share of unseen test digits below it (`jaxloss.rejection_rate`). Thresholds and "
      "AUROC rank by each score's log-odds, computed exactly from the logits (same order as the "
      "probability, but no float32 ties at 1.0). Mean ± std over seeds, in %.",
      "",
      f"Command: `{command}`",
      "",
      "| method | training loss | chosen lr | seen accuracy % | seen digits sent to NA % |",
      "|---|---|---|---|---|",
  ]
  for method in METHODS:
    m = me[method]
    na = fmt(m["seen_to_na"], 2) if method == "ce_na" else "-"
    lines.append(f"| {METHOD_LABEL[method]} | `{LOSS_OF[method]}` | {m['lr']:g} "
                 f"| {fmt(m['seen_accuracy'], 2)} | {na} |")
  lines += [
      "",
      f"| method | score | unseen rejected at {recall:.0f}% seen kept, % | seen kept % "
      "| AUROC seen vs unseen % | threshold: log-odds (probability) |",
      "|---|---|---|---|---|---|",
  ]
  for method, key, label in SCORES:
    s = sc[key]
    t = s["threshold_log_odds"]["mean"]
    lines.append(f"| {METHOD_LABEL[method]} | {label} | {fmt(s['rejected'])} "
                 f"| {fmt(s['seen_kept'])} | {fmt(s['auroc'])} "
                 f"| {fmt(s['threshold_log_odds'], 2)} ({probability_text(t)}) |")
  lines += [
      "",
      "The natural \"none of the above\" rules, no threshold tuning:",
      "",
      "| method | rule | unseen digits rejected % | seen digits wrongly rejected % |",
      "|---|---|---|---|",
      f"| {METHOD_LABEL['softmax_ce']} | none: argmax always names a digit, max softmax "
      f">= 1/{len(st['seen'])} | 0 | 0 |",
  ]
  for method in ("sigmoid_bce", "ce_na"):
    m = me[method]
    lines.append(f"| {METHOD_LABEL[method]} | {RULE_LABEL[method]} "
                 f"| {fmt(m['rule_unseen_rejected'])} | {fmt(m['rule_seen_rejected'])} |")
  lines += [
      "",
      f"Which unseen digits get rejected (% of each digit, at the {recall:.0f}% threshold):",
      "",
      "| method | score | " + " | ".join(str(d) for d in unseen) + " |",
      "|---|---|" + "---|" * len(unseen),
  ]
  for method, key, label in SCORES:
    cells = [fmt(s) for s in sc[key]["rejected_by_digit"]] or ["n/a"] * len(unseen)
    lines.append(f"| {METHOD_LABEL[method]} | {label} | " + " | ".join(cells) + " |")
  sat = [f"{SCORE_LABEL[key]} {sc[key]['p1_seen']['mean']:.0f}% seen / "
         f"{sc[key]['p1_unseen']['mean']:.0f}% unseen" for _, key, _ in SCORES]
  lines += [
      "",
      "Share of test digits whose float32 score is exactly 1.0 (why the ranking uses "
      "log-odds): " + "; ".join(sat) + ".",
      "",
  ]
  if len(st["lrs"]) == 1:
    lines.append(f"One learning rate given ({st['lrs'][0]:g}): no selection runs.")
  else:
    lines += [
        "Learning-rate selection (validation seen-digit accuracy %, one seed):",
        "",
        "| method | " + " | ".join(f"lr {lr:g}" for lr in st["lrs"]) + " | chosen |",
        "|---|" + "---|" * len(st["lrs"]) + "---|",
    ]
    for method in METHODS:
      table = {row["lr"]: row for row in me[method]["selection"]}
      cells = []
      for lr in st["lrs"]:
        row = table.get(lr)
        if row is None:
          cells.append("-")
        elif row["status"] == "diverged" or not math.isfinite(row["score"]):
          cells.append("diverged")
        else:
          cells.append(f"{100 * row['score']:.2f}")
      lines.append(f"| {METHOD_LABEL[method]} | " + " | ".join(cells)
                   + f" | {me[method]['lr']:g} |")
  names = [os.path.basename(f) for f in figures]
  if "histograms.png" in names:
    lines += ["", f"![Score histograms, seen vs unseen test digits (seed {st['seeds'][0]}, final "
              "epoch); dashed: the 95% threshold](histograms.png)"]
  if "curves.png" in names:
    lines += ["", "![Unseen digits rejected at the threshold, AUROC and seen accuracy vs epoch "
              "(mean over seeds, min-max band)](curves.png)"]
  lines += ["", "**Verdict.** " + summary["verdict"], ""]
  return "\n".join(lines)


# --------------------------------------------------------------------------- figures


def plot_histograms(hists: Mapping[str, Mapping[str, Any]], path: str, recall: float) -> None:
  """histograms.png: per score, seen vs unseen shares per bin, probability (top) and log-odds.

  `hists` maps a score key to ``{"seen", "unseen", "lo_seen", "lo_unseen"}``
  counts and its ``"threshold"`` (log-odds).
  """
  import matplotlib  # pylint: disable=import-outside-toplevel

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  fig, axes = plt.subplots(2, len(SCORES), figsize=(4.2 * len(SCORES), 6.6), sharey="row",
                           squeeze=False)
  for col, (method, key, label) in enumerate(SCORES):
    h = hists.get(key)
    for row, (prefix, lo, hi) in enumerate((("", 0.0, 1.0), ("lo_", *LOG_ODDS_RANGE))):
      ax = axes[row, col]
      if h is None:
        ax.set_visible(False)
        continue
      for name, color in (("seen", "tab:blue"), ("unseen", "tab:red")):
        counts = np.asarray(h[prefix + name], np.float64)
        edges = np.linspace(lo, hi, len(counts) + 1)
        share = counts / max(counts.sum(), 1.0)
        share = np.where(share > 0, share, np.nan)  # empty bins: no bar on the log axis
        ax.stairs(share, edges, label=name, color=color, fill=True, alpha=0.35)
        ax.stairs(share, edges, color=color)
      t = h["threshold"]
      if math.isfinite(t):
        ax.axvline(_sigmoid(t) if row == 0 else min(max(t, lo), hi), color="k", ls="--",
                   lw=1, label=f"{100 * recall:.0f}% seen kept")
      if method == "sigmoid_bce":
        ax.axvline(0.5 if row == 0 else 0.0, color="tab:green", ls=":", lw=1.5,
                   label="0.5 rule")
      ax.set_yscale("log")
      ax.set_xlabel(f"{label} ({METHOD_LABEL[method]})" if row == 0 else
                    f"log-odds of {label} (clipped to [{lo:g}, {hi:g}])")
      ax.grid(True, alpha=0.3)
      ax.legend(fontsize=8, loc="upper left")
  axes[0, 0].set_ylabel("share of test digits per bin (log)")
  axes[1, 0].set_ylabel("share of test digits per bin (log)")
  fig.suptitle("Scores of seen vs never-seen test digits (first seed, final epoch): "
               "probability (top) and log-odds (bottom)")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_curves(curves: Mapping[str, Mapping[str, np.ndarray]], path: str, recall: float) -> None:
  """curves.png: rejection at the threshold, AUROC and seen accuracy vs epoch."""
  import matplotlib  # pylint: disable=import-outside-toplevel

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  import matplotlib.ticker  # pylint: disable=import-outside-toplevel

  fig, axes = plt.subplots(1, 3, figsize=(15, 4))
  for method, key, label in SCORES:
    name = f"{METHOD_LABEL[method]}: {label}"
    for ax, metric in ((axes[0], "rejected"), (axes[1], "auroc")):
      y = 100 * np.asarray(curves[key][metric])
      common.plot_band(ax, np.arange(1, y.shape[0] + 1), y, name)
  for method in METHODS:
    y = 100 * np.asarray(curves[method]["seen_accuracy"])
    common.plot_band(axes[2], np.arange(1, y.shape[0] + 1), y, METHOD_LABEL[method])
  axes[0].set_ylabel(f"unseen digits rejected at {100 * recall:.0f}% seen kept, %")
  axes[1].set_ylabel("AUROC seen vs unseen, %")
  axes[2].set_ylabel("seen-digit test accuracy, %")
  for ax in axes:
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
  fig.suptitle("Open-set MNIST: mean over seeds, min-max band")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  parser = build_parser()
  args = parser.parse_args(argv)
  settings = resolve_settings(args, parser)
  t_start = time.perf_counter()

  import jaxloss  # pylint: disable=import-outside-toplevel
  from jaxloss import train as jt  # pylint: disable=import-outside-toplevel
  from experiments import datasets  # pylint: disable=import-outside-toplevel
  from experiments import runs  # pylint: disable=import-outside-toplevel

  env = common.print_device()
  dev = env["device"]
  args.train_subset, args.test_subset = settings.train_subset, settings.test_subset
  data = common.load_mnist_or_exit(args)
  k = len(settings.seen)
  known, unseen_images, unseen_labels = datasets.open_set_split(data, seen=settings.seen)
  unseen_digits = tuple(d for d in range(10) if d not in settings.seen)
  eval_x, eval_y, n_seen = eval_split(known.test_images, known.test_labels, unseen_images,
                                      unseen_labels)
  n_unseen = len(eval_y) - n_seen
  if n_seen == 0 or n_unseen == 0:
    raise SystemExit("error: the test split holds no seen or no unseen digits "
                     "(raise --test-subset)")
  n_train = len(known.train_labels)
  if not 1 <= settings.val_size < n_train:
    raise SystemExit(f"error: --val-size {settings.val_size} must be in [1, {n_train - 1}] "
                     f"(the seen digits' training images)")
  val = jt.validation_split(known, size=settings.val_size, seed=0)
  n_na_final = settings.na_images or na_count(known.train_labels, k)
  n_na_select = settings.na_images or na_count(val.train_labels, k)
  final_data = {
      "softmax_ce": jt.Mnist(known.train_images, known.train_labels, eval_x, eval_y)}
  final_data["sigmoid_bce"] = final_data["softmax_ce"]
  na_train = datasets.with_na_class(known, n_train=n_na_final, n_test=0, seed=0)
  final_data["ce_na"] = jt.Mnist(na_train.train_images, na_train.train_labels, eval_x, eval_y)
  val_data = {"softmax_ce": val, "sigmoid_bce": val,
              "ce_na": datasets.with_na_class(val, n_train=n_na_select, n_test=0, seed=0)}
  print(f"open set: train on digits {list(settings.seen)} ({n_train} images, NA model + "
        f"{n_na_final} non-digits); evaluate {n_seen} seen + {n_unseen} unseen test images; "
        f"select lr on {settings.val_size} validation images", flush=True)

  extra = {"unseen_digits": list(unseen_digits), "train_examples": n_train,
           "n_seen": n_seen, "n_unseen": n_unseen, "na_images_final": n_na_final,
           "na_images_select": n_na_select,
           "device": f"{dev['platform'].upper()} ({dev['device_kind']})"}

  def make_spec(method: str, lr: float, stage: str):
    loss = jaxloss.get(LOSS_OF[method])
    select = stage == "select"
    config = jt.TrainConfig(
        hidden=settings.hidden, num_classes=k + (method == "ce_na"), optimizer="adam",
        learning_rate=lr, schedule="cosine",
        epochs=settings.select_epochs if select else settings.epochs)
    eval_fn = make_eval_fn(
        method, num_seen=k, n_seen=settings.val_size if select else n_seen,
        n_unseen=0 if select else n_unseen, unseen_digits=unseen_digits,
        recall=settings.recall, bins=settings.bins)
    data_used = val_data[method] if select else final_data[method]
    describe = {"experiment": "open_set", "method": method, "loss": loss.name, "lr": lr,
                "stage": stage, "seen": list(settings.seen),
                "train_examples": int(len(data_used.train_labels)),
                "eval_examples": int(len(data_used.test_labels)),
                "na_images": (n_na_select if select else n_na_final) if method == "ce_na" else 0,
                "val_size": settings.val_size, "train_subset": settings.train_subset,
                "test_subset": settings.test_subset, "recall": settings.recall,
                "bins": settings.bins}
    return runs.RunSpec(f"{method}-{stage}-lr{lr:g}", config, loss.loss_from_labels,
                        loss.predict, eval_fn=eval_fn,
                        seeds=settings.seeds[:1] if select else settings.seeds,
                        describe=describe)

  os.makedirs(args.out, exist_ok=True)
  config = {"environment": env, "args": vars(args), "settings": dataclasses.asdict(settings),
            **extra, "label_encoding": "seen digit -> its index in --seen (0..K-1); unseen "
            "digit d -> -1 - d; the evaluation split holds the seen test images first"}
  common.write_json(os.path.join(args.out, "config.json"), config)

  select_epochs = settings.select_epochs * len(settings.lrs) if len(settings.lrs) > 1 else 0
  tuned: dict[str, dict[str, Any]] = {}
  finals = {}
  all_rows: list[dict[str, Any]] = []
  with common.progress(len(METHODS) * (select_epochs + settings.epochs), "open_set",
                       disable=args.no_progress) as bar:
    for method in METHODS:
      bar.set_postfix_str(METHOD_LABEL[method])
      tuned[method], rows = train_method(
          lambda lr, stage, m=method: make_spec(m, lr, stage), settings.lrs,
          final_data[method], val_data[method], args.out, bar=bar,
          keys={"method": method})
      finals[method] = tuned[method]["final"]
      all_rows += rows

  common.write_text(os.path.join(args.out, "metrics.jsonl"),
                    "".join(json.dumps(r, default=common.json_default) + "\n" for r in all_rows))
  wall = time.perf_counter() - t_start
  extra["wall_seconds"] = wall
  summary, curves = summarize(finals, tuned, settings, extra)

  hists = {}
  first = settings.seeds[0]
  for method, key, _ in SCORES:
    row = finals[method].last_row(first)
    if row is not None and f"{key}_hist_seen" in row:
      hists[key] = {"seen": row[f"{key}_hist_seen"], "unseen": row[f"{key}_hist_unseen"],
                    "lo_seen": row[f"{key}_lohist_seen"],
                    "lo_unseen": row[f"{key}_lohist_unseen"],
                    "threshold": row[f"{key}_threshold"]}
  figures = [os.path.abspath(os.path.join(args.out, name))
             for name in ("histograms.png", "curves.png")]
  plot_histograms(hists, figures[0], settings.recall)
  plot_curves(curves, figures[1], settings.recall)

  command = " ".join(["python -m experiments.open_set",
                       *(sys.argv[1:] if argv is None else argv)])
  markdown = summary_markdown(summary, command, figures)
  common.write_text(os.path.join(args.out, "summary.md"), markdown)
  common.write_json(os.path.join(args.out, "summary.json"), summary)
  config.update({"chosen_lrs": {m: tuned[m]["lr"] for m in METHODS},
                 "selection": {m: tuned[m]["table"] for m in METHODS}, "wall_seconds": wall})
  common.write_json(os.path.join(args.out, "config.json"), config)
  print(markdown, flush=True)
  print(f"wrote {args.out}/ (config.json, metrics.jsonl, summary.md, summary.json, "
        f"histograms.png, curves.png) in {wall:.0f} s", flush=True)
  return {"summary_md": markdown, "figures": figures, "summary": summary,
          "wall_seconds": wall}


if __name__ == "__main__":
  main()
