"""Tests for the functional training core (jaxloss.train: model, optim, trainer) on tiny data."""

import dataclasses
import functools
import json
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

pytest.importorskip("flax")

import jaxloss  # noqa: E402
from jaxloss import train as jt  # noqa: E402
from _synthetic import prototype_images  # noqa: E402
from jaxloss.train import trainer as trainer_lib  # noqa: E402

# These tests train models (seconds each): part of the full suite, not of the quick check.
pytestmark = pytest.mark.slow

NUM_CLASSES = 4


def ce_loss(logits, labels):
  return jnp.mean(jaxloss.softmax_cross_entropy_with_integer_labels(logits, labels))


def synthetic(n_train=200, n_test=70, side=6, seed=0):
  return prototype_images(n_train, n_test, num_classes=NUM_CLASSES, side=side, seed=seed)


CONFIG = jt.TrainConfig(hidden=(16,), num_classes=NUM_CLASSES, optimizer="adam",
                        learning_rate=1e-2, schedule="constant", batch_size=32, epochs=3,
                        eval_batch_size=32)


def run(config=CONFIG, data=None, seeds=(0,), loss_fn=ce_loss, **kwargs):
  return jt.train(config, synthetic() if data is None else data, loss_fn=loss_fn,
                  seeds=seeds, mesh=None, **kwargs)


# --------------------------------------------------------------------------- model


def test_bf16_precision_rounds_only_the_matmul_inputs():
  """precision="bf16": bf16 operands and float32 accumulation in every product; float32
  parameters, gradients, logits; equal to a float32 model given bf16-rounded operands."""
  x = jnp.asarray(np.random.default_rng(1).integers(0, 256, (6, 4, 4)), jnp.uint8)
  full, mixed = (jt.MLP(hidden=(8,), num_classes=3, precision=p) for p in ("float32", "bf16"))
  params = full.init(jax.random.key(0), x)["params"]
  chex.assert_trees_all_equal_shapes_and_dtypes(params, mixed.init(jax.random.key(0), x)["params"])
  logits = mixed.apply({"params": params}, x)
  assert logits.dtype == jnp.float32
  # The same model by hand: round each product's operands to bf16, accumulate in float32.
  r = lambda a: a.astype(jnp.bfloat16).astype(jnp.float32)
  h = x.reshape(6, -1).astype(jnp.float32) / 255.0
  h = jax.nn.relu(jnp.dot(r(h), r(params["Dense_0"]["kernel"]),
                          precision="highest") + params["Dense_0"]["bias"][None])
  want = jnp.dot(r(h), r(params["Dense_1"]["kernel"]), precision="highest") + \
      params["Dense_1"]["bias"][None]
  np.testing.assert_allclose(logits, want, rtol=1e-5, atol=1e-6)
  assert not np.allclose(logits, full.apply({"params": params}, x), rtol=0, atol=1e-7)
  grads = jax.grad(lambda p: mixed.apply({"params": p}, x).sum())(params)
  assert {g.dtype for g in jax.tree.leaves(grads)} == {jnp.dtype(jnp.float32)}
  assert "bf16" in jax.jit(mixed.apply).lower({"params": params}, x).as_text()
  with pytest.raises(ValueError, match="Unknown precision 'fp8'"):
    jt.MLP(hidden=(8,), precision="fp8").init(jax.random.key(0), x)
  # TrainConfig passes it on (the accuracy cost on MNIST is measured in the README).
  assert dataclasses.replace(CONFIG, precision="bf16").model().precision == "bf16"


def test_mlp_shapes_and_input_forms():
  model = jt.MLP(hidden=(8, 8), num_classes=3)
  x = jnp.asarray(np.random.default_rng(0).integers(0, 256, (5, 4, 4)), jnp.uint8)
  params = model.init(jax.random.key(0), x)["params"]
  logits = model.apply({"params": params}, x)
  chex.assert_shape(logits, (5, 3))
  assert logits.dtype == jnp.float32
  # uint8, float pixels and flat input all mean the same thing.
  chex.assert_trees_all_close(model.apply({"params": params}, x.astype(jnp.float32)), logits)
  chex.assert_trees_all_close(model.apply({"params": params}, x.reshape(5, 16)), logits)
  assert params["Dense_0"]["kernel"].shape == (16, 8)


