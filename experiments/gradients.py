"""Why does cross-entropy train faster than the sigmoid-difference loss? The gradients.

(a) Analytic (`analytic_curves`): each multi-class loss's loss and ``dL/dz_y`` vs the margin
``m = z_y - max_{c != y} z_c`` (K = 10), other logits at 0 (A) or ``--others-level`` (B).
(b) MNIST training with cross-entropy, sigmoid-difference and sigmoid BCE; per epoch, on a
fixed probe of TRAINING images put before each held-out split (labels + K there): the norms
``||dl_i/dz_i||`` on all and on misclassified probe images, the share below ``--tiny``.
(c) Interventions (two more variants, `ARMS`; ``--no-interventions`` skips them): the
selected cross-entropy and sigmoid-difference models of (b) (``ce-source``, ``sd-source``;
their variants keep their final parameters) are each trained on with the OTHER loss, seed s
from seed s: ``sd-from-ce`` (does sigmoid-difference keep a trained model's accuracy?) and
``ce-from-sd`` (does cross-entropy recover a collapsed model, how fast?). A continued run is
its loss's run of (b) with another start (`harness.Variant.start_from`): a fresh Adam state,
the same ``--epochs`` of cosine decay, the rate that loss selected for itself in (b)
(`harness.Variant.rate_from`), the same batches.
Verdicts, one Holm family: cross-entropy vs each other loss on test accuracy
(`harness.compare`), on the log10 ratio of mean norms on misclassified probe images (paired t
over seeds), and the interventions (`INTERVENTION_PAIRS`). Also writes analytic.json/.png and
training.png (with (c) in its last panel). Usage: ``python -m experiments.gradients [--quick]``."""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Mapping, Sequence

import numpy as np

from experiments import cli, harness, outputs, plots, stats

K = 10
LOSSES = ("softmax_cross_entropy", "sigmoid_difference", "sigmoid_binary_cross_entropy")
MARGINS = (-5.0, -2.0, 0.0, 2.0, 5.0)  # the analytic values in summary.json
GRID = tuple(np.linspace(-10.0, 10.0, 401).tolist())  # the analytic curves' margins
NORM_MARGIN = 0.1  # decades: gradient-norm ratios within x1.26 count as equivalent
# Intervention arms: name -> (the loss it trains, its source arm: None for a fresh init).
# A source is (b)'s variant of its loss; the other two are variants of their own.
ARMS = {"ce-source": ("softmax_cross_entropy", None), "sd-source": ("sigmoid_difference", None),
        "sd-from-ce": ("sigmoid_difference", "ce-source"),
        "ce-from-sd": ("softmax_cross_entropy", "sd-source")}
# (a, b, what): final test accuracy ("final"), or validation accuracy after epoch 1 ("epoch1").
INTERVENTION_PAIRS = (("sd-from-ce", "ce-source", "final"), ("sd-from-ce", "sd-source", "final"),
                      ("ce-from-sd", "ce-source", "final"), ("ce-from-sd", "ce-source", "epoch1"))
LEVELS = (97.0, 98.0)  # accuracy levels (%) of "epochs to"
EPOCH1 = "after epoch 1"  # the arm names of an epoch-1 comparison: "ce-from-sd after epoch 1"


@dataclasses.dataclass(frozen=True)
class Settings(harness.Settings):
  """The harness's options (quick: no selection, one rate) and the measurement's."""

  val_size: int = cli.option(10000, "training images held out to select on (0: no selection, "
                             "one rate)", parse=cli.nonnegative_int, quick=0)
  out: str = cli.option("runs/gradients", "output folder")
  hidden: tuple[int, ...] = cli.option(
      (200, 200), "hidden widths of the ReLU MLP (the headline's 512,512 costs 3x more: "
      "the suite's budget)", parse=cli.ints, quick=(32,))
  probe_size: int = cli.option(10000, "training images whose logit gradients are measured",
                               parse=cli.positive_int, quick=512)
  probe_seed: int = cli.option(0, "seed of the probe's random choice", parse=cli.nonnegative_int)
  tiny: float = cli.option(1e-3, "a logit-gradient norm below this counts as vanished",
                           parse=cli.positive_number)
  others_level: float = cli.option(-6.0, "analytic convention B: the level b of the other "
                                   "logits", parse=cli.number())
  no_interventions: bool = cli.option(False, "skip (c): sigmoid-difference from the trained "
                                      "cross-entropy models and cross-entropy from the "
                                      "sigmoid-difference ones")


