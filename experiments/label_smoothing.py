"""Does label smoothing improve MNIST accuracy (clean and noisy labels), at the cost of confidence?

Question: label smoothing trains against ``(1 - alpha) * onehot + alpha / K``
instead of the one-hot label. Does that raise test accuracy when the training
labels are clean, and when 20% of them are wrong (symmetric noise)? And what
does it do to the model's confidence and calibration?

Protocol (the experiment suite's, issue #4):

* full MNIST (60k train / 10k test), the default MLP 784-512-512-10 ReLU,
  Adam with cosine decay to 0, batch 128;
* variants: ``alpha`` in {0, 0.05, 0.1, 0.2} (``jaxloss.get("label_smoothing_cross_entropy",
  alpha=...)``; ``alpha = 0`` is plain softmax cross-entropy) x training-label
  noise in {0%, 20%} (`experiments.datasets.symmetric_label_noise` on the 60k
  training labels, one fixed seed, applied BEFORE the validation split, so the
  validation labels are as noisy as the training labels; the test labels are
  always clean). The actually flipped fractions are recorded;
* every variant gets the same learning-rate grid (``--lrs``), selected on a
  validation split of 10k training images (``validation_split(size=10000,
  seed=0)``, never the test set) by its final-epoch validation accuracy: ONE
  seed (the first of ``--seeds``), ``--select-epochs`` epochs (cosine schedule
  over those epochs, default 3); the final run trains all seeds (default 3)
  for ``--epochs`` epochs (default 8, not 10, so that the default run fits its
  12-minute budget on a 2-core CPU: about 10.5 min estimated, see
  `estimate_seconds`) on all 60k (noisy) training images and is evaluated on
  the clean test set;
* after every epoch, on the test set: accuracy, 15-bin ECE, NLL, mean max
  probability (confidence) and the reliability-diagram bins (per-bin count,
  mean confidence, accuracy).

``--quick``: 2048 training / 512 test images, hidden (32,), alphas {0, 0.2},
both noise levels, one learning rate (no selection runs), 2 seeds, 2 epochs: a
smoke run whose numbers mean nothing (about 25 s here, most of it MNIST loading
and XLA compilation).

Outputs in ``--out``: ``config.json``, ``metrics.jsonl`` (every row of every
run, selection runs included; keys ``run``, ``stage``, ``alpha``,
``noise_rate``, ``lr``, ``variant``), ``summary.md`` (a report section with
the verdict), ``summary.json``, ``reliability.png``, ``accuracy_curves.png``,
``confidence_vs_alpha.png``; the runs themselves under ``runs/`` (resumable:
the same command again skips finished runs).

Example::

  JAXLOSS_MNIST_DIR=/work/shared/data/mnist python -m experiments.label_smoothing
  python -m experiments.label_smoothing --quick --out /tmp/ls_quick
  python -m experiments.label_smoothing --alphas 0,0.1 --noise-rates 0,0.4 --seeds 5
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import time
from typing import Any, Mapping, Sequence

import numpy as np

from experiments import common

__all__ = [
    "BIN_METRICS",
    "DEFAULT_ALPHAS",
    "DEFAULT_NOISE_RATES",
    "ECE_BINS",
    "QUICK",
    "QUICK_ALPHAS",
    "SCALAR_METRICS",
    "build_parser",
    "compare",
    "estimate_seconds",
    "eval_metrics",
    "main",
    "noise_verdict",
    "pool_bins",
    "prepare_data",
    "variant_id",
]

DEFAULT_ALPHAS = (0.0, 0.05, 0.1, 0.2)
DEFAULT_NOISE_RATES = (0.0, 0.2)
ECE_BINS = 15
NUM_CLASSES = 10
SCALAR_METRICS = ("test_accuracy", "test_ece", "test_nll", "test_confidence")
BIN_METRICS = ("test_bin_count", "test_bin_confidence", "test_bin_accuracy")
# 8 final epochs (not 10) keep the default run inside its 12-minute budget on the
# 2-core CPU: see `estimate_seconds`.
DEFAULTS = {"epochs": 8, "select_epochs": 3, "hidden": (512, 512), "val_size": 10000}
# Wall-time model on the 2-core CPU the suite is sized for (the default
# 784-512-512-10 MLP: 3 vmapped seeds on 60k images take about 5.2 s per epoch
# with the test evaluation, 1 seed on 50k about 1.6 s; measured by the suite):
# seconds per epoch = SEED_EPOCH_S * (seeds + SEED_OVERHEAD) * (N / 60000) * (width
# factor), plus COMPILE_S per run (XLA compiles every run afresh: about 5-6 CPU
# seconds measured here, mostly single-threaded).
SEED_EPOCH_S = 1.64
SEED_OVERHEAD = 0.17
COMPILE_S = 5.5
LOAD_S = 8.0
# --quick: every setting the user left at its default becomes this tiny one.
# --quick: every setting the user left at its default becomes this tiny one. Each
# run costs about 4-6 CPU seconds of XLA compilation whatever its size (the init
# and the epoch program), so the smoke run keeps to 4 runs: 2 alphas x 2 noise
# levels and a single learning rate (no selection runs; pass --lrs with two
# values to smoke-test the selection too).
QUICK_ALPHAS = (0.0, 0.2)
QUICK = {"train_subset": 2048, "test_subset": 512, "hidden": (32,), "epochs": 2,
         "select_epochs": 1, "seeds": (0, 1), "lrs": (3e-3,), "val_size": 512}


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="python -m experiments.label_smoothing",
      description="Label smoothing (alpha grid) x symmetric training-label noise on full MNIST "
                  "with the default MLP: test accuracy, ECE, NLL, confidence and reliability "
                  "diagrams, learning rate selected per variant on a validation split.",
      formatter_class=common.HelpFormatter)
  common.add_suite_args(parser, out="runs/label_smoothing")
  group = parser.add_argument_group("experiment")
  group.add_argument("--alphas", type=common.parse_floats,
                     default=",".join(f"{a:g}" for a in DEFAULT_ALPHAS),
                     help="label-smoothing strengths in [0, 1], comma-separated (0 = plain "
                          "cross-entropy, the baseline of the verdict); --quick: "
                          + ",".join(f"{a:g}" for a in QUICK_ALPHAS))
  group.add_argument("--noise-rates", type=common.parse_floats,
                     default=",".join(f"{r:g}" for r in DEFAULT_NOISE_RATES),
                     help="fractions of the training labels flipped to another class, "
                          "comma-separated, in [0, 1)")
  group.add_argument("--noise-seed", type=int, default=0,
                     help="seed of the label noise (one noisy label set for every variant)")
  group.add_argument("--epochs", type=int, default=None,
                     help=f"epochs of the final runs (default {DEFAULTS['epochs']}; --quick: "
                          f"{QUICK['epochs']})")
  group.add_argument("--select-epochs", type=int, default=None,
                     help=f"epochs of each learning-rate selection run (default "
                          f"{DEFAULTS['select_epochs']}; --quick: {QUICK['select_epochs']})")
  group.add_argument("--hidden", type=common.parse_ints, default=None,
                     help="hidden widths, comma-separated (default 512,512; --quick: 32)")
  group.add_argument("--batch-size", type=int, default=128, help="training batch size")
  group.add_argument("--val-size", type=int, default=None,
                     help=f"validation images held out of the training set for the selection "
                          f"(default {DEFAULTS['val_size']}; --quick: {QUICK['val_size']})")
  return parser


def _resolve(args: argparse.Namespace, parser: argparse.ArgumentParser) -> argparse.Namespace:
  """Fills the None defaults, applies --quick to settings left at their default, checks."""
  for key, value in DEFAULTS.items():
    if getattr(args, key) is None:
      setattr(args, key, QUICK[key] if args.quick else value)
  if args.quick:
    if args.seeds == common.parse_seeds(parser.get_default("seeds")):
      args.seeds = QUICK["seeds"]
    if args.lrs == common.parse_floats(parser.get_default("lrs")):
      args.lrs = QUICK["lrs"]
    if args.alphas == common.parse_floats(parser.get_default("alphas")):
      args.alphas = QUICK_ALPHAS
    for key in ("train_subset", "test_subset"):
      if getattr(args, key) is None:
        setattr(args, key, QUICK[key])
  for name in ("epochs", "select_epochs", "val_size", "batch_size"):
    if getattr(args, name) < 1:
      parser.error(f"--{name.replace('_', '-')} must be a positive integer")
  if any(not 0.0 <= a <= 1.0 for a in args.alphas) or len(set(args.alphas)) != len(args.alphas):
    parser.error(f"--alphas must be distinct values in [0, 1], got {args.alphas}")
  if (any(not 0.0 <= r < 1.0 for r in args.noise_rates)
      or len(set(args.noise_rates)) != len(args.noise_rates)):
    parser.error(f"--noise-rates must be distinct values in [0, 1), got {args.noise_rates}")
  if any(lr <= 0 for lr in args.lrs):
    parser.error(f"--lrs must be positive, got {args.lrs}")
  args.alphas = tuple(sorted(args.alphas))
  args.noise_rates = tuple(sorted(args.noise_rates))
  return args


# --------------------------------------------------------------------------- pure pieces


def estimate_seconds(*, variants: int, lrs: int, seeds: int, epochs: int, select_epochs: int,
                     train_examples: int = 60000, val_size: int = 10000,
                     hidden: Sequence[int] = (512, 512)) -> float:
  """Rough wall seconds of a fresh run of the whole experiment on the suite's 2-core CPU."""
  sizes = (784, *hidden, NUM_CLASSES)
  params = sum(a * b + b for a, b in zip(sizes, sizes[1:]))
  scale = params / (784 * 512 + 512 + 512 * 512 + 512 + 512 * 10 + 10)

  def epoch(n_seeds, n):
    return SEED_EPOCH_S * (n_seeds + SEED_OVERHEAD) * (n / 60000) * scale

  select_runs = lrs if lrs > 1 else 0
  per_variant = (epochs * epoch(seeds, train_examples)
                 + select_runs * select_epochs * epoch(1, train_examples - val_size)
                 + (select_runs + 1) * COMPILE_S)
  return LOAD_S + variants * per_variant