@pytest.mark.parametrize("activation", sorted(jt.ACTIVATIONS))
def test_mlp_activations_by_name(activation):
  model = jt.MLP(hidden=(4,), num_classes=2, activation=activation)
  x = jnp.ones((2, 3, 3), jnp.uint8)
  params = model.init(jax.random.key(1), x)["params"]
  assert jnp.all(jnp.isfinite(model.apply({"params": params}, x)))


def test_mlp_unknown_activation():
  with pytest.raises(ValueError, match="relu, gelu, tanh, sigmoid, silu"):
    jt.MLP(activation="swish").init(jax.random.key(0), jnp.ones((1, 4)))


# --------------------------------------------------------------------------- optim


@pytest.mark.parametrize("name", jt.OPTIMIZERS)
@pytest.mark.parametrize("schedule", jt.SCHEDULES)
def test_make_optimizer_steps(name, schedule):
  tx = jt.make_optimizer(name, 0.1, schedule=schedule, total_steps=10)
  params = {"w": jnp.ones(3)}
  updates, _ = tx.update({"w": jnp.ones(3)}, tx.init(params), params)
  assert jnp.all(updates["w"] < 0)


def test_make_optimizer_errors_and_cosine():
  with pytest.raises(ValueError, match="sgd, momentum, adam, adamw"):
    jt.make_optimizer("lamb", 1e-3)
  with pytest.raises(ValueError, match="total_steps"):
    jt.make_optimizer("adam", 1e-3, schedule="cosine")
  with pytest.raises(ValueError, match="constant, cosine"):
    jt.make_optimizer("adam", 1e-3, schedule="linear", total_steps=5)
  lr = jt.make_schedule(0.5, "cosine", total_steps=10)
  np.testing.assert_allclose([lr(0), lr(5), lr(10)], [0.5, 0.25, 0.0], atol=1e-7)


# --------------------------------------------------------------------------- trainer


def test_train_step_is_pure_and_learns():
  data = synthetic()
  model = jt.MLP(hidden=(16,), num_classes=NUM_CLASSES)
  tx = optax.adam(1e-2)
  state = jt.init_state(model, tx, jax.random.key(0), data.train_images[:1])
  step = jax.jit(jt.make_train_step(model.apply, tx, ce_loss))
  batch = (jnp.asarray(data.train_images[:32]), jnp.asarray(data.train_labels[:32]))
  new, m1 = step(state, batch)
  again, m1b = step(state, batch)  # Same input, same output: no hidden state.
  chex.assert_trees_all_equal((new, m1), (again, m1b))
  assert int(new.step) == 1 and int(state.step) == 0
  for _ in range(20):
    new, m = step(new, batch)
  assert m["train_loss"] < 0.5 * m1["train_loss"]
  assert m["train_accuracy"] == 1.0


def test_loss_decreases_and_no_retrace_across_epochs():
  # The loss function is called once per trace of the training program: the
  # whole run (several epochs) must trace it exactly once.
  counted = chex.assert_max_traces(ce_loss, n=1)
  result = run(dataclasses.replace(CONFIG, epochs=4), loss_fn=counted)
  losses = [float(r["train_loss"][0]) for r in result.history]
  assert losses[-1] < 0.5 * losses[0]
  assert all(b < a for a, b in zip(losses, losses[1:]))
  assert result.history[-1]["test_accuracy"][0] > 0.9
  chex.clear_trace_counter()


def test_epoch_function_compiles_once():
  data = synthetic()
  model = jt.MLP(hidden=(8,), num_classes=NUM_CLASSES)
  tx = optax.sgd(0.1)
  epoch = jt.make_train_epoch(jt.make_train_step(model.apply, tx, ce_loss), batch_size=32)
  epoch = jax.jit(chex.assert_max_traces(epoch, n=1))
  state = jt.init_state(model, tx, jax.random.key(0), data.train_images[:1])
  x, y = jnp.asarray(data.train_images), jnp.asarray(data.train_labels)
  for e in range(3):
    state, metrics = epoch(state, jax.random.key(e), x, y)
  # 200 examples, batch 32: 6 steps per epoch, the ragged 8 dropped.
  assert int(state.step) == 18
  assert set(metrics) == {"train_loss", "train_accuracy"}
  chex.clear_trace_counter()



