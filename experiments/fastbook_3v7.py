"""The fastai book's 3-vs-7 models: does ``mnist_loss`` reach the book's accuracies; is BCE better?

The book's chapter-4 setup, NO selection: MNIST's 3s (target 1) and 7s, 12396 to train, the test
split's 2038 as the book's "validation"; linear 784-1 (the book's ``init_params``, N(0, 1)), plain
SGD lr 1.0, batch 256, 20 epochs; ``simple_net`` 784-30-1 ReLU (PyTorch's init), lr 0.1, 40
epochs; each with ``mnist_loss`` (`jaxloss.sigmoid_difference`) and with BCE on one logit, over
seeds (the book: one unshuffled run; ours reshuffled, the ragged last batch dropped). Verdict:
BCE vs mnist_loss per model (`harness.compare`); final accuracy minus the book's (`BOOK`), 95%
prediction interval of one run. Also a per-epoch table in ``summary.md``, ``accuracy.png``::

  JAXLOSS_MNIST_DIR=/work/shared/data/mnist python -m experiments.fastbook_3v7
  python -m experiments.fastbook_3v7 --quick --out /tmp/fastbook_quick
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from typing import Any, Mapping

import numpy as np

from experiments import cli, harness, outputs, plots, stats

MODELS, LOSSES = ("linear", "simple_net"), ("mnist_loss", "bce")
TICKS = (0.5, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99)  # of the figure's logit accuracy axis
CONFIDENT = 0.99  # p on the wrong side above this: mnist_loss's logit gradient < 0.0099
# The book's printed accuracy per epoch: linear, `init_params` loop; simple_net, `fit(40, 0.1)`.
BOOK = {m: tuple(map(float, v.split())) for m, v in {
    "simple_net": "0.508341 0.807655 0.919529 0.943081 0.956330 0.963690 0.965653 0.968106 "
                  "0.968597 0.970559 0.972031 0.972522 0.973503 0.974485 0.975466 0.976448 "
                  "0.976448 0.976938 0.977920 0.977920 0.977920 0.978410 0.978901 0.979392 "
                  "0.979882 0.979882 0.979882 0.980864 0.980864 0.981845 0.981845 0.981845 "
                  "0.981845 0.981845 0.981845 0.982336 0.982826 0.982826 0.982826 0.982826",
    "linear": "0.6883 0.8314 0.9017 0.9227 0.9349 0.9438 0.9501 0.9535 0.9564 0.9594 0.9618 "
              "0.9613 0.9638 0.9643 0.9652 0.9662 0.9677 0.9687 0.9691 0.9691 0.9696"}.items()}


@dataclasses.dataclass(frozen=True)
class Settings(harness.Settings):
  """The book's settings as defaults (lrs and epochs are the linear model's)."""

  lrs: tuple[float, ...] = cli.option((1.0,), "plain-SGD rate of the linear model (the book's; "
                                      "one: no selection)", parse=cli.rates, flag="--linear-lr")
  epochs: int = cli.option(20, "epochs of the linear model", parse=cli.positive_int, quick=2,
                           flag="--linear-epochs")
  net_lr: float = cli.option(0.1, "plain-SGD rate of simple_net", parse=cli.positive_number)
  net_epochs: int = cli.option(40, "epochs of simple_net", parse=cli.positive_int, quick=2)
  hidden: int = cli.option(30, "hidden width of simple_net", parse=cli.positive_int)
  batch_size: int = cli.option(256, "training batch size", parse=cli.positive_int)
  val_size: int = cli.option(0, "0 only: no selection", parse=cli.nonnegative_int, choices=(0,))
  out: str = cli.option("runs/fastbook_3v7", "output folder")


def _mean_loss(name: str, logits_Bx1, labels_B):
  """Batch mean of the jaxloss loss `name` on one logit, targets ``labels_B[:, None]``."""
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import jaxloss  # pylint: disable=import-outside-toplevel
  return jnp.mean(getattr(jaxloss, name)(logits_Bx1, labels_B[:, None].astype(logits_Bx1.dtype)))


mnist_loss = functools.partial(_mean_loss, "sigmoid_difference")  # the book's mnist_loss
bce_loss = functools.partial(_mean_loss, "sigmoid_binary_cross_entropy")


def predict(logits_Bx1):
  """The book's decision ``sigmoid(z) > 0.5`` as int32 labels ``[B]`` (1 = a 3)."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  return (jax.nn.sigmoid(logits_Bx1[:, 0]) > 0.5).astype(jnp.int32)


