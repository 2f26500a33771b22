"""Two processes x two CPU devices train as one program (JAX's multi-controller runtime).

Each test starts its processes with `experiments.launch` (gloo collectives on
CPU) running tests/_multiprocess_worker.py, and compares with one process on one
device, trained here.
"""

import json
import os
import sys

import numpy as np
import pytest

pytest.importorskip("flax")

import _multiprocess_setup as setup  # noqa: E402
from experiments import launch  # noqa: E402
from jaxloss import train as jt  # noqa: E402

pytestmark = [pytest.mark.multiprocess, pytest.mark.slow]

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_multiprocess_worker.py")
TOL = {"rtol": 2e-5, "atol": 2e-6}  # the order of floating-point sums differs


def start(*args) -> int:
  return launch.launch([sys.executable, WORKER, *map(str, args)], 2, devices_per_process=2,
                       grace_seconds=5)


@pytest.fixture(scope="module")
def first_launch(tmp_path_factory):
  """One launch (each costs seconds of start-up): the sweep and data-parallel run saved to
  an .npz, then the resumable run, killed after epoch 2's checkpoint."""
  folder = tmp_path_factory.mktemp("multiprocess")
  status = start(folder / "out", "--train-npz", folder / "results.npz", "--stop-after-epoch", 2)
  return folder, status


def test_sweep_and_data_parallel_run_equal_one_device(first_launch):
  folder, status = first_launch
  assert status == 3  # the run that follows was killed, as it should be
  with np.load(folder / "results.npz") as got:
    got = dict(got)
  sweep = jt.train(setup.CONFIG, setup.data(), loss_fn=setup.ce_loss, seeds=setup.SEEDS,
                   learning_rates=setup.RATES, mesh=None)
  one = jt.train(setup.CONFIG, setup.data(), loss_fn=setup.ce_loss, seeds=(3,), mesh=None)
  want = setup.flatten("sweep", sweep) | setup.flatten("one", one)
  assert sorted(got) == sorted(want)
  for key, value in want.items():
    np.testing.assert_allclose(got[key], value, err_msg=key, **TOL)
  # The four sweep models differ (rate and seed), so the comparison is not vacuous.
  assert len(set(np.round(want["sweep/train_loss"][0], 6).tolist())) == 4


def test_killed_run_resumes(first_launch, tmp_path, capfd):
  from experiments import runs  # pylint: disable=import-outside-toplevel

  folder, status = first_launch
  out, run_folder = folder / "out", folder / "out" / "runs" / "sweep"
  assert status == 3  # killed after epoch 2's checkpoint
  assert not (run_folder / "result.json").exists() and (run_folder / "ckpt").is_dir()
  capfd.readouterr()
  assert start(out) == 0
  assert "RUN done 2" in capfd.readouterr().out  # process 0: continued after epoch 2
  result = json.loads((run_folder / "result.json").read_text())
  assert result["status"] == "done" and result["epochs"] == setup.CONFIG.epochs
  resumed = runs.run(setup.run_spec(), setup.data(), str(out), mesh=None, test=setup.test_split())
  assert resumed.resumed_from is None  # finished: read back here
  alone = runs.run(setup.run_spec(), setup.data(), str(tmp_path / "one"), mesh=None,
                   test=setup.test_split())
  # The final test evaluation, of models spread over 2 processes, equals one device's.
  assert sorted(resumed.test) == sorted(alone.test) and resumed.test["correct"].shape == (4, 48)
  for key, value in alone.test.items():
    np.testing.assert_allclose(resumed.test[key], value, err_msg=key, **TOL)
  assert len(resumed.rows) == len(alone.rows) == 4 * setup.CONFIG.epochs
  for a, b in zip(resumed.rows, alone.rows):
    for key, value in b.items():
      if key.endswith("seconds"):
        continue
      if isinstance(value, float):
        np.testing.assert_allclose(a[key], value, err_msg=key, **TOL)
      else:
        assert a[key] == value, key
