"""The fastai book's 3-vs-7 models: does ``mnist_loss`` reach the book's accuracies; is BCE better?

The book's chapter-4 setup, NO selection: MNIST's 3s (target 1) and 7s, 12396 to train, the test
split's 2038 as the book's "validation"; linear 784-1 (the book's ``init_params``, N(0, 1)), plain
SGD lr 1.0, batch 256, 20 epochs; ``simple_net`` 784-30-1 ReLU (PyTorch's init), lr 0.1, 40
epochs; each with ``mnist_loss`` (`jaxloss.sigmoid_difference`) and with BCE on one logit, over
seeds (the book shows one run). Batches (``--loader``): ``shuffled`` reshuffles every epoch and
drops the ragged last batch (the suite's trainer); ``book`` is the book's ``DataLoader(dset,
batch_size=256)``: never shuffled, all the 3s then all the 7s (its ``dset`` order), the ragged
last batch of 108 kept (``TrainConfig(shuffle=False, drop_last=False)``); ``both`` (default)
trains the four arms shuffled and ``mnist_loss`` with the book's loader too: does the book's
early dip (``simple_net`` 50.8% after epoch 1) come from its batches? Besides, each loss at its
OWN rate (``-selected`` arms, ``--select-size``): a grid of half decades from a hundredth to a
hundred times the book's rate (``--select-span``; as wide as that because plain SGD on the
bounded ``mnist_loss`` wants rates far above the book's: a narrower grid left the linear
model's optimum unbracketed even after the protocol's two extensions), selected on training
3s and 7s held out (the book's validation set is the test split, so nothing is tuned on it),
reported once on the book's validation set.
Verdicts, one Holm family: BCE vs mnist_loss per model (book's rates, then own rates), and with
``both`` the book's loader vs shuffled batches for mnist_loss (after epoch 1: paired t; final:
McNemar); each arm minus the book's printed run (`BOOK`) after epoch 1 and at the end, 95%
prediction interval of one run. Also per-epoch tables in ``summary.md``, ``accuracy.png``::

  JAXLOSS_MNIST_DIR=/work/shared/data/mnist python -m experiments.fastbook_3v7
  python -m experiments.fastbook_3v7 --quick --out /tmp/fastbook_quick
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from typing import Any, Mapping, Sequence

import numpy as np

from experiments import cli, harness, outputs, plots, protocol, stats

MODELS, LOSSES = ("linear", "simple_net"), ("mnist_loss", "bce")
LOADERS = ("both", "shuffled", "book")
EPOCH1 = "after epoch 1"  # an epoch-1 comparison's arms: "linear-mnist_loss after epoch 1"
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
  val_size: int = cli.option(0, "0 only: the book's arms select nothing (see --select-size)",
                             parse=cli.nonnegative_int, choices=(0,))
  loader: str = cli.option(
      "both", "batches of the book-rate arms: shuffled (reshuffled every epoch, ragged last "
      "batch dropped), book (the book's DataLoader: the 3s then the 7s, never shuffled, ragged "
      "last batch kept), both (shuffled, and mnist_loss with the book's loader too)",
      choices=LOADERS)
  select_size: int = cli.option(
      2000, "training 3s and 7s held out to select each loss's own rate on (a grid of half "
      "decades around the book's rate, --select-span; reported on the book's validation "
      "set); 0: no own-rate arms", parse=cli.nonnegative_int, quick=128)
  select_span: int = cli.option(4, "half decades either side of the book's rate in the "
                                "own-rate grid (4: from 1/100 to 100 times it)",
                                parse=cli.nonnegative_int, quick=0)
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


def _refuse(message: str):
  print(f"error: {message}", file=sys.stderr)
  raise SystemExit(2)


def book_order(labels_N) -> np.ndarray:
  """The book's ``dset`` order: the indices of the 3s (label 1), then of the 7s, each in order."""
  labels_N = np.asarray(labels_N)
  return np.concatenate([np.flatnonzero(labels_N == 1), np.flatnonzero(labels_N == 0)])