def check(s: Settings) -> list[str]:
  n_train = min(s.train_subset or 60000, 60000) - s.val_size
  return ([f"--probe-size: must be at most the {n_train} training images (after the "
           f"validation split), got {s.probe_size}"] if s.probe_size > n_train else []) + (
      ["--seeds: the verdicts pair seeds: give at least 2"] if len(s.seeds) < 2 else [])


@functools.lru_cache(maxsize=4)
def analytic_curves(names: tuple[str, ...], margins: tuple[float, ...],
                    others_level: float) -> dict[str, dict[str, np.ndarray]]:
  """``{name: {"loss" | "grad": [2, M]}}``, rows A, B; cached (read only); dL/dm = dL/dz_y."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import jaxloss  # pylint: disable=import-outside-toplevel

  def curves(m_M, base_2):
    out = {}
    for spec in map(jaxloss.get, names):
      def loss_of_margin(m, base, spec=spec):
        z_1xK = jnp.full((1, K), base, jnp.float64).at[0, 0].add(m)
        return spec.per_example(z_1xK, spec.targets(jnp.zeros((1,), jnp.int32), K))[0]
      grid = jax.vmap(jax.vmap(jax.value_and_grad(loss_of_margin), (0, None)), (None, 0))
      out[spec.name] = dict(zip(("loss", "grad"), grid(m_M, base_2)))
    return out

  with jax.enable_x64(True):
    got = jax.jit(curves)(np.asarray(margins), np.asarray([0.0, others_level]))
    return jax.tree.map(lambda x: np.asarray(x, np.float64), jax.device_get(got))


def splits(s: Settings, mnist) -> dict[str, harness.Splits]:
  """The default splits; evaluation splits ``[probe; held-out]``, held-out labels + K."""
  base = harness.default_splits(s, mnist)["mnist"]
  images, labels = (np.asarray(a) for a in base.train)
  idx = np.sort(np.random.default_rng(s.probe_seed).permutation(len(labels))[:s.probe_size])

  def with_probe(heldout):
    return None if heldout is None else (
        np.concatenate([images[idx], np.asarray(heldout[0])]),
        np.concatenate([labels[idx], np.asarray(heldout[1]) + K]).astype(np.int32))
  return {"mnist": harness.Splits(base.train, with_probe(base.val), with_probe(base.test))}


def make_eval_fn(spec, tiny: float = 1e-3):
  """Metrics of ``[probe; held-out]`` logits (pure JAX); NaN over an empty selection."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

  def mean(x_N, mask_N):
    n = jnp.sum(mask_N)
    return jnp.where(n > 0, jnp.sum(jnp.where(mask_N, x_N, 0.0)) / jnp.maximum(n, 1), jnp.nan)

  def eval_fn(logits_NxK, labels_N):
    probe_N, y_N = labels_N < K, labels_N % K
    loss_N, vjp = jax.vjp(lambda z: spec.per_example(z, spec.targets(y_N, K)), logits_NxK)
    norm_N = jnp.linalg.norm(vjp(jnp.ones_like(loss_N))[0], axis=-1)
    correct_N = (spec.predict(logits_NxK) == y_N).astype(jnp.float32)
    wrong_N = probe_N & (correct_N == 0)
    return {"test_accuracy": mean(correct_N, ~probe_N), "probe_accuracy": mean(correct_N, probe_N),
            "probe_loss": mean(loss_N, probe_N), "probe_grad_norm_mean": mean(norm_N, probe_N),
            "probe_wrong_grad_norm_mean": mean(norm_N, wrong_N), "probe_wrong_count":
            jnp.sum(wrong_N), "probe_wrong_tiny_share": mean((norm_N < tiny) * 1.0, wrong_N)}
  return eval_fn


