"""Does label smoothing improve MNIST accuracy (clean and noisy labels), at a cost in confidence?

Label smoothing trains against ``(1 - alpha) * onehot + alpha / K`` (alpha 0: cross-entropy),
on clean training labels and with 20% of them wrong (`datasets.symmetric_label_noise`, one
fixed seed, BEFORE the validation split; test labels clean). Per noise rate one variant trains
every alpha in ONE program (traced alpha, ``sweep``); the rate is selected per (noise, alpha)
on the noisy validation split; the selected models are tested once on the clean test set
(accuracy, ECE, NLL, mean confidence). Verdict: each alpha > 0 vs alpha = 0 at the same noise
rate (`harness.compare`: paired t CI, exact McNemar, Holm across all pairs) and the change in
mean confidence (paired t CI and test, Holm). Also writes ``alpha.png``. Usage::

  JAXLOSS_MNIST_DIR=/work/shared/data/mnist python -m experiments.label_smoothing
  python -m experiments.label_smoothing --quick --out /tmp/ls_quick
  python -m experiments.label_smoothing --alphas 0,0.1 --noise-rates 0,0.4 --seeds 3
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Mapping, Sequence

import numpy as np

from experiments import cli, harness, outputs, plots, stats

NUM_CLASSES = 10


@dataclasses.dataclass(frozen=True)
class Settings(harness.Settings):
  """label_smoothing's command line: the harness's, plus alphas, noise and the model."""

  out: str = cli.option("runs/label_smoothing", "output folder")
  alphas: tuple[float, ...] = cli.option(
      (0.0, 0.05, 0.1, 0.2), "label-smoothing strengths in [0, 1], trained in one program per "
      "noise rate; must include 0 (plain cross-entropy, the baseline)",
      parse=cli.numbers(0.0, 1.0), quick=(0.0, 0.2))
  noise_rates: tuple[float, ...] = cli.option(
      (0.0, 0.2), "fractions of the training (and validation) labels flipped to another class",
      parse=cli.numbers(0.0, 1.0, high_open=True))
  noise_seed: int = cli.option(0, "seed of the label noise", parse=cli.nonnegative_int)
  hidden: tuple[int, ...] = cli.option((512, 512), "hidden widths ('' for a linear model)",
                                       parse=cli.ints, quick=(32,))


def check(s: Settings) -> list[str]:
  return [] if 0.0 in s.alphas else [f"--alphas: must include 0 (plain cross-entropy, the "
                                     f"baseline), got {','.join(f'{a:g}' for a in s.alphas)}"]


def data_key(rate: float) -> str:
  return f"noise{rate:g}"


def outcome_name(rate: float, alpha: float) -> str:
  """The harness's name of a swept outcome, e.g. ``noise0.2-alpha=0.1``."""
  return f"{data_key(rate)}-alpha={alpha:g}"


def splits(s: Settings, mnist) -> dict[str, harness.Splits]:
  """Per noise rate: noisy training labels, then the validation split; clean test labels."""
  from experiments import datasets  # pylint: disable=import-outside-toplevel
  out = {}
  for rate in s.noise_rates:
    noisy_N, _ = datasets.symmetric_label_noise(mnist.train_labels, rate=rate,
                                                num_classes=NUM_CLASSES, seed=s.noise_seed)
    noisy = dataclasses.replace(mnist, train_labels=noisy_N)
    out[data_key(rate)] = harness.default_splits(s, noisy)["mnist"]
  return out


def smoothed_loss(logits_BxC, labels_B, alpha):
  """Label-smoothed cross-entropy with a traced `alpha` (0: plain cross-entropy)."""
  import jaxloss  # pylint: disable=import-outside-toplevel
  return jaxloss.get("label_smoothing_cross_entropy", alpha=alpha).loss_from_labels(
      logits_BxC, labels_B)


def variants(s: Settings) -> list[harness.Variant]:
  return [harness.Variant(data_key(rate), smoothed_loss,
                          train={"hidden": s.hidden, "num_classes": NUM_CLASSES},
                          sweep={"alpha": tuple(sorted(s.alphas))}, data=data_key(rate),
                          describe={"noise_rate": rate, "noise_seed": s.noise_seed})
          for rate in s.noise_rates]