def splits(s: Settings, mnist) -> dict[str, harness.Splits]:
  """The 3s and 7s of each split; the book's validation set is the test split's.

  ``"3v7"``: the book's training set (in MNIST's order; the shuffled loader reorders it);
  ``"3v7-book"``: the same images in the book's order (`book_order`); ``"3v7-select"``:
  ``select_size`` of them held out (`jaxloss.train.validation_split`, seed 0) to select on.
  """
  from experiments import datasets  # pylint: disable=import-outside-toplevel
  from jaxloss import train as jt  # pylint: disable=import-outside-toplevel
  d = datasets.binary_digits(mnist, 3, 7)
  if (n := d.train_labels.size) < s.batch_size:
    _refuse(f"--batch-size: must be at most the {n} training 3s and 7s, got {s.batch_size}")
  test = (d.test_images, d.test_labels)
  order = book_order(d.train_labels)
  out = {"3v7": harness.Splits((d.train_images, d.train_labels), None, test),
         "3v7-book": harness.Splits((d.train_images[order], d.train_labels[order]), None, test)}
  if s.select_size:
    if n - s.select_size < s.batch_size:
      _refuse(f"--select-size: must leave at least the batch size ({s.batch_size}) of the {n} "
              f"training 3s and 7s, got {s.select_size}")
    held = jt.validation_split(d, size=s.select_size, seed=0)
    out["3v7-select"] = harness.Splits((held.train_images, held.train_labels),
                                       (held.test_images, held.test_labels), test)
  return out


def select_grid(rate: float, span: int = 2) -> tuple[float, ...]:
  """The own-rate grid around a book rate: `span` half decades either side (2: from
  ``rate / 10`` to ``rate * 10``; the protocol grows it past an edge that wins)."""
  return protocol.half_decades(rate * 10 ** (-span / 2), rate * 10 ** (span / 2))


def arm_names(s: Settings) -> list[str]:
  """The arms `variants` trains, in order: ``MODEL-LOSS[-book|-selected]``."""
  main = "-book" if s.loader == "book" else ""
  out = []
  for m in MODELS:
    out += [f"{m}-{loss}{main}" for loss in LOSSES]
    out += [f"{m}-mnist_loss-book"] if s.loader == "both" else []
    out += [f"{m}-{loss}-selected" for loss in LOSSES] if s.select_size else []
  return out


def variants(s: Settings) -> list[harness.Variant]:
  if len(s.seeds) < 2:
    raise ValueError("--seeds: give at least 2 (the verdicts are paired over seeds)")
  base = {"num_classes": 1, "optimizer": "sgd", "schedule": "constant"}
  models = {"linear": ({"hidden": (), "initializer": "standard_normal", "epochs": s.epochs},
                       s.lrs[0]),
            "simple_net": ({"hidden": (s.hidden,), "initializer": "torch",
                            "epochs": s.net_epochs}, s.net_lr)}
  out = []
  for name in arm_names(s):
    m, loss, *kind = name.split("-")
    train, rate = models[m]
    kind = kind[0] if kind else "shuffled"
    book = kind == "book"
    out.append(harness.Variant(
        name, {"mnist_loss": mnist_loss, "bce": bce_loss}[loss], predict, eval_fn,
        train={**base, **train, **({"shuffle": False, "drop_last": False} if book else {})},
        rates=select_grid(rate, s.select_span) if kind == "selected" else (rate,),
        data={"book": "3v7-book", "selected": "3v7-select"}.get(kind, "3v7"),
        describe={"model": m, "loss": loss, "loader": "book" if book else "shuffled",
                  "rate": "selected" if kind == "selected" else "book"}))
  return out