def variant_id(alpha: float, noise_rate: float) -> str:
  """Run-id stem of a variant, e.g. ``a0.05-noise0.2``."""
  return f"a{alpha:g}-noise{noise_rate:g}"


def eval_metrics(logits, labels, *, num_bins: int = ECE_BINS) -> dict[str, Any]:
  """The per-epoch metrics of the evaluation split (pure JAX; runs inside the epoch program).

  Args:
    logits: ``[N, C]`` logits.
    labels: ``[N]`` integer labels (clean test labels, or the noisy validation
      labels in the selection runs).
    num_bins: equal-width confidence bins of ECE and the reliability diagram.

  Returns:
    ``test_accuracy``, ``test_ece``, ``test_nll``, ``test_confidence`` (mean max
    softmax probability): scalars; ``test_bin_count``, ``test_bin_confidence``,
    ``test_bin_accuracy``: ``[num_bins]`` (`jaxloss.calibration_bins`).
  """
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

  import jaxloss  # pylint: disable=import-outside-toplevel

  counts, conf, acc = jaxloss.calibration_bins(logits, labels, num_bins=num_bins)
  return {
      "test_accuracy": jnp.mean(jaxloss.accuracy(logits, labels)),
      "test_ece": jaxloss.expected_calibration_error(logits, labels, num_bins=num_bins),
      "test_nll": jnp.mean(jaxloss.negative_log_likelihood(logits, labels)),
      "test_confidence": jnp.mean(jnp.max(jax.nn.softmax(logits, axis=-1), axis=-1)),
      "test_bin_count": counts,
      "test_bin_confidence": conf,
      "test_bin_accuracy": acc,
  }