def variants(s: Settings) -> list[harness.Variant]:
  """(b): one variant per loss of `LOSSES`; then (c)'s continued arms (`ARMS`)."""
  import jaxloss  # pylint: disable=import-outside-toplevel
  facts, n = {"probe_size": s.probe_size, "probe_seed": s.probe_seed, "tiny": s.tiny}, s.probe_size
  sources = {loss: arm for arm, (loss, source) in ARMS.items() if source is None}
  out = [harness.Variant(  # test_fn: "correct" of the held-out part only, [N - probe_size]
      spec.name, spec.loss_from_labels, spec.predict, make_eval_fn(spec, s.tiny),
      lambda z_NxK, y_N, spec=spec: {"correct": spec.predict(z_NxK[n:]) == y_N[n:] - K},
      train={"hidden": s.hidden}, describe=facts,
      keep_final=spec.name in sources and not s.no_interventions)
      for spec in map(jaxloss.get, LOSSES)]
  if s.no_interventions:
    return out
  by_loss = {v.name: v for v in out}
  return out + [dataclasses.replace(
      by_loss[loss], name=arm, keep_final=False, start_from=ARMS[source][0], rate_from=loss,
      describe={**facts, "loss": loss, "arm_of": "(c)"})
      for arm, (loss, source) in ARMS.items() if source is not None]


def finite_mean(x, axis=None):
  """Mean of the finite values (NaN where there are none), without warnings."""
  ok = np.isfinite(x := np.asarray(x, np.float64))
  with np.errstate(invalid="ignore"):
    return np.sum(np.where(ok, x, 0.0), axis=axis) / np.sum(ok, axis=axis)


def summarize(name: str, o: harness.Outcome) -> dict[str, Any]:
  """One row: test accuracy %, the final models' probe diagnostics (mean over seeds), and per
  seed the verdict's measure: the mean norm on misclassified probe images over epochs with some."""
  row: dict[str, Any] = {"loss": name, **o.selected.point}
  row["test_acc_mean"], row["test_acc_std"] = outputs.mean_std(o.accuracy())
  row.update({k: float(finite_mean(v)) for k, v in o.test.items() if k.startswith("probe")})
  share_ExS = np.nan_to_num(o.curve("probe_wrong_tiny_share"), nan=-np.inf)
  row["probe_wrong_tiny_share_peak"] = float(finite_mean(np.max(share_ExS, axis=0)))
  row["wrong_norm_per_seed"] = finite_mean(o.curve("probe_wrong_grad_norm_mean"), 0).tolist()
  return row


def norm_contrasts(rows: Sequence[Mapping[str, Any]]) -> list[stats.Comparison]:
  """First row vs each other on log10 ``wrong_norm_per_seed`` (paired t, Holm); [] with a NaN."""
  logs = {r["loss"]: np.log10(np.asarray(r["wrong_norm_per_seed"], np.float64)) for r in rows}
  if not all(np.isfinite(v).all() for v in logs.values()):
    return []
  pairs = [(rows[0]["loss"], r["loss"]) for r in rows[1:]]
  return [dataclasses.replace(c, verdict={"better": "larger", "worse": "smaller"}.get(
      c.verdict, c.verdict)) for c in stats.compare_pairs(logs, pairs, test="paired-t",
                                                          margin=NORM_MARGIN)]


