"""How does every multi-class loss of the registry compare with cross-entropy on full MNIST?

Trained the same way, which single-label multi-class losses match softmax cross-entropy, which
are better or worse, which fail; how does our 784-800-10 cross-entropy MLP compare with the
published MLP results? Every loss of ``--losses`` (default ``jaxloss.multiclass()``) trains
with every MLP of ``--models`` (784-512-512-10 and 784-800-10 ReLU; Adam, cosine decay, no
regularization or augmentation) under `experiments.protocol`. Verdict: each loss vs
cross-entropy of the same MLP, paired over seeds (`harness.compare`, Holm over all pairs of all
MLPs); a diverged seed or a mean test error >= ``--fail-error`` % fails. Also writes one table
per MLP and the published results in ``summary.md``, and ``final_error.png``. Usage::

  JAXLOSS_MNIST_DIR=../shared/data/mnist python -m experiments.zoo
  python -m experiments.zoo --losses ce,brier,multiclass_hinge --models 800
  python -m experiments.zoo --quick --out /tmp/zoo_quick
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Mapping, Sequence

import numpy as np

from experiments import cli, harness, outputs, plots

REFERENCE = "softmax_cross_entropy"
OURS = f"h800-{REFERENCE}"  # set beside the published 784-800-10 results
QUICK_LOSSES = (REFERENCE, "sigmoid_difference", "multiclass_hinge_loss")
CLASSES = {"reference": "black", "equivalent": "tab:green", "better": "tab:blue",
           "worse": "tab:orange", "inconclusive": "tab:gray", "fails": "tab:red"}
_SIMARD = "Simard, Steinkraus & Platt, ICDAR 2003, via LeCun, Cortes & Burges' MNIST page"
_SRIVASTAVA = "Srivastava et al., Dropout, JMLR 15 (2014), Table 2"
PUBLISHED = (  # (MLP and loss, augmentation / regularization, test error %, source)
    ("784-800-10, cross-entropy", "none", 1.6, _SIMARD),
    ("784-800-10, cross-entropy", "affine distortions", 1.1, _SIMARD),
    ("784-800-10, MSE", "elastic distortions", 0.9, _SIMARD),
    ("784-800-10, cross-entropy", "elastic distortions", 0.7, _SIMARD),
    ("784-500-300-10, cross-entropy", "weight decay", 1.53,
     "Hinton, unpublished 2005, via LeCun, Cortes & Burges' MNIST page"),
    ("standard neural net (Simard et al. 2003)", "none", 1.60, _SRIVASTAVA),
    ("ReLU, 3 x 1024", "dropout", 1.25, _SRIVASTAVA),
    ("ReLU, 3 x 1024", "dropout + max-norm", 1.06, _SRIVASTAVA),
    ("ReLU, 2 x 8192", "dropout + max-norm", 0.95, _SRIVASTAVA),
)


def parse_models(text: str) -> tuple[tuple[int, ...], ...]:
  """``"512,512;800"`` -> ``((512, 512), (800,))``: one MLP's hidden widths per ``;`` part."""
  try:
    models = tuple(cli.ints(part) for part in text.split(";"))
  except ValueError:
    models = ()
  if not models or len(set(models)) != len(models) or any(w < 1 for m in models for w in m):
    raise ValueError("must be distinct ';'-separated lists of widths >= 1, e.g. '512,512;800'")
  return models


def _models_text(text: str) -> str:  # a str option: --help shows a tuple of tuples flattened
  return ";".join(",".join(map(str, m)) for m in parse_models(text))


@dataclasses.dataclass(frozen=True)
class Settings(harness.Settings):
  """zoo's command line: the harness's, plus the losses and the MLPs."""

  val_size: int = cli.option(10000, "training images held out to select on (0: one rate, "
                             "no selection)", parse=cli.nonnegative_int, quick=0)
  out: str = cli.option("runs/zoo", "output folder")
  losses: tuple[str, ...] = cli.option(
      ("all",), f"registry names or aliases ('all': every multi-class loss, "
      f"jaxloss.multiclass()); {REFERENCE}, the reference, is always added",
      parse=cli.names, quick=QUICK_LOSSES)
  models: str = cli.option("512,512;800", "MLPs as ';'-separated hidden-width lists",
                           parse=_models_text, quick="32", metavar="LIST;LIST")
  fail_error: float = cli.option(10.0, "mean test error % from which a loss fails (a linear "
                                 "classifier: 12%)", parse=cli.number(0.0, 100.0), quick=50.0)

  @property
  def mlps(self) -> tuple[tuple[int, ...], ...]:
    """The hidden widths of each MLP of ``--models``."""
    return parse_models(self.models)