def vs_book(acc_S, book: float) -> dict[str, Any]:
  """`acc_S` (%, one per seed) minus the book's one run `book` (%): the mean difference and
  its 95% prediction interval for one run (the book ran once), and the call on it."""
  ci = stats.paired_t_interval(np.asarray(acc_S, np.float64) - book)
  d, half = ci.mean, (ci.high - ci.mean) * np.sqrt(ci.n + 1)
  return {"diff": d, "low": d - half, "high": d + half,
          "call": "above" if d > half else "below" if -d > half else "matches"}


def arm_rows(outcomes: Mapping[str, harness.Outcome]) -> list[dict[str, Any]]:
  """Per arm: final accuracy in %; for an arm evaluated on the book's validation set every
  epoch, its accuracy after epoch 1 and at the end minus the book's run then (`vs_book`);
  for an own-rate arm, its selection (the curve is on the held-out training images)."""
  out = []
  for name, o in outcomes.items():
    acc_ExS, model = 100.0 * o.curve("test_accuracy"), o.variant.describe["model"]
    epochs = len(acc_ExS)
    row = {"variant": name, **o.variant.describe, "lr": o.selected.lr, "epochs": epochs,
           "book": None, **dict(zip(("final_mean", "final_std"), outputs.mean_std(o.accuracy())))}
    if o.variant.describe.get("rate") == "selected":
      row.update(grid=[r["lr"] for r in o.selected.table], grown=list(o.selected.extended),
                 heldout_mean=100.0 * float(np.mean(o.selected.result.final("test_accuracy"))))
      out.append(row)
      continue
    row["epoch1_mean"], row["epoch1_std"] = outputs.mean_std(acc_ExS[0])
    row["book_epoch1"] = 100.0 * BOOK[model][0]
    row.update({f"{k}_epoch1": v for k, v in vs_book(acc_ExS[0], row["book_epoch1"]).items()})
    if epochs <= len(BOOK[model]):
      row["book"] = 100.0 * BOOK[model][epochs - 1]
      got = vs_book(o.accuracy(), row["book"])
      row.update(book_diff=got["diff"], book_low=got["low"], book_high=got["high"],
                 vs_book=got["call"])
    out.append(row)
  return out


def comparisons(s: Settings,
                outcomes: Mapping[str, harness.Outcome]) -> dict[str, list[stats.Comparison]]:
  """The verdicts, by kind, over the arms that were trained, Holm-adjusted as one family.

  ``"book"``: BCE vs mnist_loss per model at the book's rates (the main loader); ``"own"``:
  the same at each loss's own selected rate; ``"loader"``: mnist_loss with the book's loader
  vs shuffled batches, after epoch 1 (paired t) and at the end (exact McNemar)."""
  main = "-book" if s.loader == "book" else ""
  kinds = {"book": [(f"{m}-bce{main}", f"{m}-mnist_loss{main}") for m in MODELS],
           "own": [(f"{m}-bce-selected", f"{m}-mnist_loss-selected") for m in MODELS],
           "loader": [(f"{m}-mnist_loss-book", f"{m}-mnist_loss") for m in MODELS]}
  kinds = {k: [p for p in v if p[0] in outcomes and p[1] in outcomes] for k, v in kinds.items()}
  if s.loader == "book":
    kinds["loader"] = []
  out = {k: harness.compare(outcomes, v, margin=s.margin) if v else [] for k, v in kinds.items()}
  early = []
  for a, b in kinds["loader"]:
    acc = {f"{n} {EPOCH1}": 100.0 * outcomes[n].curve("test_accuracy")[0] for n in (a, b)}
    if all(np.isfinite(v).all() for v in acc.values()):
      early += stats.compare_pairs(acc, [tuple(acc)], test="paired-t", margin=s.margin)
  out["loader"] = early + out["loader"]
  return dict(zip(out, stats.holm_family(*out.values())))


def _label(row: Mapping[str, Any]) -> str:
  return f"{row['loss']} ({row['loader']})"


