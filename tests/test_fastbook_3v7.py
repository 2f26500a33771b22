"""experiments.fastbook_3v7 on the harness: the book's numbers, losses, metrics, report, CLI."""

import json
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import fastbook_3v7 as fb
from experiments import harness, protocol, runs, stats
from jaxloss.train.data import Mnist
from _experiments import refusal  # noqa: E402


def _sigmoid(z):
  return 1.0 / (1.0 + np.exp(-z))


@pytest.fixture
def batch():
  rng = np.random.default_rng(0)
  return rng.normal(0.0, 3.0, 64).astype(np.float32), rng.integers(0, 2, 64).astype(np.int32)


def test_book_series_as_printed():
  assert {k: len(v) for k, v in fb.BOOK.items()} == {"linear": 21, "simple_net": 40}
  assert all(0.5 < v < 1.0 for series in fb.BOOK.values() for v in series)
  assert fb.BOOK["linear"][:3] == (0.6883, 0.8314, 0.9017) and fb.BOOK["linear"][-1] == 0.9696
  assert fb.BOOK["simple_net"][-1] == pytest.approx(0.982826292514801, abs=5e-7)


def test_eval_fn_and_losses_match_numpy(batch):
  """float64 NumPy references written from the book's formulas."""
  z, y = batch
  out = jax.jit(fb.eval_fn)(jnp.asarray(z)[:, None], jnp.asarray(y))
  assert set(out) == {"test_accuracy", "test_mnist_loss", "test_bce", "test_confident_wrong"}
  p = _sigmoid(z.astype(np.float64))
  pred = (p > 0.5).astype(int)
  np.testing.assert_allclose(out["test_accuracy"], np.mean(pred == y), rtol=1e-6)
  np.testing.assert_allclose(out["test_mnist_loss"], np.mean(np.where(y == 1, 1 - p, p)),
                             rtol=1e-5)
  np.testing.assert_allclose(out["test_bce"], np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p))),
                             rtol=1e-5)
  wrong_confident = (pred != y) & (np.where(y == 1, 1 - p, p) > fb.CONFIDENT)
  np.testing.assert_allclose(out["test_confident_wrong"], np.mean(wrong_confident), rtol=1e-6)
  assert 0 < float(out["test_confident_wrong"]) < 1 - float(out["test_accuracy"])


def test_gradients_are_the_books(batch):
  """mnist_loss: the book's torch.where(...).mean() after a sigmoid; BCE: (sigmoid(z) - t) / B."""
  z, y = jnp.asarray(batch[0]), jnp.asarray(batch[1])
  book = jax.grad(lambda z_B: jnp.mean(jnp.where(y == 1, 1.0 - jax.nn.sigmoid(z_B),
                                                 jax.nn.sigmoid(z_B))))(z)
  np.testing.assert_allclose(jax.grad(lambda z_B: fb.mnist_loss(z_B[:, None], y))(z), book,
                             rtol=1e-5, atol=1e-9)
  np.testing.assert_allclose(jax.grad(lambda z_B: fb.bce_loss(z_B[:, None], y))(z),
                             (_sigmoid(batch[0].astype(np.float64)) - batch[1]) / len(z),
                             rtol=1e-4, atol=1e-7)


def test_losses_finite_at_saturated_logits_and_predict():
  z, y = jnp.array([[80.0], [-80.0], [1e4], [-1e4]]), jnp.array([0, 1, 1, 0])
  for fn in (fb.mnist_loss, fb.bce_loss):
    value, grad = jax.value_and_grad(lambda zz: fn(zz, y))(z)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
  assert float(fb.mnist_loss(z, y)) == pytest.approx(0.5)  # two wrong (1 each), two right (0)
  z = jnp.array([[-3.0], [-1e-3], [0.0], [1e-3], [5.0]])  # the book's sigmoid(z) > 0.5
  np.testing.assert_array_equal(fb.predict(z), [0, 0, 0, 1, 1])
  assert fb.predict(z).dtype == jnp.int32