def tag(hidden: Sequence[int]) -> str:
  """Variant-name stem of an MLP: ``(512, 512)`` -> ``"h512x512"``, ``()`` -> ``"h0"``."""
  return "h" + ("x".join(map(str, hidden)) or "0")


def model_name(hidden: Sequence[int]) -> str:
  """``(800,)`` -> ``"784-800-10"``."""
  return "-".join(map(str, (784, *hidden, 10)))


def variants(s: Settings) -> list[harness.Variant]:
  import jaxloss  # pylint: disable=import-outside-toplevel
  names = jaxloss.multiclass() if s.losses == ("all",) else s.losses
  specs = [jaxloss.get(n) for n in (REFERENCE, *names)]
  if bad := [spec.name for spec in specs if not spec.multiclass]:
    raise ValueError(f"--losses: {bad[0]!r} is not a single-label multi-class loss")
  specs = list({spec.name: spec for spec in specs}.values())  # the reference first, each once
  # Issue #13: the losses' own hyperparameters could be selected with the rate: Variant.params.
  return [harness.Variant(f"{tag(h)}-{spec.name}", spec.loss_from_labels, spec.predict,
                          train={"hidden": h},
                          describe={"loss": spec.name, "hyperparams": dict(spec.hyperparams)})
          for h in s.mlps for spec in specs]


def error(outcome: harness.Outcome) -> np.ndarray:
  """Test error in percent, one per seed."""
  return 100.0 - outcome.accuracy()


def verdicts(s: Settings, outcomes: Mapping[str, harness.Outcome]):
  """Classes and comparisons (by variant) of each loss vs its MLP's reference, Holm over all;
  a diverged seed or a mean test error >= ``s.fail_error`` fails (no comparison)."""
  ref = {n: f"{n.split('-', 1)[0]}-{REFERENCE}" for n in outcomes}
  bad = {n for n, o in outcomes.items()
         if o.selected.result.diverged or np.mean(error(o)) >= s.fail_error}
  pairs = [(n, ref[n]) for n in outcomes if n != ref[n] and n not in bad]
  by_name = {c.a: c for c in (harness.compare(outcomes, pairs, margin=s.margin) if pairs else [])}
  classes = {n: "fails" if n in bad else "reference" if n == ref[n] else by_name[n].verdict
             for n in outcomes}
  return classes, by_name


def of_model(outcomes: Mapping[str, harness.Outcome], hidden: Sequence[int]) -> list[str]:
  """The variants of one MLP, lowest mean test error first."""
  return sorted((n for n in outcomes if n.startswith(tag(hidden) + "-")),
                key=lambda n: float(np.mean(error(outcomes[n]))))


def _pm(values: np.ndarray) -> str:
  return "{:.2f} ± {:.2f}".format(*outputs.mean_std(values))


def _effect(c) -> str:
  i = c.interval
  return f"{i.mean:+.2f} ({i.low:+.2f} to {i.high:+.2f}), Holm p {c.p_holm:.2g}"


def tables_markdown(s: Settings, outcomes, classes, by_name) -> str:
  """One table per MLP, then the published results beside our 784-800-10 cross-entropy."""
  lines = [f"Mean ± std over seeds {list(s.seeds)}; effect: the loss's test accuracy minus "
           f"{REFERENCE}'s in points (95% t CI over seeds); equivalent: CI inside ±{s.margin:g}; "
           f"fails: a diverged seed or >= {s.fail_error:g}% test error."]
  for h in s.mlps:
    lines += ["", f"### {model_name(h)} ReLU MLP", "", "| loss | selected lr | test error % "
              "| class | effect vs reference (95% CI) |", "|---|---|---|---|---|"]
    for n, o in ((n, outcomes[n]) for n in of_model(outcomes, h)):
      lines.append(f"| {o.variant.describe['loss']} | {o.selected.lr:g} | {_pm(error(o))} "
                   f"| {classes[n]} | {_effect(by_name[n]) if n in by_name else '—'} |")
  lines += ["", "### Beside the published MNIST results for MLPs", "", "| MLP, loss | "
            "augmentation / regularization | test error % | source |", "|---|---|---|---|"]
  lines += [f"| {m} | {t} | {e:g} | {src} |" for m, t, e, src in PUBLISHED]
  if OURS in outcomes:
    lines.append(f"| **this run**: 784-800-10 ReLU, cross-entropy | none (Adam, cosine, "
                 f"{s.epochs} epochs) | {_pm(error(outcomes[OURS]))} | this experiment |")
  return "\n".join(lines)


