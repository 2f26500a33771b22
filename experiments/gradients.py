"""Why does cross-entropy train faster than the sigmoid-difference loss? The gradients.

(a) Analytic (`analytic_curves`): each multi-class loss's loss and ``dL/dz_y`` vs the margin
``m = z_y - max_{c != y} z_c`` (K = 10), other logits at 0 (A) or ``--others-level`` (B).
(b) MNIST training with cross-entropy, sigmoid-difference and sigmoid BCE; per epoch, on a
fixed probe of TRAINING images put before each held-out split (labels + K there): the norms
``||dl_i/dz_i||`` on all and on misclassified probe images, the share below ``--tiny``.
Verdict: cross-entropy vs each other loss on test accuracy (`harness.compare`) and on the log10
ratio of mean norms on misclassified probe images (paired t over seeds, Holm). Also writes
analytic.json/.png and training.png. Usage: ``python -m experiments.gradients [--quick]``."""

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


@dataclasses.dataclass(frozen=True)
class Settings(harness.Settings):
  """The harness's options (quick: no selection, one rate) and the measurement's."""

  val_size: int = cli.option(10000, "training images held out to select on (0: no selection, "
                             "one rate)", parse=cli.nonnegative_int, quick=0)
  out: str = cli.option("runs/gradients", "output folder")
  hidden: tuple[int, ...] = cli.option((512, 512), "hidden widths of the ReLU MLP",
                                       parse=cli.ints, quick=(32,))
  probe_size: int = cli.option(10000, "training images whose logit gradients are measured",
                               parse=cli.positive_int, quick=512)
  probe_seed: int = cli.option(0, "seed of the probe's random choice", parse=cli.nonnegative_int)
  tiny: float = cli.option(1e-3, "a logit-gradient norm below this counts as vanished",
                           parse=cli.positive_number)
  others_level: float = cli.option(-6.0, "analytic convention B: the level b of the other "
                                   "logits", parse=cli.number())


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
  import jaxloss  # pylint: disable=import-outside-toplevel
  facts, n = {"probe_size": s.probe_size, "probe_seed": s.probe_seed, "tiny": s.tiny}, s.probe_size
  return [harness.Variant(  # test_fn: "correct" of the held-out part only, [N - probe_size]
      spec.name, spec.loss_from_labels, spec.predict, make_eval_fn(spec, s.tiny),
      lambda z_NxK, y_N, spec=spec: {"correct": spec.predict(z_NxK[n:]) == y_N[n:] - K},
      train={"hidden": s.hidden}, describe=facts) for spec in map(jaxloss.get, LOSSES)]


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


def plot_training(outcomes: Mapping[str, harness.Outcome], s: Settings, path: str) -> None:
  """Per epoch: vanished share and mean norm on misclassified probe images, held-out error."""
  fig, axes = plots.pyplot().subplots(1, 3, figsize=(16, 4.5))
  for name, o in outcomes.items():
    panels = (100 * o.curve("probe_wrong_tiny_share"), o.curve("probe_wrong_grad_norm_mean"),
              100 * (1 - o.curve("test_accuracy")))
    for ax, y in zip(axes, panels):  # the log panels leave gaps at 0
      plots.plot_band(ax, np.arange(1, len(y) + 1), y if ax is axes[0] else
                      np.where(y > 0, y, np.nan), name)
  for ax, label in zip(axes, (f"misclassified probe images with norm < {s.tiny:g} (%)",
                              "mean ||dl/dz||, misclassified probe images",
                              f"{'validation' if s.val_size else 'test'} error %")):
    ax.set(xlabel="epoch", ylabel=label, yscale="linear" if ax is axes[0] else "log")
    ax.grid(True, which="both", alpha=0.3)
  axes[0].legend()
  fig.suptitle("Logit gradients of a fixed probe of training images; mean over seeds, min-max")
  plots.save(fig, path)


def report(s: Settings, outcomes: Mapping[str, harness.Outcome]) -> harness.Report:
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
  comps = harness.compare(outcomes, [(trained[0], o) for o in trained[1:]], margin=s.margin)
  norms = [(c, f"x{10 ** c.interval.mean:.3g} (95% CI {10 ** c.interval.low:.3g} to "
            f"{10 ** c.interval.high:.3g}") for c in norm_contrasts(rows)]
  g = {v: ", ".join(f"{abs(at[name][v]['-5']['grad']):.3g}" for name in trained) for v in "AB"}
  verdict = (f"At margin -5 (K = 10) |dL/dz_y| of {', '.join(trained)} is {g['A']} with the other "
             f"logits at 0 and {g['B']} with them at {s.others_level:g}. Test accuracy: "
             + "; ".join(c.sentence()[:-1] for c in comps) + ". Mean logit-gradient norm on "
             "misclassified probe (training) images: " + ("; ".join(
                 f"{c.a} vs {c.b} {r}, Holm p = {c.p_holm:.2g}: {c.verdict})"
                 for c, r in norms) or "n/a (a seed had none in any epoch)") + ".")
  c = comps[0]
  headline = (f"{c.a} vs {c.b}: {c.interval.mean:+.2f} test accuracy points (95% CI "
              f"{c.interval.low:+.2f} to {c.interval.high:+.2f}, {c.verdict}); logit-gradient "
              f"norm on misclassified training images {norms[0][1] + ')' if norms else 'n/a'}.")
  keys = [k for k in rows[0] if k not in ("loss", "wrong_norm_per_seed")]
  markdown = "\n\n".join([
      "**(a) Analytic** (analytic.png): every multi-class loss; values at the margins in "
      "summary.json, curves in analytic.json.",
      f"**(b) Training** (training.png), MLP 784-{'-'.join(map(str, s.hidden))}-10: test accuracy "
      f"%, then the final models on {s.probe_size} probe training images, mean over seeds (wrong: "
      f"misclassified; tiny: norm < {s.tiny:g}; peak: highest over epochs; nan: none wrong).",
      "\n".join("| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in row)
                + " |" for row in [["loss", *keys], ["---"] * (len(keys) + 1),
                                   *([r["loss"], *(r[k] for k in keys)] for r in rows)])])
  summary = {"analytic": {"others_level": s.others_level, "at_margin": at}, "rows": rows,
             "comparisons": [dataclasses.asdict(c) for c in comps],
             "norm_contrasts": [dataclasses.asdict(c) for c, _ in norms]}
  return harness.Report(verdict, markdown, summary, {
      "analytic.png": lambda path: plot_analytic(curves, trained, s.others_level, path),
      "training.png": lambda path: plot_training(outcomes, s, path)}, headline)


EXPERIMENT = harness.Experiment(
    "gradients", "Why does cross-entropy train faster than the sigmoid-difference loss? The "
    "gradients", Settings, variants, report, splits, check)


main = functools.partial(harness.main, EXPERIMENT)  # main(argv=None) -> the summary


if __name__ == "__main__":
  main()