def plot_analytic(curves, trained: Sequence[str], b: float, path: str) -> None:
  """Loss and |dL/dz_y| vs margin (log): A solid, B dashed where it differs, trained thick."""
  fig, axes = plots.pyplot().subplots(1, 2, figsize=(14, 5.2))
  for (name, c), color in zip(curves.items(), plots.colors(len(curves))):
    bold = name in trained  # in the colours of training.png
    for conv in (0,) if all(np.allclose(v[0], v[1]) for v in c.values()) else (0, 1):
      for ax, y in zip(axes, (c["loss"][conv, :len(GRID)], abs(c["grad"][conv, :len(GRID)]))):
        ax.plot(GRID, np.where(y > 0, y, np.nan), ls="--" if conv else "-", lw=2.6 if bold else 0.9,
                color=f"C{trained.index(name)}" if bold else color, alpha=1 if bold else 0.5,
                label=None if conv else name, zorder=3 if bold else 2)
  for ax, what, low in zip(axes, ("loss", "|dL/dz_y|"), (1e-6, 1e-10)):
    ax.set(yscale="log", ylim=(low, 1e3), xlabel="margin m = z_y - max other logit", ylabel=what)
    ax.grid(True, which="both", alpha=0.3)
  axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
  fig.suptitle(f"K = 10; solid: other logits 0; dashed: at {b:g}; thick: trained")
  plots.save(fig, path)


def plot_training(outcomes: Mapping[str, harness.Outcome], s: Settings, path: str,
                  arms: Mapping[str, harness.Outcome] | None = None) -> None:
  """Per epoch: vanished share and mean norm on misclassified probe images, held-out error;
  with intervention `arms`, a fourth panel: their accuracy (epoch 0: where each starts)."""
  fig, axes = plots.pyplot().subplots(1, 4 if arms else 3, figsize=(21 if arms else 16, 4.5))
  for name, o in outcomes.items():
    panels = (100 * o.curve("probe_wrong_tiny_share"), o.curve("probe_wrong_grad_norm_mean"),
              100 * (1 - o.curve("test_accuracy")))
    for ax, y in zip(axes, panels):  # the log panels leave gaps at 0
      plots.plot_band(ax, np.arange(1, len(y) + 1), y if ax is axes[0] else
                      np.where(y > 0, y, np.nan), name)
  split = "validation" if s.val_size else "test"
  for ax, label in zip(axes, (f"misclassified probe images with norm < {s.tiny:g} (%)",
                              "mean ||dl/dz||, misclassified probe images", f"{split} error %")):
    ax.set(xlabel="epoch", ylabel=label, yscale="linear" if ax is axes[0] else "log")
    ax.grid(True, which="both", alpha=0.3)
  axes[0].legend()
  for name, o in (arms or {}).items():
    acc, source = 100 * o.curve("test_accuracy"), ARMS[name][1]
    start = 0 if source is None else 1  # epoch 0: the source's last epoch
    if source is not None:
      acc = np.concatenate([100 * arms[source].curve("test_accuracy")[-1:], acc])
    plots.plot_band(axes[-1], np.arange(1 - start, len(acc) + 1 - start), acc,  # as in (b)
                    f"{name} ({ARMS[name][0]})", ls="-" if source is None else "--",
                    color=f"C{list(outcomes).index(ARMS[name][0])}")
  if arms:
    axes[-1].set(xlabel="epoch (0: the source's final models)", ylabel=f"{split} accuracy %",
                 title="(c) each loss from the other's final models")
    axes[-1].grid(True, alpha=0.3)
    axes[-1].legend(fontsize=7)
  fig.suptitle("Logit gradients of a fixed probe of training images; mean over seeds, min-max")
  plots.save(fig, path)


def epochs_to(acc_ExS, level: float) -> list[int | None]:
  """Per seed, the first epoch (1-based) with accuracy ``>= level`` (None: never)."""
  acc_ExS = np.asarray(acc_ExS, np.float64)
  return [None if (i := outputs.first_crossing(acc_ExS[:, j], level)) is None else i + 1
          for j in range(acc_ExS.shape[1])]


