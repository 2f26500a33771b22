"""Resume, divergence and learning-rate selection of experiment runs (experiments.runs).

Also covers the trainer features they rest on: `iterate_training(resume=...)`,
Orbax checkpoints (`jaxloss.train.checkpoints`) and custom `eval_fn` metrics.
"""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("flax")
pytest.importorskip("orbax.checkpoint")

import jaxloss  # noqa: E402
from jaxloss import train as jt  # noqa: E402
from _synthetic import prototype_images  # noqa: E402
from jaxloss.train import checkpoints  # noqa: E402
from experiments import runs  # noqa: E402

# These tests train models (seconds each): part of the full suite, not of the quick check.
pytestmark = pytest.mark.slow

NUM_CLASSES = 4
SPEC = jaxloss.get("softmax_cross_entropy")


def synthetic(n_train=256, n_test=64, side=6, seed=0):
  return prototype_images(n_train, n_test, num_classes=NUM_CLASSES, side=side, seed=seed)


DATA = synthetic()


def make_spec(lr=1e-2, run_id=None, epochs=3, optimizer="adam", eval_fn=None):
  config = jt.TrainConfig(hidden=(16,), num_classes=NUM_CLASSES, optimizer=optimizer,
                          learning_rate=lr, schedule="cosine", batch_size=32, epochs=epochs,
                          eval_batch_size=32)
  return runs.RunSpec(run_id or f"ce_lr{lr:g}", config, SPEC.loss_from_labels, SPEC.predict,
                      eval_fn=eval_fn, seeds=(0, 1), describe={"loss": SPEC.name, "lr": lr})


def no_time(rows):
  return [{k: v for k, v in r.items() if not k.endswith("seconds")} for r in rows]


class Interrupt(Exception):
  pass


def interrupt_after(epoch):
  def on_epoch(spec, rows):
    if rows and rows[0]["epoch"] == epoch:
      raise Interrupt
  return on_epoch


def test_checkpoint_round_trip(tmp_path):
  record = next(jt.iterate_training(make_spec().config, DATA, loss_fn=SPEC.loss_from_labels,
                                    seeds=(0, 1), mesh=None))
  assert checkpoints.latest_epoch(tmp_path / "ck") is None
  assert checkpoints.restore(tmp_path / "ck", like=record.state) is None
  checkpoints.save(tmp_path / "ck", 1, record.state)
  checkpoints.save(tmp_path / "ck", 2, record.state)
  assert checkpoints.latest_epoch(tmp_path / "ck") == 2
  states, epoch = checkpoints.restore(tmp_path / "ck", like=record.state)
  assert epoch == 2
  for a, b in zip(np.asarray(states.params["Dense_0"]["kernel"]),
                  np.asarray(record.state.params["Dense_0"]["kernel"])):
    np.testing.assert_array_equal(a, b)
  assert type(states) is type(record.state)


def test_interrupted_run_resumes_to_identical_numbers(tmp_path):
  full = runs.run(make_spec(), DATA, str(tmp_path / "full"), mesh=None)
  assert full.status == "done" and full.resumed_from == 0 and full.epochs == 3
  with pytest.raises(Interrupt):
    runs.run(make_spec(), DATA, str(tmp_path / "cut"), on_epoch=interrupt_after(1), mesh=None)
  folder = tmp_path / "cut" / "runs" / "ce_lr0.01"
  assert not (folder / "result.json").exists()
  assert checkpoints.latest_epoch(folder / "ckpt") == 1
  resumed = runs.run(make_spec(), DATA, str(tmp_path / "cut"), mesh=None)
  assert resumed.resumed_from == 1
  assert no_time(resumed.rows) == no_time(full.rows)
  assert not (folder / "ckpt").exists()  # removed once the run ends
  with open(folder / "metrics.jsonl") as f:
    assert no_time([json.loads(line) for line in f]) == no_time(full.rows)


def test_finished_run_is_read_back_not_retrained(tmp_path):
  first = runs.run(make_spec(), DATA, str(tmp_path), mesh=None)
  calls = []
  again = runs.run(make_spec(), DATA, str(tmp_path), mesh=None,
                   on_epoch=lambda spec, rows: calls.append(rows))
  assert calls == [] and again.resumed_from is None
  assert again.rows == first.rows
  np.testing.assert_array_equal(again.final("test_accuracy"), first.final("test_accuracy"))


