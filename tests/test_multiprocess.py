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


def test_sweep_and_data_parallel_run_equal_one_device(tmp_path):
  out = tmp_path / "results.npz"
  assert start("train", out) == 0
  with np.load(out) as got:
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


def test_killed_run_resumes(tmp_path, capfd):
  from experiments import runs  # pylint: disable=import-outside-toplevel

  out = tmp_path / "two"
  assert start("run", out, "--stop-after-epoch", 2) == 3  # killed after epoch 2's checkpoint
  folder = out / "runs" / "sweep"
  assert not (folder / "result.json").exists() and (folder / "ckpt").is_dir()
  capfd.readouterr()
  assert start("run", out) == 0
  assert "RUN done 2" in capfd.readouterr().out  # process 0: continued after epoch 2
  result = json.loads((folder / "result.json").read_text())
  assert result["status"] == "done" and result["epochs"] == setup.CONFIG.epochs
  resumed = runs.run(setup.run_spec(), setup.data(), str(out), mesh=None)
  assert resumed.resumed_from is None  # finished: read back here
  alone = runs.run(setup.run_spec(), setup.data(), str(tmp_path / "one"), mesh=None)
  assert len(resumed.rows) == len(alone.rows) == 4 * setup.CONFIG.epochs
  for a, b in zip(resumed.rows, alone.rows):
    for key, value in b.items():
      if key.endswith("seconds"):
        continue
      if isinstance(value, float):
        np.testing.assert_allclose(a[key], value, err_msg=key, **TOL)
      else:
        assert a[key] == value, key