def pool_bins(counts_SxB, conf_SxB, acc_SxB) -> dict[str, list[float]]:
  """Reliability bins of several seeds pooled, as if all their test predictions were one set.

  Per bin: total count, and count-weighted mean confidence and accuracy
  (0 for a bin empty in every seed). Seeds with any NaN (diverged) are left out.
  """
  n = np.asarray(counts_SxB, np.float64)
  c = np.asarray(conf_SxB, np.float64)
  a = np.asarray(acc_SxB, np.float64)
  ok = np.all(np.isfinite(n), axis=1) & np.all(np.isfinite(c), axis=1) & np.all(
      np.isfinite(a), axis=1)
  n, c, a = n[ok], c[ok], a[ok]
  total = n.sum(axis=0)
  with np.errstate(invalid="ignore", divide="ignore"):
    conf = np.where(total > 0, (n * c).sum(axis=0) / np.maximum(total, 1), 0.0)
    acc = np.where(total > 0, (n * a).sum(axis=0) / np.maximum(total, 1), 0.0)
  return {"count": total.tolist(), "confidence": conf.tolist(), "accuracy": acc.tolist(),
          "seeds_pooled": int(ok.sum())}


def prepare_data(data, noise_rate: float, *, noise_seed: int, val_size: int,
                 val_seed: int = 0):
  """Noisy training labels, the train/test data, the validation split, and the noise record.

  The noise flips ``round(noise_rate * N)`` of the N training labels (test
  labels untouched), then the validation split is carved from the noisy
  training set, so its labels are noisy too.

  Returns:
    ``(train_test, train_val, info)``: `Mnist` with noisy training and clean
    test labels; `Mnist` of the noisy training set split into train and
    validation parts; and a dict with the flipped counts and fractions (all,
    training part, validation part).
  """
  from experiments import datasets  # pylint: disable=import-outside-toplevel
  from jaxloss.train import Mnist, validation_split  # pylint: disable=import-outside-toplevel

  labels = np.asarray(data.train_labels)
  n = labels.shape[0]
  if noise_rate > 0:
    noisy, flipped = datasets.symmetric_label_noise(labels, rate=noise_rate,
                                                    num_classes=NUM_CLASSES, seed=noise_seed)
  else:
    noisy, flipped = labels.astype(np.int32), np.zeros(n, bool)
  train_test = Mnist(data.train_images, noisy, data.test_images, data.test_labels)
  train_val = validation_split(train_test, size=val_size, seed=val_seed)
  # The same permutation applied to the flip mask: where the flips ended up.
  mask = validation_split(
      Mnist(np.zeros((n, 1), np.uint8), flipped.astype(np.int32), np.zeros((0, 1), np.uint8),
            np.zeros(0, np.int32)), size=val_size, seed=val_seed)
  info = {
      "noise_rate": noise_rate, "noise_seed": noise_seed, "train_labels": n,
      "flipped": int(flipped.sum()), "flipped_fraction": float(flipped.mean()) if n else 0.0,
      "flipped_fraction_train_part": float(mask.train_labels.mean()),
      "flipped_fraction_validation": float(mask.test_labels.mean()),
  }
  return train_test, train_val, info


def _finite(values) -> np.ndarray:
  x = np.asarray(values, np.float64)
  return x[np.isfinite(x)]


def compare(base, other) -> dict[str, Any]:
  """``other`` minus ``base`` (values per seed): the difference of means and its uncertainty.

  Returns:
    ``delta`` (difference of the means), ``se`` (standard error of that
    difference, ``sqrt(s_a^2/n_a + s_b^2/n_b)``), ``spread`` (the larger of the
    two seed standard deviations) and ``clear``: True when ``|delta| >= 2 *
    spread`` (the suite's rule; a gap inside the seeds' spread is "no clear
    difference") and both sides have at least 2 seeds.
  """
  a, b = _finite(base), _finite(other)
  if a.size == 0 or b.size == 0:
    return {"delta": math.nan, "se": math.nan, "spread": math.nan, "clear": False}
  ma, sa = common.mean_std(a)
  mb, sb = common.mean_std(b)
  se = math.sqrt(sa ** 2 / a.size + sb ** 2 / b.size)
  spread = max(sa, sb)
  clear = a.size >= 2 and b.size >= 2 and abs(mb - ma) >= 2 * spread and mb != ma
  return {"delta": mb - ma, "se": se, "spread": spread, "clear": bool(clear)}


