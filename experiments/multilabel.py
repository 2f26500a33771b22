"""Multi-label MNIST: is sigmoid binary cross-entropy the right loss for several labels per image?

Question. Each image shows two DIFFERENT MNIST digits side by side (``28 x 56``)
and its label is the set of the two digits (a multi-hot target with two ones).
Three losses train the same MLP:

* ``bce``: sigmoid binary cross-entropy per class on the multi-hot targets
  (``jaxloss.get("multilabel_bce").loss``: ten independent sigmoids);
* ``sigdiff``: the fastai book's sigmoid-difference loss ``mean_c |sigmoid(z_c)
  - t_c|`` on the same multi-hot targets (`jaxloss.sigmoid_difference`);
* ``softmax``: softmax cross-entropy on the normalized targets ``t / sum(t)``
  (``0.5`` on each of the two digits; `jaxloss.softmax_cross_entropy`), whose
  minimum is ``log 2``, not 0.

Decoding. Every model is decoded by its two highest logits (top-2: the decoder
knows that each image has exactly two digits). The two sigmoid losses are also
decoded by thresholding, ``sigmoid(z) > 0.5`` (``z > 0``), which does not need to
know the number of labels. Softmax outputs sum to 1 and have no such natural
per-class threshold, so they are decoded by top-2 only.

Metrics, on the test pairs after every epoch (computed inside the jitted epoch
program by an ``eval_fn``), for each decoding: exact-set accuracy (both digits
right and nothing else predicted), per-digit F1 (vector of 10) and macro F1;
for thresholding also the mean number of predicted digits and the share of
images with exactly two. ``train_accuracy`` in the rows is the per-label
(Hamming) accuracy of top-2 decoding on the training batches.

Protocol (fair hyperparameters). Every loss gets the same Adam learning-rate
grid (``--lrs``, cosine decay). The rate is selected on a VALIDATION set built
like the test set: `jaxloss.train.validation_split` holds out
``--val-size`` of the 60k MNIST training IMAGES, the selection runs train on
pairs built from the remaining images and are scored on pairs built only from
the held-out images. Splitting the pairs instead would put the same digit
image (each is used about twice among 60k pairs) in a training pair and in a
validation pair: the validation score would then reward memorizing individual
digit images, which the test pairs (built from the MNIST test images) never
allow. Selection runs use one seed (the first of ``--seeds``) and
``--select-epochs`` epochs, scored by the final exact-set accuracy with top-2
decoding (the same decoding for every loss); the final runs train every seed
for ``--epochs`` on pairs of the full training images and are evaluated on the
test pairs. The test set is never used for a choice.

Outputs in ``--out``: ``config.json``, ``metrics.jsonl`` (every row of every
run, ``stage`` "select"/"final"), ``summary.md`` (the report section),
``summary.json``, ``curves.png`` (exact-set accuracy vs epoch per loss, both
decodings) and ``f1_digits.png`` (per-digit F1). Runs are resumable
(`experiments.runs`): rerunning with the same ``--out`` retrains nothing that
finished.

Example::

  JAXLOSS_MNIST_DIR=/work/shared/data/mnist python -m experiments.multilabel
  python -m experiments.multilabel --quick --out /tmp/multilabel
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from experiments import common

NUM_CLASSES = 10
NUM_LABELS = 2  # Every image shows exactly two different digits.
SELECT_METRIC = "exact_top2"
DIGITS = tuple(range(NUM_CLASSES))
CHANCE = 1.0 / 45.0  # Exact-set accuracy of a random pair of two different digits.
LEARNED_MIN = 3 * 100.0 * CHANCE  # Below this top-2 exact-set accuracy (%), "barely learned".

# What --quick changes (flags given explicitly still win).
QUICK = {"seeds": "0,1", "lrs": "1e-3,3e-3", "hidden": "32", "epochs": 2, "select_epochs": 1,
         "train_subset": 2048, "test_subset": 512, "train_size": 2048, "test_size": 512,
         "val_size": 512}


@dataclasses.dataclass(frozen=True)
class Variant:
  """One loss of the comparison."""

  key: str
  title: str
  sigmoid: bool  # Decoded by thresholding too (independent sigmoids).
  description: str


VARIANTS = {
    "bce": Variant("bce", "sigmoid BCE", True,
                   "jaxloss.get('multilabel_bce').loss on multi-hot targets"),
    "sigdiff": Variant("sigdiff", "sigmoid-difference", True,
                       "mean of jaxloss.sigmoid_difference on multi-hot targets"),
    "softmax": Variant("softmax", "softmax CE (t/sum t)", False,
                       "mean of jaxloss.softmax_cross_entropy on targets t / sum(t)"),
}


# --------------------------------------------------------------------------- CLI


def _variant_list(text: str) -> tuple[str, ...]:
  keys = tuple(k.strip() for k in text.split(",") if k.strip())
  unknown = [k for k in keys if k not in VARIANTS]
  if not keys or unknown or len(set(keys)) != len(keys):
    raise argparse.ArgumentTypeError(
        f"expected distinct names among {', '.join(VARIANTS)}, got {text!r}")
  return keys


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="python -m experiments.multilabel",
      description="Two-digit MNIST (two different digits side by side, label = the set of "
                  "both): sigmoid BCE vs sigmoid-difference vs softmax cross-entropy on "
                  "normalized targets, decoded by top-2 and (sigmoid losses) by sigmoid > 0.5. "
                  "Learning rate selected per loss on validation pairs built from held-out "
                  "training images.",
      formatter_class=common.HelpFormatter)
  common.add_suite_args(parser, out="runs/multilabel")
  group = parser.add_argument_group("experiment")
  group.add_argument("--losses", type=_variant_list, default=",".join(VARIANTS),
                     help="comma-separated subset of: " + ", ".join(
                         f"{v.key} ({v.description})" for v in VARIANTS.values()))
  group.add_argument("--epochs", type=int, default=10, help="epochs of the final runs")
  group.add_argument("--select-epochs", type=int, default=3,
                     help="epochs of the learning-rate selection runs (one seed, cosine "
                          "schedule over these epochs)")
  group.add_argument("--hidden", type=common.parse_ints, default="512,512",
                     help="hidden widths of the MLP (input 28*56 = 1568, output 10)")
  group.add_argument("--batch-size", type=int, default=128, help="training batch size")
  group.add_argument("--train-size", type=int, default=60000,
                     help="number of two-digit training pairs (drawn with replacement from the "
                          "training images)")
  group.add_argument("--test-size", type=int, default=10000,
                     help="number of two-digit test pairs (from the MNIST test images)")
  group.add_argument("--val-size", type=int, default=10000,
                     help="training images held out for the learning-rate selection; as many "
                          "validation pairs are built from them")
  group.add_argument("--data-seed", type=int, default=0,
                     help="seed of the pair construction (two_digit_mnist)")
  return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  """Parses `argv`; with ``--quick`` the `QUICK` settings replace the defaults."""
  parser = build_parser()
  args = parser.parse_args(argv)
  if args.quick:
    parser.set_defaults(**QUICK)
    args = parser.parse_args(argv)
  for name in ("epochs", "select_epochs", "batch_size", "train_size", "test_size", "val_size"):
    if getattr(args, name) < 1:
      parser.error(f"--{name.replace('_', '-')} must be at least 1")
  return args


# --------------------------------------------------------------------------- losses and metrics


def loss_fn_for(key: str) -> Callable:
  """``loss_fn(logits [B, 10], multi-hot targets [B, 10]) -> scalar`` of a variant."""
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

  import jaxloss  # pylint: disable=import-outside-toplevel

  if key == "bce":
    return jaxloss.get("multilabel_bce").loss
  if key == "sigdiff":
    return lambda logits, targets: jnp.mean(jaxloss.sigmoid_difference(logits, targets))
  if key == "softmax":

    def softmax_loss(logits, targets):
      # Normalized targets: 1/2 on each digit. The max() only guards an
      # all-zero row (never in this data) against 0/0.
      total = jnp.maximum(jnp.sum(targets, axis=-1, keepdims=True), 1.0)
      return jnp.mean(jaxloss.softmax_cross_entropy(logits, targets / total))

    return softmax_loss
  raise ValueError(f"unknown variant {key!r}")


def predict_top2(logits):
  """Top-2 multi-hot prediction (for the trainer's per-label ``train_accuracy``)."""
  import jaxloss  # pylint: disable=import-outside-toplevel

  return jaxloss.top_k_multi_hot(logits, k=NUM_LABELS)


def make_eval_fn(key: str) -> Callable:
  """``eval_fn(logits [N, 10], targets [N, 10]) -> metrics`` for a variant (pure JAX).

  Keys: ``exact_top2``, ``macro_f1_top2``, ``f1_top2`` ([10]), ``eval_loss``;
  for sigmoid losses also ``exact_threshold``, ``macro_f1_threshold``,
  ``f1_threshold`` ([10]), ``count_threshold`` (mean number of predicted
  digits) and ``two_threshold`` (share of images with exactly two predicted).
  """
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

  import jaxloss  # pylint: disable=import-outside-toplevel

  loss_fn = loss_fn_for(key)
  threshold = VARIANTS[key].sigmoid

  def scores(pred, targets, suffix):
    return {f"exact_{suffix}": jnp.mean(jaxloss.exact_set_accuracy(pred, targets)),
            f"macro_f1_{suffix}": jaxloss.macro_f1(pred, targets),
            f"f1_{suffix}": jaxloss.per_class_f1(pred, targets)}

  def eval_fn(logits, targets):
    out = {"eval_loss": loss_fn(logits, targets)}
    out.update(scores(jaxloss.top_k_multi_hot(logits, k=NUM_LABELS), targets, "top2"))
    if threshold:
      # logit > 0  <=>  sigmoid > 0.5.
      pred = jaxloss.threshold_multi_hot(logits, threshold=0.0)
      out.update(scores(pred, targets, "threshold"))
      count = jnp.sum(pred, axis=-1)
      out["count_threshold"] = jnp.mean(count)
      out["two_threshold"] = jnp.mean((count == NUM_LABELS).astype(jnp.float32))
    return out

  return eval_fn


# --------------------------------------------------------------------------- data


def build_data(mnist, *, train_size: int, test_size: int, val_size: int, seed: int):
  """``(data, val_data)``: two-digit pairs for the final runs and for the selection.

  ``data``: training pairs from all (given) training images, test pairs from
  the test images. ``val_data``: `validation_split` holds out `val_size`
  training IMAGES (seed 0, as every script of the suite); training pairs come
  from the other images, `val_size` validation pairs from the held-out ones
  only, so no digit image of a selection-training pair is in a validation pair.
  """
  from experiments import datasets  # pylint: disable=import-outside-toplevel
  from jaxloss.train import validation_split  # pylint: disable=import-outside-toplevel

  data = datasets.two_digit_mnist(mnist, train_size=train_size, test_size=test_size, seed=seed)
  split = validation_split(mnist, size=val_size, seed=0)
  val_data = datasets.two_digit_mnist(split, train_size=train_size, test_size=val_size,
                                      seed=seed)
  return data, val_data


# --------------------------------------------------------------------------- statistics


def _finite(values) -> np.ndarray:
  x = np.asarray(values, np.float64)
  return x[np.isfinite(x)]


def stat(values, scale: float = 100.0) -> tuple[float, float]:
  """Mean and std (ddof=1) of the finite `values`, times `scale`."""
  mean, std = common.mean_std(_finite(values) * scale)
  return mean, std


def fmt(mean_std: tuple[float, float] | None, digits: int = 2) -> str:
  if mean_std is None or math.isnan(mean_std[0]):
    return "n/a"
  return f"{mean_std[0]:.{digits}f} ± {mean_std[1]:.{digits}f}"


def final_vectors(result, metric: str, epochs: int) -> np.ndarray:
  """``[S', 10]`` vector metric of the final epoch, for the seeds that reached it."""
  rows = [r for r in result.rows
          if r["epoch"] == epochs and not r.get("diverged") and metric in r]
  if not rows:
    return np.zeros((0, NUM_CLASSES))
  return np.asarray([r[metric] for r in rows], np.float64)


def variant_stats(key: str, result, epochs: int) -> dict[str, Any]:
  """The summary numbers of one final run (percent, mean/std over seeds)."""
  out: dict[str, Any] = {"seeds": len(result.seeds) if result.rows else 0,
                         "status": result.status,
                         "diverged": {str(k): v for k, v in result.diverged.items()},
                         "wall_seconds": result.wall_seconds}
  decodings = ("top2", "threshold") if VARIANTS[key].sigmoid else ("top2",)
  for dec in ("top2", "threshold"):
    for name in ("exact", "macro_f1"):
      out[f"{name}_{dec}"] = stat(result.final(f"{name}_{dec}")) if dec in decodings else None
    if dec in decodings:
      f1 = final_vectors(result, f"f1_{dec}", epochs) * 100.0
      out[f"f1_{dec}"] = {"mean": f1.mean(axis=0).tolist() if len(f1) else [math.nan] * 10,
                          "std": (f1.std(axis=0, ddof=1) if len(f1) > 1
                                  else np.zeros(NUM_CLASSES)).tolist()}
    else:
      out[f"f1_{dec}"] = None
  out["count_threshold"] = stat(result.final("count_threshold"), 1.0) if VARIANTS[key].sigmoid \
      else None
  out["two_threshold"] = stat(result.final("two_threshold")) if VARIANTS[key].sigmoid else None
  out["train_loss"] = stat(result.final("train_loss"), 1.0)
  out["finite_seeds"] = int(_finite(result.final("exact_top2")).size) if result.rows else 0
  return out


# --------------------------------------------------------------------------- verdict


def _spread(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float, bool]:
  """``(gap, gap_std, clear)`` of two ``(mean, std)``: gap ``a - b``, its std
  ``hypot(std_a, std_b)``, clear when ``|gap| >= 2 * max(std_a, std_b)`` and nonzero."""
  gap = a[0] - b[0]
  gap_std = math.hypot(a[1], b[1])
  clear = abs(gap) >= 2.0 * max(a[1], b[1]) and abs(gap) > 0.0
  return gap, gap_std, clear


def verdict(stats: Mapping[str, Mapping[str, Any]], *, quick: bool = False) -> str:
  """The verdict paragraph, generated from the numbers of `variant_stats` (percent)."""
  titles = {k: VARIANTS[k].title for k in stats}
  alive = {k: s for k, s in stats.items()
           if s["exact_top2"] is not None and not math.isnan(s["exact_top2"][0])}
  parts: list[str] = []
  if quick:
    parts.append("(quick mode: tiny data, model and epochs; these numbers are meaningless.)")
  dead = [k for k in stats if k not in alive]
  if dead:
    parts.append("Diverged (every seed, no final numbers): "
                 + ", ".join(titles[k] for k in dead) + ".")
  partial = [k for k, s in alive.items() if s.get("diverged")]
  if partial:
    parts.append("Some seeds diverged for " + ", ".join(titles[k] for k in partial)
                 + "; their numbers are over the remaining seeds.")
  if not alive:
    return " ".join(parts + ["No loss trained; nothing to compare."])

  ranked = sorted(alive, key=lambda k: -alive[k]["exact_top2"][0])
  best = ranked[0]
  b = alive[best]["exact_top2"]
  if len(ranked) == 1:
    parts.append(f"Only {titles[best]} ran: {fmt(b)}% exact-set test accuracy with top-2 "
                 "decoding.")
  else:
    cmp = []
    tied = [best]
    for other in ranked[1:]:
      gap, gap_std, clear = _spread(b, alive[other]["exact_top2"])
      if clear:
        cmp.append(f"beats {titles[other]} by {gap:.2f} ± {gap_std:.2f} points")
      else:
        tied.append(other)
        cmp.append(f"is not clearly better than {titles[other]} ({gap:+.2f} ± {gap_std:.2f} "
                   "points, within the seeds' spread)")
    parts.append(f"With top-2 decoding, {titles[best]} has the highest exact-set test accuracy "
                 f"({fmt(b)}%) and " + "; it ".join(cmp) + ".")
    if "bce" in alive:
      if "bce" in tied:
        parts.append("So sigmoid BCE is a right choice here: " + (
            "it is the best loss." if len(tied) == 1 else
            "no other loss is clearly better."))
      else:
        parts.append(f"So sigmoid BCE is not the best loss here: {titles[best]} is clearly "
                     "better under top-2 decoding"
                     + (", although it needs the number of labels to decode"
                        if not VARIANTS[best].sigmoid else "") + ".")
  for key in ranked:
    s = alive[key]
    if not VARIANTS[key].sigmoid or s["exact_threshold"] is None:
      continue
    thr, top = s["exact_threshold"], s["exact_top2"]
    if top[0] < LEARNED_MIN:
      parts.append(f"{titles[key]} barely learned ({fmt(top)}% exact-set accuracy with top-2, "
                   f"chance {100 * CHANCE:.1f}%), so its two decodings cannot be compared.")
      continue
    cost = top[0] - thr[0]
    tolerance = max(1.0, 2.0 * max(thr[1], top[1]))
    count = s["count_threshold"]
    two = s["two_threshold"]
    detail = (f"Decoded by sigmoid > 0.5, {titles[key]} gets {fmt(thr)}% exact-set accuracy "
              f"(top-2: {fmt(top)}%); it predicts {count[0]:.2f} digits per image on average "
              f"and exactly two on {two[0]:.1f}% of the test images")
    if cost <= tolerance:
      parts.append(detail + ", so thresholding works without knowing the number of labels (it "
                   f"costs {cost:.2f} points, within max(1 point, 2 x the seeds' std) = "
                   f"{tolerance:.2f}).")
    else:
      parts.append(detail + f", so thresholding costs {cost:.2f} points: knowing that there "
                   "are two digits matters for this loss.")
  return " ".join(parts)


# --------------------------------------------------------------------------- report


def selection_table(tuned: Mapping[str, Any], lrs: Sequence[float]) -> list[str]:
  lines = ["| loss | " + " | ".join(f"lr {lr:g}" for lr in lrs) + " | chosen |",
           "|---|" + "---|" * (len(lrs) + 1)]
  for key, t in tuned.items():
    by_lr = {row["lr"]: row for row in t.table}
    cells = []
    for lr in lrs:
      row = by_lr.get(lr)
      if row is None:
        cells.append("–")
      elif row["status"] == "diverged" or not math.isfinite(row["score"]):
        cells.append("diverged")
      else:
        text = f"{100 * row['score']:.2f}"
        cells.append(f"**{text}**" if lr == t.lr else text)
    lines.append(f"| {VARIANTS[key].title} | " + " | ".join(cells) + f" | {t.lr:g} |")
  return lines


def summary_markdown(stats, tuned, settings, verdict_text: str, figures: Sequence[str]) -> str:
  s = settings
  quick = " (quick mode)" if s["quick"] else ""
  model = "-".join(str(w) for w in (28 * 56, *s["hidden"], NUM_CLASSES))
  lines = [
      "## Multi-label digits: is sigmoid binary cross-entropy the right loss" + quick + "?",
      "",
      f"Data: images of two different MNIST digits side by side (28x56), label = the set of "
      f"both digits (multi-hot, two ones): {s['train_pairs']} training pairs from "
      f"{s['train_images']} MNIST training images, {s['test_pairs']} test pairs from "
      f"{s['test_images']} MNIST test images (`two_digit_mnist`, seed {s['data_seed']}). "
      f"Model: MLP {model} ReLU (flattened image), Adam with cosine decay, batch "
      f"{s['batch_size']}, {s['epochs']} epochs, seeds {s['seeds']}. Device: {s['device']}. "
      f"Wall time: {s['wall_seconds'] / 60:.1f} min.",
      "",
      "Losses: **sigmoid BCE** (`multilabel_bce`, ten independent sigmoids), "
      "**sigmoid-difference** (`sigmoid_difference`, mean |sigmoid(z) - t|) on the multi-hot "
      "targets, **softmax CE** on the normalized targets t / sum(t) (1/2 per digit; its minimum "
      "is log 2). Decoding: the two highest logits (top-2) for every loss; also sigmoid > 0.5 "
      "(threshold, no knowledge of the number of digits) for the two sigmoid losses. Metrics on "
      "the test pairs: exact-set accuracy (both digits right, nothing else), macro F1 and F1 per "
      "digit. Chance exact-set accuracy with top-2 is 1/45 = 2.2%.",
      "",
      f"Learning rate (same grid {list(s['lrs'])} for every loss): selected by the final "
      f"exact-set accuracy (top-2) of one seed ({s['seeds'][0]}) trained {s['select_epochs']} "
      f"epoch{'s' if s['select_epochs'] != 1 else ''} (cosine over those epochs) on pairs of "
      f"{s['select_train_images']} training images and scored on {s['val_pairs']} validation "
      f"pairs built only from {s['val_images']} held-out MNIST training images "
      "(`validation_split`, seed 0). The digit images are split BEFORE pairing so that no digit "
      "image of a training pair reappears in a validation pair (splitting the pairs would: each "
      "image is used about twice), like the test pairs, whose "
      "digits come from the MNIST test images. The test set is used for no choice.",
      "",
  ]
  if any(t.table for t in tuned.values()):
    lines += ["Validation exact-set accuracy % (top-2, 1 seed) per learning rate; chosen in bold:",
              "", *selection_table(tuned, s["lrs"]), ""]
  else:
    lines += [f"One learning rate given ({s['lrs'][0]:g}): no selection.", ""]
  lines += [
      "Test results after the last epoch, mean ± std over seeds (%):",
      "",
      "| loss | lr | exact-set (top-2) | macro F1 (top-2) | exact-set (threshold) "
      "| macro F1 (threshold) | digits predicted (threshold) | exactly two (threshold) "
      "| train loss | train s |",
      "|---|---|---|---|---|---|---|---|---|---|",
  ]
  for key, st in stats.items():
    div = "" if not st["diverged"] else f" ({len(st['diverged'])} seed(s) diverged)"
    lines.append(
        f"| {VARIANTS[key].title}{div} | {tuned[key].lr:g} | {fmt(st['exact_top2'])} "
        f"| {fmt(st['macro_f1_top2'])} | {fmt(st['exact_threshold'])} "
        f"| {fmt(st['macro_f1_threshold'])} | {fmt(st['count_threshold'])} "
        f"| {fmt(st['two_threshold'], 1)} | {fmt(st['train_loss'], 4)} "
        f"| {st['wall_seconds']:.0f} |")
  lines += ["", "F1 per digit on the test pairs (%, mean ± std over seeds):", "",
            "| loss | decoding | " + " | ".join(str(d) for d in DIGITS) + " |",
            "|---|---|" + "---|" * NUM_CLASSES]
  for key, st in stats.items():
    for dec, label in (("top2", "top-2"), ("threshold", "sigmoid > 0.5")):
      f1 = st[f"f1_{dec}"]
      if f1 is None:
        continue
      cells = [("n/a" if math.isnan(m) else f"{m:.1f} ± {sd:.1f}")
               for m, sd in zip(f1["mean"], f1["std"])]
      lines.append(f"| {VARIANTS[key].title} | {label} | " + " | ".join(cells) + " |")
  lines += [""]
  captions = {"curves.png": "test exact-set accuracy vs epoch per loss, top-2 and threshold "
                            "decoding (mean over seeds, min-max band)",
              "f1_digits.png": "test F1 per digit, top-2 decoding (mean over seeds)"}
  for path in figures:
    base = os.path.basename(path)
    lines += [f"![{captions.get(base, base)}]({base})", ""]
  lines += [f"Command: `{s['command']}`", "", "**Verdict.** " + verdict_text, ""]
  return "\n".join(lines)


def plot_curves(results, path: str) -> None:
  """curves.png: exact-set accuracy % vs epoch, top-2 (left) and threshold (right)."""
  import matplotlib  # pylint: disable=import-outside-toplevel

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  import matplotlib.ticker  # pylint: disable=import-outside-toplevel

  fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
  colors = {}
  for key, result in results.items():
    curve = 100.0 * result.curve("exact_top2")
    if curve.size:
      line = common.plot_band(axes[0], np.arange(1, len(curve) + 1), curve, VARIANTS[key].title)
      colors[key] = line.get_color()
  for key, result in results.items():
    if not VARIANTS[key].sigmoid:
      continue
    curve = 100.0 * result.curve("exact_threshold")
    if curve.size:
      common.plot_band(axes[1], np.arange(1, len(curve) + 1), curve, VARIANTS[key].title,
                       color=colors.get(key))
  axes[0].set_title("top-2 decoding (every loss)")
  axes[1].set_title("sigmoid > 0.5 decoding (sigmoid losses)")
  axes[0].set_ylabel("test exact-set accuracy %")
  for ax in axes:
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
      ax.legend()
  fig.suptitle("Two-digit MNIST: both digits right (mean over seeds, min-max band)")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def plot_f1(stats, path: str) -> None:
  """f1_digits.png: per-digit test F1 (top-2 decoding) per loss, grouped bars."""
  import matplotlib  # pylint: disable=import-outside-toplevel

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  fig, ax = plt.subplots(figsize=(10, 3.8))
  keys = list(stats)
  width = 0.8 / max(len(keys), 1)
  x = np.arange(NUM_CLASSES)
  for i, key in enumerate(keys):
    f1 = stats[key]["f1_top2"]
    ax.bar(x + (i - (len(keys) - 1) / 2) * width, np.nan_to_num(f1["mean"]), width,
           yerr=f1["std"], label=VARIANTS[key].title, capsize=2)
  ax.set_xticks(x)
  ax.set_xlabel("digit")
  ax.set_ylabel("test F1 % (top-2)")
  finite = [m for k in keys for m in stats[k]["f1_top2"]["mean"] if math.isfinite(m)]
  if finite:
    ax.set_ylim(max(0.0, min(finite) - 5.0), 100.0)
  ax.grid(True, axis="y", alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


# --------------------------------------------------------------------------- main


def _json_safe(row: Mapping[str, Any]) -> dict[str, Any]:
  """A selection-table row with non-finite numbers (a diverged rate scores -inf) as None."""
  return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
          for k, v in row.items()}


def _read_rows(path: str) -> list[dict[str, Any]]:
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  args = parse_args(argv)
  t_start = time.perf_counter()
  env = common.print_device()

  from jaxloss import train as jt  # pylint: disable=import-outside-toplevel
  from experiments import runs  # pylint: disable=import-outside-toplevel

  mnist = common.load_mnist_or_exit(args)
  n_train_images, n_test_images = len(mnist.train_labels), len(mnist.test_labels)
  if not 1 <= args.val_size <= n_train_images - 2:
    raise SystemExit(f"--val-size {args.val_size} must leave training images: there are "
                     f"{n_train_images}")
  t0 = time.perf_counter()
  data, val_data = build_data(mnist, train_size=args.train_size, test_size=args.test_size,
                              val_size=args.val_size, seed=args.data_seed)
  print(f"two-digit pairs: {len(data.train_labels)} train / {len(data.test_labels)} test; "
        f"selection: {len(val_data.train_labels)} train / {len(val_data.test_labels)} "
        f"validation pairs (built in {time.perf_counter() - t0:.1f} s)", flush=True)

  dev = env["device"]
  settings = {
      "quick": bool(args.quick), "losses": list(args.losses), "seeds": list(args.seeds),
      "lrs": list(args.lrs), "epochs": args.epochs, "select_epochs": args.select_epochs,
      "hidden": list(args.hidden), "batch_size": args.batch_size, "optimizer": "adam",
      "schedule": "cosine", "data_seed": args.data_seed,
      "train_images": n_train_images, "test_images": n_test_images,
      "train_pairs": args.train_size, "test_pairs": args.test_size,
      "val_images": args.val_size, "val_pairs": args.val_size,
      "select_train_images": n_train_images - args.val_size,
      "select_metric": SELECT_METRIC, "select_seed": args.seeds[0],
      "device": f"{dev['platform'].upper()} ({dev['device_kind']})",
      "command": " ".join(["python -m experiments.multilabel",
                           *(sys.argv[1:] if argv is None else argv)]),
  }
  describe_data = {k: settings[k] for k in (
      "data_seed", "train_images", "test_images", "train_pairs", "test_pairs", "val_images",
      "val_pairs")}
  config_json = {"environment": env, "args": vars(args), "settings": settings}
  os.makedirs(args.out, exist_ok=True)
  common.write_json(os.path.join(args.out, "config.json"), config_json)

  def make_spec_for(key):
    loss_fn, eval_fn = loss_fn_for(key), make_eval_fn(key)

    def make_spec(lr: float, stage: str):
      select = stage == "select"
      config = jt.TrainConfig(hidden=args.hidden, num_classes=NUM_CLASSES, optimizer="adam",
                              learning_rate=lr, schedule="cosine", batch_size=args.batch_size,
                              epochs=args.select_epochs if select else args.epochs)
      return runs.RunSpec(
          f"{key}-{stage}-lr{lr:g}", config, loss_fn, predict_top2, eval_fn,
          seeds=tuple(args.seeds[:1]) if select else tuple(args.seeds),
          describe={"experiment": "multilabel", "loss": key, "loss_description":
                    VARIANTS[key].description, "lr": lr, "stage": stage,
                    "data": describe_data, "split": "validation" if select else "test"})

    return make_spec

  per_loss = (len(args.lrs) * args.select_epochs if len(args.lrs) > 1 else 0) + args.epochs
  tuned: dict[str, Any] = {}
  with common.progress(per_loss * len(args.losses), "multilabel",
                       disable=args.no_progress) as bar:
    for key in args.losses:
      bar.set_postfix_str(VARIANTS[key].title)
      tuned[key] = runs.tune_and_run(make_spec_for(key), args.lrs, data, val_data, args.out,
                                     metric=SELECT_METRIC, bar=bar)

  # Every row of every run, selection runs included.
  rows = []
  for key, t in tuned.items():
    for entry in t.table:
      for r in _read_rows(os.path.join(args.out, "runs", entry["run_id"], "metrics.jsonl")):
        rows.append({**r, "stage": "select", "loss": key, "lr": entry["lr"]})
    for r in t.result.rows:
      rows.append({**r, "stage": "final", "loss": key, "lr": t.lr})
  common.write_text(os.path.join(args.out, "metrics.jsonl"), "".join(
      json.dumps(r, default=common.json_default) + "\n" for r in rows))

  results = {key: t.result for key, t in tuned.items()}
  stats = {key: variant_stats(key, results[key], args.epochs) for key in args.losses}
  for key, t in tuned.items():
    if t.result.status == "diverged":
      print(f"warning: {VARIANTS[key].title}: every seed diverged", flush=True)
  figures = [os.path.abspath(os.path.join(args.out, "curves.png")),
             os.path.abspath(os.path.join(args.out, "f1_digits.png"))]
  plot_curves(results, figures[0])
  plot_f1(stats, figures[1])

  verdict_text = verdict(stats, quick=args.quick)
  wall = time.perf_counter() - t_start
  settings["wall_seconds"] = wall
  settings["chosen_lrs"] = {key: t.lr for key, t in tuned.items()}
  markdown = summary_markdown(stats, tuned, settings, verdict_text, figures)
  summary = {
      "question": "Is sigmoid BCE the right loss for multi-label (two-digit) MNIST?",
      "quick": bool(args.quick), "settings": settings,
      "losses": {key: {"title": VARIANTS[key].title, "lr": tuned[key].lr,
                       "selection": [_json_safe(row) for row in tuned[key].table],
                       **stats[key]} for key in args.losses},
      "verdict": verdict_text,
  }
  common.write_text(os.path.join(args.out, "summary.md"), markdown)
  common.write_json(os.path.join(args.out, "summary.json"), summary)
  config_json["settings"] = settings
  common.write_json(os.path.join(args.out, "config.json"), config_json)
  print(markdown, flush=True)
  print(f"wrote {args.out}/ in {wall:.0f} s", flush=True)
  return {"summary_md": markdown, "figures": figures, "summary": summary, "wall_seconds": wall}


if __name__ == "__main__":
  main()
