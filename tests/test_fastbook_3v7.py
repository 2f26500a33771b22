"""experiments.fastbook_3v7: the book's numbers, losses and metrics, summaries, verdict, CLI."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import fastbook_3v7 as fb

PNG = b"\x89PNG\r\n\x1a\n"


def _sigmoid(z):
  return 1.0 / (1.0 + np.exp(-z))


def ref_losses(z_N, y_N):
  """float64 NumPy references written from the book's formulas."""
  p = _sigmoid(z_N)
  mnist = np.mean(np.where(y_N == 1, 1.0 - p, p))
  bce = np.mean(-(y_N * np.log(p) + (1 - y_N) * np.log(1.0 - p)))
  return mnist, bce


@pytest.fixture
def batch():
  rng = np.random.default_rng(0)
  z = rng.normal(0.0, 3.0, 64).astype(np.float32)
  y = rng.integers(0, 2, 64).astype(np.int32)
  return z, y


# --------------------------------------------------------------------------- the book's numbers


def test_book_series_as_printed():
  lengths = {k: len(v["values"]) for k, v in fb.BOOK.items()}
  assert lengths == {"linear_init_params": 21, "linear_basic_optim": 20, "linear_sgd": 20,
                     "linear_learner": 10, "mlp_learner": 40}
  for series in fb.BOOK.values():
    assert all(0.4 < v < 1.0 for v in series["values"])
    assert series["model"] in fb.MODELS
  mlp = fb.BOOK["mlp_learner"]
  assert mlp["values"][-1] == pytest.approx(mlp["printed_final"], abs=5e-7)
  assert not mlp["printed_in_book"]  # a #hide_output cell
  # Spot checks against the notebook's printed strings.
  assert fb.BOOK["linear_init_params"]["values"][-1] == 0.9696
  assert fb.BOOK["linear_basic_optim"]["values"][:3] == [0.4932, 0.8618, 0.8203]
  assert fb.BOOK["linear_learner"]["values"][-1] == 0.967615
  for model, key in fb.BOOK_MAIN.items():
    assert key in fb.BOOK_SHOWN[model]


def test_book_summary_epochs_to_levels():
  s = fb.book_summary("mlp_learner")
  assert s["epochs_to_97"] == 10 and s["epochs_to_98"] == 28
  assert s["final"] == pytest.approx(98.2826)
  lin = fb.book_summary("linear_init_params")
  assert lin["epochs_to_97"] is None and lin["epochs_to_98"] is None


# --------------------------------------------------------------------------- losses, metrics


def test_losses_match_numpy_reference(batch):
  z, y = batch
  mnist, bce = ref_losses(z.astype(np.float64), y)
  np.testing.assert_allclose(fb.mnist_loss(jnp.asarray(z)[:, None], jnp.asarray(y)), mnist,
                             rtol=1e-5)
  np.testing.assert_allclose(fb.bce_loss(jnp.asarray(z)[:, None], jnp.asarray(y)), bce,
                             rtol=1e-5)


def test_mnist_loss_gradient_is_the_books(batch):
  z, y = batch

  def book(z_B):  # torch.where(targets==1, 1-predictions, predictions).mean(), sigmoid first
    p = jax.nn.sigmoid(z_B)
    return jnp.mean(jnp.where(jnp.asarray(y) == 1, 1.0 - p, p))

  got = jax.grad(lambda z_B: fb.mnist_loss(z_B[:, None], jnp.asarray(y)))(jnp.asarray(z))
  np.testing.assert_allclose(got, jax.grad(book)(jnp.asarray(z)), rtol=1e-5, atol=1e-9)


def test_bce_gradient_is_sigmoid_minus_target(batch):
  z, y = batch
  got = jax.grad(lambda z_B: fb.bce_loss(z_B[:, None], jnp.asarray(y)))(jnp.asarray(z))
  np.testing.assert_allclose(got, (_sigmoid(z.astype(np.float64)) - y) / len(z), rtol=1e-4,
                             atol=1e-7)