def test_variants_are_the_books_setups():
  vs = {v.name: v for v in fb.variants(fb.Settings())}
  assert list(vs) == [f"{m}-{arm}" for m in fb.MODELS for arm in (
      "mnist_loss", "bce", "mnist_loss-book", "mnist_loss-selected", "bce-selected")]
  lin, net = vs["linear-mnist_loss"], vs["simple_net-bce"]
  assert lin.rates == (1.0,) and net.rates == (0.1,)
  assert lin.train == {"num_classes": 1, "optimizer": "sgd", "schedule": "constant",
                       "hidden": (), "initializer": "standard_normal", "epochs": 20}
  assert [net.train[k] for k in ("hidden", "initializer", "epochs")] == [(30,), "torch", 40]
  assert net.loss_fn is fb.bce_loss and lin.loss_fn is fb.mnist_loss
  # The book's loader: the book's order (its split), unshuffled, the ragged batch kept.
  book = vs["simple_net-mnist_loss-book"]
  assert book.data == "3v7-book" and book.rates == (0.1,) and book.loss_fn is fb.mnist_loss
  assert book.train == {**vs["simple_net-mnist_loss"].train, "shuffle": False, "drop_last": False}
  assert book.describe == {"model": "simple_net", "loss": "mnist_loss", "loader": "book",
                           "rate": "book"}
  # Own rates: half decades from a hundredth to a hundred times the book's, selected on
  # held-out images.
  own = vs["linear-bce-selected"]
  assert own.data == "3v7-select" and own.train == vs["linear-bce"].train
  assert own.rates == (0.01, 0.0316228, 0.1, 0.316228, 1.0, 3.16228, 10.0, 31.6228, 100.0) \
      == fb.select_grid(1.0, 4)
  assert fb.select_grid(1.0) == (0.1, 0.316228, 1.0, 3.16228, 10.0)
  assert vs["simple_net-mnist_loss-selected"].rates == fb.select_grid(0.1, 4)
  assert fb.select_grid(0.1, 0) == (0.1,)
  assert [v.name for v in fb.variants(fb.Settings(loader="book", select_size=0))] == [
      f"{m}-{loss}-book" for m in fb.MODELS for loss in fb.LOSSES]
  assert [v.name for v in fb.variants(fb.Settings(loader="shuffled", select_size=0))] == [
      f"{m}-{loss}" for m in fb.MODELS for loss in fb.LOSSES]


def test_splits_are_the_3s_and_7s_in_the_books_order_and_refuse_a_batch_too_large(capsys):
  images = np.arange(6)[:, None, None] * np.ones((1, 28, 28), np.uint8)
  mnist = Mnist(images, np.array([3, 7, 1, 3, 7, 3]), images[:3], np.array([7, 2, 3]))
  got = fb.splits(fb.Settings(batch_size=2, select_size=2), mnist)
  split = got["3v7"]
  assert split.val is None and split.train[1].tolist() == [1, 0, 1, 0, 1]
  assert split.test[1].tolist() == [0, 1] and split.test[0][1, 0, 0] == 2
  book = got["3v7-book"]  # the book's dset: the 3s, then the 7s, each in order
  assert book.train[1].tolist() == [1, 1, 1, 0, 0]
  assert book.train[0][:, 0, 0].tolist() == [0, 3, 5, 1, 4]
  assert fb.book_order([0, 1, 1, 0]).tolist() == [1, 2, 0, 3]
  held = got["3v7-select"]  # 2 of the 5 held out to select on, the book's validation to test
  assert held.val[1].size == 2 and held.train[1].size == 3 and held.test[1].tolist() == [0, 1]
  assert sorted(np.concatenate([held.train[0], held.val[0]])[:, 0, 0].tolist()) == [0, 1, 3, 4, 5]
  assert "3v7-select" not in fb.splits(fb.Settings(batch_size=2, select_size=0), mnist)
  for settings, message in (
      (fb.Settings(batch_size=6), "--batch-size: must be at most the 5 training 3s and 7s, "
       "got 6"),
      (fb.Settings(batch_size=4, select_size=2), "--select-size: must leave at least the batch "
       "size (4) of the 5 training 3s and 7s, got 2")):
    with pytest.raises(SystemExit) as exit_info:
      fb.splits(settings, mnist)
    assert exit_info.value.code == 2 and capsys.readouterr().err.strip() == "error: " + message


def _fake_outcome(name, acc_ExS, n=1000):
  """Seed s gets the first ``acc * n`` of `n` examples right, rolled by 7 * s."""
  model, loss, *kind = name.split("-")
  rows = [{"seed": s, "epoch": e, "test_accuracy": a} for e, accs in enumerate(acc_ExS, start=1)
          for s, a in enumerate(accs)]
  correct = [np.roll(np.arange(n) < round(a * n), 7 * s) for s, a in enumerate(acc_ExS[-1])]
  test = {"test_accuracy": np.asarray(acc_ExS[-1]), "correct": np.asarray(correct)}
  test.update({k: np.array([0.1, 0.2]) for k in ("test_mnist_loss", "test_bce",
                                                  "test_confident_wrong")})
  result = runs.RunResult(name, "done", rows, {}, 1.0, 0, [{"seed": 0}, {"seed": 1}], test)
  describe = {"model": model, "loss": loss, "loader": "book" if kind == ["book"] else "shuffled",
              "rate": "selected" if kind == ["selected"] else "book"}
  variant = harness.Variant(name, loss_fn=None, describe=describe)
  table = [{"lr": r, "score": 0.9} for r in (0.1, 1.0)] if kind == ["selected"] else []
  return harness.Outcome(variant, protocol.Selected({"lr": 1.0}, table, [], result, [result]))