def plot_final_error(s: Settings, outcomes, classes, path: str) -> None:
  """Test error % per loss (mean ± std, log scale), coloured by class, one panel per MLP."""
  fig, axes = plots.pyplot().subplots(1, len(s.mlps), squeeze=False, figsize=(
      6.0 * len(s.mlps), 0.32 * len(outcomes) / len(s.mlps) + 1.8))
  for ax, h in zip(axes[0], s.mlps):
    names = of_model(outcomes, h)[::-1]
    for i, n in enumerate(names):
      mean, std = outputs.mean_std(error(outcomes[n]))
      ax.errorbar(mean, i, xerr=std, fmt="o", capsize=3, color=CLASSES[classes[n]])
    ax.set_yticks(range(len(names)), [f"{outcomes[n].variant.describe['loss']} [{classes[n]}]"
                                      for n in names], fontsize=8)
    ax.set_xscale("log")
    plots.plain_log_ticks(ax.xaxis)
    ax.set(title=f"{model_name(h)} ReLU", xlabel="test error % (log), mean ± std over seeds")
    ax.grid(True, which="both", axis="x", alpha=0.3)
  plots.save(fig, path)


def report(s: Settings, outcomes: Mapping[str, harness.Outcome]) -> harness.Report:
  """Verdict (better / worse with CIs, counts, failures), one table per MLP, the figure."""
  classes, by_name = verdicts(s, outcomes)
  of = {c: sorted(n for n in outcomes if classes[n] == c) for c in CLASSES}
  effects = {c: "; ".join(f"{n} {_effect(by_name[n])}" for n in of[c]) or "none"
             for c in ("better", "worse")}
  fails = ", ".join(f"{n} ({np.mean(error(outcomes[n])):.1f}% error)" for n in of["fails"])
  verdict = (f"Against {REFERENCE} of the same MLP (test accuracy points, 95% CI, Holm over "
             f"{len(by_name)} pairs): better {effects['better']}; worse {effects['worse']}; "
             f"equivalent within ±{s.margin:g}: {len(of['equivalent'])}; inconclusive: "
             f"{len(of['inconclusive'])}. Fail (a diverged seed or >= {s.fail_error:g}% test "
             f"error): {fails or 'none'}.")
  if OURS in outcomes:
    verdict += (f" Our 784-800-10 cross-entropy MLP ends at {_pm(error(outcomes[OURS]))}% "
                f"test error, against {PUBLISHED[0][2]:g}% published without augmentation "
                "(Simard, Steinkraus & Platt 2003).")
  failing = ", ".join(sorted({outcomes[n].variant.describe["loss"] for n in of["fails"]}))
  headline = (f"{len(outcomes) - len(s.mlps)} (MLP, loss) pairs vs cross-entropy: " + ", ".join(
      f"{len(of[c])} {c}" for c in ("equivalent", "better", "worse", "inconclusive"))
      + f"; fail: {failing or 'none'}.")
  summary = {"reference": REFERENCE, "classes": classes,
             "test_error": {n: outputs.mean_std(error(o)) for n, o in outcomes.items()},
             "comparisons": [dataclasses.asdict(c) for c in by_name.values()],
             "published": PUBLISHED}
  return harness.Report(
      verdict, tables_markdown(s, outcomes, classes, by_name) + "\n\n"
      "![test error per loss, coloured by class](final_error.png)", summary,
      {"final_error.png": lambda path: plot_final_error(s, outcomes, classes, path)}, headline)


EXPERIMENT = harness.Experiment(
    "zoo", "How does every multi-class loss compare with cross-entropy on full MNIST?",
    Settings, variants, report,
    check=lambda s: [] if len(s.seeds) > 1 else ["--seeds: the paired verdicts need 2 seeds"])


main = functools.partial(harness.main, EXPERIMENT)  # main(argv=None) -> the summary


if __name__ == "__main__":
  main()