def test_predict_is_sigmoid_above_half():
  z = jnp.array([[-3.0], [-1e-3], [0.0], [1e-3], [5.0]])
  np.testing.assert_array_equal(fb.predict(z), [0, 0, 0, 1, 1])
  assert fb.predict(z).dtype == jnp.int32


def test_eval_fn_matches_numpy(batch):
  z, y = batch
  out = jax.jit(fb.eval_fn)(jnp.asarray(z)[:, None], jnp.asarray(y))
  assert set(out) == {"test_accuracy", "test_mnist_loss", "test_bce", "test_confident_wrong"}
  p = _sigmoid(z.astype(np.float64))
  pred = (p > 0.5).astype(int)
  mnist, bce = ref_losses(z.astype(np.float64), y)
  p_wrong = np.where(y == 1, 1 - p, p)
  np.testing.assert_allclose(out["test_accuracy"], np.mean(pred == y), rtol=1e-6)
  np.testing.assert_allclose(out["test_mnist_loss"], mnist, rtol=1e-5)
  np.testing.assert_allclose(out["test_bce"], bce, rtol=1e-5)
  np.testing.assert_allclose(out["test_confident_wrong"],
                             np.mean((pred != y) & (p_wrong > fb.CONFIDENT)), rtol=1e-6)
  assert 0 < float(out["test_confident_wrong"]) < 1 - float(out["test_accuracy"])


def test_losses_finite_at_saturated_logits():
  z = jnp.array([[80.0], [-80.0], [1e4], [-1e4]])
  y = jnp.array([0, 1, 1, 0])
  for fn in (fb.mnist_loss, fb.bce_loss):
    value, grad = jax.value_and_grad(lambda zz: fn(zz, y))(z)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
  assert float(fb.mnist_loss(z, y)) == pytest.approx(0.5)  # two wrong (1 each), two right (0)


# --------------------------------------------------------------------------- summaries, wording


def test_epochs_to():
  assert fb.epochs_to([90.0, 96.9, 97.0, 98.5], 97.0) == 3
  assert fb.epochs_to([90.0, 96.9], 97.0) is None
  assert fb.epochs_to([], 97.0) is None


def test_summarize_run_with_a_diverged_seed():
  acc = np.array([[96.0, 97.5, 95.0],
                  [97.2, 98.1, np.nan],
                  [97.8, 98.3, np.nan]])
  s = fb.summarize_run(acc, {"test_bce": np.array([[0.2, 0.1, 0.3], [0.1, 0.1, np.nan],
                                                   [0.1, 0.05, np.nan]])}, {2: 2})
  assert s["epochs"] == 3 and s["seeds"] == 3
  assert s["final_mean"] == pytest.approx(98.05)
  assert s["final_std"] == pytest.approx(np.std([97.8, 98.3], ddof=1))
  assert s["epochs_to_97"] == [2, 1, None] and s["reached_97"] == 2
  assert s["mean_epochs_to_97"] == pytest.approx(1.5)
  assert s["epochs_to_98"] == [None, 2, None] and s["reached_98"] == 1
  assert s["best_mean"] == pytest.approx(np.mean([97.8, 98.3, 95.0]))
  assert s["test_bce_final_mean"] == pytest.approx(0.075)
  assert s["diverged"] == {2: 2}
  assert s["mean"][0] == pytest.approx(96.1666666)


def test_book_comparison_wording():
  assert fb.book_comparison(98.2, 0.05, 98.22, 2038).startswith("matches the book's 98.22%")
  text = fb.book_comparison(97.15, 0.10, 96.91, 2038, 3, " (loop, epoch 20)")
  assert text.startswith("exceeds the book's 96.91% (loop, epoch 20) by 0.24 points")
  assert "4.9 validation images" in text
  assert fb.book_comparison(95.0, 0.1, 96.9, 2038).startswith("falls short of the book's")
  # One validation image is the smallest difference ever called a difference.
  assert fb.book_comparison(98.0, 0.0, 98.04, 2038).startswith("matches")
  assert "no finite" in fb.book_comparison(math.nan, math.nan, 98.0, 2038)