def tables_markdown(s: Settings, outcomes: Mapping[str, harness.Outcome],
                    rows: Sequence[Mapping[str, Any]]) -> str:
  """Per model, the accuracy per epoch next to the book's and the final metrics; then the
  own-rate arms and their selection."""
  lines = [f"Plain SGD, batch {s.batch_size}, seeds {list(s.seeds)}" + (
      " (**quick: numbers meaningless**)" if s.quick else "") + ". Loaders: shuffled = "
      "reshuffled every epoch, ragged last batch dropped; book = the book's DataLoader, the 3s "
      "then the 7s in the same order every epoch, the ragged last batch kept."]
  for m in MODELS:
    arms = sorted((r for r in rows if r["model"] == m and r["rate"] == "book"),
                  key=lambda r: r["loss"] != "mnist_loss")  # mnist_loss first, next to the book
    if not arms:
      continue
    cols = [_label(r) for r in arms]
    at = sum(r["loss"] == "mnist_loss" for r in arms)  # the book's column after mnist_loss's
    curves = [100.0 * outcomes[r["variant"]].curve("test_accuracy") for r in arms]
    lines += ["", f"{m} at the book's rate {arms[0]['lr']:g}: validation accuracy % per epoch "
              "(ours: mean ± std over seeds; the book's mnist_loss run as printed):", "",
              "| epoch | " + " | ".join(cols[:at] + ["book (printed)"] + cols[at:]) + " |",
              "|---" * (len(cols) + 2) + "|"]
    for e in range(max(map(len, curves))):
      acc = ["{:.2f} ± {:.2f}".format(*outputs.mean_std(c[e])) if e < len(c) else ""
             for c in curves]
      book = [f"{100 * BOOK[m][e]:.2f}" if e < len(BOOK[m]) else ""]
      lines.append(f"| {e + 1} | " + " | ".join(acc[:at] + book + acc[at:]) + " |")
    for key in ("test_mnist_loss", "test_bce", "test_confident_wrong"):  # mean over seeds
      ours = [f"{np.mean(outcomes[r['variant']].test[key]):.4f}" for r in arms]
      lines.append(f"| final {key[5:]} | " + " | ".join(ours[:at] + [""] + ours[at:]) + " |")
  own = [r for r in rows if r["rate"] == "selected"]
  if own:
    lines += ["", f"Each loss at its own rate (shuffled loader). The book's validation set is "
              "MNIST's test split, so no rate is chosen on it: the grid is selected on "
              f"{s.select_size} training 3s and 7s held out (final held-out accuracy, mean over "
              "seeds), the models train on the other training images (both losses alike, so "
              "their comparison stays paired), and they meet the book's validation set once, "
              "at the end:", "",
              "| arm | rates tried | selected | held-out acc % | validation acc % |",
              "|---|---|---|---|---|"]
    lines += [f"| {r['variant']} | {', '.join(f'{x:g}' for x in r['grid'])} | {r['lr']:g} | "
              f"{r['heldout_mean']:.2f} | {r['final_mean']:.2f} ± {r['final_std']:.2f} |"
              for r in own]
  return "\n".join(lines + ["", f"confident_wrong: share misclassified with p > {CONFIDENT:g}. "
                            "Book: fastai/fastbook `04_mnist_basics.ipynb` (commit 02af2d7c)."])


def plot_accuracy(outcomes: Mapping[str, harness.Outcome], path: str) -> None:
  """Validation accuracy (logit scale) vs epoch per model, the book-rate arms: bands over
  seeds, the book's points."""
  fig, axes = plots.pyplot().subplots(1, len(MODELS), figsize=(12, 4.4))
  for ax, model in zip(axes, MODELS):
    for name, o in outcomes.items():
      d = o.variant.describe
      if d["model"] == model and d["rate"] == "book":
        acc_ExS = o.curve("test_accuracy")
        plots.plot_band(ax, np.arange(1, len(acc_ExS) + 1), acc_ExS, f"{d['loss']} ({d['loader']})",
                        ls="--" if d["loader"] == "book" else "-")
    ax.plot(np.arange(1, len(BOOK[model]) + 1), BOOK[model], "o", color="black", mfc="none",
            ms=5, label="the book (mnist_loss, one run)")
    ax.set(title=model, xlabel="epoch", ylabel="validation accuracy % (logit scale)",
           yscale="logit", yticks=TICKS, yticklabels=[f"{100 * t:g}" for t in TICKS])
    ax.minorticks_off()
    ax.legend(fontsize=8, loc="lower right")
  fig.suptitle("MNIST 3 vs 7 in the fastai book's setup: mean over seeds, min-max band")
  plots.save(fig, path)