def test_unshuffled_epoch_with_its_ragged_batch_is_a_loop_over_the_batches():
  """shuffle=False, drop_last=False (a PyTorch DataLoader without shuffle): the data's order,
  every example, the ragged last batch as one smaller step: a step-by-step loop exactly."""
  data = synthetic()  # 200 examples, batch 32: 6 full batches and a ragged one of 8
  model = jt.MLP(hidden=(8,), num_classes=NUM_CLASSES)
  tx = optax.sgd(0.1)
  step = jt.make_train_step(model.apply, tx, ce_loss)
  epoch = jax.jit(jt.make_train_epoch(step, 32, shuffle=False, drop_last=False))
  state = jt.init_state(model, tx, jax.random.key(0), data.train_images[:1])
  x, y = jnp.asarray(data.train_images), jnp.asarray(data.train_labels)
  got, metrics = epoch(state, jax.random.key(3), x, y)
  again, _ = epoch(state, jax.random.key(4), x, y)  # the key is unused: no shuffling
  chex.assert_trees_all_equal(got, again)
  want, losses, one_step = state, [], jax.jit(step)
  for start in range(0, 200, 32):  # the loop: batches [0:32], ..., [192:200] (8: its mean)
    want, m = one_step(want, (x[start:start + 32], y[start:start + 32]))
    losses.append(float(m["train_loss"]))
  assert int(got.step) == 7
  chex.assert_trees_all_close(got.params, want.params, rtol=1e-5, atol=1e-6)
  # The epoch mean weighs each step by its examples: the ragged step counts 8 of 200.
  np.testing.assert_allclose(float(metrics["train_loss"]),
                             (32 * sum(losses[:6]) + 8 * losses[6]) / 200, rtol=1e-5)
  # Through the config: ceil(200 / 32) = 7 steps per epoch (the cosine schedule counts them).
  config = dataclasses.replace(CONFIG, epochs=1, shuffle=False, drop_last=False)
  assert config.steps_per_epoch(200) == 7 and CONFIG.steps_per_epoch(200) == 6
  record = next(jt.iterate_training(config, data, loss_fn=ce_loss, seeds=(0,), mesh=None))
  assert record.state.step.tolist() == [7]
  with pytest.raises(ValueError, match="shuffle must be a bool"):
    dataclasses.replace(CONFIG, shuffle=1)


SEEDS = (0, 1, 5)


@functools.lru_cache(maxsize=None)
def three_seeds():
  return run(seeds=SEEDS)


def test_init_params_start_every_model_from_them_with_a_fresh_optimizer():
  data, plain = synthetic(), three_seeds()
  # Given the seeds' own fresh parameters, a run is the plain run.
  init_keys, _ = jt.seed_keys(SEEDS)
  fresh = jax.vmap(lambda k: CONFIG.model().init(k, data.train_images[:1])["params"])(init_keys)
  same = run(seeds=SEEDS, init_params=jax.device_get(fresh))
  chex.assert_trees_all_close(same.state.params, plain.state.params, rtol=1e-6, atol=1e-7)
  # From trained models: their parameters, a fresh Adam (step and count from 0), the seed's data.
  warm = run(dataclasses.replace(CONFIG, epochs=1), seeds=SEEDS, init_params=plain.state.params)
  assert warm.state.step.tolist() == [6] * 3
  assert np.asarray(warm.state.opt_state.inner_state[0].count).tolist() == [6] * 3
  assert np.all(warm.history[0]["train_loss"] < plain.history[0]["train_loss"])
  wrong = jax.tree.map(lambda a: a[:, :1], plain.state.params)
  with pytest.raises(ValueError, match=r"init_params\['Dense_0'\]\['bias'\] has shape"):
    run(seeds=SEEDS, init_params=wrong)
  with pytest.raises(ValueError, match="do not match this config's model"):
    run(seeds=SEEDS, init_params={"Dense_0": plain.state.params["Dense_0"]})