def _run_summary(final, std, e97, e98, seeds=3, epochs=20):
  acc = np.full((epochs, seeds), 90.0)
  acc[-1] = final + std * np.array([-1.0, 0.0, 1.0])[:seeds]
  s = fb.summarize_run(acc)
  s["reached_97"], s["mean_epochs_to_97"] = (seeds, e97) if e97 else (0, math.nan)
  s["reached_98"], s["mean_epochs_to_98"] = (seeds, e98) if e98 else (0, math.nan)
  s["test_confident_wrong_final_mean"] = 0.01
  return s


def _summary(runs, quick=False):
  return {"data": {"validation_examples": 2038}, "quick": quick, "runs": runs,
          "book": {k: fb.book_summary(k) for k in fb.BOOK}}


def test_verdict_is_generated_from_numbers():
  runs = {"linear": {"mnist_loss": _run_summary(97.1, 0.1, 16.0, None),
                     "bce": _run_summary(98.1, 0.3, 4.0, 14.0)},
          "mlp": {"mnist_loss": _run_summary(98.25, 0.03, 3.0, 25.0, epochs=40),
                  "bce": _run_summary(98.3, 0.06, 2.0, 8.0, epochs=40)}}
  text = fb.verdict(_summary(runs))
  assert "linear 784-1 (20 epochs): mnist_loss trains" in text
  assert "BCE beats mnist_loss by 1.00" in text
  assert "98%: mnist_loss never (0/3 seeds), BCE after 14.0 epochs" in text
  assert "matches the book's 98.28%" in text
  assert "no clear difference between BCE and mnist_loss" in text  # 0.05 < 2 * 0.06 * ...
  assert "Quick mode" not in text
  runs["linear"]["mnist_loss"] = _run_summary(55.0, 3.0, None, None)
  text = fb.verdict(_summary(runs, quick=True))
  assert "mnist_loss does not train" in text and "Quick mode" in text


def test_parser_defaults_and_no_lr_grid():
  args = fb.build_parser().parse_args([])
  assert (args.linear_lr, args.mlp_lr, args.linear_epochs, args.mlp_epochs) == (1.0, 0.1, 20, 40)
  assert args.batch_size == 256 and args.hidden == 30 and args.seeds is None
  assert args.out == "runs/fastbook_3v7" and not args.linear_torch_init
  assert "--lrs" not in fb.build_parser().format_help()
  assert fb.build_parser().parse_args(["--seeds", "4"]).seeds == (0, 1, 2, 3)


def test_book_deviations():
  parser = fb.build_parser()
  assert fb.book_deviations(parser.parse_args([])) == []
  dev = fb.book_deviations(parser.parse_args(["--mlp-lr", "0.5", "--train-subset", "100"]))
  assert dev == ["--mlp-lr 0.5 (book: 0.1)", "--train-subset 100 (book: None)"]
  assert fb.book_deviations(parser.parse_args(["--quick"]))[0].startswith("--quick")


# --------------------------------------------------------------------------- end to end


