"""The headline experiment: cross-entropy vs the fastai book's sigmoid-difference loss on full MNIST.

Trains the same MLP (784-512-512-10 ReLU) on the full 60k/10k MNIST with each
loss, several seeds side by side in one vmapped program, and writes to ``--out``:

* ``metrics.jsonl``: one line per (loss, seed, epoch): train loss and accuracy,
  test accuracy, NLL, ECE and confidence, epoch and cumulative wall seconds;
* ``summary.csv`` / ``summary.md``: per loss, final and best test accuracy
  (mean +- std over seeds), epochs and wall seconds to reach 97% and 98% test
  accuracy, calibration, and what the trained models output on test digits
  (the gradient each loss still gives to the misclassified ones);
* ``curves.png``: test error (log scale) vs epoch and vs wall time, one line
  per loss (mean over seeds) with a min-max band;
* ``config.json``: every setting, the device and package versions.

Usage::

  JAXLOSS_MNIST_DIR=../shared/data/mnist python -m experiments.compare
  python -m experiments.compare --losses ce,sigmoid_difference,multiclass_hinge --seeds 5
  python -m experiments.compare --epochs 1 --train-subset 4096 --out /tmp/quick

Losses are picked by registry name (``python -c "import jaxloss;
print(jaxloss.available())"``). Every loss trains on its registry targets: the
sigmoid-difference loss on one-hot targets, exactly the book's
``where(t==1, 1-sigmoid(z), sigmoid(z)).mean()`` over the 10 classes, and every
model predicts by argmax of its logits. Wall seconds are those of the program
that trains all seeds of a loss together (compilation excluded and reported
apart).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import math
import os
import sys
import time
from typing import Any, Sequence

import numpy as np

from experiments import common

DEFAULT_LOSSES = ("softmax_cross_entropy", "sigmoid_difference")
THRESHOLDS = (97.0, 98.0)
TINY_GRAD = 1e-3
METRIC_KEYS = ("train_loss", "train_accuracy", "test_accuracy", "test_nll", "test_ece",
               "test_confidence")


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="python -m experiments.compare",
      description="Train the same MLP on full MNIST with several losses (default: softmax "
                  "cross-entropy vs the fastai book's sigmoid-difference mnist_loss), several "
                  "seeds at once, and write metrics.jsonl, summary.csv/.md, curves.png and "
                  "config.json to --out.",
      formatter_class=common.HelpFormatter)
  parser.add_argument("--losses", default=",".join(DEFAULT_LOSSES),
                      help="comma-separated registry names or aliases (see jaxloss.available())")
  parser.add_argument("--seeds", type=common.parse_seeds, default="0,1,2",
                      help="a count N (seeds 0..N-1) or a comma-separated list of seeds")
  parser.add_argument("--epochs", type=common.positive_int, default=10,
                      help="training epochs (>= 1)")
  parser.add_argument("--optimizer", default="adam", choices=("sgd", "momentum", "adam", "adamw"),
                      help="optax optimizer")
  parser.add_argument("--lr", type=common.positive_float, default=1e-3,
                      help="peak learning rate (finite, > 0)")
  parser.add_argument("--schedule", default="cosine", choices=("cosine", "constant"),
                      help="learning-rate schedule (cosine decays to 0 over the run)")
  parser.add_argument("--batch-size", type=common.positive_int, default=128,
                      help="training batch size (>= 1)")
  parser.add_argument("--hidden", type=common.parse_ints, default="512,512",
                      help="hidden widths, comma-separated ('' for a linear model)")
  parser.add_argument("--activation", default="relu",
                      choices=("relu", "gelu", "tanh", "sigmoid", "silu"),
                      help="hidden-layer activation")
  parser.add_argument("--weight-decay", type=float, default=1e-4, help="used by adamw only")
  parser.add_argument("--momentum", type=float, default=0.9, help="used by momentum only")
  common.add_data_args(parser)
  common.add_run_args(parser, out="runs/compare")
  return parser


# --------------------------------------------------------------------------- training


def diagnose(spec, logits_SxNxC, labels_N) -> dict[str, np.ndarray]:
  """What the trained models output on test digits, and the gradient their loss gives.

  For every seed: the share of test examples misclassified; among those, the
  median norm of the per-example loss gradient with respect to the logits,
  ``||d loss_i / d z_i||`` (the training loss averages these over a batch), and
  the share of them whose gradient norm is below `TINY_GRAD` (examples the
  loss has given up on); and the mean probability the model gives to the true
  class and to its top class, under the loss's own link (sigmoid or softmax).

  Returns:
    name -> ``[S]`` NumPy array.
  """
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

  num_classes = logits_SxNxC.shape[-1]
  labels_N = jnp.asarray(labels_N, jnp.int32)
  targets = spec.targets(labels_N, num_classes)

  def one_seed(logits_NxC):
    grads_NxC = jax.grad(lambda z: jnp.sum(spec.per_example(z, targets)))(logits_NxC)
    grad_norm_N = jnp.linalg.norm(grads_NxC, axis=-1)
    wrong_N = jnp.argmax(logits_NxC, axis=-1) != labels_N
    if spec.activation == "sigmoid":
      probs_NxC = jax.nn.sigmoid(logits_NxC)
    else:
      probs_NxC = jax.nn.softmax(logits_NxC, axis=-1)
    true_prob_N = jnp.take_along_axis(probs_NxC, labels_N[:, None], axis=-1)[:, 0]
    n_wrong = jnp.sum(wrong_N)
    masked_norm = jnp.where(wrong_N, grad_norm_N, jnp.nan)
    return {
        "test_error": jnp.mean(wrong_N),
        "wrong_grad_norm_median": jnp.nanmedian(masked_norm),
        "wrong_tiny_grad_share": jnp.sum(wrong_N & (grad_norm_N < TINY_GRAD)) / jnp.maximum(n_wrong, 1),
        "true_prob_mean": jnp.mean(true_prob_N),
        "wrong_true_prob_mean": jnp.sum(jnp.where(wrong_N, true_prob_N, 0.0)) / jnp.maximum(n_wrong, 1),
        "top_prob_mean": jnp.mean(jnp.max(probs_NxC, axis=-1)),
    }

  out = jax.jit(jax.vmap(one_seed))(logits_SxNxC)
  return {k: np.asarray(v, np.float64) for k, v in jax.device_get(out).items()}


def run_loss(name: str, config, data, seeds: Sequence[int], *, bar=None,
             on_epoch=None) -> dict[str, Any]:
  """Trains `seeds` models with the registry loss `name`; returns its history and diagnostics."""
  import jax  # pylint: disable=import-outside-toplevel

  import jaxloss  # pylint: disable=import-outside-toplevel
  from jaxloss import train as jt  # pylint: disable=import-outside-toplevel

  spec = jaxloss.get(name)
  if not spec.multiclass:
    raise SystemExit(f"--losses: {spec.name!r} is not a single-label multi-class loss.")
  history = []
  wall = 0.0
  state = None
  for record in jt.iterate_training(config, data, loss_fn=spec.loss_from_labels,
                                    predict_fn=spec.predict, seeds=seeds):
    wall += record.seconds
    history.append({"epoch": record.epoch, "seconds": record.seconds, "wall_seconds": wall,
                    "compile_seconds": record.compile_seconds,
                    **{k: np.asarray(record[k], np.float64) for k in METRIC_KEYS}})
    state = record.state
    if on_epoch is not None:
      on_epoch(spec.name, history[-1])
    if bar is not None:
      bar.set_postfix_str(f"{spec.name} test acc {100 * float(np.mean(record['test_accuracy'])):.2f}%")
      bar.update(1)
    if np.any(record.diverged):
      bad = [s for s, flag in zip(record.seeds, record.diverged) if flag]
      print(f"warning: {spec.name}: seed(s) {bad} diverged (non-finite training loss or "
            f"weights) by epoch {record.epoch}", file=sys.stderr)
  logits_fn = jt.make_batched_apply(config.model().apply, batch_size=config.eval_batch_size)
  logits = jax.jit(jax.vmap(logits_fn, in_axes=(0, None)))(state.params, data.test_images)
  return {"spec": spec, "history": history, "diagnostics": diagnose(spec, logits, data.test_labels)}


# --------------------------------------------------------------------------- reporting


def metrics_rows(loss: str, seeds: Sequence[int], entry: dict[str, Any]) -> list[dict[str, Any]]:
  """One metrics.jsonl row per seed for one epoch entry of `run_loss`'s history."""
  rows = []
  for i, seed in enumerate(seeds):
    row = {"loss": loss, "seed": int(seed), "epoch": entry["epoch"]}
    row.update({k: float(entry[k][i]) for k in METRIC_KEYS})
    row["test_error"] = 1.0 - row["test_accuracy"]
    row.update({"epoch_seconds": entry["seconds"], "wall_seconds": entry["wall_seconds"],
                "compile_seconds": entry["compile_seconds"]})
    rows.append(row)
  return rows