def eval_fn(logits_Nx1, labels_N) -> dict[str, Any]:
  """Accuracy, both mean losses, and the share wrong with probability > `CONFIDENT`."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  p_N = jax.nn.sigmoid(logits_Nx1[:, 0])
  wrong_N = predict(logits_Nx1) != labels_N
  return {"test_accuracy": jnp.mean(~wrong_N), "test_bce": bce_loss(logits_Nx1, labels_N),
          "test_mnist_loss": mnist_loss(logits_Nx1, labels_N),
          "test_confident_wrong": jnp.mean(wrong_N & (jnp.maximum(p_N, 1.0 - p_N) > CONFIDENT))}


def splits(s: Settings, mnist) -> dict[str, harness.Splits]:
  """The 3s and 7s of each split; the book's validation set is the test split's."""
  from experiments import datasets  # pylint: disable=import-outside-toplevel
  d = datasets.binary_digits(mnist, 3, 7)
  if (n := d.train_labels.size) < s.batch_size:
    print(f"error: --batch-size: must be at most the {n} training 3s and 7s, got {s.batch_size}",
          file=sys.stderr)
    raise SystemExit(2)
  return {"3v7": harness.Splits((d.train_images, d.train_labels), None,
                                (d.test_images, d.test_labels))}


def variants(s: Settings) -> list[harness.Variant]:
  if len(s.seeds) < 2:
    raise ValueError("--seeds: give at least 2 (the verdicts are paired over seeds)")
  base = {"num_classes": 1, "optimizer": "sgd", "schedule": "constant"}
  models = {"linear": ({"hidden": (), "initializer": "standard_normal", "epochs": s.epochs}, s.lrs),
            "simple_net": ({"hidden": (s.hidden,), "initializer": "torch",
                            "epochs": s.net_epochs}, (s.net_lr,))}
  return [harness.Variant(f"{m}-{loss}", {"mnist_loss": mnist_loss, "bce": bce_loss}[loss],
                          predict, eval_fn, train={**base, **train}, rates=rates, data="3v7",
                          describe={"model": m, "loss": loss})
          for m, (train, rates) in models.items() for loss in LOSSES]


def arm_rows(outcomes: Mapping[str, harness.Outcome]) -> list[dict[str, Any]]:
  """Per arm: final accuracy in %, minus the book's with a one-run 95% prediction interval."""
  out = []
  for name, o in outcomes.items():
    acc_S, model, epochs = o.accuracy(), o.variant.describe["model"], len(o.curve("test_accuracy"))
    row = {"variant": name, **o.variant.describe, "lr": o.selected.lr, "epochs": epochs,
           "book": None, **dict(zip(("final_mean", "final_std"), outputs.mean_std(acc_S)))}
    if epochs <= len(BOOK[model]):
      row["book"] = 100.0 * BOOK[model][epochs - 1]
      ci = stats.paired_t_interval(acc_S - row["book"])  # the book ran once: predict one run
      d, half = ci.mean, (ci.high - ci.mean) * np.sqrt(ci.n + 1)
      row.update(book_diff=d, book_low=d - half, book_high=d + half,
                 vs_book="above" if d > half else "below" if -d > half else "matches")
    out.append(row)
  return out


