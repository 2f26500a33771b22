"""experiments.benchmark: its arithmetic, its command line, and a --quick run on MNIST."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from experiments import benchmark, cli

KEYS = ("fused_s_per_epoch", "loop_s_per_epoch", "torch_s_per_epoch",
        "matmul_peak_gflops", "fused_gflops")
# Every key of `summarize`'s JSON record without extra rows; extra= adds its own.
RECORD_KEYS = {
    *KEYS, "fused_fraction_of_peak", "executed_flops_per_epoch", "fused_executed_gflops",
    "gemm_floor_s_per_epoch", "optimizer_floor_s_per_epoch", "fused_over_floors",
    "speedup_vs_loop", "speedup_vs_torch", "fused_samples_per_s",
    "loop_samples_per_s", "torch_samples_per_s", "fused_epoch_seconds", "loop_epoch_seconds",
    "torch_epoch_seconds", "flops_per_epoch", "steps_per_epoch", "targets_met"}
ROW_KEYS = lambda key: {f"{key}_s_per_epoch", f"{key}_samples_per_s", f"{key}_epoch_seconds"}  # noqa: E731
# What main adds: the other rows, and the vmapped throughput.
MAIN_KEYS = {"device", "versions", "batch_size", "hidden", "train_examples", "repeats",
             "vmapped", *ROW_KEYS("bf16"), *ROW_KEYS("torch_compile"), *ROW_KEYS("torch_bf16")}


def test_epoch_flops_of_default_mlp():
  weights = 784 * 512 + 512 * 512 + 512 * 10
  assert benchmark.epoch_flops(468, 128, 784, (512, 512)) == 468 * 128 * 6 * weights
  # The images need no gradient: the first layer's input-gradient product is skipped.
  assert benchmark.epoch_flops(468, 128, 784, (512, 512), executed=True) == (
      468 * 128 * (4 * weights + 2 * (512 * 512 + 512 * 10)))
  assert benchmark.epoch_flops(1, 1, 784, ()) == 6 * 7840  # a linear model


def test_time_runs_warms_up_once_then_times_each_repeat():
  calls = []
  warmup, seconds, last = benchmark.time_runs(lambda i: calls.append(i) or 10 * i, repeats=3)
  assert calls == [0, 1, 2, 3] and last == 30
  assert len(seconds) == 3 and warmup >= 0 and all(s >= 0 for s in seconds)


def test_floors_of_a_tiny_mlp_are_positive():
  assert 0 < benchmark.gemm_floor_seconds(8, (4,), steps=2, batch_size=4, repeats=1) < 60
  assert 0 < benchmark.optimizer_floor_seconds(8, (4,), steps=3, repeats=1) < 60


def _timing(name, seconds):
  return benchmark.MethodTiming(name, 1.0, seconds, steps=10, batch_size=100, final_loss=0.5)


def test_summarize_keys_targets_and_lines():
  fused, loop = _timing("fused", (1.0, 2.0, 3.0)), _timing("loop", (3.0, 3.0, 4.0))
  lines, record = benchmark.summarize(
      fused, loop, _timing("torch", (2.0,)), peak_gflops=10.0, peak_size=1024,
      flops_per_epoch=8 * 10**9, executed_flops_per_epoch=6 * 10**9, gemm_floor_s=1.5,
      optimizer_floor_s=0.4, others={"bf16": _timing("bf16", (1.0,)), "torch_compile": None},
      extra={"repeats": 3})
  assert set(record) == RECORD_KEYS | {"repeats"} | ROW_KEYS("bf16") | ROW_KEYS("torch_compile")
  assert record["bf16_s_per_epoch"] == 1.0 and record["torch_compile_s_per_epoch"] is None
  assert [line.split()[0] for line in lines[1:6]] == [
      "fused", "loop", "bf16", "torch", "torch_compile"]  # the torch rows last
  assert record["fused_over_floors"] == pytest.approx(2.0 / 1.9)  # 2.0 s vs 1.5 + 0.4
  assert record["fused_s_per_epoch"] == 2.0 and record["fused_samples_per_s"] == 500.0
  assert record["speedup_vs_loop"] == 1.5 and record["speedup_vs_torch"] == 1.0
  assert record["fused_gflops"] == 4.0 and record["fused_fraction_of_peak"] == 0.4
  assert record["targets_met"] == {"speedup_vs_torch": False, "speedup_vs_loop": True,
                                   "fraction_of_peak": False, "over_floors": False}
  assert [line[:4] for line in lines[-4:]] == ["FAIL", "PASS", "FAIL", "FAIL"]
  assert "products 1.500 + optimizer 0.400 + the rest 0.100" in "\n".join(lines)
  _, no_torch = benchmark.summarize(
      fused, loop, None, peak_gflops=5.0, peak_size=1024, flops_per_epoch=8 * 10**9,
      executed_flops_per_epoch=6 * 10**9, gemm_floor_s=1.5, extra={})
  assert no_torch["torch_s_per_epoch"] is None and no_torch["torch_epoch_seconds"] is None
  assert no_torch["targets_met"]["speedup_vs_torch"] is None
  assert no_torch["targets_met"]["fraction_of_peak"]  # 4 of 5 GFLOP/s
  assert no_torch["optimizer_floor_s_per_epoch"] is None
  assert no_torch["targets_met"]["over_floors"] is None


def test_gpu_goals_pass_fail_and_skip():
  fused = _timing("fused", (0.015,))
  rows = [benchmark.ModelsTiming(m, _timing(f"vmap{m}", (s,)), 1.0, 10)
          for m, s in ((1, 0.015), (64, 0.06))]
  lines, met = benchmark.gpu_goals("gpu", fused, rows)
  assert met == {"gpu_epoch": True, "gpu_64_models": False}  # 15 ms; 4x the time of one
  assert lines[0].startswith("PASS  GPU epoch: 15.0 ms") and lines[1].startswith("FAIL  64")
  lines, met = benchmark.gpu_goals("cpu", fused, rows)
  assert met == {"gpu_epoch": None, "gpu_64_models": None}
  assert all(line.startswith("SKIP") and "this run is on cpu" in line for line in lines)
  _, met = benchmark.gpu_goals("gpu", fused, rows[:1])
  assert met["gpu_64_models"] is None


def test_flags_and_quick():
  parse = lambda *argv: cli.parse(benchmark.Settings, argv, prog="b", description="")  # noqa: E731
  s = parse("--hidden", "64,32", "--no-torch", "--models", "4,3")
  assert s.hidden == (64, 32) and s.no_torch and s.repeats == 3 and s.models == (4, 3)
  assert parse().models == (1, 8, 32) and parse("--models", "0").models == ()
  assert parse().hidden == (512, 512)
  quick = parse("--quick", "--repeats", "2")
  assert (quick.repeats, quick.hidden, quick.train_subset, quick.no_torch, quick.models) == (
      2, (32,), 2048, True, (1, 2))


def test_bad_flag_exits_2_at_once_without_loading_jax():
  """``--models 8,0``: one ``error:`` line on stderr, exit status 2, nothing imported or loaded."""
  code = ("import sys\n"
          "from experiments import benchmark\n"
          "try:\n"
          "  benchmark.main(['--models', '8,0', '--mnist-dir', '/nonexistent'])\n"
          "except SystemExit as e:\n"
          "  assert 'jax' not in sys.modules, 'jax was imported before the flags were checked'\n"
          "  raise\n")
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                        timeout=60)
  assert done.returncode == 2, done.stderr
  assert done.stderr.strip().splitlines() == [
      "error: --models: must be comma-separated integers >= 1, got '8,0'"]
  assert done.stdout == ""


@pytest.mark.mnist
@pytest.mark.usefixtures("mnist_loaded_once")
def test_quick_run_prints_json_last_with_positive_timings(mnist_dir, capsys):
  record = benchmark.main(["--quick", "--mnist-dir", mnist_dir, "--matmul-sizes", "128"])
  lines = capsys.readouterr().out.strip().splitlines()
  assert lines[0].startswith("device: ") and lines[2].startswith("MNIST: 2048 train")
  last = json.loads(lines[-1])
  assert last == json.loads(json.dumps(record))
  assert set(last) == RECORD_KEYS | MAIN_KEYS
  assert last["torch_s_per_epoch"] is None and last["versions"]["torch"] is None
  for key in KEYS:
    if key != "torch_s_per_epoch":
      assert isinstance(last[key], float) and math.isfinite(last[key]) and last[key] > 0, key
  assert last["steps_per_epoch"] == 2048 // 128 and last["hidden"] == [32]
  assert last["bf16_s_per_epoch"] > 0 and last["optimizer_floor_s_per_epoch"] > 0
  assert last["fused_over_floors"] == pytest.approx(last["fused_s_per_epoch"] / (
      last["gemm_floor_s_per_epoch"] + last["optimizer_floor_s_per_epoch"]))
  # 1 and 2 vmapped models, each timed as one program, per model and epoch.
  assert [r["models"] for r in last["vmapped"]] == [1, 2]
  for row in last["vmapped"]:
    assert row["s_per_model_epoch"] == pytest.approx(row["s_per_epoch"] / row["models"])
    assert row["compile_seconds"] > 0 and row["memory_bytes"] > 0
  assert last["vmapped"][1]["memory_bytes"] > last["vmapped"][0]["memory_bytes"]
  assert any(line.startswith(("PASS", "FAIL")) for line in lines)