def _fmt(mean: float, std: float, digits: int = 2) -> str:
  if math.isnan(mean):
    return "n/a"
  return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _prob(p: float) -> str:
  """Three decimals, or two significant digits for tiny nonzero probabilities."""
  return f"{p:.3f}" if p == 0 or p >= 1e-3 else f"{p:.2g}"


def summarize(name: str, result: dict[str, Any], seeds: Sequence[int]) -> dict[str, Any]:
  """One summary row: accuracies in %, crossings of `THRESHOLDS`, calibration, diagnostics."""
  history = result["history"]
  acc_ExS = 100.0 * np.stack([h["test_accuracy"] for h in history])
  wall_E = np.array([h["wall_seconds"] for h in history])
  final = history[-1]
  row: dict[str, Any] = {"loss": name, "seeds": len(seeds), "epochs": len(history)}
  row["final_acc_mean"], row["final_acc_std"] = common.mean_std(acc_ExS[-1])
  row["best_acc_mean"], row["best_acc_std"] = common.mean_std(acc_ExS.max(axis=0))
  for level in THRESHOLDS:
    crossings = [common.first_crossing(acc_ExS[:, s], level) for s in range(len(seeds))]
    reached = [c for c in crossings if c is not None]
    key = f"{level:g}"
    row[f"reached_{key}"] = len(reached)
    row[f"epochs_to_{key}"] = float(np.mean([c + 1 for c in reached])) if reached else math.nan
    row[f"seconds_to_{key}"] = float(np.mean([wall_E[c] for c in reached])) if reached else math.nan
  for key in ("test_nll", "test_ece", "test_confidence", "train_loss"):
    row[f"{key}_mean"], row[f"{key}_std"] = common.mean_std(final[key])
  for key, values in result["diagnostics"].items():
    row[key] = float(np.mean(values))
  row["train_seconds"] = float(wall_E[-1])
  row["compile_seconds"] = float(history[0]["compile_seconds"])
  return row