def _interval(values) -> stats.Interval | None:
  """The 95% t interval of the mean of the finite `values` (None with fewer than 2)."""
  x = np.asarray(values, np.float64)
  return stats.paired_t_interval(x[np.isfinite(x)]) if np.isfinite(x).sum() > 1 else None


def summarize(s: Settings, outcomes: Mapping[str, harness.Outcome]) -> list[dict[str, Any]]:
  """One row per (noise rate, alpha): test metrics, and the paired effects against alpha 0."""
  pairs = [(outcome_name(r, a), outcome_name(r, 0.0)) for r in s.noise_rates
           for a in sorted(s.alphas) if a > 0]
  effects = {}
  if pairs and len(s.seeds) > 1:
    conf_diffs = [np.asarray(outcomes[a].test["test_confidence"], np.float64)
                  - outcomes[b].test["test_confidence"] for a, b in pairs]
    conf_p = stats.holm([stats.paired_t_pvalue(d) for d in conf_diffs])
    for c, d, p in zip(harness.compare(outcomes, pairs, margin=s.margin), conf_diffs, conf_p):
      i, j = c.interval, stats.paired_t_interval(d)
      effects[c.a] = {"acc_diff": i.mean, "acc_low": i.low, "acc_high": i.high,
                      "acc_p_holm": c.p_holm, "acc_verdict": c.verdict, "conf_diff": j.mean,
                      "conf_low": j.low, "conf_high": j.high, "conf_p_holm": p}
  rows = []
  for rate in s.noise_rates:
    for alpha in sorted(s.alphas):
      name = outcome_name(rate, alpha)
      o = outcomes[name]
      row = {"outcome": name, "noise_rate": rate, "alpha": alpha, "lr": o.selected.lr}
      row["acc_mean"], row["acc_std"] = outputs.mean_std(o.accuracy())
      row |= {k: float(np.mean(o.test[k])) for k in ("test_ece", "test_nll", "test_confidence")}
      rows.append({**row, **effects.get(name, {})})
  return rows


def _label(rate: float) -> str:
  return "clean labels" if rate == 0 else f"{100 * rate:g}% noisy labels"


def verdict_text(rows: Sequence[dict[str, Any]]) -> tuple[str, str]:
  """The verdict (one sentence per noise rate) and the headline (empty without comparisons)."""
  sentences, best = [], []
  for rate in dict.fromkeys(r["noise_rate"] for r in rows):
    base, *others = [r for r in rows if r["noise_rate"] == rate]
    head = f"{_label(rate).capitalize()}: plain cross-entropy {base['acc_mean']:.2f}% test accuracy"
    if not others or "acc_diff" not in others[0]:
      tail = ", ".join(f"alpha={r['alpha']:g} {r['acc_mean']:.2f}%" for r in others)
      sentences.append(head + (f", {tail}" if tail else "") + " (no paired comparison).")
      continue
    top = others[-1]
    sentences.append(head + ", label smoothing " + ", ".join(
        f"alpha={r['alpha']:g} {r['acc_diff']:+.2f} points (95% CI {r['acc_low']:+.2f} to "
        f"{r['acc_high']:+.2f}, {r['acc_verdict']})" for r in others)
        + f"; mean confidence {top['conf_diff']:+.3f} at alpha={top['alpha']:g} (95% CI "
        f"{top['conf_low']:+.3f} to {top['conf_high']:+.3f}).")
    b = max(others, key=lambda r: r["acc_diff"])
    best.append(f"{_label(rate)} alpha={b['alpha']:g} {b['acc_diff']:+.2f} points "
                f"({b['acc_verdict']})")
  drops = [-r["conf_diff"] for r in rows if "conf_diff" in r]
  headline = ("Label smoothing vs cross-entropy, best alpha: " + "; ".join(best)
              + f"; mean confidence falls by up to {max(drops):.3f}.") if drops else ""
  return " ".join(sentences), headline