def test_different_settings_under_the_same_id_are_refused(tmp_path):
  runs.run(make_spec(epochs=1), DATA, str(tmp_path), mesh=None)
  run_json = tmp_path / "runs" / "ce_lr0.01" / "run.json"
  before = run_json.read_text()
  with pytest.raises(runs.RunMismatchError, match="different run") as err:
    runs.run(make_spec(lr=0.5, run_id="ce_lr0.01", epochs=1), DATA, str(tmp_path), mesh=None)
  # The message names the setting that differs, with both values; nothing is overwritten.
  assert "config.learning_rate is 0.01 there, 0.5 here" in str(err.value)
  assert run_json.read_text() == before


def test_an_option_added_later_keeps_old_folders_while_at_its_default(tmp_path):
  runs.run(make_spec(epochs=1), DATA, str(tmp_path), mesh=None)
  run_json = tmp_path / "runs" / "ce_lr0.01" / "run.json"
  old = json.loads(run_json.read_text())
  del old["config"]["precision"]  # as written before TrainConfig had it
  run_json.write_text(json.dumps(old))
  again = runs.run(make_spec(epochs=1), DATA, str(tmp_path), mesh=None)
  assert again.resumed_from is None  # accepted and read back, not retrained
  spec = make_spec(epochs=1)
  bf16 = dataclasses.replace(spec, config=dataclasses.replace(spec.config, precision="bf16"))
  with pytest.raises(runs.RunMismatchError, match='config.precision is "<missing>" there'):
    runs.run(bf16, DATA, str(tmp_path), mesh=None)


def test_absurd_learning_rate_diverges_and_others_go_on(tmp_path):
  diverged = runs.run(make_spec(lr=1e30, epochs=3), DATA, str(tmp_path), mesh=None)
  assert diverged.status == "diverged"
  assert diverged.diverged == {0: 1, 1: 1}
  assert all(r["diverged"] for r in diverged.rows) and diverged.epochs == 1
  with open(tmp_path / "runs" / "ce_lr1e+30" / "result.json") as f:
    assert json.load(f)["status"] == "diverged"
  grid = runs.run(runs.RunSpec("grid", make_spec().config, SPEC.loss_from_labels, SPEC.predict,
                              seeds=(0, 1), learning_rates=(1e30, 1e-2)),
                  DATA, str(tmp_path), mesh=None)
  assert grid.points() == [{"lr": 1e30}, {"lr": 1e-2}]
  assert grid.diverged == {0: 1, 1: 1} and grid.status == "done"  # models 0, 1: the 1e30 point
  blown, fine = grid.point(0), grid.point(1)
  assert blown.status == "diverged" and blown.diverged == {0: 1, 1: 1}
  assert fine.status == "done" and fine.diverged == {} and fine.epochs == 3
  assert {r["lr"] for r in fine.rows} == {1e-2} and fine.final("test_accuracy").min() > 0.5


def test_eval_fn_metrics_become_row_keys(tmp_path):
  def eval_fn(logits, labels):
    return {"val_acc": jnp.mean(jnp.argmax(logits, -1) == labels),
            "val_hist": jnp.bincount(jnp.argmax(logits, -1), length=NUM_CLASSES)}

  result = runs.run(make_spec(eval_fn=eval_fn, epochs=2), DATA, str(tmp_path), mesh=None)
  row = result.rows[-1]
  assert set(row) >= {"val_acc", "val_hist", "train_loss", "train_accuracy", "seed", "epoch"}
  assert "test_accuracy" not in row
  assert len(row["val_hist"]) == NUM_CLASSES and sum(row["val_hist"]) == len(DATA.test_labels)
  assert result.curve("val_acc").shape == (2, 2)


def test_float_targets_pass_through_the_trainer(tmp_path):
  onehot = jt.Mnist(DATA.train_images, np.eye(NUM_CLASSES, dtype=np.float32)[DATA.train_labels],
                    DATA.test_images, np.eye(NUM_CLASSES, dtype=np.float32)[DATA.test_labels])
  bce = jaxloss.get("multilabel_bce")

  def eval_fn(logits, targets):
    return {"exact": jnp.mean(jaxloss.multilabel_accuracy(logits, targets))}

  result = runs.run(runs.RunSpec("bce", make_spec(lr=3e-2, epochs=10).config, bce.loss,
                                 bce.predict, eval_fn=eval_fn, seeds=(0,)),
                    onehot, str(tmp_path), mesh=None)
  loss = result.curve("train_loss")[:, 0]
  assert result.status == "done" and loss[-1] < 0.5 * loss[0]
  assert result.final("exact")[0] > 0.5, result.curve("exact")[:, 0]
  assert os.path.exists(tmp_path / "runs" / "bce" / "result.json")