def _noise_label(rate: float) -> str:
  return "clean labels" if rate == 0 else f"{100 * rate:g}% noisy training labels"


def noise_verdict(rate: float, variants: Sequence[Mapping[str, Any]]) -> str:
  """The verdict for one noise level, from the per-seed final test metrics of its variants.

  Args:
    rate: the noise rate.
    variants: one dict per alpha with ``alpha`` and ``finals`` (metric name ->
      per-seed values: accuracy as a fraction, ECE, NLL, confidence).

  Returns:
    One or more sentences (no blank line): the accuracy effect of each alpha
    against the smallest alpha (plain cross-entropy when it is 0), with its
    uncertainty, and the confidence / calibration effect.
  """
  variants = sorted(variants, key=lambda v: v["alpha"])
  head = _noise_label(rate)
  head = head[0].upper() + head[1:]
  if len(variants) < 2:
    return f"{head}: only one alpha was run, nothing to compare."
  base, others = variants[0], variants[1:]
  base_name = "plain cross-entropy" if base["alpha"] == 0 else f"alpha={base['alpha']:g}"

  def pct(v):
    return 100.0 * np.asarray(v["finals"]["test_accuracy"], np.float64)

  # Accuracy: every alpha against the baseline.
  acc = [(v["alpha"], compare(pct(base), pct(v))) for v in others]
  parts = []
  for alpha, c in acc:
    tag = (" (clear gain)" if c["delta"] > 0 else " (clear loss)") if c["clear"] else ""
    parts.append(f"alpha={alpha:g} {c['delta']:+.2f} ± {c['se']:.2f}{tag}")
  gains = [(a, c) for a, c in acc if c["clear"] and c["delta"] > 0]
  losses = [(a, c) for a, c in acc if c["clear"] and c["delta"] < 0]
  base_acc = common.mean_std(_finite(pct(base)))
  if gains:
    a, c = max(gains, key=lambda t: t[1]["delta"])
    lead = (f"label smoothing improves test accuracy: alpha={a:g} beats {base_name} "
            f"({base_acc[0]:.2f} ± {base_acc[1]:.2f}%) by {c['delta']:.2f} ± {c['se']:.2f} "
            "points")
    if losses:
      lead += ", though " + ", ".join(f"alpha={x:g}" for x, _ in losses) + " is clearly worse"
  elif losses:
    lead = (f"label smoothing lowers test accuracy (clearly for "
            + ", ".join(f"alpha={x:g}" for x, _ in losses)
            + f") against {base_name} ({base_acc[0]:.2f} ± {base_acc[1]:.2f}%)")
  else:
    lead = (f"no clear difference in test accuracy between {base_name} "
            f"({base_acc[0]:.2f} ± {base_acc[1]:.2f}%) and label smoothing")
  text = (f"{head}: {lead}; change in points vs {base_name}, mean ± standard error over seeds: "
          + "; ".join(parts) + ".")

  # Confidence and calibration: baseline vs the strongest smoothing, plus the best ECE.
  def m(v, key):
    return common.mean_std(_finite(v["finals"][key]))

  top = variants[-1]
  conf0, conf1 = m(base, "test_confidence")[0], m(top, "test_confidence")[0]
  acc0, acc1 = base_acc[0] / 100, common.mean_std(_finite(pct(top)))[0] / 100
  confs = [m(v, "test_confidence")[0] for v in variants]
  monotone = all(x >= y for x, y in zip(confs, confs[1:]))
  conf_cmp = compare(base["finals"]["test_confidence"], top["finals"]["test_confidence"])
  direction = "falls" if conf1 < conf0 else "rises"
  text += (f" Mean confidence {direction} from {conf0:.3f} ({base_name}) to {conf1:.3f} at "
           f"alpha={top['alpha']:g} ({conf_cmp['delta']:+.3f} ± {conf_cmp['se']:.3f}"
           + (", clear" if conf_cmp["clear"] else ", within the seeds' spread") + ")"
           + (", monotonically in alpha" if monotone and len(variants) > 2 and conf1 < conf0
              else ""))

  def side(conf, accuracy):
    gap = conf - accuracy
    if abs(gap) < 0.005:
      return "about as confident as accurate"
    return "over-confident" if gap > 0 else "under-confident"

  side0, side1 = side(conf0, acc0), side(conf1, acc1)
  if side0 == side1:
    text += (f"; against its accuracy the model is {side0} with either (confidence vs "
             f"accuracy {conf0:.3f} vs {acc0:.3f}, then {conf1:.3f} vs {acc1:.3f}).")
  else:
    text += (f"; against its accuracy the model goes from {side0} ({conf0:.3f} vs "
             f"{acc0:.3f}) to {side1} ({conf1:.3f} vs {acc1:.3f}).")
  ece0 = m(base, "test_ece")
  ece_cmp = [(v["alpha"], compare(base["finals"]["test_ece"], v["finals"]["test_ece"]),
              m(v, "test_ece")) for v in others]
  better = [t for t in ece_cmp if t[1]["clear"] and t[1]["delta"] < 0]
  worse = [t for t in ece_cmp if t[1]["clear"] and t[1]["delta"] > 0]
  if better:
    best_alpha, _, best_ece = min(better, key=lambda t: t[2][0])
    ece_text = (f"ECE improves from {100 * ece0[0]:.2f} ± {100 * ece0[1]:.2f}% to "
                f"{100 * best_ece[0]:.2f} ± {100 * best_ece[1]:.2f}% at alpha={best_alpha:g}")
  else:
    ece_text = (f"no alpha clearly lowers ECE below {base_name}'s {100 * ece0[0]:.2f} ± "
                f"{100 * ece0[1]:.2f}%")
  if worse:
    worst_alpha, _, worst_ece = max(worse, key=lambda t: t[2][0])
    ece_text += (", while " + ", ".join(f"alpha={t[0]:g}" for t in worse)
                 + f" clearly worsen{'s' if len(worse) == 1 else ''} it (to "
                 f"{100 * worst_ece[0]:.2f} ± {100 * worst_ece[1]:.2f}% at "
                 f"alpha={worst_alpha:g})")
  nll0 = m(base, "test_nll")
  nll_best = min(((v["alpha"], m(v, "test_nll")) for v in others), key=lambda t: t[1][0])
  nll_cmp = compare(base["finals"]["test_nll"],
                    next(v for v in others if v["alpha"] == nll_best[0])["finals"]["test_nll"])
  if nll_cmp["clear"] and nll_cmp["delta"] < 0:
    nll_text = (f"test NLL is lowest at alpha={nll_best[0]:g} ({nll_best[1][0]:.3f} vs "
                f"{nll0[0]:.3f})")
  else:
    nll_text = f"no alpha clearly lowers test NLL below {nll0[0]:.3f}"
  text += f" Calibration: {ece_text}; {nll_text}."
  return text