def test_report_on_made_up_outcomes():
  """BCE clearly better on the linear model, equal on simple_net; the book's loader dips after
  epoch 1 on simple_net as the book does; the book compared per mnist_loss arm."""
  curves = {"linear-mnist_loss": [[0.9, 0.91], [0.969, 0.9702]],
            "linear-bce": [[0.95, 0.96], [0.98, 0.981]],
            "linear-mnist_loss-book": [[0.7, 0.69], [0.965, 0.966]],
            "linear-mnist_loss-selected": [[0.9, 0.91], [0.97, 0.971]],
            "linear-bce-selected": [[0.95, 0.96], [0.982, 0.983]],
            "simple_net-mnist_loss": [[0.9, 0.9], [0.8, 0.81]],
            "simple_net-bce": [[0.9, 0.9], [0.8, 0.81]],
            "simple_net-mnist_loss-book": [[0.508, 0.51], [0.8, 0.81]]}
  rep = fb.report(fb.Settings(), {n: _fake_outcome(n, c) for n, c in curves.items()})
  comps = {(c["a"], c["b"]): c for c in rep.summary["comparisons"]}
  assert rep.summary["comparison_kinds"] == {"book": 2, "own": 1, "loader": 4}
  np.testing.assert_allclose([c["p_holm"] for c in rep.summary["comparisons"]],
                             stats.holm([c["p_value"] for c in rep.summary["comparisons"]]))
  lin = comps["linear-bce", "linear-mnist_loss"]
  assert lin["verdict"] == "better" and lin["interval"]["mean"] == pytest.approx(1.09)
  assert comps["simple_net-bce", "simple_net-mnist_loss"]["verdict"] == "equivalent"
  assert comps["linear-bce-selected", "linear-mnist_loss-selected"]["interval"]["mean"] == \
      pytest.approx(1.2)
  dip = comps["simple_net-mnist_loss-book after epoch 1", "simple_net-mnist_loss after epoch 1"]
  assert dip["interval"]["mean"] == pytest.approx(-39.1) and dip["test"] == "paired-t"
  assert comps["simple_net-mnist_loss-book", "simple_net-mnist_loss"]["test"] == "mcnemar"
  arms = {r["variant"]: r for r in rep.summary["arms"]}
  lin = arms["linear-mnist_loss"]
  assert lin["epochs"] == 2 and lin["book"] == pytest.approx(83.14) and lin["vs_book"] == "above"
  assert lin["final_mean"] == pytest.approx(96.96) and lin["lr"] == 1.0
  assert arms["simple_net-mnist_loss"]["vs_book"] == "matches"  # 80.5 +- 6.4 vs 80.77
  book = arms["simple_net-mnist_loss-book"]  # 50.9 +- 0.1 after epoch 1 vs the book's 50.83
  assert book["book_epoch1"] == pytest.approx(50.8341) and book["call_epoch1"] == "matches"
  assert arms["simple_net-mnist_loss"]["call_epoch1"] == "above"
  own = arms["linear-bce-selected"]
  assert own["book"] is None and "call_epoch1" not in own and own["grid"] == [0.1, 1.0]
  assert own["heldout_mean"] == pytest.approx(98.25)
  assert len(re.findall(r"[A-Za-z%)]\.(?:\s|$)", rep.verdict)) == 3  # sentences
  assert ("at the book's rates: linear-bce vs linear-mnist_loss: +1.09 accuracy points"
          in rep.verdict)
  assert len(rep.headline.split()) <= 40, rep.headline
  assert "| 2 | 96.96 ± 0.08 | 96.55 ± 0.07 | 83.14 | 98.05 ± 0.07 |" in rep.markdown
  assert "| linear-bce-selected | 0.1, 1 | 1 | 98.25 | 98.25 ± 0.07 |" in rep.markdown
  assert list(rep.figures) == ["accuracy.png"]