@pytest.mark.mnist
@pytest.mark.usefixtures("mnist_loaded_once")
def test_quick_end_to_end_and_resume(tmp_path, tmp_path_factory, mnist_dir, monkeypatch, capsys):
  argv = ["--quick", "--mnist-dir", mnist_dir, "--out", str(tmp_path), "--no-progress"]
  first = fb.main(argv)
  printed = capsys.readouterr().out
  assert "device: CPU" in printed or "device: " in printed
  names = {p.name for p in tmp_path.iterdir()}
  assert names >= {"config.json", "metrics.jsonl", "summary.md", "summary.json", "accuracy.png",
                   "accuracy_zoom.png", "runs"}
  rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert len(rows) == 2 * 2 * 2 * 2  # models x losses x seeds x epochs
  assert {(r["model"], r["loss"]) for r in rows} == {(m, l) for m in fb.MODELS for l in fb.LOSSES}
  for r in rows:
    assert r["stage"] == "final" and r["run"].startswith(r["model"] + "-" + r["loss"])
    for key in ("train_loss", "test_accuracy", "test_mnist_loss", "test_bce",
                "test_confident_wrong"):
      assert math.isfinite(r[key])
    assert 0.0 <= r["test_accuracy"] <= 1.0
  assert {r["lr"] for r in rows if r["model"] == "linear"} == {1.0}
  assert {r["lr"] for r in rows if r["model"] == "mlp"} == {0.1}

  config = json.loads((tmp_path / "config.json").read_text())
  assert config["data"]["train_examples"] == 1024 and config["data"]["validation_examples"] == 512
  assert config["seeds"] == [0, 1] and config["quick"]
  assert config["settings"]["linear"]["initializer"] == "standard_normal"
  assert config["settings"]["mlp"]["initializer"] == "torch"
  assert config["settings"]["mlp"]["hidden"] == [30]
  assert "no" in config["lr_selection"] or "none" in config["lr_selection"]
  summary = json.loads((tmp_path / "summary.json").read_text())
  for model in fb.MODELS:
    for loss in fb.LOSSES:
      s = summary["runs"][model][loss]
      assert s["epochs"] == 2 and s["seeds"] == 2 and 0 < s["final_mean"] <= 100
  md = (tmp_path / "summary.md").read_text()
  assert md.startswith("## ") and "**Verdict.**" in md and "quick mode" in md.lower()
  assert "Not the book's settings" in md and "--mlp-epochs 2 (book: 40)" in md
  assert "(accuracy.png)" in md and "(accuracy_zoom.png)" in md and "| 40 |" in md
  for fig in first["figures"]:
    assert open(fig, "rb").read(8) == PNG
  assert first["summary_md"] == md and first["wall_seconds"] > 0
  assert first["summary"]["runs_read_back"] == 0

  second = fb.main(argv)
  assert second["summary"]["runs_read_back"] == 4  # nothing retrained
  rows2 = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert rows2 == rows
  assert second["summary"]["verdict"] == first["summary"]["verdict"]
  assert second["summary"]["runs"] == first["summary"]["runs"]

  # Kill the same command right after its first checkpoint (epoch 1 of the first run), rerun
  # it: the run continues from epoch 1, the others start, and every number matches `rows`.
  from jaxloss.train import checkpoints  # pylint: disable=import-outside-toplevel

  cut = tmp_path_factory.mktemp("cut")
  argv_cut = argv[:argv.index("--out")] + ["--out", str(cut), "--no-progress"]
  real_save = checkpoints.save

  def save_then_die(path, epoch, state):
    real_save(path, epoch, state)
    raise KilledAfterCheckpoint(epoch)

  with monkeypatch.context() as patch, pytest.raises(KilledAfterCheckpoint):
    patch.setattr(checkpoints, "save", save_then_die)
    fb.main(argv_cut)
  (ckpt,) = list((cut / "runs").glob("*/ckpt"))
  assert checkpoints.latest_epoch(ckpt) == 1
  assert not list((cut / "runs").glob("*/result.json"))
  resumed = fb.main(argv_cut)
  assert resumed["summary"]["runs_read_back"] == 0 and not list((cut / "runs").glob("*/ckpt"))
  rows_cut = [json.loads(line) for line in (cut / "metrics.jsonl").read_text().splitlines()]
  assert _without_times(rows_cut) == _without_times(rows)
  assert resumed["summary"]["verdict"] == first["summary"]["verdict"]


class KilledAfterCheckpoint(Exception):
  """Stands in for the process being killed right after a checkpoint was written."""


def _without_times(rows):
  return [{k: v for k, v in r.items() if not k.endswith("seconds")} for r in rows]