def summary_csv(rows: Sequence[dict[str, Any]]) -> str:
  buf = io.StringIO()
  writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
  writer.writeheader()
  for row in rows:
    writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
  return buf.getvalue()


def _crossing(row: dict[str, Any], level: float, unit: str) -> str:
  key = f"{level:g}"
  n = row[f"reached_{key}"]
  if n == 0:
    return "never"
  value = row[f"epochs_to_{key}"] if unit == "epochs" else row[f"seconds_to_{key}"]
  text = f"{value:.1f}" if unit == "epochs" else f"{value:.0f}"
  return text if n == row["seeds"] else f"{text} ({n}/{row['seeds']} seeds)"


def summary_markdown(rows: Sequence[dict[str, Any]], config: dict[str, Any]) -> str:
  """The results tables in Markdown (accuracy, speed to 97/98%, calibration, diagnostics)."""
  lines = [
      f"Full MNIST ({config['train_examples']} train / {config['test_examples']} test), "
      f"MLP {config['model']}, {config['optimizer']} lr {config['lr']:g} ({config['schedule']}), "
      f"batch {config['batch_size']}, {config['epochs']} epochs, seeds {config['seeds']}, "
      f"on {config['device']}. Mean ± std over seeds.",
      "",
      "| loss | final test acc % | best test acc % | epochs to 97% | epochs to 98% "
      "| s to 97% | s to 98% | test NLL | ECE % | mean confidence |",
      "|---|---|---|---|---|---|---|---|---|---|",
  ]
  for r in rows:
    lines.append(
        f"| {r['loss']} | {_fmt(r['final_acc_mean'], r['final_acc_std'])} "
        f"| {_fmt(r['best_acc_mean'], r['best_acc_std'])} "
        f"| {_crossing(r, 97.0, 'epochs')} | {_crossing(r, 98.0, 'epochs')} "
        f"| {_crossing(r, 97.0, 'seconds')} | {_crossing(r, 98.0, 'seconds')} "
        f"| {_fmt(r['test_nll_mean'], r['test_nll_std'], 3)} "
        f"| {_fmt(100 * r['test_ece_mean'], 100 * r['test_ece_std'])} "
        f"| {r['test_confidence_mean']:.3f} |")
  lines += [
      "",
      "What the trained models output on the test digits (own link: sigmoid for sigmoid losses, "
      "softmax otherwise; mean over seeds):",
      "",
      "| loss | p(true class) | p(top class) | p(true) on misclassified | median grad norm on "
      f"misclassified | misclassified with grad norm < {TINY_GRAD:g} | train s | compile s |",
      "|---|---|---|---|---|---|---|---|",
  ]
  for r in rows:
    lines.append(
        f"| {r['loss']} | {_prob(r['true_prob_mean'])} | {_prob(r['top_prob_mean'])} "
        f"| {_prob(r['wrong_true_prob_mean'])} | {r['wrong_grad_norm_median']:.3g} "
        f"| {100 * r['wrong_tiny_grad_share']:.1f}% | {r['train_seconds']:.0f} "
        f"| {r['compile_seconds']:.1f} |")
  lines += [
      "",
      "Grad norm: `||d loss_i / d logits_i||` of the per-example loss (the batch loss averages "
      "these). Seconds are wall time of the program training all seeds of a loss together, "
      "compilation excluded. ECE: 15 equal-width bins on softmax(logits).",
  ]
  return "\n".join(lines) + "\n"