@pytest.mark.parametrize("argv, start", [
    (["--linear-lr", "0"], "error: --linear-lr: must be"),
    (["--linear-lr", "nan"], "error: --linear-lr: must be"),
    (["--linear-lr", "1,2"], "error: --val-size 0 trains without selection"),
    (["--net-lr", "inf"], "error: --net-lr: must be"),
    (["--net-epochs", "0"], "error: --net-epochs: must be"),
    (["--linear-epochs", "-1"], "error: --linear-epochs: must be"),
    (["--hidden", "0"], "error: --hidden: must be"),
    (["--val-size", "100"], "error: --val-size: must be one of 0"),
    (["--seeds", "1"], "error: --seeds: give at least 2"),
    (["--loader", "random"], "error: --loader: must be one of both, shuffled, book"),
    (["--select-size", "-1"], "error: --select-size: must be"),
    (["--select-span", "x"], "error: --select-span: must be"),
    (["--lrs", "1"], "error: unrecognized arguments: --lrs"),
])
def test_bad_flags_are_one_line_exit_2_before_any_data(argv, start, tmp_path, capsys,
                                                       monkeypatch):
  assert refusal(fb.main, argv, tmp_path, capsys, monkeypatch).startswith(start)


def test_help_and_refusals_never_import_jax(tmp_path):
  code = ("import sys\nfrom experiments import fastbook_3v7 as fb\n"
          "for argv in (['--help'], ['--net-lr', 'nan'], ['--seeds', '1']):\n"
          "  try:\n    fb.main([*argv, '--out', sys.argv[1]])\n"
          "  except SystemExit:\n    assert 'jax' not in sys.modules, argv\n")
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "out")], cwd=root,
                        capture_output=True, text=True, timeout=60)
  assert done.returncode == 0 and done.stderr.count("error: ") == 2, done.stderr
  assert not (tmp_path / "out").exists()


@pytest.mark.mnist
@pytest.mark.usefixtures("mnist_loaded_once")
def test_quick_end_to_end_and_read_back(tmp_path, capsys):
  out = tmp_path / "run"
  # One epoch (no checkpoints to write), no own-rate arms (their data, arms and report are
  # checked above without training): the four arms and mnist_loss with the book's loader.
  argv = ["--quick", "--linear-epochs", "1", "--net-epochs", "1", "--select-size", "0",
          "--out", str(out), "--no-progress"]
  summary = fb.main(argv)
  assert "device: " in capsys.readouterr().out
  assert {p.name for p in out.iterdir()} >= {"config.json", "metrics.jsonl", "summary.json",
                                            "summary.csv", "summary.md", "accuracy.png", "runs"}
  rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
  assert len(rows) == 6 * 2 * 1 and {r["split"] for r in rows} == {"test"}  # arms, seeds, epochs
  saved = json.loads((out / "summary.json").read_text())
  assert saved["settings"]["val_size"] == 0 and saved["settings"]["seeds"] == [0, 1]
  assert saved["settings"]["loader"] == "both" and saved["settings"]["select_size"] == 0
  arms = {r["variant"]: r for r in saved["arms"]}
  assert list(arms) == fb.arm_names(fb.Settings(select_size=0))
  for name, arm in arms.items():
    assert arm["lr"] == {"linear": 1.0, "simple_net": 0.1}[arm["model"]]
    assert 0 < arm["final_mean"] <= 100 and arm["epochs"] == 1
    assert arm["book"] == arm["book_epoch1"] == pytest.approx(100 * fb.BOOK[arm["model"]][0])
    assert arm["vs_book"] in ("above", "below", "matches")
    assert arm["call_epoch1"] in ("above", "below", "matches")
    assert saved["variants"][name]["selected"] == {"lr": arm["lr"]}
    np.testing.assert_allclose(100 * np.mean(saved["variants"][name]["test"]["test_accuracy"]),
                               arm["final_mean"])
  assert [(c["a"], c["b"]) for c in saved["comparisons"]] == [
      ("linear-bce", "linear-mnist_loss"), ("simple_net-bce", "simple_net-mnist_loss"),
      ("linear-mnist_loss-book after epoch 1", "linear-mnist_loss after epoch 1"),
      ("simple_net-mnist_loss-book after epoch 1", "simple_net-mnist_loss after epoch 1"),
      ("linear-mnist_loss-book", "linear-mnist_loss"),
      ("simple_net-mnist_loss-book", "simple_net-mnist_loss")]
  book = json.loads((out / "runs" / "linear-mnist_loss-book-grid" / "run.json").read_text())
  assert book["config"]["shuffle"] is False and book["config"]["drop_last"] is False
  assert book["describe"]["train_examples"] % 256  # a ragged last batch, kept
  assert saved["headline"].startswith("The book's 3-vs-7 setup, BCE vs mnist_loss: linear")
  assert (out / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  again = fb.main(argv)  # finished runs are read back, not retrained
  assert again["arms"] == summary["arms"] and again["comparisons"] == summary["comparisons"]