def test_test_split_is_evaluated_once_after_training_and_stored(tmp_path):
  test = (DATA.test_images[:40], DATA.test_labels[:40])
  val = (DATA.train_images[:24], DATA.train_labels[:24])
  result = runs.run(make_spec(epochs=2), DATA, str(tmp_path), mesh=None, test=test,
                    also={"val": val})
  assert result.test["correct"].shape == (2, 40) and result.test["correct"].dtype == bool
  np.testing.assert_allclose(result.test["test_accuracy"], result.test["correct"].mean(axis=1),
                             rtol=1e-6)
  # The extra split: the same functions, under SPLIT/KEY.
  assert result.test["val/correct"].shape == (2, 24)
  np.testing.assert_allclose(result.test["val/test_accuracy"],
                             result.test["val/correct"].mean(axis=1), rtol=1e-6)
  again = runs.run(make_spec(epochs=2), DATA, str(tmp_path), mesh=None, test=test,
                   also={"val": val})
  assert again.resumed_from is None
  np.testing.assert_array_equal(again.test["correct"], result.test["correct"])
  np.testing.assert_array_equal(again.test["val/correct"], result.test["val/correct"])
  # A split asked for later cannot be read back (the final parameters are not kept): retrain.
  said = []
  more = runs.run(make_spec(epochs=2), DATA, str(tmp_path), mesh=None, test=test,
                  also={"val": val, "train": val}, say=said.append)
  assert more.resumed_from == 0 and "without an evaluation on train" in said[0]
  np.testing.assert_array_equal(more.test["train/correct"], result.test["val/correct"])
  with pytest.raises(ValueError, match="give `test` too"):
    runs.run(make_spec(epochs=2), DATA, str(tmp_path), mesh=None, also={"val": val})


def test_final_params_are_kept_read_back_and_start_another_run(tmp_path):
  said = []
  runs.run(make_spec(epochs=1), DATA, str(tmp_path), mesh=None)
  keep = dataclasses.replace(make_spec(epochs=1), keep_final=True)
  source = runs.run(keep, DATA, str(tmp_path), mesh=None, say=said.append)
  # A finished run without them trains again (keep_final changes no number).
  assert source.resumed_from == 0 and "without keeping its final parameters" in said[0]
  folder = tmp_path / "runs" / "ce_lr0.01"
  assert (folder / "final_params.npz").exists()
  kernel = source.final_params["Dense_0"]["kernel"]
  assert kernel.shape == (2, 36, 16) and kernel.dtype == np.float32  # [models, ...]
  again = runs.run(keep, DATA, str(tmp_path), mesh=None)
  assert again.resumed_from is None
  np.testing.assert_array_equal(again.final_params["Dense_1"]["bias"],
                                source.final_params["Dense_1"]["bias"])
  # Seed s of another run starts from seed s of these; their digest is in its fingerprint.
  warm = dataclasses.replace(make_spec(lr=1e-3, run_id="warm", epochs=1),
                             init_params=source.final_params)
  first = runs.run(warm, DATA, str(tmp_path), mesh=None)
  stored = json.loads((tmp_path / "runs" / "warm" / "run.json").read_text())
  assert stored["init_params"] == "given"
  assert stored["code"]["init_params"] == runs.params_digest(source.final_params)
  # It starts from the trained models: its first epoch's loss is below theirs from scratch.
  assert np.all(first.curve("train_loss")[0] < source.curve("train_loss")[0])
  said.clear()
  assert runs.run(warm, DATA, str(tmp_path), mesh=None, say=said.append).resumed_from is None
  moved = jax.tree.map(lambda a: a + 1.0, source.final_params)
  other = runs.run(dataclasses.replace(warm, init_params=moved), DATA, str(tmp_path), mesh=None,
                   say=said.append)
  assert other.resumed_from == 0 and "(init_params)" in said[0]
  # A grid point's slice of the models keeps its own final parameters.
  grid = runs.RunResult("g", "done", [], {}, 0.0, None,
                        [{"lr": r, "seed": s} for r in (0.1, 0.2) for s in (0, 1)],
                        final_params={"w": {"b": np.arange(4.0)}})
  np.testing.assert_array_equal(grid.point(1).final_params["w"]["b"], [2.0, 3.0])