def plot_curves(results: dict[str, dict[str, Any]], path: str) -> None:
  """curves.png: test error % (log scale) vs epoch and vs wall seconds, min-max band over seeds."""
  import matplotlib  # pylint: disable=import-outside-toplevel

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
  for name, result in results.items():
    history = result["history"]
    err_ExS = 100.0 * (1.0 - np.stack([h["test_accuracy"] for h in history]))
    epochs = np.array([h["epoch"] for h in history])
    wall = np.array([h["wall_seconds"] for h in history])
    for ax, x in ((axes[0], epochs), (axes[1], wall)):
      (line,) = ax.plot(x, err_ExS.mean(axis=1), marker="o", ms=3, label=name)
      ax.fill_between(x, err_ExS.min(axis=1), err_ExS.max(axis=1), color=line.get_color(),
                      alpha=0.2, lw=0)
  axes[0].set_yscale("log")
  axes[0].set_xlabel("epoch")
  axes[1].set_xlabel("wall seconds (all seeds together, compile excluded)")
  axes[0].set_ylabel("test error % (log scale)")
  for ax in axes:
    ax.grid(True, which="both", alpha=0.3)
  axes[0].legend()
  fig.suptitle("Full MNIST, MLP: test error, mean over seeds with min-max band")
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=120)
  plt.close(fig)


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  args = build_parser().parse_args(argv)
  import jax  # pylint: disable=import-outside-toplevel

  import jaxloss  # pylint: disable=import-outside-toplevel
  from jaxloss import train as jt  # pylint: disable=import-outside-toplevel

  names = [n.strip() for n in args.losses.split(",") if n.strip()]
  try:
    specs = [jaxloss.get(n) for n in names]
  except (KeyError, ValueError) as err:
    raise SystemExit(f"--losses: {err}") from None
  names = [s.name for s in specs]
  if len(set(names)) != len(names):
    raise SystemExit(f"--losses lists a loss twice: {names}")

  env = common.environment()
  dev = env["device"]
  print(f"device: {dev['platform'].upper()} ({dev['device_kind']}, {dev['device_count']} "
        f"device(s)), jax {env['versions']['jax']}", flush=True)

  t0 = time.perf_counter()
  try:
    data = jt.load_mnist(mnist_dir=args.mnist_dir, data_dir=args.data_dir)
  except (jt.MnistNotFoundError, jt.MnistCorruptError) as err:
    raise SystemExit(f"error: {err}") from None
  data = jt.to_device(data.subset(args.train_subset, args.test_subset))
  load_seconds = time.perf_counter() - t0
  print(f"MNIST: {data.train_images.shape[0]} train / {data.test_images.shape[0]} test images "
        f"loaded in {load_seconds:.1f} s", flush=True)

  train_config = jt.TrainConfig(
      hidden=args.hidden, activation=args.activation, optimizer=args.optimizer,
      learning_rate=args.lr, schedule=args.schedule, weight_decay=args.weight_decay,
      momentum=args.momentum, batch_size=args.batch_size, epochs=args.epochs)
  model = "-".join(str(w) for w in (784, *args.hidden, 10)) + f" {args.activation}"
  config = {
      "losses": {s.name: {"hyperparams": dict(s.hyperparams), "target_kind": s.target_kind,
                          "activation": s.activation, "prediction": s.prediction}
                 for s in specs},
      "seeds": list(args.seeds), "epochs": args.epochs, "optimizer": args.optimizer,
      "lr": args.lr, "schedule": args.schedule, "batch_size": args.batch_size,
      "hidden": list(args.hidden), "activation": args.activation, "model": model,
      "weight_decay": args.weight_decay, "momentum": args.momentum,
      "train_config": dataclasses.asdict(train_config),
      "train_examples": int(data.train_images.shape[0]),
      "test_examples": int(data.test_images.shape[0]),
      "mnist_dir": args.mnist_dir or os.environ.get("JAXLOSS_MNIST_DIR"),
      "device": f"{dev['platform'].upper()} ({dev['device_kind']})",
      "environment": env, "load_seconds": load_seconds,
      "rerun": env["command"],
  }
  os.makedirs(args.out, exist_ok=True)
  common.write_json(os.path.join(args.out, "config.json"), config)

  metrics_path = os.path.join(args.out, "metrics.jsonl")
  results: dict[str, dict[str, Any]] = {}
  with open(metrics_path, "w") as metrics_file, \
      common.progress(len(names) * args.epochs, "training", disable=args.no_progress) as bar:

    def on_epoch(name, entry):
      for row in metrics_rows(name, args.seeds, entry):
        metrics_file.write(json.dumps(row) + "\n")
      metrics_file.flush()

    for name in names:
      results[name] = run_loss(name, train_config, data, args.seeds, bar=bar, on_epoch=on_epoch)

  rows = [summarize(name, results[name], args.seeds) for name in names]
  common.write_text(os.path.join(args.out, "summary.csv"), summary_csv(rows))
  markdown = summary_markdown(rows, config)
  common.write_text(os.path.join(args.out, "summary.md"), markdown)
  plot_curves(results, os.path.join(args.out, "curves.png"))
  config["total_seconds"] = time.perf_counter() - t0
  common.write_json(os.path.join(args.out, "config.json"), config)
  print(markdown)
  print(f"wrote {args.out}/ (metrics.jsonl, summary.csv, summary.md, curves.png, config.json) "
        f"in {config['total_seconds']:.0f} s total", flush=True)
  return {"rows": rows, "config": config}


if __name__ == "__main__":
  main()