def arm_row(name: str, o: harness.Outcome, start: harness.Outcome | None) -> dict[str, Any]:
  """One intervention arm: accuracies in % (curves on the evaluation split, mean over seeds;
  ``start``: its source's final one, where it starts), epochs to `LEVELS`, the final models'
  probe diagnostics and the per-epoch mean norm on misclassified probe images."""
  acc_ExS = 100.0 * o.curve("test_accuracy")
  loss, source = ARMS[name]
  row: dict[str, Any] = {"arm": name, "loss": loss, "starts_from": source or "fresh init",
                         "lr": o.selected.lr}
  row["start_acc"] = None if start is None else float(
      finite_mean(100.0 * start.curve("test_accuracy")[-1]))
  row["epoch1_acc"] = float(finite_mean(acc_ExS[0]))
  row["final_acc"] = float(finite_mean(acc_ExS[-1]))
  row["test_acc_mean"], row["test_acc_std"] = outputs.mean_std(o.accuracy())
  for level in LEVELS:
    got = [e for e in epochs_to(acc_ExS, level) if e is not None]
    row[f"epochs_to_{level:g}"] = float(np.mean(got)) if got else None
    row[f"reached_{level:g}"] = len(got)
  row["wrong_norm"] = float(finite_mean(o.test["probe_wrong_grad_norm_mean"]))
  row["wrong_tiny_share"] = float(finite_mean(o.test["probe_wrong_tiny_share"]))
  row["curve"] = [float(finite_mean(a)) for a in acc_ExS]
  row["wrong_norm_curve"] = [float(finite_mean(a))
                             for a in o.curve("probe_wrong_grad_norm_mean")]
  return row


def intervention_comparisons(arms: Mapping[str, harness.Outcome],
                             margin: float) -> list[stats.Comparison]:
  """`INTERVENTION_PAIRS`, each in its own call (Holm comes in `stats.holm_family`): final test
  accuracy by `harness.compare`, epoch-1 evaluation accuracy by a paired t test (its arms
  named ``"NAME after epoch 1"``; left out when a seed has no finite value there)."""
  out = []
  for a, b, what in INTERVENTION_PAIRS:
    if what == "final":
      out += harness.compare(arms, [(a, b)], margin=margin)
      continue
    acc = {f"{n} {EPOCH1}": 100.0 * np.asarray(arms[n].curve("test_accuracy")[0], np.float64)
           for n in (a, b)}
    if all(np.isfinite(v).all() for v in acc.values()):
      out += stats.compare_pairs(acc, [tuple(acc)], test="paired-t", margin=margin)
  return out


def _norm_words(c: stats.Comparison) -> stats.Comparison:
  return dataclasses.replace(c, verdict={"better": "larger", "worse": "smaller"}.get(
      c.verdict, c.verdict))