def test_vmap_over_seeds_equals_separate_runs():
  seeds = SEEDS
  together = three_seeds()
  assert together.history[-1].seeds == seeds
  for i, seed in enumerate(seeds):
    alone = run(seeds=(seed,))
    for rec_all, rec_one in zip(together.history, alone.history):
      for name, values in rec_all.metrics.items():
        np.testing.assert_allclose(values[i], rec_one[name][0], rtol=1e-5, atol=1e-6,
                                   err_msg=f"{name} seed {seed} epoch {rec_all.epoch}")
    chex.assert_trees_all_close(
        jax.tree.map(lambda a: a[i], together.state.params),
        jax.tree.map(lambda a: a[0], alone.state.params), rtol=1e-5, atol=1e-6)
  # Seeds differ in initialization and data order, so in their results.
  losses = together.history[0]["train_loss"]
  assert len(set(np.round(losses, 6).tolist())) == len(seeds)


def test_learning_rate_grid_is_one_program_equal_to_separate_runs():
  """Issue 11: a 3-rate x 2-seed grid is one program (traced once) and equals the 6 runs."""
  rates, seeds = (3e-3, 3e-2, 1e-1), (0, 5)
  config = dataclasses.replace(CONFIG, epochs=2, schedule="cosine")
  counted = chex.assert_max_traces(ce_loss, n=1)
  grid = run(config, seeds=seeds, loss_fn=counted, learning_rates=rates)
  chex.clear_trace_counter()
  last = grid.history[-1]
  assert last.seeds == seeds * len(rates)
  assert last.learning_rates == tuple(r for r in rates for _ in seeds)
  assert last.as_dict()["learning_rates"] == list(last.learning_rates)
  np.testing.assert_allclose(jt.learning_rate_of(grid.state.opt_state),
                             np.repeat(rates, len(seeds)), rtol=1e-7)
  for i, (rate, seed) in enumerate(zip(last.learning_rates, last.seeds)):
    alone = run(dataclasses.replace(config, learning_rate=rate), seeds=(seed,))
    for rec_grid, rec_one in zip(grid.history, alone.history):
      for name, values in rec_grid.metrics.items():
        np.testing.assert_allclose(values[i], rec_one[name][0], rtol=1e-5, atol=1e-6,
                                   err_msg=f"{name} lr {rate} seed {seed} epoch {rec_grid.epoch}")
    chex.assert_trees_all_close(jax.tree.map(lambda a, i=i: a[i], grid.state.params),
                                jax.tree.map(lambda a: a[0], alone.state.params),
                                rtol=1e-5, atol=1e-6)
  # Every model differs (seed and rate), and none diverged.
  assert len(set(np.round(grid.history[0]["train_loss"], 6).tolist())) == len(rates) * len(seeds)
  assert grid.diverged == {}


def test_learning_rate_grid_validation_and_divergence_keys():
  with pytest.raises(ValueError, match="finite rates > 0"):
    run(learning_rates=(1e-2, float("nan")))
  with pytest.raises(ValueError, match="finite rates > 0"):
    run(learning_rates=())
  blown = run(dataclasses.replace(CONFIG, epochs=1, optimizer="sgd"), seeds=(0,),
              learning_rates=(1e-2, 1e38))
  assert blown.diverged == {(1e38, 0): 1}


def smoothed_ce(logits, labels, alpha):
  """Label smoothing with `alpha` a keyword: a traced float32 scalar in a `loss_params` grid."""
  return jaxloss.get("label_smoothing_cross_entropy", alpha=alpha).loss_from_labels(logits, labels)


