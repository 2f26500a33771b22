"""Why does cross-entropy train faster than the sigmoid-difference loss? The gradients.

The headline experiment (`experiments.compare`) shows cross-entropy reaching
98.5% on full MNIST while the fastai book's sigmoid-difference loss on one-hot
targets collapses to one class, its mistakes getting logit gradients of ~1e-17.
This script measures that mechanism in two parts.

(a) Analytic, no training. For every multi-class loss of the registry
(`jaxloss.multiclass()`, K = 10 classes, true class y = 0), the loss
and its derivative with respect to the true-class logit, ``dL/dz_y``, as a
function of the margin ``m = z_y - max_{c != y} z_c``, computed in float64 with
``jax.vmap(jax.grad(...))`` over a grid of margins in [-10, 10], under two
conventions:

* A: ``z = (m, 0, ..., 0)``: the other 9 logits at 0;
* B: ``z = (b + m, b, ..., b)``: the other logits at a fixed negative level
  ``b`` (``--others-level``, default -6, sigmoid 0.0025), where a per-class
  sigmoid loss already says "no" to the 9 wrong classes, as it learns to do
  first. Softmax losses and the multi-class hinges depend only on logit
  differences, so B equals A for them; B only changes the losses that look at
  each logit on its own (sigmoid and one-vs-rest margin losses, square losses).

(b) During real training on full MNIST (MLP 784-512-512-10 ReLU, Adam with
cosine decay, batch 128): cross-entropy vs sigmoid-difference vs sigmoid
binary cross-entropy (both on one-hot targets). After every epoch, on a fixed
subset of the TRAINING images (``--probe-size``, default 10k; the "probe"),
with per-example losses ``l_i`` and logits ``z_i``: the per-example logit
gradient norm ``||dl_i/dz_i||`` (as in `experiments.compare.diagnose`), its
mean over all probe examples and over the misclassified ones, the share of the
misclassified ones whose norm is below ``--tiny`` (1e-3), and the probe (train)
accuracy; plus the held-out accuracy (validation in the selection runs, test
in the final runs).

One evaluation pass does both: the evaluation split given to `runs.run` is the
probe images with their labels 0..9 followed by the held-out images with their
labels shifted by K (10..19). The ``eval_fn`` splits them again by
``label >= K``, so the test images are only ever scored, never used to measure
gradients or to select anything.

Protocol (issue #4): every loss gets the same learning-rate grid (``--lrs``,
default `experiments.runs.ADAM_LR_GRID`), selected on a 10k validation split
held out from the 60k training images (`jaxloss.train.validation_split(size=10000,
seed=0)`) with ONE seed (the first of ``--seeds``) and ``--select-epochs``
epochs, by the final validation accuracy; the final runs use all seeds,
``--epochs`` epochs and the full training set, and report test accuracy.

Outputs in ``--out``: ``config.json``, ``metrics.jsonl`` (every row of every
run, selection runs included, with ``run``, ``stage``, ``loss``, ``lr``),
``analytic.json`` (the curves of part (a)), ``summary.md``, ``summary.json``,
``analytic.png`` (part (a)) and ``training.png`` (part (b)). Runs are
resumable: rerunning with the same ``--out`` retrains nothing that finished.

Example::

  JAXLOSS_MNIST_DIR=../shared/data/mnist python -m experiments.gradients
  python -m experiments.gradients --quick --out /tmp/gradients_quick
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from typing import Any, Mapping, Sequence

import numpy as np

from experiments import common

__all__ = [
    "ANALYTIC_MARGINS",
    "DEFAULT_LOSSES",
    "NAME",
    "analytic_curves",
    "analytic_tables",
    "build_parser",
    "eval_split",
    "gap_wording",
    "main",
    "make_eval_fn",
    "probe_indices",
    "verdict",
]

NAME = "gradients"
NUM_CLASSES = 10
DEFAULT_LOSSES = ("softmax_cross_entropy", "sigmoid_difference", "sigmoid_binary_cross_entropy")
SHORT = {"softmax_cross_entropy": "cross-entropy", "sigmoid_difference": "sigmoid-difference",
         "sigmoid_binary_cross_entropy": "BCE"}
ANALYTIC_MARGINS = (-5.0, -2.0, 0.0, 2.0, 5.0)
GRID = (-10.0, 10.0, 401)  # margins of part (a): linspace(-10, 10, 401), step 0.05
# Settings of flags left at their default, and what --quick makes of them.
DEFAULTS = {"epochs": 10, "select_epochs": 3, "hidden": (512, 512), "val_size": 10000,
            "probe_size": 10000}
QUICK = {"epochs": 2, "select_epochs": 1, "hidden": (32,), "val_size": 512, "probe_size": 512,
         "seeds": (0, 1), "lrs": (1e-3, 3e-3), "train_subset": 2048, "test_subset": 512}
PROBE_METRICS = ("probe_accuracy", "probe_loss", "probe_grad_norm_mean",
                 "probe_wrong_grad_norm_mean", "probe_wrong_grad_norm_median",
                 "probe_wrong_tiny_share", "probe_tiny_share", "probe_wrong_count")
# The largest logit-gradient norm each trained loss can give one example
# (K = 10): cross-entropy ||softmax(z) - e_y|| < sqrt(2); BCE (sigma(z) - t) / K
# per class, norm < 1/sqrt(K); sigmoid-difference +-sigma'(z)/K <= 0.25/K per
# class, norm <= 0.25/sqrt(K).
MAX_NORM = {"softmax_cross_entropy": math.sqrt(2.0),
            "sigmoid_binary_cross_entropy": 1.0 / math.sqrt(NUM_CLASSES),
            "sigmoid_difference": 0.25 / math.sqrt(NUM_CLASSES)}


def _short(name: str) -> str:
  return SHORT.get(name, name)


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="python -m experiments.gradients",
      description="Why cross-entropy trains faster than sigmoid-difference: (a) each registry "
                  "loss and its true-class logit gradient vs the margin (analytic); (b) the "
                  "per-example logit-gradient norms of misclassified training images during "
                  "training on full MNIST (cross-entropy, sigmoid-difference, BCE).",
      formatter_class=common.HelpFormatter)
  parser.add_argument("--losses", default=",".join(DEFAULT_LOSSES),
                      help="comma-separated registry names trained in part (b)")
  parser.add_argument("--analytic-losses", default=None,
                      help="comma-separated registry names for part (a), or 'all' (default: all "
                           "of jaxloss.multiclass(); --quick: the --losses)")
  parser.add_argument("--others-level", type=float, default=-6.0,
                      help="part (a), convention B: the level b of the 9 other logits")
  parser.add_argument("--epochs", type=int, default=None,
                      help="epochs of the final runs (default: 10; --quick: 2)")
  parser.add_argument("--select-epochs", type=int, default=None,
                      help="epochs of the learning-rate selection runs, cosine schedule over "
                           "them (default: 3; --quick: 1)")
  parser.add_argument("--hidden", type=common.parse_ints, default=None,
                      help="hidden widths, comma-separated (default: 512,512; --quick: 32)")
  parser.add_argument("--batch-size", type=int, default=128, help="training batch size")
  parser.add_argument("--val-size", type=int, default=None,
                      help="validation images held out from the training set for the selection "
                           "(default: 10000; --quick: 512)")
  parser.add_argument("--probe-size", type=int, default=None,
                      help="training images on which gradients are measured after every epoch "
                           "(default: 10000; --quick: 512)")
  parser.add_argument("--probe-seed", type=int, default=0,
                      help="seed of the fixed random choice of probe images (default: 0)")
  parser.add_argument("--tiny", type=float, default=1e-3,
                      help="a per-example logit-gradient norm below this counts as vanished")
  common.add_suite_args(parser, out=f"runs/{NAME}")
  return parser


# --------------------------------------------------------------------------- part (a)


def analytic_curves(names: Sequence[str], margins, *, others_level: float = -6.0,
                    num_classes: int = NUM_CLASSES,
                    fd_step: float = 1e-5) -> dict[str, dict[str, dict[str, np.ndarray]]]:
  """Loss and true-class logit derivative of each registry loss vs the margin (float64).

  True class ``y = 0``. Convention ``"A"``: logits ``(m, 0, ..., 0)``;
  convention ``"B"``: ``(b + m, b, ..., b)`` with ``b = others_level``. In both
  only ``z_y`` depends on ``m`` and the margin ``z_y - max_{c != y} z_c`` is
  ``m``, so ``d loss / d m = d loss / d z_y``, computed as
  ``jax.vmap(jax.grad(loss_of_margin))(margins)``. Also the central finite
  difference ``(L(m + h) - L(m - h)) / 2h`` (``h = fd_step``), which tells a
  smooth point from a kink where `jax.grad` returns one of the one-sided slopes
  (see `analytic_tables`). All losses are evaluated in one jitted program (one
  compilation instead of one per loss).

  Returns:
    ``{name: {"A" | "B": {"loss": [M], "grad": [M], "fd": [M]}}}`` NumPy float64.
  """
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

  import jaxloss  # pylint: disable=import-outside-toplevel

  specs = {name: jaxloss.get(name) for name in names}
  conventions = (("A", 0.0), ("B", float(others_level)))
  with jax.enable_x64(True):

    def curves(m_M):
      out = {}
      for name, spec in specs.items():
        targets = spec.targets(jnp.zeros((1,), jnp.int32), num_classes)
        out[name] = {}
        for conv, base in conventions:

          def loss_of_margin(m, spec=spec, targets=targets, base=base):
            z_1xK = jnp.full((1, num_classes), base, jnp.float64).at[0, 0].add(m)
            return spec.per_example(z_1xK, targets)[0]

          loss = jax.vmap(loss_of_margin)
          out[name][conv] = {"loss": loss(m_M), "grad": jax.vmap(jax.grad(loss_of_margin))(m_M),
                             "fd": (loss(m_M + fd_step) - loss(m_M - fd_step)) / (2 * fd_step)}
      return out

    result = jax.jit(curves)(jnp.asarray(margins, jnp.float64))
    return jax.tree.map(lambda x: np.asarray(x, np.float64), jax.device_get(result))


def shift_invariant(curve: Mapping[str, Mapping[str, np.ndarray]]) -> bool:
  """True when convention B gives the same loss and gradient as A (softmax-type losses)."""
  return all(np.allclose(curve["A"][k], curve["B"][k], rtol=1e-9, atol=1e-12)
             for k in ("loss", "grad"))


def grad_disagrees(grad, fd) -> np.ndarray:
  """Where `jax.grad` and the central finite difference disagree (a kink, or a bug)."""
  grad, fd = np.asarray(grad), np.asarray(fd)
  return np.abs(grad - fd) > 1e-6 + 1e-4 * np.abs(fd)


def _g(x: float) -> str:
  """Three significant digits; exact zeros as 0; NaN as n/a."""
  if x == 0:
    return "0"
  if math.isnan(x):
    return "n/a"
  return f"{x:.3g}"


def analytic_tables(curves: Mapping[str, Any], margins: Sequence[float],
                    others_level: float) -> str:
  """Markdown tables: loss and dL/dz_y at the given margins, conventions A and B.

  A gradient cell where `jax.grad` disagrees with the central finite difference
  is marked ``†`` and the finite difference is shown after it.
  """
  heads = " | ".join(f"m={m:g}" for m in margins)
  rule = "|---" * (len(margins) + 1) + "|"
  lines = ["Loss at margin m, convention A (z = (m, 0, ..., 0)):", "",
           f"| loss | {heads} |", rule]
  for name, c in curves.items():
    lines.append(f"| {name} | " + " | ".join(_g(v) for v in c["A"]["loss"]) + " |")
  lines += ["", f"d loss / d z_y at margin m by `jax.grad` (negative: the loss pushes the true "
                f"logit up). B: the other logits at b = {others_level:g}, z_y = b + m ('= A' for "
                "losses that depend only on logit differences):", "",
            f"| loss | A: {' | A: '.join(f'm={m:g}' for m in margins)} | "
            f"B: {' | B: '.join(f'm={m:g}' for m in margins)} |",
            "|---" * (2 * len(margins) + 1) + "|"]
  flagged = False

  def cells(c):
    nonlocal flagged
    bad = grad_disagrees(c["grad"], c["fd"])
    flagged |= bool(bad.any())
    return [f"{_g(g)} † (fd {_g(f)})" if b else _g(g)
            for g, f, b in zip(c["grad"], c["fd"], bad)]

  for name, c in curves.items():
    a = cells(c["A"])
    b = ["= A"] * len(margins) if shift_invariant(c) else cells(c["B"])
    lines.append(f"| {name} | " + " | ".join(a + b) + " |")
  if flagged:
    lines += ["", "† `jax.grad` differs here from the central finite difference (fd, step "
                  "1e-5): either the loss has a kink at this point (a hinge; `jax.grad` returns "
                  "one one-sided slope) or the implementation's derivative is off at this exact "
                  "point."]
  return "\n".join(lines) + "\n"


def plot_analytic(curves: Mapping[str, Any], margins, trained: Sequence[str], others_level: float,
                  path: str) -> None:
  """analytic.png: loss and |dL/dz_y| vs margin (log scales), A solid, B dashed."""
  import matplotlib  # pylint: disable=import-outside-toplevel

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  fig, axes = plt.subplots(1, 2, figsize=(14, 5.2))
  m = np.asarray(margins)
  # The trained losses in strong fixed colours on top; the others thin and pale.
  strong = {"softmax_cross_entropy": "tab:blue", "sigmoid_difference": "tab:red",
            "sigmoid_binary_cross_entropy": "tab:green"}
  others = [n for n in curves if n not in trained]
  pale = plt.get_cmap("tab20b")
  order = others + [n for n in curves if n in trained]
  for name in order:
    c = curves[name]
    bold = name in trained
    color = (strong.get(name, plt.get_cmap("Dark2")(trained.index(name) % 8)) if bold
             else pale(others.index(name) % 20))
    style = {"color": color, "lw": 2.6 if bold else 0.9, "alpha": 1.0 if bold else 0.7,
             "zorder": 3 if bold else 2}
    convs = ["A"] if shift_invariant(c) else ["A", "B"]
    for conv in convs:
      ls = "-" if conv == "A" else "--"
      label = name if conv == "A" else None
      loss = np.asarray(c[conv]["loss"])
      axes[0].plot(m, np.where(loss > 0, loss, np.nan), ls=ls, label=label, **style)
      grad = np.abs(c[conv]["grad"])
      # Exact zeros (a hinge past its margin) cannot be drawn on a log axis: gaps.
      axes[1].plot(m, np.where(grad > 0, grad, np.nan), ls=ls, **style)
  axes[0].set_ylim(1e-6, 1e3)
  axes[1].set_ylim(1e-10, 1e2)
  axes[0].set_yscale("log")
  axes[0].set_ylabel("loss (log; gaps: exactly 0)")
  axes[1].set_yscale("log")
  axes[1].set_ylabel("|d loss / d z_y| (log; gaps: exactly 0)")
  for ax in axes:
    ax.set_xlabel("margin m = z_y - max other logit")
    ax.axvline(0.0, color="k", lw=0.6, alpha=0.5)
    ax.grid(True, which="both", alpha=0.3)
  handles, labels = axes[0].get_legend_handles_labels()
  fig.legend(handles[::-1], labels[::-1], loc="center right", fontsize=7, frameon=False)
  fig.suptitle(f"K=10, true class y. Solid (A): other logits 0, z_y = m. Dashed (B, only losses "
               f"that change): other logits {others_level:g}, z_y = {others_level:g} + m. "
               "Thick: the losses trained in part (b). Axes clipped.", fontsize=9)
  fig.tight_layout(rect=(0, 0, 0.8, 0.95))
  fig.savefig(path, dpi=110)
  plt.close(fig)


# --------------------------------------------------------------------------- part (b)


def probe_indices(n: int, size: int, seed: int) -> np.ndarray:
  """A fixed random choice of ``min(size, n)`` of ``n`` training images, sorted."""
  rng = np.random.default_rng(seed)
  return np.sort(rng.permutation(n)[: min(size, n)])


def eval_split(data, heldout_images, heldout_labels, probe_idx, *,
               num_classes: int = NUM_CLASSES):
  """Training data plus an evaluation split = probe (labels 0..K-1) + held-out (labels + K).

  Args:
    data: anything with ``train_images`` / ``train_labels`` (trained on).
    heldout_images, heldout_labels: the validation or test split (scored only).
    probe_idx: indices of the probe images in ``data.train_images``.

  Returns:
    A `jaxloss.train.Mnist` with ``data``'s training split and ``test_*`` =
    ``[probe; held-out]``, the held-out labels shifted by ``num_classes`` so
    that `make_eval_fn` can tell the two parts apart.
  """
  from jaxloss.train.data import Mnist  # pylint: disable=import-outside-toplevel

  train_labels = np.asarray(data.train_labels)
  images = np.concatenate([np.asarray(data.train_images)[probe_idx], np.asarray(heldout_images)])
  labels = np.concatenate([train_labels[probe_idx],
                           np.asarray(heldout_labels) + num_classes]).astype(np.int32)
  return Mnist(np.asarray(data.train_images), train_labels, images, labels)


def _masked_mean(x, mask):
  """Mean of ``x`` over ``mask``; NaN for an empty mask."""
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

  n = jnp.sum(mask)
  return jnp.where(n > 0, jnp.sum(jnp.where(mask, x, 0.0)) / jnp.maximum(n, 1), jnp.nan)


def make_eval_fn(spec, *, num_classes: int = NUM_CLASSES, tiny: float = 1e-3):
  """The per-epoch ``eval_fn(logits [N, K], labels [N])`` of part (b) (pure JAX, jittable).

  Labels ``< K`` are probe (training) images, labels ``>= K`` held-out images
  with label ``y + K`` (see `eval_split`). Per probe example: the loss
  ``l_i = spec.per_example(z_i, targets_i)`` and its logit gradient
  ``g_i = d l_i / d z_i`` (``jax.grad`` of the sum over examples, whose rows are
  independent), norm ``||g_i||``; misclassified = ``spec.predict(z_i) != y_i``.

  Returns:
    ``test_accuracy`` (held-out), ``probe_accuracy``, ``probe_loss`` (mean
    ``l_i``), ``probe_grad_norm_mean`` (all probe examples),
    ``probe_wrong_grad_norm_mean`` / ``_median`` (misclassified ones; NaN if
    none), ``probe_wrong_tiny_share`` (share of the misclassified with norm
    ``< tiny``; NaN if none), ``probe_tiny_share`` (share of all probe
    examples with norm ``< tiny``) and ``probe_wrong_count``.
  """
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

  def eval_fn(logits_NxK, labels_N):
    heldout_N = labels_N >= num_classes
    probe_N = ~heldout_N
    y_N = jnp.where(heldout_N, labels_N - num_classes, labels_N)
    targets = spec.targets(y_N, num_classes)
    loss_N, vjp = jax.vjp(lambda z: spec.per_example(z, targets), logits_NxK)
    (grads_NxK,) = vjp(jnp.ones_like(loss_N))
    norm_N = jnp.linalg.norm(grads_NxK, axis=-1)
    correct_N = spec.predict(logits_NxK) == y_N
    wrong_N = probe_N & ~correct_N
    tiny_N = norm_N < tiny
    n_wrong = jnp.sum(wrong_N)
    return {
        "test_accuracy": _masked_mean(correct_N.astype(jnp.float32), heldout_N),
        "probe_accuracy": _masked_mean(correct_N.astype(jnp.float32), probe_N),
        "probe_loss": _masked_mean(loss_N, probe_N),
        "probe_grad_norm_mean": _masked_mean(norm_N, probe_N),
        "probe_wrong_grad_norm_mean": _masked_mean(norm_N, wrong_N),
        "probe_wrong_grad_norm_median": jnp.nanmedian(jnp.where(wrong_N, norm_N, jnp.nan)),
        "probe_wrong_tiny_share": _masked_mean(tiny_N.astype(jnp.float32), wrong_N),
        "probe_tiny_share": _masked_mean(tiny_N.astype(jnp.float32), probe_N),
        "probe_wrong_count": n_wrong.astype(jnp.float32),
    }

  return eval_fn


# --------------------------------------------------------------------------- reporting


def _finite_mean_std(values) -> tuple[float, float]:
  x = np.asarray(values, np.float64)
  return common.mean_std(x[np.isfinite(x)])


def _ms(entry: Mapping[str, Any], key: str) -> tuple[float, float]:
  return entry[key]["mean"], entry[key]["std"]


def _pm(ms: tuple[float, float], scale: float = 1.0, digits: int = 2) -> str:
  mean, std = ms
  if math.isnan(mean):
    return "n/a"
  return f"{scale * mean:.{digits}f} ± {scale * std:.{digits}f}"


def _pm_g(ms: tuple[float, float]) -> str:
  mean, std = ms
  if math.isnan(mean):
    return "n/a"
  return f"{mean:.3g} ± {std:.2g}"


def gap_wording(a: tuple[float, float], b: tuple[float, float], name_a: str, name_b: str,
                unit: str = "points") -> str:
  """"A beats B by x ± y points" or "no clear difference" (|Δ| <= 2 max std) from mean ± std."""
  (ma, sa), (mb, sb) = a, b
  if any(math.isnan(v) for v in (ma, mb)):
    return f"{name_a} vs {name_b}: not comparable (a run has no finite result)"
  gap = ma - mb
  spread = math.sqrt(sa ** 2 + sb ** 2)
  if abs(gap) <= 2 * max(sa, sb) or gap == 0:
    return (f"no clear difference between {name_a} and {name_b} ({gap:+.2f} ± {spread:.2f} "
            f"{unit}, within twice the seeds' spread)")
  hi, lo = (name_a, name_b) if gap > 0 else (name_b, name_a)
  return f"{hi} beats {lo} by {abs(gap):.2f} ± {spread:.2f} {unit}"


def verdict(summary: Mapping[str, Any]) -> str:
  """The **Verdict.** paragraph, generated from `summary` (see `main`'s summary.json)."""
  tiny = summary["tiny"]
  a = summary["analytic"]
  parts = []
  ce, sd = "softmax_cross_entropy", "sigmoid_difference"
  at = a["at_margin"]
  if ce in at and sd in at:
    m = min(ANALYTIC_MARGINS)
    g_ce, g_sd = abs(at[ce]["A"][f"{m:g}"]["grad"]), abs(at[sd]["A"][f"{m:g}"]["grad"])
    g_sd_b = abs(at[sd]["B"][f"{m:g}"]["grad"])
    g_ce_b = abs(at[ce]["B"][f"{m:g}"]["grad"])
    ratio = g_ce / g_sd if g_sd > 0 else math.inf
    rel = (f"{ratio:.0f} times larger than" if ratio > 1 else
           f"{1 / ratio:.0f} times smaller than" if ratio < 1 else "equal to")
    text = (f"Analytically (K = 10, other logits 0), at margin {m:g} the true-class gradient "
            f"|dL/dz_y| is {_g(g_ce)} for cross-entropy, {rel} sigmoid-difference's {_g(g_sd)}")
    bce = "sigmoid_binary_cross_entropy"
    if bce in at:
      text += f" (BCE: {_g(abs(at[bce]['A'][f'{m:g}']['grad']))})"
    ce_b = ("does not change" if math.isclose(g_ce_b, g_ce, rel_tol=1e-9)
            else f"is {_g(g_ce_b)}")
    sd_b = "drops to" if g_sd_b < g_sd else "is"
    text += (f"; with the other logits at {a['others_level']:g} sigmoid-difference's {sd_b} "
             f"{_g(g_sd_b)} while cross-entropy's {ce_b}")
    if bce in at:
      text += f" (BCE: {_g(abs(at[bce]['B'][f'{m:g}']['grad']))})"
    parts.append(text + ".")

  final = summary["final"]
  names = list(final)
  if not names:
    return " ".join(parts)
  accs = {n: (100 * final[n]["test_accuracy"]["mean"], 100 * final[n]["test_accuracy"]["std"])
          for n in names}
  acc_text = "; ".join(f"{_short(n)} {_pm(accs[n])}%" for n in names)
  parts.append(f"In training (rate selected on validation, {summary['epochs']} epochs, "
               f"{len(summary['seeds'])} seeds), the final test accuracy is {acc_text}.")
  if ce in final:
    gaps = [gap_wording(accs[ce], accs[n], _short(ce), _short(n)) for n in names if n != ce]
    if gaps:
      text = "; ".join(gaps)
      parts.append(text[0].upper() + text[1:] + ".")
  last = []
  for n in names:
    f = final[n]
    count = f["probe_wrong_count"]["mean"]
    if not count > 0:
      last.append(f"{_short(n)} has none left")
    else:
      median = f["probe_wrong_grad_norm_median"]["mean"]
      rel = (f", {_g(median / MAX_NORM[n])} of the largest norm this loss can give"
             if n in MAX_NORM and math.isfinite(median) else "")
      last.append(f"{_short(n)} {_pm(_ms(f, 'probe_wrong_tiny_share'), 100, 1)}% of "
                  f"{count:.0f} (mean norm {_g(f['probe_wrong_grad_norm_mean']['mean'])}, "
                  f"median {_g(median)}{rel})")
  parts.append(f"At the last epoch, misclassified probe (training) images with a logit-gradient "
               f"norm below {tiny:g}: {'; '.join(last)}.")
  peaks = {n: _ms(final[n], "probe_wrong_tiny_share_peak") for n in names}
  parts.append("Highest share over the epochs (per seed, mean ± std): " + "; ".join(
      f"{_short(n)} {_pm(peaks[n], 100, 1)}%" for n in names) + ".")
  if ce in final and sd in final:
    s_ce, s_sd = peaks[ce], peaks[sd]
    a_ce, a_sd = accs[ce], accs[sd]
    if any(math.isnan(v) for v in (s_ce[0], s_sd[0], a_ce[0], a_sd[0])):
      parts.append("Some shares are undefined (no misclassified probe image in any epoch, or a "
                   "diverged run), so the two losses cannot be compared on this measure.")
    else:
      share_clear = s_sd[0] - s_ce[0] > 2 * max(s_ce[1], s_sd[1]) and s_sd[0] - s_ce[0] > 0
      acc_clear = a_ce[0] - a_sd[0] > 2 * max(a_ce[1], a_sd[1]) and a_ce[0] - a_sd[0] > 0
      if share_clear and acc_clear:
        parts.append("Sigmoid-difference leaves a larger share of its mistakes with a vanished "
                     "gradient and ends less accurate: the numbers agree with the "
                     "vanishing-gradient explanation (those mistakes stop contributing to the "
                     "update).")
      elif share_clear:
        parts.append("Sigmoid-difference leaves a larger share of its mistakes with a vanished "
                     "gradient, but its accuracy is not clearly lower at this budget.")
      elif acc_clear:
        parts.append("Cross-entropy ends clearly more accurate, but the share of vanished "
                     "gradients does not separate the two losses clearly, so this measure alone "
                     "does not explain the gap.")
      else:
        parts.append("Neither accuracy nor the share of vanished gradients separates the two "
                     "losses clearly at this budget.")
  diverged = [f"{_short(n)} ({final[n]['diverged']})" for n in names if final[n]["diverged"]]
  if diverged:
    parts.append("Diverged seeds: " + ", ".join(diverged) + ".")
  if summary.get("quick"):
    parts.append("(Quick mode: tiny data and model, numbers meaningless.)")
  return " ".join(parts)


def _selection_table(tuned: Mapping[str, Any], lrs: Sequence[float]) -> list[str]:
  if len(lrs) == 1:
    return [f"A single learning rate was given ({lrs[0]:g}): no selection."]
  lines = ["| loss | " + " | ".join(f"val acc % @ lr {lr:g}" for lr in lrs) + " | chosen |",
           "|---" * (len(lrs) + 2) + "|"]
  for name, t in tuned.items():
    cells = []
    for row in t["table"]:
      cell = ("diverged" if row["status"] == "diverged" or not math.isfinite(row["score"])
              else f"{100 * row['score']:.2f}")
      cells.append(f"**{cell}**" if row["lr"] == t["lr"] else cell)
    lines.append(f"| {name} | " + " | ".join(cells) + f" | {t['lr']:g} |")
  return lines


def _epochs_shown(epochs: int) -> list[int]:
  return sorted({e for e in (1, 2, 3, epochs // 2, epochs) if 1 <= e <= epochs})


def render_markdown(summary: Mapping[str, Any], analytic_md: str, tuned: Mapping[str, Any],
                    figures: Mapping[str, str]) -> str:
  s = summary
  quick = " (quick mode: numbers meaningless)" if s["quick"] else ""
  d = s["data"]
  lines = [
      f"## Why does cross-entropy train faster than the sigmoid-difference loss? The "
      f"gradients{quick}",
      "",
      f"**(a) Analytic.** {len(s['analytic']['losses'])} multi-class losses of the registry "
      f"({'all of' if s['analytic']['all'] else 'a subset of'} `jaxloss.multiclass()`), "
      "K = 10, true class y; margin "
      "m = z_y - max over the other logits. Convention A: logits (m, 0, ..., 0); convention B: "
      f"(b + m, b, ..., b) with b = {s['analytic']['others_level']:g}, where a per-class "
      "sigmoid loss already says \"no\" to the 9 other classes (softmax losses and the "
      "multi-class hinges depend only on logit differences, so B = A for them). Computed in "
      "float64 with `jax.vmap(jax.grad(loss_of_margin))` over 401 margins in [-10, 10]; the "
      "derivative with respect to m is dL/dz_y since only z_y depends on m.",
      "",
      analytic_md,
      f"![loss and |dL/dz_y| vs margin, registry losses]"
      f"({os.path.basename(figures['analytic'])})",
      "",
      f"**(b) Training.** MNIST, {d['train']} training / {d['test']} test images; MLP "
      f"{s['model']}, Adam with cosine decay to 0, batch {s['batch_size']}, "
      f"{s['epochs']} epochs, seeds {s['seeds']}, on {s['device']}. Losses (registry targets): "
      + ", ".join(f"`{n}`" for n in s["losses"]) + " (the sigmoid losses on one-hot targets). "
      f"Learning rate: the same grid {list(s['lrs'])} for every loss, selected by final "
      f"validation accuracy on {d['val']} images held out from the training set (seed 0), with "
      f"one seed ({s['seeds'][0]}) and {s['select_epochs']} epoch(s), cosine schedule over "
      "them; the final runs train on the whole training set with every seed. "
      f"Training wall time {s['train_seconds']:.0f} s (all runs, selection included, "
      f"compilation excluded); this invocation of the script took {s['wall_seconds']:.0f} s.",
      "",
      f"Gradient measurements: after every epoch, on a fixed random set of {d['probe']} "
      f"TRAINING images (the probe, seed {s['probe_seed']}), the norm of each example's "
      "logit gradient ||dl_i/dz_i|| (l_i its per-example loss, z_i its 10 logits, as in "
      "`experiments.compare`'s diagnose). The parameter gradient of l_i is J_i^T dl_i/dz_i "
      "with J_i = dz_i/dθ the network's Jacobian, so ||dl_i/dθ|| <= ||J_i|| ||dl_i/dz_i||: an "
      "example whose logit gradient vanishes adds (almost) nothing to the parameter update, "
      "however wrong it is. Scale: the sigmoid losses average over the K classes, so their "
      "norms are bounded by 1/sqrt(K) ≈ 0.32 (BCE) and 0.25/sqrt(K) ≈ 0.079 "
      "(sigmoid-difference), cross-entropy's by sqrt(2); Adam's step does not depend on a "
      f"constant factor on the loss, but the threshold {s['tiny']:g} is absolute. The probe and "
      "the held-out images are scored in one evaluation pass (held-out labels shifted by K "
      "in the evaluation split and split off again by the eval_fn); held-out = validation in "
      "the selection runs, the test set in the final runs (only reported, never used to "
      "select).",
      "",
      "```bash",
      s["command"],
      "```",
      "",
      "Learning-rate selection (validation accuracy, one seed; chosen in bold):",
      "",
      *_selection_table(tuned, s["lrs"]),
      "",
      "Last epoch, mean ± std over seeds (probe = training images; 'wrong' = misclassified "
      "probe images):",
      "",
      "| loss | lr | test acc % | probe (train) acc % | wrong probe images | "
      f"wrong with norm < {s['tiny']:g} % | same, highest over epochs % | mean norm, all "
      "| mean norm, wrong | median norm, wrong |",
      "|---|---|---|---|---|---|---|---|---|---|",
  ]
  for name, f in s["final"].items():
    ms = {k: (v["mean"], v["std"]) for k, v in f.items() if isinstance(v, dict) and "mean" in v}
    lines.append(
        f"| {name} | {f['lr']:g} | {_pm(ms['test_accuracy'], 100)} "
        f"| {_pm(ms['probe_accuracy'], 100)} | {_pm(ms['probe_wrong_count'], 1, 0)} "
        f"| {_pm(ms['probe_wrong_tiny_share'], 100, 1)} "
        f"| {_pm(ms['probe_wrong_tiny_share_peak'], 100, 1)} | {_pm_g(ms['probe_grad_norm_mean'])} "
        f"| {_pm_g(ms['probe_wrong_grad_norm_mean'])} "
        f"| {_pm_g(ms['probe_wrong_grad_norm_median'])} |")
  shown = _epochs_shown(s["epochs"])
  lines += [
      "",
      "Shares and norms over the misclassified images are means over the seeds that have "
      "misclassified probe images; n/a: none in any seed. 'Highest over epochs': per seed the "
      "largest share over the epochs that had misclassified probe images.",
      "",
      f"Per epoch (epochs {', '.join(map(str, shown))}; every epoch is in summary.json and "
      "metrics.jsonl), mean over seeds:",
      "",
      "| loss | epoch | probe (train) acc % | test acc % | wrong with norm < "
      f"{s['tiny']:g} % | all with norm < {s['tiny']:g} % | mean norm, all | mean norm, wrong |",
      "|---|---|---|---|---|---|---|---|",
  ]
  for name, f in s["final"].items():
    c = s["curves"][name]
    for e in shown:
      i = e - 1
      if i >= len(c["probe_accuracy"]):
        continue

      def mean(key, scale=1.0, i=i, c=c):
        x = np.asarray(c[key][i], np.float64)
        x = x[np.isfinite(x)]
        return math.nan if x.size == 0 else scale * float(x.mean())

      def fixed(x, digits):
        return "n/a" if math.isnan(x) else f"{x:.{digits}f}"

      lines.append(f"| {name} | {e} | {fixed(mean('probe_accuracy', 100), 2)} "
                   f"| {fixed(mean('test_accuracy', 100), 2)} "
                   f"| {fixed(mean('probe_wrong_tiny_share', 100), 1)} "
                   f"| {fixed(mean('probe_tiny_share', 100), 1)} "
                   f"| {_g(mean('probe_grad_norm_mean'))} "
                   f"| {_g(mean('probe_wrong_grad_norm_mean'))} |")
  lines += [
      "",
      f"![share of misclassified training images with a vanished gradient, gradient norms and "
      f"error vs epoch]({os.path.basename(figures['training'])})",
      "",
      "(Curves over the misclassified images end when a loss has none left in any seed.)",
      "",
      "**Verdict.** " + s["verdict"],
  ]
  return "\n".join(lines) + "\n"


def plot_training(curves: Mapping[str, Mapping[str, np.ndarray]], tiny: float, path: str,
                  quick: bool) -> None:
  """training.png: share of wrong with tiny norm, mean norms (wrong, all), error; bands = seeds."""
  import matplotlib  # pylint: disable=import-outside-toplevel

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  fig, axes = plt.subplots(2, 2, figsize=(11, 8))
  panels = ((axes[0, 0], "probe_wrong_tiny_share", 100.0,
             f"misclassified training images\nwith grad norm < {tiny:g} (%)", "linear"),
            (axes[0, 1], "probe_wrong_grad_norm_mean", 1.0,
             "mean ||dl/dz||, misclassified (log)", "log"),
            (axes[1, 0], "probe_grad_norm_mean", 1.0, "mean ||dl/dz||, all probe images (log)",
             "log"),
            (axes[1, 1], None, 100.0, "error % (log; 0 not drawn):\nsolid train probe, dashed test",
             "log"))
  colors = {"softmax_cross_entropy": "tab:blue", "sigmoid_difference": "tab:red",
            "sigmoid_binary_cross_entropy": "tab:green"}
  # All-NaN epochs (no misclassified image left, or a zero error on the log axis)
  # make NumPy's nan-reductions warn; they are expected here.
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)
    for i, (name, c) in enumerate(curves.items()):
      epochs = np.arange(1, np.asarray(c["probe_accuracy"]).shape[0] + 1)
      # Thick first, thinner later: equal curves (e.g. two losses at 0%) stay visible.
      style = {"lw": max(3.6 - 1.0 * i, 1.2), "color": colors.get(name, f"C{i + 3}")}
      for ax, key, scale, label, scale_kind in panels:
        if key is None:
          for acc, ls in ((c["probe_accuracy"], "-"), (c["test_accuracy"], "--")):
            err = 100.0 * (1.0 - np.asarray(acc, np.float64))
            # A zero error cannot be drawn on the log axis: the line stops there.
            common.plot_band(ax, epochs, np.where(err > 0, err, np.nan),
                             _short(name) if ls == "-" else None, ls=ls, **style)
        else:
          y = scale * np.asarray(c[key], np.float64)
          if scale_kind == "log":
            y = np.where(y > 0, y, np.nan)
          common.plot_band(ax, epochs, y, _short(name), **style)
        ax.set_ylabel(label)
        ax.set_yscale(scale_kind)
  for ax in axes.ravel():
    ax.set_xlabel("epoch")
    ax.grid(True, which="both", alpha=0.3)
  axes[0, 0].legend()
  fig.suptitle("Full MNIST MLP: per-example logit-gradient norms on a fixed set of training "
               "images; mean over seeds, min-max band" + (" (quick mode)" if quick else ""))
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def _clean(obj):
  """NaN/inf -> None (strict JSON), recursively."""
  if isinstance(obj, dict):
    return {k: _clean(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [_clean(v) for v in obj]
  if isinstance(obj, np.ndarray):
    return _clean(obj.tolist())
  if isinstance(obj, (float, np.floating)):
    return float(obj) if math.isfinite(obj) else None
  return obj


# --------------------------------------------------------------------------- main


def _names(text: str, what: str) -> list[str]:
  import jaxloss  # pylint: disable=import-outside-toplevel

  names = []
  for part in text.split(","):
    if not part.strip():
      continue
    try:
      spec = jaxloss.get(part)
    except ValueError as err:
      raise SystemExit(f"{what}: {err}") from None
    if not spec.multiclass:
      raise SystemExit(f"{what}: {spec.name!r} is not a single-label multi-class loss.")
    if spec.name not in names:
      names.append(spec.name)
  if not names:
    raise SystemExit(f"{what}: no loss given.")
  return names


def resolve(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, Any]:
  """The settings: flags left at their default take `DEFAULTS`, or `QUICK` with ``--quick``.

  A flag given explicitly keeps its value under ``--quick`` (for ``--seeds`` and
  ``--lrs``: a value different from the parser's default). Sets
  ``args.train_subset`` / ``args.test_subset`` for ``--quick`` when unset.
  """
  base = QUICK if args.quick else DEFAULTS
  out = {key: getattr(args, key) if getattr(args, key) is not None else base[key]
         for key in DEFAULTS}
  out["hidden"] = tuple(out["hidden"])
  seeds, lrs = tuple(args.seeds), tuple(args.lrs)
  if args.quick and seeds == tuple(parser.parse_args([]).seeds):
    seeds = QUICK["seeds"]
  if args.quick and lrs == tuple(parser.parse_args([]).lrs):
    lrs = QUICK["lrs"]
  out["seeds"], out["lrs"] = seeds, lrs
  if args.quick:
    args.train_subset = args.train_subset or QUICK["train_subset"]
    args.test_subset = args.test_subset or QUICK["test_subset"]
  for key in ("epochs", "select_epochs", "val_size", "probe_size"):
    if out[key] < 1:
      raise SystemExit(f"--{key.replace('_', '-')} must be >= 1, got {out[key]}")
  if not args.tiny > 0:
    raise SystemExit(f"--tiny must be > 0, got {args.tiny}")
  if any(not lr > 0 for lr in lrs):
    raise SystemExit(f"--lrs must be positive, got {list(lrs)}")
  return out


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  parser = build_parser()
  args = parser.parse_args(argv)
  t_start = time.perf_counter()
  settings = resolve(args, parser)
  quick = args.quick
  epochs, select_epochs = settings["epochs"], settings["select_epochs"]
  hidden, val_size, probe_size = settings["hidden"], settings["val_size"], settings["probe_size"]
  seeds, lrs = settings["seeds"], settings["lrs"]
  import jaxloss  # pylint: disable=import-outside-toplevel
  from jaxloss import train as jt  # pylint: disable=import-outside-toplevel

  from experiments import runs  # pylint: disable=import-outside-toplevel

  losses = _names(args.losses, "--losses")
  if args.analytic_losses is None and quick:
    analytic_names = losses
  elif args.analytic_losses in (None, "all"):
    analytic_names = jaxloss.multiclass()
  else:
    analytic_names = _names(args.analytic_losses, "--analytic-losses")
  env = common.print_device()

  os.makedirs(args.out, exist_ok=True)
  figures = {"analytic": os.path.abspath(os.path.join(args.out, "analytic.png")),
             "training": os.path.abspath(os.path.join(args.out, "training.png"))}

  # ---- (a) analytic
  t0 = time.perf_counter()
  grid = np.linspace(*GRID[:2], GRID[2])
  points = np.concatenate([grid, np.asarray(ANALYTIC_MARGINS)])
  raw = analytic_curves(analytic_names, points, others_level=args.others_level)
  n_grid = grid.size
  curves_a = {n: {conv: {k: v[:n_grid] for k, v in c[conv].items()} for conv in c}
              for n, c in raw.items()}
  at_margin = {n: {conv: {f"{m:g}": {k: float(v[n_grid + j]) for k, v in c[conv].items()}
                          for j, m in enumerate(ANALYTIC_MARGINS)} for conv in c}
               for n, c in raw.items()}
  table_curves = {n: {conv: {k: v[n_grid:] for k, v in c[conv].items()} for conv in c}
                  for n, c in raw.items()}
  analytic_md = analytic_tables(table_curves, ANALYTIC_MARGINS, args.others_level)
  plot_analytic(curves_a, grid, losses, args.others_level, figures["analytic"])
  common.write_json(os.path.join(args.out, "analytic.json"), _clean({
      "convention": {"A": "z = (m, 0, ..., 0), true class 0, K = 10",
                     "B": f"z = (b + m, b, ..., b), b = {args.others_level:g}"},
      "margins": grid, "curves": curves_a}))
  analytic_seconds = time.perf_counter() - t0
  print(f"part (a): {len(analytic_names)} losses in {analytic_seconds:.1f} s", flush=True)

  # ---- (b) training
  data = common.load_mnist_or_exit(args)
  n_train = int(data.train_images.shape[0])
  if not 0 < val_size < n_train:
    raise SystemExit(f"--val-size must be in 1..{n_train - 1}, got {val_size}")
  val = jt.validation_split(data, size=val_size, seed=0)
  final_data = eval_split(data, data.test_images, data.test_labels,
                          probe_indices(n_train, probe_size, args.probe_seed))
  select_data = eval_split(val, val.test_images, val.test_labels,
                           probe_indices(int(val.train_images.shape[0]), probe_size,
                                         args.probe_seed))
  data_info = {"train": n_train, "test": int(data.test_images.shape[0]), "val": val_size,
               "probe": int(min(probe_size, n_train)), "select_train": n_train - val_size}
  model = "-".join(str(w) for w in (784, *hidden, NUM_CLASSES)) + " ReLU"
  dev = env["device"]
  resolved = {"losses": losses, "analytic_losses": list(analytic_names), "epochs": epochs,
              "select_epochs": select_epochs, "hidden": list(hidden), "model": model,
              "batch_size": args.batch_size, "val_size": val_size, "probe_size": probe_size,
              "probe_seed": args.probe_seed, "seeds": list(seeds), "lrs": list(lrs),
              "tiny": args.tiny, "others_level": args.others_level, "quick": quick,
              "data": data_info, "optimizer": "adam", "schedule": "cosine",
              "device": f"{dev['platform'].upper()} ({dev['device_kind']})"}
  config_json = {"environment": env, "args": vars(args), "resolved": resolved}
  common.write_json(os.path.join(args.out, "config.json"), config_json)

  def make_spec_for(name):
    spec = jaxloss.get(name)
    eval_fn = make_eval_fn(spec, tiny=args.tiny)

    def make_spec(lr, stage):
      config = jt.TrainConfig(hidden=hidden, learning_rate=lr, schedule="cosine",
                              optimizer="adam", batch_size=args.batch_size,
                              epochs=select_epochs if stage == "select" else epochs)
      return runs.RunSpec(
          f"{name}-{stage}-lr{lr:g}", config, spec.loss_from_labels, spec.predict,
          eval_fn=eval_fn, seeds=seeds[:1] if stage == "select" else seeds,
          describe={"experiment": NAME, "loss": name, "lr": lr, "stage": stage,
                    "tiny": args.tiny, "probe_size": probe_size, "probe_seed": args.probe_seed,
                    "val_size": val_size, "train_examples": n_train,
                    "test_examples": data_info["test"]})

    return make_spec

  per_loss_epochs = (len(lrs) * select_epochs if len(lrs) > 1 else 0) + epochs
  tuned: dict[str, Any] = {}
  all_rows: list[dict[str, Any]] = []
  trained = {"epochs": 0}

  def on_epoch(spec, rows):  # called for every epoch trained in THIS invocation
    del spec, rows
    trained["epochs"] += 1

  with common.progress(len(losses) * per_loss_epochs, NAME, disable=args.no_progress) as bar:
    for name in losses:
      make_spec = make_spec_for(name)
      try:
        t = runs.tune_and_run(make_spec, lrs, final_data, select_data, args.out, bar=bar,
                              on_epoch=on_epoch)
        # Finished runs are only read back here (for their rows), never retrained.
        results = [(lr, "select", runs.run(make_spec(lr, "select"), select_data, args.out))
                   for lr in (lrs if len(lrs) > 1 else ())]
      except runs.RunMismatchError as err:
        raise SystemExit(f"error: {err}") from None
      results.append((t.lr, "final", t.result))
      for lr, stage, result in results:
        all_rows.extend({**row, "stage": stage, "loss": name, "lr": lr} for row in result.rows)
      tuned[name] = {"lr": t.lr, "table": t.table, "result": t.result,
                     "train_seconds": sum(r.wall_seconds for _, _, r in results)}

  common.write_text(os.path.join(args.out, "metrics.jsonl"),
                    "".join(json.dumps(_clean(r)) + "\n" for r in all_rows))

  keys = ("test_accuracy", "train_accuracy", "train_loss") + PROBE_METRICS
  curves_b = {n: {k: tuned[n]["result"].curve(k) for k in keys} for n in losses}
  final = {}
  for name in losses:
    result = tuned[name]["result"]
    entry: dict[str, Any] = {"lr": tuned[name]["lr"], "status": result.status,
                             "diverged": {int(k): v for k, v in result.diverged.items()},
                             "wall_seconds": result.wall_seconds}
    for key in keys:
      values = curves_b[name][key][-1] if result.epochs else np.array([])
      mean, std = _finite_mean_std(values)
      entry[key] = {"mean": mean, "std": std, "per_seed": values.tolist()}
    # The highest share of vanished gradients among the misclassified, over the
    # epochs that had misclassified probe images (NaN for a seed without any).
    share_ExS = curves_b[name]["probe_wrong_tiny_share"]
    with np.errstate(all="ignore"):
      peak = np.array([np.nanmax(col) if np.isfinite(col).any() else np.nan
                       for col in share_ExS.T]) if result.epochs else np.array([])
    mean, std = _finite_mean_std(peak)
    entry["probe_wrong_tiny_share_peak"] = {"mean": mean, "std": std, "per_seed": peak.tolist()}
    final[name] = entry

  plot_training(curves_b, args.tiny, figures["training"], quick)
  summary = {
      "experiment": NAME, "quick": quick, **{k: resolved[k] for k in (
          "losses", "epochs", "select_epochs", "model", "batch_size", "seeds", "lrs", "tiny",
          "probe_seed", "data", "device")},
      "command": " ".join(["python -m experiments.gradients",
                           *(sys.argv[1:] if argv is None else argv)]),
      "analytic": {"others_level": args.others_level, "losses": list(analytic_names),
                   "all": set(analytic_names) == set(jaxloss.multiclass()),
                   "at_margin": at_margin,
                   "shift_invariant": {n: shift_invariant(c) for n, c in table_curves.items()}},
      "selection": {n: [{k: r[k] for k in ("lr", "score", "std", "status", "run_id")}
                        for r in tuned[n]["table"]] for n in losses},
      "chosen_lr": {n: tuned[n]["lr"] for n in losses},
      "final": final,
      "curves": {n: {k: v.tolist() for k, v in c.items()} for n, c in curves_b.items()},
      "epochs_trained_now": trained["epochs"],
      "train_seconds": sum(t["train_seconds"] for t in tuned.values()),
  }
  summary["wall_seconds"] = time.perf_counter() - t_start
  summary["verdict"] = verdict(summary)
  markdown = render_markdown(summary, analytic_md, tuned, figures)
  common.write_text(os.path.join(args.out, "summary.md"), markdown)
  common.write_json(os.path.join(args.out, "summary.json"), _clean(summary))
  config_json["resolved"]["chosen_lr"] = summary["chosen_lr"]
  config_json["wall_seconds"] = summary["wall_seconds"]
  common.write_json(os.path.join(args.out, "config.json"), config_json)
  print(markdown, flush=True)
  print(f"wrote {args.out}/ in {summary['wall_seconds']:.0f} s", flush=True)
  return {"summary_md": markdown, "figures": [figures["analytic"], figures["training"]],
          "summary": summary, "wall_seconds": summary["wall_seconds"]}


if __name__ == "__main__":
  main()
