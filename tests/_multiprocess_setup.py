"""What tests/test_multiprocess.py and its worker processes train (not a test module)."""

import jax
import jax.numpy as jnp
import numpy as np

import jaxloss
from jaxloss import train as jt
from _synthetic import prototype_images
from jaxloss.train import sharding

NUM_CLASSES = 4
SEEDS = (0, 1)
RATES = (3e-3, 3e-2)
# batch 32: divisible by the 4 devices of a data-parallel run.
CONFIG = jt.TrainConfig(hidden=(16,), num_classes=NUM_CLASSES, optimizer="adam",
                        learning_rate=1e-2, schedule="cosine", batch_size=32, epochs=3,
                        eval_batch_size=32)


def ce_loss(logits, labels):
  return jnp.mean(jaxloss.softmax_cross_entropy_with_integer_labels(logits, labels))


def data(n_train=160, n_test=64, seed=0):
  """The training data, the same in every process."""
  return prototype_images(n_train, n_test, num_classes=NUM_CLASSES, seed=seed)


def test_split():
  """The split every model of the resumable run is evaluated on once, at the end."""
  held = data(n_train=8, n_test=48, seed=1)
  return held.test_images, held.test_labels


def run_spec():
  from experiments import runs  # pylint: disable=import-outside-toplevel

  return runs.RunSpec("sweep", CONFIG, ce_loss, seeds=SEEDS, learning_rates=RATES,
                      describe={"loss": "ce"})


def flatten(prefix: str, result) -> dict:
  """A `TrainResult` as flat NumPy arrays: per-epoch metrics and the final parameters."""
  out = {f"{prefix}/{name}": np.stack([r.metrics[name] for r in result.history])
         for name in result.history[0].metrics}
  params = sharding.to_host(result.state.params)
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    out[f"{prefix}/params/{jax.tree_util.keystr(path)}"] = np.asarray(leaf)
  return out