def test_changed_code_retrains_and_says_which(tmp_path, monkeypatch):
  first = runs.run(make_spec(epochs=1), DATA, str(tmp_path), mesh=None)
  said = []
  same = runs.run(make_spec(epochs=1), DATA, str(tmp_path), mesh=None, say=said.append)
  assert same.resumed_from is None and said == []
  sources = dict(runs._jaxloss_sources())
  sources["jaxloss/_src/cross_entropy.py"] = "edited"
  monkeypatch.setattr(runs, "_jaxloss_sources", lambda: tuple(sources.items()))
  again = runs.run(make_spec(epochs=1), DATA, str(tmp_path), mesh=None, say=said.append)
  assert again.resumed_from == 0  # trained again from scratch
  assert len(said) == 1 and "jaxloss/_src/cross_entropy.py" in said[0]
  assert no_time(again.rows) == no_time(first.rows)
  a = runs.code_fingerprint(eval_fn=lambda z, y: {"m": z})
  b = runs.code_fingerprint(eval_fn=lambda z, y: {"m": -z})
  assert a["eval_fn"] != b["eval_fn"]  # the function's own source counts
  assert "jaxloss/train/trainer.py" in a and "jaxloss/_src/registry.py" in a


# --------------------------------------------------------------------------- divergence
#
# Built to be exact on every IEEE-754 platform (no dependence on one CPU's rounding):
# (a) a NaN pixel: its logits are NaN, the loss is NaN and the weights turn NaN;
# (b) black images, SGD at lr 1e38 and a square loss whose gradient is <= -12.5:
#     the first step overflows the last bias to exactly +inf, so every later
#     logit of that class is +inf. Only "not finite" is asserted.


def nan_pixel_data():
  train_x = DATA.train_images.astype(np.float32)  # 256 images, 8 full batches of 32
  train_x[5, 1, 1] = np.nan
  return jt.Mnist(train_x, DATA.train_labels, DATA.test_images, DATA.test_labels)


def overflow_spec(run_id="overflow"):
  config = jt.TrainConfig(hidden=(16,), num_classes=NUM_CLASSES, optimizer="sgd",
                          learning_rate=1e38, schedule="constant", batch_size=32, epochs=3,
                          eval_batch_size=32)
  square = jaxloss.get("square_loss", m=1000.0)
  return runs.RunSpec(run_id, config, square.loss_from_labels, square.predict, seeds=(0, 1),
                      describe={"loss": square.name, "m": 1000.0})


def assert_diverged_at_epoch_1(result, folder):
  assert result.status == "diverged" and result.diverged == {0: 1, 1: 1}
  assert result.epochs == 1 and len(result.rows) == 2
  assert all(r["diverged"] is True for r in result.rows)
  assert not any(np.isfinite(r["train_loss"]) for r in result.rows)
  with open(folder / "result.json") as f:
    stored = json.load(f)
  assert stored["status"] == "diverged" and stored["diverged"] == {"0": 1, "1": 1}
  with open(folder / "metrics.jsonl") as f:
    assert [json.loads(line)["diverged"] for line in f] == [True, True]
  assert not (folder / "ckpt").exists()


def test_nan_weights_are_recorded_as_diverged_and_others_go_on(tmp_path):
  nan = runs.run(make_spec(run_id="nan_input"), nan_pixel_data(), str(tmp_path), mesh=None)
  assert_diverged_at_epoch_1(nan, tmp_path / "runs" / "nan_input")
  healthy = runs.run(make_spec(epochs=2), DATA, str(tmp_path), mesh=None)
  assert healthy.status == "done" and healthy.diverged == {} and healthy.epochs == 2
  assert not any(r.get("diverged") for r in healthy.rows)
  # Read back, the diverged run stays diverged and is not trained again.
  again = runs.run(make_spec(run_id="nan_input"), nan_pixel_data(), str(tmp_path), mesh=None)
  assert again.status == "diverged" and again.resumed_from is None


def test_inf_weights_with_inf_logits_are_recorded_as_diverged_and_others_go_on(tmp_path):
  black = jt.Mnist(np.zeros_like(DATA.train_images), DATA.train_labels,
                   np.zeros_like(DATA.test_images), DATA.test_labels)
  inf = runs.run(overflow_spec(), black, str(tmp_path), mesh=None)
  assert_diverged_at_epoch_1(inf, tmp_path / "runs" / "overflow")
  healthy = runs.run(make_spec(epochs=2), DATA, str(tmp_path), mesh=None)
  assert healthy.status == "done" and healthy.final("test_accuracy").min() > 0.5
