"""Multi-label MNIST: is sigmoid binary cross-entropy the right loss for several labels per image?

Each image shows two DIFFERENT MNIST digits side by side (28x56), its target the set of both
(multi-hot). One MLP trains per loss: ``bce`` (``multilabel_bce``), ``sigdiff`` (the fastai
book's ``mean |sigmoid(z) - t|``), ``softmax`` (cross-entropy on ``t / sum(t)``), decoded by the
two highest logits (top-2) and, sigmoid losses, by ``z > 0`` (no count of labels needed). The
rate is selected per loss on validation exact-set accuracy (top-2), the validation pairs drawn
from ``--val-size`` training IMAGES held out BEFORE pairing (an image is in about two pairs:
splitting pairs would leak). Verdicts: the first loss vs each other (`harness.compare`),
``z > 0`` vs top-2 per sigmoid loss (paired t, Holm). Also writes ``accuracy.png``. Usage::

  JAXLOSS_MNIST_DIR=/work/shared/data/mnist python -m experiments.multilabel
  python -m experiments.multilabel --quick --out /tmp/multilabel
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Mapping

import numpy as np

from experiments import cli, harness, outputs, plots, stats

NUM_CLASSES, NUM_LABELS = 10, 2  # every image shows exactly two different digits
CHANCE = 100.0 / 45.0  # exact-set accuracy (%) of a random pair of different digits
LOSSES, SIGMOID = ("bce", "sigdiff", "softmax"), ("bce", "sigdiff")


def multilabel_loss(logits_BxC, targets_BxC, *, kind: str):
  """Batch loss on multi-hot targets; `kind`: ``bce``, ``sigdiff`` or ``softmax``."""
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import jaxloss  # pylint: disable=import-outside-toplevel
  if kind == "bce":
    return jaxloss.get("multilabel_bce").loss(logits_BxC, targets_BxC)
  if kind == "sigdiff":
    return jnp.mean(jaxloss.sigmoid_difference(logits_BxC, targets_BxC))
  total_Bx1 = jnp.maximum(jnp.sum(targets_BxC, axis=-1, keepdims=True), 1.0)  # 0/0 guard
  return jnp.mean(jaxloss.softmax_cross_entropy(logits_BxC, targets_BxC / total_Bx1))


def evaluate(logits_NxC, targets_NxC, *, threshold: bool) -> dict[str, Any]:
  """The eval_fn: exact-set accuracy and macro F1 of top-2 decoding; if `threshold`, also of
  ``z > 0``, the mean count of digits it predicts and the share of images with exactly two."""
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import jaxloss  # pylint: disable=import-outside-toplevel
  top2_NxC = jaxloss.top_k_multi_hot(logits_NxC, k=NUM_LABELS)
  out = {"test_accuracy": jnp.mean(jaxloss.exact_set_accuracy(top2_NxC, targets_NxC)),
         "macro_f1_top2": jaxloss.macro_f1(top2_NxC, targets_NxC)}
  if threshold:
    pred_NxC = jaxloss.threshold_multi_hot(logits_NxC, threshold=0.0)
    count_N = jnp.sum(pred_NxC, axis=-1)
    out.update(exact_threshold=jnp.mean(jaxloss.exact_set_accuracy(pred_NxC, targets_NxC)),
               macro_f1_threshold=jaxloss.macro_f1(pred_NxC, targets_NxC),
               count_threshold=jnp.mean(count_N), two_threshold=jnp.mean(count_N == NUM_LABELS))
  return out


def correct_top2(logits_NxC, targets_NxC) -> dict[str, Any]:
  """``{"correct": [N] bool}``: exact-set correctness of top-2 decoding (for McNemar)."""
  import jaxloss  # pylint: disable=import-outside-toplevel
  top2_NxC = jaxloss.top_k_multi_hot(logits_NxC, k=NUM_LABELS)
  return {"correct": jaxloss.exact_set_accuracy(top2_NxC, targets_NxC) > 0.5}


@dataclasses.dataclass(frozen=True)
class Settings(harness.Settings):
  """multilabel's command line: the harness's options and the two-digit data."""

  val_size: int = cli.option(10000, "training images held out; as many validation pairs are "
                             "built from them (0: no selection, a single rate, test after every "
                             "epoch)", parse=cli.nonnegative_int, quick=0)
  out: str = cli.option("runs/multilabel", "output folder")
  losses: tuple[str, ...] = cli.option(LOSSES, "losses among bce, sigdiff, softmax; the first "
                                       "is compared with each other", parse=cli.names,
                                       quick=("bce", "softmax"))
  hidden: tuple[int, ...] = cli.option((512, 512), "MLP hidden widths (input 28*56 = 1568)",
                                       parse=cli.ints, quick=(32,))
  train_pairs: int = cli.option(60000, "two-digit training pairs, drawn from the training "
                                "images not held out", parse=cli.positive_int, quick=2048)
  test_pairs: int = cli.option(10000, "two-digit test pairs, drawn from the MNIST test images",
                               parse=cli.positive_int, quick=512)
  data_seed: int = cli.option(0, "seed of the pair draws", parse=cli.nonnegative_int)


def splits(s: Settings, mnist) -> dict[str, harness.Splits]:
  """Training and validation pairs from disjoint training IMAGES, test pairs from test images."""
  from experiments import datasets  # pylint: disable=import-outside-toplevel
  from jaxloss import train as jt  # pylint: disable=import-outside-toplevel
  images = jt.validation_split(mnist, size=s.val_size, seed=0) if s.val_size else mnist
  pairs = datasets.two_digit_mnist(images, train_size=s.train_pairs, test_size=s.val_size,
                                   seed=s.data_seed)
  test = datasets.two_digit_mnist(mnist, train_size=0, test_size=s.test_pairs, seed=s.data_seed)
  val = (pairs.test_images, pairs.test_labels) if s.val_size else None
  return {"pairs": harness.Splits((pairs.train_images, pairs.train_labels), val,
                                  (test.test_images, test.test_labels))}


def variants(s: Settings) -> list[harness.Variant]:
  import jaxloss  # pylint: disable=import-outside-toplevel
  if unknown := [n for n in s.losses if n not in LOSSES]:
    raise ValueError(f"--losses: must be among {', '.join(LOSSES)}, got {', '.join(unknown)}")
  if s.batch_size > s.train_pairs:
    raise ValueError(f"--batch-size: must be <= --train-pairs {s.train_pairs}, got {s.batch_size}")
  return [harness.Variant(
      name, functools.partial(multilabel_loss, kind=name),
      functools.partial(jaxloss.top_k_multi_hot, k=NUM_LABELS),  # train_accuracy: per label
      functools.partial(evaluate, threshold=name in SIGMOID), correct_top2,
      train={"hidden": s.hidden, "num_classes": NUM_CLASSES}, data="pairs",
      metric="test_accuracy", describe={"threshold_decoding": name in SIGMOID})
      for name in s.losses]


def comparisons(s: Settings, outcomes: Mapping[str, harness.Outcome]):
  """``(losses, decodings)``: the first loss vs each other; ``z > 0`` vs top-2 per loss."""
  if len(s.seeds) < 2:
    return [], []
  names = list(outcomes)
  losses = harness.compare(outcomes, [(names[0], n) for n in names[1:]], margin=s.margin)
  sig = [n for n in names if "exact_threshold" in outcomes[n].test]
  acc = {f"{n}@{d}": v for n in sig for d, v in (
      ("z>0", 100.0 * outcomes[n].test["exact_threshold"]), ("top-2", outcomes[n].accuracy()))}
  return losses, stats.compare_pairs(acc, [(f"{n}@z>0", f"{n}@top-2") for n in sig],
                                     margin=s.margin)


def _pm(values, scale: float = 100.0) -> str:
  return "{:.2f} ± {:.2f}".format(*outputs.mean_std(scale * np.asarray(values, np.float64)))


def plot_accuracy(outcomes: Mapping[str, harness.Outcome], path: str) -> None:
  """Exact-set test accuracy per loss, top-2 and ``z > 0``, mean with a 95% t CI over seeds."""
  fig, ax = plots.pyplot().subplots(figsize=(7, 4))
  names = list(outcomes)
  for k, (key, label) in enumerate((("test_accuracy", "top-2"), ("exact_threshold", "z > 0"))):
    shown = [n for n in names if key in outcomes[n].test]
    acc = [100.0 * np.asarray(outcomes[n].test[key], np.float64) for n in shown]
    half = [stats.paired_t_interval(a).high - a.mean() if a.size > 1 else 0.0 for a in acc]
    ax.bar([names.index(n) + 0.4 * k - 0.2 for n in shown], [a.mean() for a in acc], 0.4,
           yerr=half, capsize=3, label=label)
  ax.axhline(CHANCE, color="gray", linestyle=":", label="chance")
  ax.set_xticks(range(len(names)), names)
  ax.set(ylabel="exact-set test accuracy % (mean, 95% CI over seeds)", ylim=(0, None))
  ax.legend()
  plots.save(fig, path)


def report(s: Settings, outcomes: Mapping[str, harness.Outcome]) -> harness.Report:
  losses, decodings = comparisons(s, outcomes)
  verdict = ("Exact-set test accuracy with top-2 decoding (mean ± std over seeds, chance "
             f"{CHANCE:.1f}%): " + ", ".join(f"{n} {_pm(o.test['test_accuracy'])}%"
                                             for n, o in outcomes.items()) + ".")
  for group in (losses, decodings):
    verdict += (" " + "; ".join(c.sentence().rstrip(".") for c in group) + ".") if group else ""
  headline = ("Two-digit MNIST, exact-set test accuracy (top-2): " + ", ".join(
      f"{n} {o.accuracy().mean():.1f}%" for n, o in outcomes.items())
              + "".join(f"; {c.a} vs {c.b}: {c.verdict}" for c in losses + decodings) + ".")
  lines = [f"Pairs: {s.train_pairs} training, {s.val_size} validation (from {s.val_size} training "
           f"images held out before pairing), {s.test_pairs} test. MLP widths "
           f"{[28 * 56, *s.hidden, NUM_CLASSES]}, Adam (cosine), {s.epochs} epochs, seeds "
           f"{list(s.seeds)}. Test, mean ± std over seeds:", "",
           "| loss | lr | exact-set top-2 % | macro F1 top-2 % | exact-set z > 0 % "
           "| macro F1 z > 0 % | digits z > 0 | exactly two z > 0 % |", "|---" * 8 + "|"]
  for name, o in outcomes.items():
    cells = [_pm(o.test[k], 1.0 if k == "count_threshold" else 100.0) if k in o.test else "–"
             for k in ("test_accuracy", "macro_f1_top2", "exact_threshold", "macro_f1_threshold",
                       "count_threshold", "two_threshold")]
    lines.append(f"| {name} | {o.selected.lr:g} | " + " | ".join(cells) + " |")
  lines += ["", "![exact-set test accuracy per loss and decoding](accuracy.png)"]
  summary = {"chance": CHANCE, "comparisons": [
      {"kind": kind, **dataclasses.asdict(c)}
      for kind, group in (("loss", losses), ("decoding", decodings)) for c in group]}
  return harness.Report(verdict, "\n".join(lines), summary,
                        {"accuracy.png": lambda path: plot_accuracy(outcomes, path)}, headline)


EXPERIMENT = harness.Experiment(
    "multilabel", "Multi-label digits: is sigmoid binary cross-entropy the right loss?",
    Settings, variants, report, splits=splits)


main = functools.partial(harness.main, EXPERIMENT)  # main(argv=None) -> the summary


if __name__ == "__main__":
  main()