def test_loss_param_grid_is_one_program_equal_to_separate_runs():
  """A 3-alpha x 2-seed label-smoothing grid is traced once and equals a run per alpha."""
  alphas, seeds = (0.0, 0.05, 0.3), (0, 1)
  config = dataclasses.replace(CONFIG, epochs=2)
  counted = chex.assert_max_traces(smoothed_ce, n=1)
  grid = run(config, seeds=seeds, loss_fn=counted, loss_params={"alpha": alphas})
  chex.clear_trace_counter()
  last = grid.history[-1]
  assert last.seeds == seeds * len(alphas)
  assert last.loss_params == {"alpha": tuple(a for a in alphas for _ in seeds)}
  assert last.as_dict()["loss_params"] == {"alpha": list(last.loss_params["alpha"])}
  # No rate grid: every model keeps the config's rate, exactly as in a plain run.
  assert last.learning_rates == (config.learning_rate,) * len(last.seeds)
  chex.assert_trees_all_equal(jt.learning_rate_of(grid.state.opt_state),
                              jnp.full(len(last.seeds), config.learning_rate, jnp.float32))
  np.testing.assert_array_equal(grid.state.loss_params["alpha"],
                                np.float32(last.loss_params["alpha"]))
  for p, alpha in enumerate(alphas):
    # The alpha bound as a Python float: a constant of that run's program.
    fixed = jaxloss.get("label_smoothing_cross_entropy", alpha=alpha).loss_from_labels
    alone = run(config, seeds=seeds, loss_fn=fixed)
    assert alone.state.loss_params == {}
    for j, seed in enumerate(seeds):
      i = p * len(seeds) + j
      for rec_grid, rec_one in zip(grid.history, alone.history):
        for name, values in rec_grid.metrics.items():
          np.testing.assert_allclose(
              values[i], rec_one[name][j], rtol=1e-5, atol=1e-6,
              err_msg=f"{name} alpha {alpha} seed {seed} epoch {rec_grid.epoch}")
      chex.assert_trees_all_close(jax.tree.map(lambda a, i=i: a[i], grid.state.params),
                                  jax.tree.map(lambda a, j=j: a[j], alone.state.params),
                                  rtol=1e-5, atol=1e-6)
  # The alphas change the training loss (seed 0 at each alpha).
  losses = grid.history[0]["train_loss"][::len(seeds)]
  assert len(set(np.round(losses, 6).tolist())) == len(alphas)
  assert grid.diverged == {}


def test_learning_rate_and_loss_param_grid_records_and_divergence_keys():
  """Rates and alphas zipped into 2 grid points: 2 * S models, keyed (rate, params, seed)."""
  rates, alphas = (1e-2, 1e38), (0.0, 0.1)
  config = dataclasses.replace(CONFIG, epochs=1, optimizer="sgd")
  result = run(config, seeds=SEEDS, loss_fn=smoothed_ce, learning_rates=rates,
               loss_params={"alpha": alphas})
  last = result.history[-1]
  assert last.seeds == SEEDS * 2
  assert last.learning_rates == (1e-2,) * len(SEEDS) + (1e38,) * len(SEEDS)
  assert last.loss_params == {"alpha": (0.0,) * len(SEEDS) + (0.1,) * len(SEEDS)}
  line = json.loads(json.dumps(last.as_dict()))
  assert line["learning_rates"] == list(last.learning_rates)
  assert line["loss_params"] == {"alpha": list(last.loss_params["alpha"])}
  np.testing.assert_allclose(jt.learning_rate_of(result.state.opt_state),
                             np.repeat(rates, len(SEEDS)), rtol=1e-7)
  np.testing.assert_array_equal(result.state.loss_params["alpha"],
                                np.repeat(np.float32(alphas), len(SEEDS)))
  # Point 0 trains; point 1 (sgd at 1e38) blows up in its first epoch.
  np.testing.assert_array_equal(last.diverged, [False] * len(SEEDS) + [True] * len(SEEDS))
  assert result.diverged == {(1e38, (("alpha", 0.1),), s): 1 for s in SEEDS}


