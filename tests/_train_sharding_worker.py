"""Subprocess worker for tests/test_train_sharding.py (not a test module itself).

Run with ``XLA_FLAGS=--xla_force_host_platform_device_count=4``: the flag must
be set before JAX is imported, hence a separate process. Trains a tiny MLP on
synthetic data for a few steps on one device, and over 4 devices: data parallel
(the batch split in 4) and ``mesh="auto"`` (2 models x 2 batch halves); checks
that all agree. Prints ``SHARDING OK`` on success.
"""


def main() -> None:
  import os

  import chex
  import jax
  import jax.numpy as jnp
  import numpy as np

  import jaxloss
  from jaxloss import train as jt
  from jaxloss.train import sharding

  jax.config.update("jax_numpy_rank_promotion", "raise")
  assert "xla_force_host_platform_device_count=4" in os.environ.get("XLA_FLAGS", "")
  assert len(jax.devices()) == 4, jax.devices()

  rng = np.random.default_rng(0)
  protos = rng.integers(0, 256, (4, 6, 6))

  def split(n):
    labels = rng.integers(0, 4, n).astype(np.int32)
    images = np.clip(protos[labels] + rng.normal(0, 60, (n, 6, 6)), 0, 255).astype(np.uint8)
    return images, labels

  data = jt.Mnist(*split(136), *split(50))  # 136 = 4 steps of 32 + 8 dropped; 50 = 32 + 18.

  def loss_fn(logits, labels):
    return jnp.mean(jaxloss.softmax_cross_entropy_with_integer_labels(logits, labels))

  config = jt.TrainConfig(hidden=(16,), num_classes=4, optimizer="adam", learning_rate=1e-2,
                          schedule="cosine", batch_size=32, epochs=2, eval_batch_size=32)
  single = jt.train(config, data, loss_fn=loss_fn, seeds=(0, 1), mesh=None)
  # Data parallel: both models on every device, their batches split in 4.
  mesh = sharding.make_mesh()
  assert mesh is not None and dict(mesh.shape) == {"models": 1, "data": 4}, mesh
  multi = jt.train(config, data, loss_fn=loss_fn, seeds=(0, 1), mesh=mesh)
  kernel = multi.state.params["Dense_0"]["kernel"]
  assert len(kernel.sharding.device_set) == 4 and kernel.sharding.is_fully_replicated

  # mesh="auto" with 2 models on 4 devices: 2 along "models" x 2 along "data".
  auto = jt.train(config, data, loss_fn=loss_fn, seeds=(0, 1))
  kernel = auto.state.params["Dense_0"]["kernel"]
  assert dict(kernel.sharding.mesh.shape) == {"models": 2, "data": 2}, kernel.sharding
  assert {s.data.shape[0] for s in kernel.addressable_shards} == {1}  # one model per shard
  chex.assert_trees_all_close(jax.device_get(single.state), jax.device_get(auto.state),
                              rtol=1e-5, atol=1e-6)
  assert len(single.state.params["Dense_0"]["kernel"].sharding.device_set) == 1

  # (A sweep with one model per device, across 2 processes: tests/test_multiprocess.py.)
  try:  # 3 models do not split over a models axis of 4
    jt.train(config, data, loss_fn=loss_fn, seeds=(0, 1, 2), mesh=sharding.make_mesh(models=4))
    raise AssertionError("3 models on a models axis of 4 were not refused")
  except ValueError as err:
    assert "divisible by the 4 devices of the mesh's models axis" in str(err), err

  # The compiled epoch splits the batch: gradients are summed with an all-reduce.
  model = jt.MLP(hidden=(16,), num_classes=4)
  tx = jt.make_optimizer("sgd", 0.1)
  epoch = jt.make_train_epoch(jt.make_train_step(model.apply, tx, loss_fn), 32, mesh=mesh)
  state = sharding.replicate(jt.init_state(model, tx, jax.random.key(0), data.train_images[:1]),
                             mesh)
  args = sharding.replicate((jax.random.key(1), data.train_images, data.train_labels), mesh)
  hlo = jax.jit(epoch).lower(state, *args).compile().as_text()
  assert "all-reduce" in hlo, "no all-reduce in the data-parallel program"
  no_mesh = jt.make_train_epoch(jt.make_train_step(model.apply, tx, loss_fn), 32, mesh=None)
  chex.assert_trees_all_close(jax.jit(epoch)(state, *args),
                              jax.jit(no_mesh)(jax.device_get(state), *jax.device_get(args)),
                              rtol=1e-5, atol=1e-6)

  assert [r.epoch for r in multi.history] == [1, 2]
  worst = 0.0
  for a, b in zip(single.history, multi.history):
    chex.assert_trees_all_close(dict(a.metrics), dict(b.metrics), rtol=1e-5, atol=1e-6)
    worst = max(worst, max(float(np.max(np.abs(a[k] - b[k]))) for k in a.metrics))
  chex.assert_trees_all_close(jax.device_get(single.state), jax.device_get(multi.state),
                              rtol=1e-5, atol=1e-6)
  assert int(multi.state.step[0]) == config.epochs * 4
  print(f"SHARDING OK max metric deviation {worst:.2e}")


if __name__ == "__main__":
  main()