def _vs(r: Mapping[str, Any], when: str) -> str:
  if when == "epoch1":
    return (f"{r['variant']} {r['diff_epoch1']:+.2f} points ({r['low_epoch1']:+.2f} to "
            f"{r['high_epoch1']:+.2f}; book {r['book_epoch1']:.2f}%): {r['call_epoch1']}")
  return (f"{r['variant']} {r['book_diff']:+.2f} points ({r['book_low']:+.2f} to "
          f"{r['book_high']:+.2f}; book {r['book']:.2f}%): {r['vs_book']}")


def report(s: Settings, outcomes: Mapping[str, harness.Outcome]) -> harness.Report:
  rows = arm_rows(outcomes)
  groups = comparisons(s, outcomes)
  comps = [c for v in groups.values() for c in v]
  parts = []
  if groups["book"] or groups["own"]:
    parts.append(f"BCE vs mnist_loss (Holm over the experiment's {len(comps)} comparisons), "
                 + "; ".join(f"{what}: " + "; ".join(c.sentence()[:-1] for c in groups[kind])
                             for kind, what in (("book", "at the book's rates"),
                                                ("own", "each at its own rate selected on "
                                                        "held-out training images"))
                             if groups[kind]) + ".")
  if groups["loader"]:
    parts.append("The book's loader (the 3s then the 7s, never shuffled, ragged last batch "
                 "kept) vs shuffled batches, mnist_loss: " + "; ".join(
                     c.sentence()[:-1] for c in groups["loader"]) + ".")
  booked = [r for r in rows if r["loss"] == "mnist_loss" and r["rate"] == "book"]
  if booked:
    parts.append("mnist_loss minus the book's printed run (95% prediction interval of one run): "
                 "after epoch 1, " + "; ".join(_vs(r, "epoch1") for r in booked) + (
                     "; at the end, " + "; ".join(_vs(r, "final") for r in booked
                                                  if r["book"] is not None)
                     if any(r["book"] is not None for r in booked) else "") + ".")
  verdict = " ".join(parts)
  short = lambda c: f"{c.a.split('-')[0]} {c.interval.mean:+.2f} points, {c.verdict}"
  headline = "The book's 3-vs-7 setup, BCE vs mnist_loss: " + "; ".join(
      short(c) for c in groups["book"]) + (("; own rates: " + "; ".join(
          short(c) for c in groups["own"])) if groups["own"] else "") + "."
  dips = [r for r in rows if r["model"] == "simple_net" and r["loss"] == "mnist_loss"
          and r["rate"] == "book"]
  if dips:
    headline += " simple_net after epoch 1: " + ", ".join(
        f"{r['loader']} loader {r['epoch1_mean']:.1f}%" for r in dips) + (
        f" (book {100 * BOOK['simple_net'][0]:.1f}%).")
  summary = {"arms": rows, "comparisons": [dataclasses.asdict(c) for c in comps],
             "comparison_kinds": {k: len(v) for k, v in groups.items()}}
  return harness.Report(verdict, tables_markdown(s, outcomes, rows), summary,
                        {"accuracy.png": lambda path: plot_accuracy(outcomes, path)}, headline)


EXPERIMENT = harness.Experiment(
    "fastbook_3v7", "The fastai book's chapter-4 3-vs-7 models: mnist_loss vs binary "
    "cross-entropy, next to the book's accuracies", Settings, variants, report, splits)


main = functools.partial(harness.main, EXPERIMENT)  # main(argv=None) -> the summary


if __name__ == "__main__":
  main()
