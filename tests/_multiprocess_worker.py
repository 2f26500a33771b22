"""One process of a multi-process run, for tests/test_multiprocess.py (not a test module).

Started by `experiments.launch` (2 processes x 2 virtual CPU devices), so
`jaxloss.train.distributed.initialize` joins the run from the environment.

  python tests/_multiprocess_worker.py OUT_DIR [--train-npz NPZ] [--stop-after-epoch E]

1. With --train-npz: a 4-model sweep (2 rates x 2 seeds) over the 4 devices along
   "models", and one model data parallel over them; process 0 saves the results.
2. The same sweep as a resumable `experiments.runs` run in OUT_DIR; with
   --stop-after-epoch, every process exits hard (status 3) after epoch E's
   checkpoint, as a killed run would.
"""

import os
import sys

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # experiments

import _multiprocess_setup as setup
from jaxloss import train as jt
from jaxloss.train import distributed
from jaxloss.train import sharding


def train(out: str) -> None:
  assert jax.process_count() == 2 and jax.device_count() == 4 and jax.local_device_count() == 2
  sweep = jt.train(setup.CONFIG, setup.data(), loss_fn=setup.ce_loss, seeds=setup.SEEDS,
                   learning_rates=setup.RATES)
  kernel = sweep.state.params["Dense_0"]["kernel"]
  assert kernel.sharding.spec[0] == sharding.MODELS_AXIS, kernel.sharding
  assert not kernel.is_fully_addressable  # half of the models live in the other process
  one = jt.train(setup.CONFIG, setup.data(), loss_fn=setup.ce_loss, seeds=(3,))
  assert one.state.params["Dense_0"]["kernel"].sharding.mesh.shape[sharding.DATA_AXIS] == 4
  arrays = setup.flatten("sweep", sweep) | setup.flatten("one", one)  # collectives: all call it
  if distributed.is_writer():
    np.savez(out, **arrays)


def run(out_dir: str, stop_after: int | None) -> None:
  from experiments import runs  # pylint: disable=import-outside-toplevel

  def on_epoch(spec, rows):
    del spec
    if stop_after is not None and rows[0]["epoch"] == stop_after:
      distributed.barrier("checkpoint written")
      os._exit(3)  # pylint: disable=protected-access

  result = runs.run(setup.run_spec(), setup.data(), out_dir, on_epoch=on_epoch,
                    test=setup.test_split())
  if distributed.is_writer():
    print("RUN", result.status, result.resumed_from, flush=True)


if __name__ == "__main__":
  # Before JAX computes anything (importing it computes nothing).
  assert distributed.initialize(), "not started as a multi-process run"
  args = dict(zip(sys.argv[2::2], sys.argv[3::2]))
  if "--train-npz" in args:
    train(args["--train-npz"])
  stop = args.get("--stop-after-epoch")
  run(sys.argv[1], None if stop is None else int(stop))