def table_markdown(rows: Sequence[dict[str, Any]], s: Settings) -> str:
  model = "-".join(str(w) for w in (784, *s.hidden, NUM_CLASSES))
  lines = [
      f"MLP {model} ReLU, Adam with cosine decay, batch {s.batch_size}, {s.epochs} epochs, seeds "
      f"{list(s.seeds)}; label noise (seed {s.noise_seed}) before the validation split, clean "
      "test labels. Test metrics: mean over seeds (accuracy ± std), ECE with 15 bins, confidence "
      "= mean max softmax probability. Δ vs alpha 0 at the same noise: paired 95% t CI over "
      "seeds; accuracy: exact McNemar, confidence: paired t test; Holm across all pairs.", "",
      "| noise | alpha | lr | test accuracy % | Δ accuracy (points) | ECE % | NLL | confidence "
      "| Δ confidence |", "|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    acc = conf = "baseline" if r["alpha"] == 0 else "n/a"
    if "acc_diff" in r:
      acc = (f"{r['acc_diff']:+.2f} ({r['acc_low']:+.2f} to {r['acc_high']:+.2f}), p "
             f"{r['acc_p_holm']:.2g}, {r['acc_verdict']}")
      conf = (f"{r['conf_diff']:+.3f} ({r['conf_low']:+.3f} to {r['conf_high']:+.3f}), p "
              f"{r['conf_p_holm']:.2g}")
    lines.append(f"| {r['noise_rate']:g} | {r['alpha']:g} | {r['lr']:g} | {r['acc_mean']:.2f} ± "
                 f"{r['acc_std']:.2f} | {acc} | {100 * r['test_ece']:.2f} | {r['test_nll']:.3f} "
                 f"| {r['test_confidence']:.3f} | {conf} |")
  return "\n".join(lines + ["", "![Test accuracy and confidence vs alpha](alpha.png)"])


def plot_alpha(s: Settings, outcomes: Mapping[str, harness.Outcome], path: str) -> None:
  """Test accuracy % and mean confidence vs alpha, one line per noise rate, 95% t CIs."""
  fig, axes = plots.pyplot().subplots(1, 2, figsize=(11, 4.2))
  alphas = sorted(s.alphas)
  for rate, color in zip(s.noise_rates, plots.colors(len(s.noise_rates))):
    for ax, values in ((axes[0], lambda o: o.accuracy()),
                       (axes[1], lambda o: o.test["test_confidence"])):
      per_alpha = [values(outcomes[outcome_name(rate, a)]) for a in alphas]
      cis = [_interval(v) for v in per_alpha]
      mean = np.array([np.nanmean(v) for v in per_alpha])
      err = np.array([[m - i.low, i.high - m] if i else [0, 0] for m, i in zip(mean, cis)]).T
      ax.errorbar(alphas, mean, yerr=err, marker="o", capsize=3, color=color, label=_label(rate))
    acc = [np.mean(outcomes[outcome_name(rate, a)].accuracy()) / 100 for a in alphas]
    axes[1].plot(alphas, acc, ls=":", color=color, label=f"accuracy / 100, {_label(rate)}")
  for ax, label in zip(axes, ("test accuracy % (clean test labels)",
                              "mean max softmax probability (test)")):
    ax.set(xlabel="label smoothing alpha", ylabel=label)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
  fig.suptitle("Final test metrics: mean over seeds, 95% t CI")
  plots.save(fig, path)


def report(s: Settings, outcomes: Mapping[str, harness.Outcome]) -> harness.Report:
  rows = summarize(s, outcomes)
  verdict, headline = verdict_text(rows)
  return harness.Report(verdict, table_markdown(rows, s), {"rows": rows}, {
      "alpha.png": lambda path: plot_alpha(s, outcomes, path)}, headline)


EXPERIMENT = harness.Experiment(
    "label_smoothing", "Does label smoothing improve MNIST accuracy, with clean and with noisy "
    "training labels, and at what cost in confidence?", Settings, variants, report,
    splits=splits, check=check,
    description="Label smoothing (alphas, trained in one program per noise rate) x symmetric "
                "training-label noise on MNIST: clean-test accuracy, ECE, NLL and confidence, "
                "each alpha > 0 against plain cross-entropy with paired, Holm-corrected tests.")


main = functools.partial(harness.main, EXPERIMENT)  # main(argv=None) -> the summary


if __name__ == "__main__":
  main()