def tables_markdown(s: Settings, outcomes: Mapping[str, harness.Outcome]) -> str:
  """The accuracy per epoch next to the book's, then each arm's final metrics."""
  names = [f"{m}-{loss}" for m in MODELS for loss in LOSSES]
  curves = [100.0 * outcomes[n].curve("test_accuracy") for n in names]
  lines = [f"Plain SGD at the book's rates, batch {s.batch_size}, seeds {list(s.seeds)}" + (
      " (**quick: numbers meaningless**)" if s.quick else "") + ". Validation accuracy % per "
      "epoch (ours: mean ± std over seeds; the book's mnist_loss run as printed):", "",
      "| epoch | " + " | ".join(names[:2] + ["book linear"] + names[2:] + ["book simple_net"])
      + " |", "|---" * 7 + "|"]
  for e in range(max(map(len, curves))):
    acc = ["{:.2f} ± {:.2f}".format(*outputs.mean_std(c[e])) if e < len(c) else "" for c in curves]
    book = [f"{100 * BOOK[m][e]:.2f}" if e < len(BOOK[m]) else "" for m in MODELS]
    lines.append(f"| {e + 1} | " + " | ".join(acc[:2] + book[:1] + acc[2:] + book[1:]) + " |")
  for key in ("test_mnist_loss", "test_bce", "test_confident_wrong"):  # mean over seeds
    ours = [f"{np.mean(outcomes[n].test[key]):.4f}" for n in names]
    lines.append(f"| final {key[5:]} | " + " | ".join(ours[:2] + [""] + ours[2:] + [""]) + " |")
  return "\n".join(lines + ["", f"confident_wrong: share misclassified with p > {CONFIDENT:g}. "
                            "Book: fastai/fastbook `04_mnist_basics.ipynb` (commit 02af2d7c)."])


def plot_accuracy(outcomes: Mapping[str, harness.Outcome], path: str) -> None:
  """Validation accuracy (logit scale) vs epoch per model: bands over seeds, the book's points."""
  fig, axes = plots.pyplot().subplots(1, len(MODELS), figsize=(12, 4.4))
  for ax, model in zip(axes, MODELS):
    for loss in LOSSES:
      acc_ExS = outcomes[f"{model}-{loss}"].curve("test_accuracy")
      plots.plot_band(ax, np.arange(1, len(acc_ExS) + 1), acc_ExS, loss)
    ax.plot(np.arange(1, len(BOOK[model]) + 1), BOOK[model], "o", color="black", mfc="none",
            ms=5, label="the book (mnist_loss, one run)")
    ax.set(title=model, xlabel="epoch", ylabel="validation accuracy % (logit scale)",
           yscale="logit", yticks=TICKS, yticklabels=[f"{100 * t:g}" for t in TICKS])
    ax.minorticks_off()
    ax.legend(fontsize=8, loc="lower right")
  fig.suptitle("MNIST 3 vs 7 in the fastai book's setup: mean over seeds, min-max band")
  plots.save(fig, path)


def report(s: Settings, outcomes: Mapping[str, harness.Outcome]) -> harness.Report:
  rows = arm_rows(outcomes)
  comparisons = harness.compare(outcomes, [(f"{m}-bce", f"{m}-mnist_loss") for m in MODELS],
                                margin=s.margin)
  verdict = " ".join(c.sentence() for c in comparisons)
  if booked := [r for r in rows if r["book"] is not None]:
    verdict += (" Final accuracy minus the book's mnist_loss run at that epoch (95% prediction "
                "interval of one run): " + "; ".join(
                    f"{r['variant']} {r['book_diff']:+.2f} points ({r['book_low']:+.2f} to "
                    f"{r['book_high']:+.2f}; book {r['book']:.2f}%): {r['vs_book']}"
                    for r in booked) + ".")
  headline = "The book's 3-vs-7 setup, BCE vs mnist_loss: " + "; ".join(
      f"{c.b.split('-')[0]} {c.interval.mean:+.2f} points, {c.verdict}" for c in comparisons) + (
      ". mnist_loss vs the book: " + "; ".join(f"{r['model']} {r['final_mean']:.2f}% vs "
      f"{r['book']:.2f}%, {r['vs_book']}" for r in booked if r["loss"] == "mnist_loss") + ".")
  summary = {"arms": rows, "comparisons": [dataclasses.asdict(c) for c in comparisons]}
  return harness.Report(verdict, tables_markdown(s, outcomes), summary,
                        {"accuracy.png": lambda path: plot_accuracy(outcomes, path)}, headline)


EXPERIMENT = harness.Experiment(
    "fastbook_3v7", "The fastai book's chapter-4 3-vs-7 models: mnist_loss vs binary "
    "cross-entropy, next to the book's accuracies", Settings, variants, report, splits)


main = functools.partial(harness.main, EXPERIMENT)  # main(argv=None) -> the summary


if __name__ == "__main__":
  main()