def _table(rows: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> str:
  """A Markdown table; accuracies with 2 decimals, epochs with 1, norms and rates in %g."""
  def cell(k, v):
    if v is None:
      return "—"
    if not isinstance(v, float):
      return str(v)
    return (f"{v:.3g}" if k in ("lr", "wrong_norm", "wrong_tiny_share") else
            f"{v:.1f}" if k.startswith("epochs_to") else f"{v:.2f}")
  return "\n".join("| " + " | ".join(row) + " |" for row in [
      list(keys), ["---"] * len(keys), *([cell(k, r[k]) for k in keys] for r in rows)])


def report(s: Settings, outcomes: Mapping[str, harness.Outcome]) -> harness.Report:
  """`build_report` with (b)'s outcomes and (c)'s arms (its sources are (b)'s outcomes)."""
  trained = {name: o for name, o in outcomes.items() if name in LOSSES}
  arms = {} if s.no_interventions else {
      arm: outcomes[arm if source else loss] for arm, (loss, source) in ARMS.items()}
  return build_report(s, trained, arms)


def build_report(s: Settings, outcomes: Mapping[str, harness.Outcome],
                 arms: Mapping[str, harness.Outcome]) -> harness.Report:
  """The report from (b)'s outcomes and (c)'s arms (empty: no interventions); trains nothing."""
  import jaxloss  # pylint: disable=import-outside-toplevel
  trained, n = list(outcomes), len(GRID)
  curves = analytic_curves(tuple(jaxloss.multiclass()), GRID + MARGINS, s.others_level)
  outputs.write_json(os.path.join(s.out, "analytic.json"), outputs.json_ready({
      "rows": ["A", "B"], "others_level": s.others_level, "margins": GRID,
      "curves": {name: {k: v[:, :n] for k, v in c.items()} for name, c in curves.items()}}))
  at = {name: {conv: {f"{m:g}": {k: float(v[i, n + j]) for k, v in c.items()}
                      for j, m in enumerate(MARGINS)} for i, conv in enumerate("AB")}
        for name, c in curves.items()}
  rows = [summarize(name, o) for name, o in outcomes.items()]
  comps, norm_comps, inter = stats.holm_family(
      harness.compare(outcomes, [(trained[0], o) for o in trained[1:]], margin=s.margin),
      norm_contrasts(rows), intervention_comparisons(arms, s.margin) if arms else [])
  family = len(comps) + len(norm_comps) + len(inter)
  norms = [(c, f"x{10 ** c.interval.mean:.3g} (95% CI {10 ** c.interval.low:.3g} to "
            f"{10 ** c.interval.high:.3g}") for c in map(_norm_words, norm_comps)]
  g = {v: ", ".join(f"{abs(at[name][v]['-5']['grad']):.3g}" for name in trained) for v in "AB"}
  verdict = (f"Test accuracy (Holm over the experiment's {family} comparisons): "
             + "; ".join(c.sentence()[:-1] for c in comps) + ". Mean "
             "logit-gradient norm on misclassified probe (training) images: " + ("; ".join(
                 f"{c.a} vs {c.b} {r}, Holm p = {c.p_holm:.2g}: {c.verdict})"
                 for c, r in norms) or "n/a (a seed had none in any epoch)"))
  arm_rows = [arm_row(name, o, arms.get(ARMS[name][1] or "")) for name, o in arms.items()]
  if inter:
    verdict += ("; interventions (each loss trained on from the other's final models, seed "
                "s from seed s, fresh Adam, its own selected rate): " + "; ".join(
                    c.sentence()[:-1] for c in inter))
  verdict += (f". At margin -5 (K = 10) |dL/dz_y| of {', '.join(trained)} is {g['A']} with the "
              f"other logits at 0 and {g['B']} with them at {s.others_level:g}.")
  c = comps[0]
  headline = (f"{c.a} vs {c.b}: {c.interval.mean:+.2f} test accuracy points ({c.verdict}); "
              f"gradient norm on misclassified training images "
              f"{norms[0][1].split(' (')[0] + ' (' + norms[0][0].verdict + ')' if norms else 'n/a'}"
              + (_headline_interventions(arm_rows, inter) if inter else "") + ".")
  keys = [k for k in rows[0] if k not in ("loss", "wrong_norm_per_seed")]
  parts = [
      "**(a) Analytic** (analytic.png): every multi-class loss; values at the margins in "
      "summary.json, curves in analytic.json.",
      "![loss and true-class gradient against the margin, every multi-class loss]"
      "(analytic.png)",
      f"**(b) Training** (training.png), MLP 784-{'-'.join(map(str, s.hidden))}-10"
      + (" (narrower than the headline's 784-512-512-10, which costs 3x more: the suite's "
         "budget; the mechanism is per logit)" if tuple(s.hidden) != (512, 512) else "")
      + f": test accuracy %, then the final models on {s.probe_size} probe training images, "
      f"mean over seeds (wrong: misclassified; tiny: norm < {s.tiny:g}; peak: highest over "
      f"epochs; nan: none wrong).",
      "\n".join("| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in row)
                + " |" for row in [["loss", *keys], ["---"] * (len(keys) + 1),
                                   *([r["loss"], *(r[k] for k in keys)] for r in rows)])]
  if arm_rows:
    parts += _intervention_markdown(s, arm_rows, inter)
  parts.append("![test accuracy, gradient norms and interventions per epoch](training.png)")
  summary = {"analytic": {"others_level": s.others_level, "at_margin": at}, "rows": rows,
             "comparisons": [dataclasses.asdict(c) for c in comps],
             "norm_contrasts": [dataclasses.asdict(c) for c, _ in norms],
             "interventions": {"arms": arm_rows,
                               "comparisons": [dataclasses.asdict(c) for c in inter]},
             "holm_family": family}
  figures = {"analytic.png": lambda path: plot_analytic(curves, trained, s.others_level, path),
             "training.png": lambda path: plot_training(outcomes, s, path, arms)}
  return harness.Report(verdict, "\n\n".join(parts), summary, figures, headline)


def _headline_interventions(arm_rows, inter) -> str:
  rows = {r["arm"]: r for r in arm_rows}
  keep = next(c for c in inter if (c.a, c.b) == ("sd-from-ce", "ce-source"))
  ce, fresh = rows["ce-from-sd"], rows["ce-source"]
  return (f"; SD from trained CE models {keep.interval.mean:+.2f} points ({keep.verdict}); CE "
          f"from the SD models {ce['epoch1_acc']:.1f}% after epoch 1, {ce['test_acc_mean']:.2f}% "
          f"test (fresh: {fresh['epoch1_acc']:.1f}%, {fresh['test_acc_mean']:.2f}%)")


def _intervention_markdown(s: Settings, arm_rows, inter) -> list[str]:
  split = "validation" if s.val_size else "test"
  keys = ["arm", "loss", "starts_from", "lr", "start_acc", "epoch1_acc", "final_acc",
          "test_acc_mean", "test_acc_std", "epochs_to_97", "reached_97", "epochs_to_98",
          "reached_98", "wrong_norm", "wrong_tiny_share"]
  epochs = max(len(r["curve"]) for r in arm_rows)
  curve_rows = [{"epoch": e, **{r["arm"]: (r["start_acc"] if e == 0 else r["curve"][e - 1]
                                           if e <= len(r["curve"]) else None)
                               for r in arm_rows}} for e in range(epochs + 1)]
  never = {f"epochs_to_{level:g}" for level in LEVELS}  # None there: no seed got there
  arm_rows = [{k: "never" if v is None and k in never else v for k, v in r.items()}
              for r in arm_rows]
  where = ("Curves on the validation split (epoch 0: the source's final models), the test "
           "split once at the end" if s.val_size else "Curves and the final evaluation on "
           "the test split (no validation split; epoch 0: the source's final models)")
  return [
      f"**(c) Interventions** (training.png, last panel). Does sigmoid-difference keep the "
      f"accuracy of a trained model, and does cross-entropy recover a collapsed one? Seed s "
      f"of the selected cross-entropy and sigmoid-difference models of (b) (ce-source, "
      f"sd-source) is trained on with the other loss (sd-from-ce, ce-from-sd). "
      f"A continued run is its loss's run of (b) with another start: a NEW Adam state (the "
      f"source's moments belong to the other loss's gradients, and its cosine schedule has "
      f"decayed to 0), {s.epochs} epochs of the same cosine decay, the same batches, and the "
      f"rate its loss selected for itself on validation in (b). Not selected again: on the "
      f"continued runs a selection would reward the rate that moves the weights least (a rate "
      f"near 0 keeps any accuracy), which measures the grid's edge, not the loss. {where}. "
      f"Accuracy %, mean over seeds; epochs to 97/98%: mean over the seeds that get "
      f"there (reached: how many); wrong_norm, wrong_tiny_share: the final models on the "
      f"misclassified probe images.",
      _table(arm_rows, keys),
      f"{split.capitalize()} accuracy per epoch, mean over seeds (epoch 0: where each starts):",
      _table(curve_rows, ["epoch", *(r["arm"] for r in arm_rows)]),
      "Intervention verdicts (paired over seeds; final test accuracy: exact McNemar; epoch 1: "
      "paired t; Holm over the whole experiment): " + " ".join(
          c.sentence() for c in inter)]


EXPERIMENT = harness.Experiment(
    "gradients", "Why does cross-entropy train faster than the sigmoid-difference loss? The "
    "gradients", Settings, variants, report, splits, check)


main = functools.partial(harness.main, EXPERIMENT)  # main(argv=None) -> the summary


if __name__ == "__main__":
  main()