def test_loss_param_grid_resumes_and_checks_structure():
  config = dataclasses.replace(CONFIG, epochs=2)
  grid = {"alpha": (0.0, 0.2)}
  records = list(jt.iterate_training(config, synthetic(), loss_fn=smoothed_ce, seeds=(0,),
                                     mesh=None, loss_params=grid))
  resumed = list(jt.iterate_training(config, synthetic(), loss_fn=smoothed_ce, seeds=(0,),
                                     mesh=None, loss_params=grid,
                                     resume=(records[0].state, 1)))
  assert [r.epoch for r in resumed] == [2]
  chex.assert_trees_all_equal(dict(resumed[0].metrics), dict(records[1].metrics))
  chex.assert_trees_all_equal(resumed[0].state, records[1].state)
  # A plain run's states (no loss_params leaves) do not fit a grid run, and vice versa.
  plain = run(dataclasses.replace(config, epochs=1), seeds=(0, 0)).state
  assert jax.tree.leaves(plain.loss_params) == []
  with pytest.raises(ValueError, match="do not match"):
    next(jt.iterate_training(config, synthetic(), loss_fn=smoothed_ce, seeds=(0,), mesh=None,
                             loss_params=grid, resume=(plain, 1)))
  with pytest.raises(ValueError, match="do not match"):
    next(jt.iterate_training(config, synthetic(), loss_fn=ce_loss, seeds=(0, 0), mesh=None,
                             resume=(records[0].state, 1)))


@pytest.mark.parametrize("kwargs, match", [
    (dict(loss_params={"alpha": (0.1, 0.2)}, learning_rates=(1e-2,)),
     "same length.*learning_rates: 1, alpha: 2"),
    (dict(loss_params={"alpha": (0.1, 0.2), "gamma": (1.0,)}), "same length.*alpha: 2, gamma: 1"),
    (dict(loss_params={"alpha": ()}), r"loss_params\['alpha'\] must not be empty"),
    (dict(loss_params={"alpha": (0.1, float("nan"))}), r"loss_params\['alpha'\] must hold finite"),
    (dict(loss_params={"alpha": (float("inf"),)}), r"loss_params\['alpha'\] must hold finite"),
    (dict(loss_params={"alpha": 0.1}), r"loss_params\['alpha'\] must be a sequence"),
    (dict(loss_params=[("alpha", (0.1,))]), "loss_params must be a mapping"),
])
def test_loss_param_grid_validation(kwargs, match):
  with pytest.raises(ValueError, match=match):
    run(loss_fn=smoothed_ce, **kwargs)


def test_same_seed_twice_is_identical():
  a, b = three_seeds(), run(seeds=SEEDS)
  for ra, rb in zip(a.history, b.history):
    chex.assert_trees_all_equal(dict(ra.metrics), dict(rb.metrics))
  chex.assert_trees_all_equal(a.state, b.state)


def numpy_ece(probs, labels, num_bins):
  """Equal-width-bin ECE, bins closed on the right, (Guo et al. 2017, eq. 3)."""
  conf, pred = probs.max(1), probs.argmax(1)
  edges = np.arange(num_bins + 1) / num_bins
  bins = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, num_bins - 1)
  ece = 0.0
  for b in range(num_bins):
    inside = bins == b
    if inside.any():
      ece += inside.mean() * abs(np.mean(pred[inside] == labels[inside]) - conf[inside].mean())
  return ece


def test_evaluate_matches_direct_computation():
  data = synthetic(n_test=70)
  model = jt.MLP(hidden=(8,), num_classes=NUM_CLASSES)
  params = model.init(jax.random.key(2), data.test_images[:1])["params"]
  x, y = jnp.asarray(data.test_images), jnp.asarray(data.test_labels)
  # 70 = 2 * 32 + 6: the padded last chunk must not leak into the metrics.
  got = jax.jit(jt.make_evaluate(model.apply, batch_size=32))(params, x, y)
  logits = np.asarray(model.apply({"params": params}, x), np.float64)
  log_p = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1,
                          keepdims=True)) - logits.max(1, keepdims=True)
  probs = np.exp(log_p)
  want = {
      "test_accuracy": np.mean(logits.argmax(1) == data.test_labels),
      "test_nll": -np.mean(log_p[np.arange(70), data.test_labels]),
      "test_ece": numpy_ece(probs, data.test_labels, num_bins=15),
      "test_confidence": probs.max(1).mean(),
  }
  chex.assert_trees_all_close(dict(got), {k: np.float32(v) for k, v in want.items()},
                              rtol=1e-5, atol=1e-6)


