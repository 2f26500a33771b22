"""Smoke test of experiments.benchmark on a small MNIST subset (no PyTorch)."""

from __future__ import annotations

import json
import math

import pytest

from experiments import benchmark

KEYS = ("fused_s_per_epoch", "loop_s_per_epoch", "torch_s_per_epoch",
        "matmul_peak_gflops", "fused_gflops")


def test_epoch_flops_of_default_mlp():
  sizes = benchmark.dense_weight_sizes(784, (512, 512))
  assert sizes == [784 * 512, 512 * 512, 512 * 10]
  assert benchmark.epoch_flops(468, 128, sizes) == 468 * 128 * 6 * 668672


def test_hidden_flag_is_parsed():
  args = benchmark.parse_args(["--hidden", "64,32", "--no-torch"])
  assert args.hidden == (64, 32) and args.no_torch and args.repeats == 3
  with pytest.raises(SystemExit):
    benchmark.parse_args(["--hidden", "64,x"])
  assert args.grid == (5, 5)
  assert benchmark.parse_args(["--grid", "0"]).grid is None
  assert benchmark.parse_args(["--grid", "4,3"]).grid == (4, 3)
  with pytest.raises(SystemExit):
    benchmark.parse_args(["--grid", "5"])


@pytest.mark.mnist
@pytest.mark.usefixtures("mnist_loaded_once")
def test_last_line_is_json_with_positive_timings(mnist_dir, capsys):
  record = benchmark.main([
      "--mnist-dir", mnist_dir, "--train-subset", "1024", "--repeats", "1", "--no-torch",
      "--hidden", "32,32", "--matmul-sizes", "128,256", "--grid", "2,3"])
  lines = capsys.readouterr().out.strip().splitlines()
  assert lines[0].startswith("device: ")
  last = json.loads(lines[-1])
  assert last == json.loads(json.dumps(record))
  assert set(KEYS) <= set(last)
  assert last["torch_s_per_epoch"] is None
  for key in KEYS:
    if key != "torch_s_per_epoch":
      assert isinstance(last[key], float) and math.isfinite(last[key]) and last[key] > 0, key
  assert last["steps_per_epoch"] == 1024 // 128
  # The 2 x 3 grid (rates x seeds) is timed as one program, per model and epoch.
  assert last["grid"] == [2, 3]
  assert last["grid_s_per_model_epoch"] == pytest.approx(last["grid_s_per_epoch"] / 6)
  assert last["grid_s_per_model_epoch"] > 0 and last["single_s_per_model_epoch"] > 0
  assert any(line.startswith(("PASS", "FAIL")) for line in lines)