# --------------------------------------------------------------------------- figures


def _plt():
  import matplotlib  # pylint: disable=import-outside-toplevel

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  return plt


def plot_reliability(variants, noise_rates, path: str) -> None:
  """reliability.png: one panel per noise level, one line per alpha (bins pooled over seeds)."""
  plt = _plt()
  fig, axes = plt.subplots(1, len(noise_rates), figsize=(5.2 * len(noise_rates), 4.6),
                           squeeze=False)
  for ax, rate in zip(axes[0], noise_rates):
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect calibration")
    for v in (v for v in variants if v["noise_rate"] == rate):
      bins = v["reliability"]
      count = np.asarray(bins["count"])
      keep = count > 0
      ax.plot(np.asarray(bins["confidence"])[keep], np.asarray(bins["accuracy"])[keep],
              marker="o", ms=4, label=f"alpha={v['alpha']:g}")
    ax.set_xlim(0, 1.01)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("mean confidence in bin")
    ax.set_ylabel("accuracy in bin (clean test labels)")
    ax.set_title(f"{_noise_label(rate)}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
  fig.suptitle(f"Reliability diagram, final epoch, {ECE_BINS} equal-width bins, "
               "bins pooled over seeds (empty bins omitted)")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_accuracy_curves(variants, noise_rates, path: str) -> None:
  """accuracy_curves.png: test accuracy vs epoch, one panel per noise level, band = seeds."""
  plt = _plt()
  from matplotlib.ticker import MaxNLocator  # pylint: disable=import-outside-toplevel
  fig, axes = plt.subplots(1, len(noise_rates), figsize=(5.2 * len(noise_rates), 4.2),
                           squeeze=False, sharey=True)
  for ax, rate in zip(axes[0], noise_rates):
    for v in (v for v in variants if v["noise_rate"] == rate):
      curve = 100.0 * np.asarray(v["accuracy_curve"], np.float64)
      common.plot_band(ax, np.arange(1, curve.shape[0] + 1), curve, f"alpha={v['alpha']:g}")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(_noise_label(rate))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
  axes[0][0].set_ylabel("test accuracy % (clean test labels)")
  fig.suptitle("Test accuracy per epoch: mean over seeds, min-max band")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_confidence_vs_alpha(variants, noise_rates, path: str) -> None:
  """confidence_vs_alpha.png: confidence and accuracy vs alpha; ECE vs alpha (error bar = std)."""
  plt = _plt()
  fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
  for rate in noise_rates:
    vs = sorted((v for v in variants if v["noise_rate"] == rate), key=lambda v: v["alpha"])
    x = [v["alpha"] for v in vs]
    conf = [v["metrics"]["test_confidence"] for v in vs]
    acc = [v["metrics"]["test_accuracy"] for v in vs]
    ece = [v["metrics"]["test_ece"] for v in vs]
    line = axes[0].errorbar(x, [c[0] for c in conf], yerr=[c[1] for c in conf], marker="o",
                            capsize=3, label=f"confidence, {_noise_label(rate)}")
    color = line[0].get_color()
    axes[0].errorbar(x, [a[0] for a in acc], yerr=[a[1] for a in acc], marker="s", ls="--",
                     capsize=3, color=color, label=f"accuracy, {_noise_label(rate)}")
    axes[1].errorbar(x, [100 * e[0] for e in ece], yerr=[100 * e[1] for e in ece], marker="o",
                     capsize=3, color=color, label=_noise_label(rate))
  axes[0].set_ylabel("mean max probability / accuracy (test)")
  axes[1].set_ylabel(f"ECE % ({ECE_BINS} bins, test)")
  for ax in axes:
    ax.set_xlabel("label smoothing alpha")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
  fig.suptitle("Final epoch, mean ± std over seeds")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


# --------------------------------------------------------------------------- report


def _ms(pair, digits=2, scale=1.0) -> str:
  mean, std = pair
  if not math.isfinite(mean):
    return "n/a"
  return f"{scale * mean:.{digits}f} ± {scale * std:.{digits}f}"


def summary_markdown(summary: Mapping[str, Any]) -> str:
  s = summary["settings"]
  variants = summary["variants"]
  wall_min, train_min = summary["wall_seconds"] / 60, summary["train_seconds"] / 60
  compile_min = summary.get("compile_seconds", 0.0) / 60
  estimate_min = s.get("estimated_seconds_2core_cpu", math.nan) / 60
  lrs = s["lrs"]
  if len(lrs) > 1:
    protocol = (f"Protocol: every variant gets the learning-rate grid "
                f"{', '.join(f'{lr:g}' for lr in lrs)}, selected by final validation accuracy "
                f"on {s['val_size']} held-out training images (noisy where the training labels "
                f"are), with one seed ({s['seeds'][0]}) and {s['select_epochs']} epochs (cosine "
                "over those epochs); ")
  else:
    protocol = (f"Protocol: a single learning rate ({lrs[0]:g}) was given, so no selection "
                "runs; ")
  lines = [
      "## Does label smoothing improve MNIST accuracy, with clean and with noisy training "
      "labels, and at what cost in confidence?" + (" (quick mode)" if s["quick"] else ""),
      "",
      (f"Setup: MNIST, {s['train_examples']} training images (labels with symmetric noise "
       f"where stated) and {s['test_examples']} test images (clean labels); MLP {s['model']}; "
       f"Adam, cosine decay to 0, batch {s['batch_size']}. Loss: cross-entropy against "
       "label-smoothed targets (1 - alpha) onehot + alpha / 10 "
       "(`jaxloss.get(\"label_smoothing_cross_entropy\", alpha=...)`; alpha = 0 is plain "
       "softmax cross-entropy). Label noise: `symmetric_label_noise` (noise seed "
       f"{s['noise_seed']}) on the training labels before the validation split, so the "
       "validation labels are noisy too. " + protocol +
       f"the final runs use seeds {s['seeds']} and {s['epochs']} epochs on all "
       f"{s['train_examples']} training images. Device: {s['device']}. Wall time "
       f"{wall_min:.1f} min for this invocation (a fresh run was estimated at "
       f"{estimate_min:.1f} min on a 2-core CPU); the runs took {train_min:.1f} min of "
       f"training and evaluation plus {compile_min:.1f} min of XLA compilation (in the "
       "sessions that trained them: finished runs are read back, not retrained)."
       + (" **Quick mode: tiny data, model and epochs; the numbers are meaningless.**"
          if s["quick"] else "")),
      "",
      f"Command: `{s['command']}`",
      "",
      "Label noise actually applied (fraction of labels flipped):",
      "",
      "| noise rate | flipped (all training labels) | in the training part | in the validation "
      "part |",
      "|---|---|---|---|",
  ]
  for info in summary["noise"]:
    lines.append(f"| {info['noise_rate']:g} | {info['flipped']} / {info['train_labels']} = "
                 f"{100 * info['flipped_fraction']:.2f}% | "
                 f"{100 * info['flipped_fraction_train_part']:.2f}% | "
                 f"{100 * info['flipped_fraction_validation']:.2f}% |")
  if len(lrs) > 1:
    lines += [
        "",
        f"Learning-rate selection (validation accuracy % after {s['select_epochs']} epochs, "
        "one seed; **bold** = chosen):",
        "",
        "| noise | alpha | " + " | ".join(f"lr {lr:g}" for lr in lrs) + " |",
        "|---|---|" + "---|" * len(lrs),
    ]
    for v in variants:
      cells = []
      by_lr = {row["lr"]: row for row in v["selection"]}
      for lr in lrs:
        row = by_lr.get(lr)
        if row is None:
          cells.append("-")
          continue
        text = ("diverged" if row["status"] == "diverged" or not math.isfinite(row["score"])
                else f"{100 * row['score']:.2f}")
        cells.append(f"**{text}**" if lr == v["lr"] else text)
      lines.append(f"| {v['noise_rate']:g} | {v['alpha']:g} | " + " | ".join(cells) + " |")
  lines += [
      "",
      f"Final test metrics after {s['epochs']} epochs, mean ± std over {len(s['seeds'])} seeds "
      f"(confidence = mean max softmax probability; ECE with {ECE_BINS} equal-width bins; train "
      "accuracy is on the training labels the model saw, noisy where stated, averaged over the "
      "last epoch's steps):",
      "",
      "| noise | alpha | test accuracy % | ECE % | NLL | confidence | train accuracy % | lr |",
      "|---|---|---|---|---|---|---|---|",
  ]
  for v in variants:
    mt = v["metrics"]
    lines.append(
        f"| {v['noise_rate']:g} | {v['alpha']:g} | {_ms(mt['test_accuracy'], 2, 100)} "
        f"| {_ms(mt['test_ece'], 2, 100)} | {_ms(mt['test_nll'], 3)} "
        f"| {_ms(mt['test_confidence'], 3)} | {_ms(mt['train_accuracy'], 2, 100)} "
        f"| {v['lr']:g} |")
  lines += [
      "",
      "Differences against the smallest alpha at the same noise level (plain cross-entropy), "
      "mean ± standard error of the difference; \"clear\" = |difference| ≥ 2 × the larger seed "
      "standard deviation of the two:",
      "",
      "| noise | alpha | Δ test accuracy (points) | Δ ECE (points) | Δ NLL | Δ confidence |",
      "|---|---|---|---|---|---|",
  ]
  for d in summary["differences"]:
    def cell(c, scale=1.0, digits=2):
      if not math.isfinite(c["delta"]):
        return "n/a"
      return (f"{scale * c['delta']:+.{digits}f} ± {scale * c['se']:.{digits}f}"
              + (" (clear)" if c["clear"] else ""))
    lines.append(f"| {d['noise_rate']:g} | {d['alpha']:g} | {cell(d['test_accuracy'], 100)} "
                 f"| {cell(d['test_ece'], 100)} | {cell(d['test_nll'], 1, 3)} "
                 f"| {cell(d['test_confidence'], 1, 3)} |")
  diverged = [v for v in variants if v["diverged"] or v["status"] != "done"]
  if diverged:
    lines += ["", "Diverged: " + "; ".join(
        f"{variant_id(v['alpha'], v['noise_rate'])} (seed: epoch {v['diverged']})"
        for v in diverged) + "."]
  bad_select = [f"{variant_id(v['alpha'], v['noise_rate'])} lr {row['lr']:g}"
                for v in variants for row in v["selection"] if row["status"] != "done"]
  if bad_select:
    lines += ["", "Selection runs that diverged: " + ", ".join(bad_select) + "."]
  lines += [
      "",
      "![Reliability diagram at the final epoch: accuracy vs confidence per bin, one panel per "
      "noise level, one line per alpha, bins pooled over seeds](reliability.png)",
      "",
      "![Test accuracy vs epoch, mean over seeds with min-max band](accuracy_curves.png)",
      "",
      "![Mean confidence and accuracy vs alpha, and ECE vs alpha](confidence_vs_alpha.png)",
      "",
      "Reliability bins are pooled over seeds: per bin, the counts are summed and the mean "
      "confidence and accuracy are count-weighted over the seeds' test predictions.",
      "",
      "**Verdict.** " + " ".join(summary["verdicts"][str(r)] for r in s["noise_rates"]),
  ]
  return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  parser = build_parser()
  args = _resolve(parser.parse_args(argv), parser)
  t_start = time.perf_counter()
  env = common.print_device()

  import jaxloss  # pylint: disable=import-outside-toplevel
  from jaxloss import train as jt  # pylint: disable=import-outside-toplevel
  from experiments import runs  # pylint: disable=import-outside-toplevel

  data = common.load_mnist_or_exit(args)
  n_train = int(data.train_labels.shape[0])
  if not 1 <= args.val_size <= n_train - 1:
    raise SystemExit(f"--val-size must be in [1, {n_train - 1}], got {args.val_size}")
  out = args.out
  os.makedirs(out, exist_ok=True)
  dev = env["device"]
  model = "-".join(str(w) for w in (784, *args.hidden, NUM_CLASSES)) + " ReLU"
  settings = {
      "quick": bool(args.quick), "alphas": list(args.alphas),
      "noise_rates": list(args.noise_rates), "noise_seed": args.noise_seed,
      "seeds": list(args.seeds), "lrs": list(args.lrs), "epochs": args.epochs,
      "select_epochs": args.select_epochs, "select_seeds": [args.seeds[0]],
      "hidden": list(args.hidden), "model": model, "batch_size": args.batch_size,
      "val_size": args.val_size, "val_seed": 0, "optimizer": "adam", "schedule": "cosine",
      "train_examples": n_train, "test_examples": int(data.test_labels.shape[0]),
      "ece_bins": ECE_BINS, "selection_metric": "final validation accuracy (mean over the "
      "selection seed)", "device": f"{dev['platform'].upper()} ({dev['device_kind']})",
      "command": shlex.join(["python", "-m", "experiments.label_smoothing",
                             *(sys.argv[1:] if argv is None else argv)]),
  }
  estimate = estimate_seconds(
      variants=len(args.alphas) * len(args.noise_rates), lrs=len(args.lrs),
      seeds=len(args.seeds), epochs=args.epochs, select_epochs=args.select_epochs,
      train_examples=n_train, val_size=args.val_size, hidden=args.hidden)
  settings["estimated_seconds_2core_cpu"] = estimate
  print(f"{len(args.alphas) * len(args.noise_rates)} variants, lr grid "
        f"{', '.join(f'{lr:g}' for lr in args.lrs)}, seeds {list(args.seeds)}, "
        f"{args.select_epochs} selection + {args.epochs} final epochs; estimated "
        f"{estimate / 60:.1f} min on a 2-core CPU for a fresh run", flush=True)
  config = {"environment": env, "args": vars(args), "settings": settings}
  common.write_json(os.path.join(out, "config.json"), config)

  def make_config(lr: float, epochs: int):
    return jt.TrainConfig(hidden=args.hidden, activation="relu", num_classes=NUM_CLASSES,
                          optimizer="adam", learning_rate=lr, schedule="cosine",
                          batch_size=args.batch_size, epochs=epochs)

  select_total = args.select_epochs * len(args.lrs) if len(args.lrs) > 1 else 0
  total = len(args.alphas) * len(args.noise_rates) * (select_total + args.epochs)
  rows_all, variants, noise_infos = [], [], []
  select_seconds = 0.0
  with common.progress(total, "label smoothing", disable=args.no_progress) as bar:
    for rate in args.noise_rates:
      train_test, train_val, info = prepare_data(
          data, rate, noise_seed=args.noise_seed, val_size=args.val_size)
      noise_infos.append(info)
      for alpha in args.alphas:
        loss = (jaxloss.get("softmax_cross_entropy") if alpha == 0
                else jaxloss.get("label_smoothing_cross_entropy", alpha=alpha))
        vid = variant_id(alpha, rate)
        keys = {"variant": vid, "alpha": alpha, "noise_rate": rate}

        def make_spec(lr, stage, loss=loss, vid=vid, alpha=alpha, rate=rate, info=info):
          select = stage == "select"
          describe = {
              "experiment": "label_smoothing", "loss": loss.name,
              "hyperparams": dict(loss.hyperparams), "alpha": alpha, "noise_rate": rate,
              "noise_seed": args.noise_seed, "flipped": info["flipped"], "stage": stage,
              "lr": lr, "train_subset": args.train_subset, "test_subset": args.test_subset,
              "val_size": args.val_size, "val_seed": 0,
              "eval_split": "validation (noisy labels where noise > 0)" if select
                            else "test (clean labels)",
              "ece_bins": ECE_BINS}
          return runs.RunSpec(
              f"{vid}-{stage}-lr{lr:g}",
              make_config(lr, args.select_epochs if select else args.epochs),
              loss.loss_from_labels, loss.predict, eval_fn=eval_metrics,
              seeds=tuple(args.seeds[:1]) if select else tuple(args.seeds), describe=describe)

        bar.set_postfix_str(vid)
        tuned = runs.tune_and_run(make_spec, args.lrs, train_test, train_val, out, bar=bar)
        for row in tuned.table:  # Read back (already finished): their rows for metrics.jsonl.
          sel = runs.run(make_spec(row["lr"], "select"), train_val, out)
          select_seconds += sel.wall_seconds
          rows_all += [{**r, "stage": "select", "lr": row["lr"], **keys} for r in sel.rows]
        result = tuned.result
        rows_all += [{**r, "stage": "final", "lr": tuned.lr, **keys} for r in result.rows]
        finals = {k: result.final(k).tolist() for k in SCALAR_METRICS + ("train_accuracy",)}
        last = [result.last_row(seed) for seed in result.seeds]
        last = [r for r in last if r is not None and r["epoch"] == result.epochs
                and not r.get("diverged")]
        bins = pool_bins(*[[r[k] for r in last] if last else np.zeros((0, ECE_BINS))
                           for k in BIN_METRICS])
        variants.append({
            "variant": vid, "alpha": alpha, "noise_rate": rate, "loss": loss.name,
            "lr": tuned.lr,
            "selection": [{k: row[k] for k in ("lr", "score", "std", "status", "run_id")}
                          for row in tuned.table],
            "status": result.status, "diverged": result.diverged,
            "wall_seconds": result.wall_seconds, "finals": finals,
            "metrics": {k: common.mean_std(_finite(v)) for k, v in finals.items()},
            "accuracy_curve": result.curve("test_accuracy").tolist(),
            "reliability": bins,
        })

  differences, verdicts = [], {}
  for rate in args.noise_rates:
    vs = [v for v in variants if v["noise_rate"] == rate]
    verdicts[str(rate)] = noise_verdict(rate, vs)
    base = vs[0]
    for v in vs[1:]:
      differences.append({"noise_rate": rate, "alpha": v["alpha"], "baseline_alpha":
                          base["alpha"], **{k: compare(base["finals"][k], v["finals"][k])
                                            for k in SCALAR_METRICS}})
  train_seconds = sum(v["wall_seconds"] for v in variants) + select_seconds
  per_epoch: dict[tuple[str, int], float] = {}  # (run, epoch) -> compile seconds (max over seeds)
  for r in rows_all:
    key = (r["run"], r["epoch"])
    per_epoch[key] = max(per_epoch.get(key, 0.0), r.get("compile_seconds", 0.0))
  compile_seconds = sum(per_epoch.values())
  figures = [os.path.abspath(os.path.join(out, name)) for name in
             ("reliability.png", "accuracy_curves.png", "confidence_vs_alpha.png")]
  plot_reliability(variants, args.noise_rates, figures[0])
  plot_accuracy_curves(variants, args.noise_rates, figures[1])
  plot_confidence_vs_alpha(variants, args.noise_rates, figures[2])

  wall = time.perf_counter() - t_start
  summary = {"settings": settings, "noise": noise_infos, "variants": variants,
             "differences": differences, "verdicts": verdicts,
             "chosen_lrs": {v["variant"]: v["lr"] for v in variants},
             "wall_seconds": wall, "train_seconds": train_seconds,
             "compile_seconds": compile_seconds,
             "reliability_pooling": "pooled over seeds (counts summed; confidence and accuracy "
                                    "count-weighted)"}
  markdown = summary_markdown(summary)
  common.write_text(os.path.join(out, "metrics.jsonl"), "".join(
      json.dumps(r, default=common.json_default) + "\n" for r in rows_all))
  common.write_text(os.path.join(out, "summary.md"), markdown)
  common.write_json(os.path.join(out, "summary.json"), summary)
  config["chosen_lrs"] = summary["chosen_lrs"]
  config["wall_seconds"] = wall
  common.write_json(os.path.join(out, "config.json"), config)
  print(markdown)
  print(f"wrote {out}/ (config.json, metrics.jsonl, summary.md, summary.json, "
        f"{', '.join(os.path.basename(f) for f in figures)}) in {wall:.0f} s", flush=True)
  return {"summary_md": markdown, "figures": figures, "summary": summary, "wall_seconds": wall}


if __name__ == "__main__":
  main()