def test_batched_apply_over_seeds_matches_model():
  result = three_seeds()
  data = synthetic()
  model = CONFIG.model()
  logits_fn = jax.jit(jax.vmap(jt.make_batched_apply(model.apply, batch_size=32),
                               in_axes=(0, None)))
  logits = logits_fn(result.state.params, jnp.asarray(data.test_images))
  chex.assert_shape(logits, (len(SEEDS), 70, NUM_CLASSES))
  for i in range(len(SEEDS)):
    params = jax.tree.map(lambda a, i=i: a[i], result.state.params)
    chex.assert_trees_all_close(logits[i], model.apply({"params": params}, data.test_images),
                                rtol=1e-5, atol=1e-5)
  acc = np.mean(np.asarray(logits).argmax(-1) == data.test_labels, axis=1)
  np.testing.assert_allclose(acc, result.history[-1]["test_accuracy"], rtol=1e-6)


def test_records_and_callback():
  seen = []
  result = run(dataclasses.replace(CONFIG, epochs=2), seeds=(0, 1), on_epoch=seen.append)
  assert [r.epoch for r in seen] == [r.epoch for r in result.history] == [1, 2]
  first, last = result.history
  assert first.compile_seconds > 0 and last.compile_seconds == 0.0
  assert first.seconds > 0 and last.seconds > 0
  assert set(last.metrics) == set(jt.TRAIN_METRICS + jt.EVAL_METRICS)
  for values in last.metrics.values():
    assert isinstance(values, np.ndarray) and values.shape == (2,)
  line = json.loads(json.dumps(last.as_dict()))
  assert line["epoch"] == 2 and line["seeds"] == [0, 1] and len(line["test_ece"]) == 2
  # Only the final state is kept; it holds one model per seed.
  assert first.state is None and last.state is result.state
  assert int(result.state.step[0]) == 2 * (200 // 32)
  chex.assert_tree_shape_prefix(result.state.params, (2,))


def test_iterate_training_with_custom_predict_and_cosine():
  config = dataclasses.replace(CONFIG, schedule="cosine", optimizer="momentum",
                               learning_rate=0.1, epochs=2)
  calls = []

  def predict(logits):
    calls.append(None)
    return jnp.argmax(logits, axis=-1)

  records = list(jt.iterate_training(config, synthetic(), loss_fn=ce_loss, predict_fn=predict,
                                     seeds=(0,), mesh=None))
  assert len(records) == 2 and calls  # Traced (once for train, once for eval).
  assert records[-1].state is not None


def test_config_validation():
  with pytest.raises(ValueError, match="batch_size"):
    jt.TrainConfig(batch_size=0)
  assert jt.TrainConfig(hidden=[4, 4]).hidden == (4, 4)
  with pytest.raises(ValueError, match="exceeds"):
    run(dataclasses.replace(CONFIG, batch_size=1000))
  with pytest.raises(ValueError, match="seeds"):
    run(seeds=())


def test_import_layering():
  code = ("import sys, jaxloss; assert 'jaxloss.train' not in sys.modules; "
          "import jaxloss.train; "
          "bad = [m for m in ('tensorflow', 'tensorflow_datasets') if m in sys.modules]; "
          "bad += [m for m in sys.modules if m.split('.')[0] == 'experiments']; "
          "assert not bad, bad")
  subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_trainer_exports():
  for name in trainer_lib.__all__:
    assert hasattr(jt, name)


# --------------------------------------------------------------------------- divergence
#
# Both cases are exact on every IEEE-754 platform: a NaN pixel makes its logits NaN
# (NaN * w = NaN), and an SGD step of 1e38 (float32) times a gradient of magnitude
# >= 12.5 overflows to +inf, never a large finite number. The tests assert
# "not finite", never which of NaN or inf.


def nan_pixel_data(n_train=200):
  """`synthetic` as float32 pixels, with one NaN pixel in training image 0."""
  data = synthetic(n_train=n_train)
  train_x = data.train_images.astype(np.float32)
  train_x[0, 2, 3] = np.nan
  return jt.Mnist(train_x, data.train_labels, data.test_images, data.test_labels)


def test_nan_input_drives_the_weights_to_nan_and_is_flagged():
  # 200 / 40: five full batches, none dropped, so image 0 is trained on in epoch 1.
  config = dataclasses.replace(CONFIG, batch_size=40, epochs=2)
  result = run(config, data=nan_pixel_data(), seeds=(0, 1))
  first = result.history[0]
  assert not np.any(np.isfinite(first["train_loss"]))
  assert np.all(first.diverged) and not np.any(first.params_finite)
  assert result.diverged == {0: 1, 1: 1}
  assert not all(np.all(np.isfinite(np.asarray(leaf)))
                 for leaf in jax.tree.leaves(result.state.params))
  # The next run of the process is unaffected.
  healthy = run(dataclasses.replace(CONFIG, epochs=2), seeds=(0, 1))
  assert not np.any(healthy.history[-1].diverged) and healthy.diverged == {}
  assert np.all(np.isfinite(healthy.history[-1]["train_loss"]))


def zero_image_data(n_train=200, n_test=40):
  """Black images: the hidden ReLUs output exactly 0, the logits are the last bias."""
  data = synthetic(n_train=n_train, n_test=n_test)
  return jt.Mnist(np.zeros_like(data.train_images), data.train_labels,
                  np.zeros_like(data.test_images), data.test_labels)


# One full batch per epoch (200 / 200), plain SGD at 1e38. The square loss with
# target m = 1e5 for the true logit has, at z = 0, the gradient -2 m / K * share
# <= -2e5 / 4 / 200 = -250 for the bias of every class present, and 1e38 times
# that overflows float32: the first step sets those biases to exactly +inf.
OVERFLOW = dataclasses.replace(CONFIG, optimizer="sgd", learning_rate=1e38, schedule="constant",
                               batch_size=200, epochs=2)
BIG_SQUARE = jaxloss.get("square_loss", m=1e5)


def test_weights_driven_to_inf_give_inf_logits_and_are_flagged():
  data = zero_image_data()
  records = list(jt.iterate_training(OVERFLOW, data, loss_fn=BIG_SQUARE.loss_from_labels,
                                     seeds=(0, 1), mesh=None))
  first, second = records
  # Epoch 1 is one step, taken at z = 0: its loss is finite, but the weights are not.
  assert np.all(np.isfinite(first["train_loss"]))
  assert not np.any(first.params_finite) and np.all(first.diverged)
  bias = np.asarray(first.state.params["Dense_1"]["bias"])
  assert np.all(np.isposinf(bias).any(axis=-1))  # +inf, not NaN
  params0 = jax.tree.map(lambda leaf: leaf[0], first.state.params)
  logits = OVERFLOW.model().apply({"params": params0}, jnp.asarray(data.train_images[:40]))
  assert np.any(np.isposinf(np.asarray(logits)))
  # The loss path: +inf logits give a non-finite loss, not a number that looks trained.
  labels = data.train_labels[:40]
  for spec in (BIG_SQUARE, jaxloss.get("ce")):
    assert not np.isfinite(float(spec.loss_from_labels(logits, labels)))
  # Epoch 2 trains on those +inf logits: its training loss is not finite.
  assert not np.any(np.isfinite(second["train_loss"])) and np.all(second.diverged)


def test_train_step_overflow_to_inf_then_nan_loss():
  """The pure step on a linear model: one SGD step to +inf weights, the next loss non-finite."""
  x = jnp.full((8, 5), 1000.0)
  targets = jnp.ones((8, NUM_CLASSES))
  bce = jaxloss.get("multilabel_bce")
  apply_fn = lambda variables, images: images @ variables["params"]["w"]  # noqa: E731
  tx = optax.sgd(1e38)
  params = {"w": jnp.zeros((5, NUM_CLASSES))}
  state = trainer_lib.TrainState(step=jnp.zeros((), jnp.int32), params=params,
                                 opt_state=tx.init(params))
  step = jax.jit(jt.make_train_step(apply_fn, tx, bce.loss, bce.predict))
  state, m1 = step(state, (x, targets))
  assert np.isfinite(float(m1["train_loss"]))
  # d loss / d w = 1000 * (sigmoid(0) - 1) / K = -125 per entry (all the same sign).
  assert np.all(np.isposinf(np.asarray(state.params["w"])))
  state, m2 = step(state, (x, targets))  # logits x @ w = +inf for every class
  assert not np.isfinite(float(m2["train_loss"]))
  assert not bool(jt.params_finite(state.params))
