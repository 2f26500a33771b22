"""Speed of one MNIST training epoch: fused JAX trainer vs a per-step loop vs PyTorch.

MLP 784-512-512-10 ReLU, Adam 1e-3, batch 128, cross-entropy on MNIST's training set. Rows:
``fused`` (jaxloss' trainer: data on the device once, each epoch ONE jitted ``lax.scan``),
``bf16`` (the same with ``precision="bf16"``: bfloat16 matmul inputs, float32 accumulation,
parameters, optimizer state and loss), ``loop`` (the same jitted step called from Python on
host-sliced batches), ``torch`` (PyTorch eager on all CPU threads), ``torch.compile`` (the same
model compiled), ``torch bf16`` (eager under ``torch.autocast(bfloat16)``); each: median s/epoch
of ``--repeats`` epochs after a warm-up one, samples/s, ratio to fused (torch rows null with
``--no-torch``). Floors at these shapes: the matrix products alone (GEMM floor) and the
optimizer's updates alone (optimizer floor: one epoch of Adam steps, nothing else). Vmapped
throughput: ``--models 1,8,32`` models trained as ONE program, with compile seconds and XLA's
memory estimate. PASS/FAIL targets (exit 0 either way): fused >= 1.5x torch, >= 1.15x loop,
>= 75% of the matmul peak, <= 1.05x the sum of the floors. Last line printed: JSON. Usage::

  JAXLOSS_MNIST_DIR=/path/to/mnist python -m experiments.benchmark [--repeats 5] [--models 0]
  python -m experiments.benchmark --quick
"""
# pylint: disable=import-outside-toplevel  # jax and torch: imported once the flags are checked

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import time
from typing import Callable, Sequence

import numpy as np

from experiments import cli, harness, outputs

NUM_CLASSES, LEARNING_RATE = 10, 1e-3
TARGET_SPEEDUP_VS_TORCH, TARGET_SPEEDUP_VS_LOOP, TARGET_FRACTION_OF_PEAK = 1.5, 1.15, 0.75
TARGET_OVER_FLOORS = 1.05  # fused s/epoch <= this x (GEMM floor + optimizer floor)
# Goals on a GPU (issue #12, an H200): a full-MNIST epoch under 20 ms; 64 vmapped models in
# under 3x the time of one.
GPU_EPOCH_SECONDS, GPU_MODELS, GPU_MODELS_FACTOR = 0.020, 64, 3.0


def positive_ints(text: str) -> tuple[int, ...]:
  """``"512,512"`` -> ``(512, 512)``, each >= 1; ``""`` -> ``()``."""
  if min(values := cli.ints(text), default=1) < 1:
    raise ValueError("must be comma-separated integers >= 1")
  return values


def model_counts(text: str) -> tuple[int, ...]:
  """``"1,8,32"`` -> ``(1, 8, 32)``; ``"0"`` -> ``()`` (no vmapped rows)."""
  return () if text.strip() == "0" else positive_ints(text)


@dataclasses.dataclass(frozen=True)
class Settings:
  """The command line (``python -m experiments.benchmark --help``)."""

  repeats: int = cli.option(3, "timed epochs after a warm-up", parse=cli.positive_int, quick=1)
  batch_size: int = cli.option(128, "examples per step", parse=cli.positive_int)
  hidden: tuple[int, ...] = cli.option((512, 512), "hidden layer widths", parse=positive_ints,
                                       quick=(32,), metavar="LIST")
  train_subset: int | None = cli.option(None, "the first N training images only",
                                        parse=cli.positive_int, quick=2048)
  test_subset: int | None = cli.option(None, "first N test images (unused)", parse=cli.positive_int)
  no_torch: bool = cli.option(False, "skip PyTorch (reported as null)", quick=True)
  matmul_sizes: tuple[int, ...] = cli.option((1024, 2048, 4096), "matrix sizes of the peak",
                                             parse=positive_ints, quick=(256, 512), metavar="LIST")
  matmul_repeats: int = cli.option(3, "timed matmuls per size", parse=cli.positive_int)
  models: tuple[int, ...] = cli.option((1, 8, 32), "vmapped model counts to time as one "
                                      "program each (0: none)", parse=model_counts,
                                      quick=(1, 2), metavar="LIST")
  seed: int = cli.option(0, "seed of the initializations and shuffling", parse=cli.nonnegative_int)
  mnist_dir: str | None = cli.option(None, "MNIST .gz folder (none: $JAXLOSS_MNIST_DIR)")
  data_dir: str | None = cli.option(None, "TFDS data dir (none: $JAXLOSS_DATA_DIR)")
  quick: bool = False


def _problems(s: Settings) -> list[str]:
  n_train = min(s.train_subset or 60000, 60000)
  return ([f"--batch-size: must be at most the {n_train} training images, got {s.batch_size}"]
          if s.batch_size > n_train else [] if s.matmul_sizes else
          ["--matmul-sizes: must name at least one size"])


@dataclasses.dataclass(frozen=True)
class MethodTiming:
  """One method: warm-up epoch (with compilation), timed epochs, last training loss."""

  name: str
  warmup_seconds: float
  epoch_seconds: tuple[float, ...]
  steps: int
  batch_size: int
  final_loss: float
  seconds = property(lambda self: float(np.median(self.epoch_seconds)))  # median epoch
  samples_per_second = property(lambda self: self.steps * self.batch_size / self.seconds)

  @classmethod
  def timed(cls, name: str, run_epoch, repeats: int, steps: int, batch_size: int):
    warmup, seconds, loss = time_runs(run_epoch, repeats)
    return cls(name, warmup, tuple(seconds), steps, batch_size, float(np.mean(loss)))


def epoch_flops(steps: int, batch_size: int, input_dim: int, hidden: Sequence[int], *,
                executed: bool = False) -> int:
  """Matmul FLOPs of an epoch of the MLP, per weight and example 2 forward + 4 backward
  (model FLOPs); `executed`: less the first layer's input gradient (never computed)."""
  dims = [input_dim, *hidden, NUM_CLASSES]
  weights = sum(a * b for a, b in zip(dims[:-1], dims[1:]))
  return steps * batch_size * (6 * weights - 2 * dims[0] * dims[1] * executed)


def time_runs(run: Callable[[int], object], repeats: int) -> tuple[float, list[float], object]:
  """``(warm-up s, [timed s], last result)`` of ``run(0)``, ``run(1..repeats)`` (blocking)."""
  seconds, result = [], None
  for i in range(repeats + 1):
    t0 = time.perf_counter()
    result = run(i)
    seconds.append(time.perf_counter() - t0)
  return seconds[0], seconds[1:], result


def gemm_floor_seconds(input_dim: int, hidden: Sequence[int], *, steps: int, batch_size: int,
                       repeats: int = 3) -> float:
  """Best-of-`repeats` seconds of one epoch's executed matrix products alone (constant data)."""
  import jax
  import jax.numpy as jnp
  dims = [input_dim, *hidden, NUM_CLASSES]
  weights = [jnp.full((a, b), 1e-3, jnp.float32) for a, b in zip(dims[:-1], dims[1:])]
  xs = jnp.ones((steps, batch_size, input_dim), jnp.float32)
  @jax.jit
  def products(weights, xs):
    def body(total, x):
      acts = [x]
      for w in weights:
        acts.append(acts[-1] @ w)
      grad = acts[-1]
      for i in reversed(range(len(weights))):
        total = total + jnp.sum(acts[i].T @ grad)  # the weight gradient
        if i > 0:
          grad = grad @ weights[i].T  # the activation gradient
      return total, None
    return jax.lax.scan(body, jnp.zeros((), jnp.float32), xs)[0]
  return min(time_runs(lambda _: products(weights, xs).block_until_ready(), repeats)[1])


def matmul_peak_gflops(sizes: Sequence[int] = (1024, 2048, 4096), repeats: int = 3,
                       seed: int = 0) -> tuple[float, int]:
  """``(best GFLOP/s, its n)`` of a jitted float32 ``n x n`` ``jnp.dot``, best of `repeats`."""
  import jax
  import jax.numpy as jnp
  dot, best = jax.jit(jnp.dot), (0.0, sizes[0])
  for n in sizes:
    ka, kb = jax.random.split(jax.random.fold_in(jax.random.key(seed), n))
    a, b = (jax.random.normal(k, (n, n), jnp.float32) for k in (ka, kb))
    seconds = min(time_runs(lambda _: dot(a, b).block_until_ready(), repeats)[1])
    best = max(best, (2.0 * n**3 / seconds / 1e9, n), key=lambda p: p[0])  # the first best
  return best


def optimizer_floor_seconds(input_dim: int, hidden: Sequence[int], *, steps: int,
                            repeats: int = 3) -> float:
  """Best-of-`repeats` seconds of one epoch's optimizer updates alone: `steps` Adam updates
  (as the trainer makes them) of the MLP's parameters with constant gradients, in a `lax.scan`."""
  import jax
  import jax.numpy as jnp
  import optax
  from jaxloss import train as jt
  dims = [input_dim, *hidden, NUM_CLASSES]
  params = {f"Dense_{i}": {"kernel": jnp.full((a, b), 1e-3, jnp.float32),
                           "bias": jnp.zeros((b,), jnp.float32)}
            for i, (a, b) in enumerate(zip(dims[:-1], dims[1:]))}
  grads = jax.tree.map(lambda p: jnp.full_like(p, 1e-4), params)
  tx = jt.make_optimizer("adam", LEARNING_RATE)
  @jax.jit
  def updates(params, opt_state, grads):
    def body(carry, _):
      p, s = carry
      u, s = tx.update(grads, s, p)
      return (optax.apply_updates(p, u), s), None
    return jax.lax.scan(body, (params, opt_state), None, length=steps)[0]
  opt_state = tx.init(params)
  return min(time_runs(lambda _: jax.block_until_ready(updates(params, opt_state, grads)),
                       repeats)[1])


def bench_jax(images, labels, *, hidden, batch_size, repeats, seed=0, loop=False,
              precision="float32"):
  """The JAX rows: ``fused`` (or ``bf16`` for ``precision="bf16"``), or ``loop``."""
  import jax
  from jaxloss import softmax_cross_entropy_with_integer_labels as cross_entropy
  from jaxloss import train as jt
  model = jt.MLP(hidden=tuple(hidden), num_classes=NUM_CLASSES, precision=precision)
  tx = jt.make_optimizer("adam", LEARNING_RATE)
  step = jt.make_train_step(model.apply, tx, lambda z, y: cross_entropy(z, y).mean())
  labels, steps = labels.astype(np.int32), len(images) // batch_size
  if loop:
    state = jt.init_state(model, tx, jax.random.key(seed), jax.device_put(images[:1]))
    train_step, rng = jax.jit(step), np.random.default_rng(seed)
    def run_loop_epoch(_):
      nonlocal state
      for idx in rng.permutation(images.shape[0])[:steps * batch_size].reshape(steps, -1):
        state, metrics = train_step(state, jax.device_put((images[idx], labels[idx])))
      jax.block_until_ready((state, metrics))
      return metrics["train_loss"]
    return MethodTiming.timed("loop", run_loop_epoch, repeats, steps, batch_size)
  x, y = jax.device_put((images, labels))
  init_key, data_key = jax.random.split(jax.random.key(seed))
  state = jt.init_state(model, tx, init_key, x[:1])
  train_epoch = jax.jit(jt.make_train_epoch(step, batch_size))
  def run_epoch(epoch: int):
    nonlocal state
    state, metrics = train_epoch(state, jax.random.fold_in(data_key, epoch), x, y)
    jax.block_until_ready((state, metrics))
    return metrics["train_loss"]
  name = "fused" if precision == "float32" else precision
  return MethodTiming.timed(name, run_epoch, repeats, steps, batch_size)


@dataclasses.dataclass(frozen=True)
class ModelsTiming:
  """`models` MLPs (seeds) vmapped in one compiled epoch: timing, compile time, memory."""

  models: int
  timing: MethodTiming
  compile_seconds: float
  memory_bytes: int | None  # XLA's estimate: arguments + outputs + temporaries - aliased

  def as_dict(self) -> dict:
    return {"models": self.models, "s_per_epoch": self.timing.seconds,
            "s_per_model_epoch": self.timing.seconds / self.models,
            "samples_per_s_per_model": self.timing.samples_per_second,
            "samples_per_s": self.models * self.timing.samples_per_second,
            "compile_seconds": self.compile_seconds, "memory_bytes": self.memory_bytes,
            "epoch_seconds": list(self.timing.epoch_seconds)}


def bench_models(images, labels, *, models, hidden, batch_size, repeats, seed=0) -> ModelsTiming:
  """`models` seeds trained side by side: ``jax.vmap`` of the fused epoch, compiled once."""
  import jax
  from jaxloss import softmax_cross_entropy_with_integer_labels as cross_entropy
  from jaxloss import train as jt
  model = jt.MLP(hidden=tuple(hidden), num_classes=NUM_CLASSES)
  tx = jt.make_optimizer("adam", LEARNING_RATE)
  step = jt.make_train_step(model.apply, tx, lambda z, y: cross_entropy(z, y).mean())
  x, y = jax.device_put((images, labels.astype(np.int32)))
  init_keys, data_keys = jt.seed_keys(range(seed, seed + models))
  state = jax.vmap(lambda key: jt.init_state(model, tx, key, x[:1]))(init_keys)
  epoch_fn = jax.vmap(jt.make_train_epoch(step, batch_size), in_axes=(0, 0, None, None))
  fold = jax.jit(jax.vmap(jax.random.fold_in, in_axes=(0, None)))
  t0 = time.perf_counter()
  compiled = jax.jit(epoch_fn).lower(state, fold(data_keys, 0), x, y).compile()
  compile_seconds = time.perf_counter() - t0
  try:
    mem = compiled.memory_analysis()
    memory = int(mem.argument_size_in_bytes + mem.output_size_in_bytes
                 + mem.temp_size_in_bytes - mem.alias_size_in_bytes)
  except (AttributeError, NotImplementedError, TypeError):  # not reported by this backend
    memory = None
  def run_epoch(epoch: int):
    nonlocal state
    state, metrics = compiled(state, fold(data_keys, epoch), x, y)
    jax.block_until_ready((state, metrics))
    return metrics["train_loss"]
  timing = MethodTiming.timed(f"vmap{models}", run_epoch, repeats, len(images) // batch_size,
                              batch_size)
  return ModelsTiming(models, timing, compile_seconds, memory)


TORCH_ROWS = ("torch", "torch.compile", "torch bf16")


def bench_torch(images, labels, *, hidden, batch_size, repeats, seed=0,
                mode: str = "torch") -> MethodTiming:
  """A PyTorch row (`TORCH_ROWS`): ``torch`` eager; ``torch.compile`` (the model compiled, its
  compilation in the warm-up epoch); ``torch bf16`` (eager under CPU bfloat16 autocast).
  The data as float32 in [0, 1] once, a ``torch.randperm`` per epoch, all CPUs."""
  import contextlib
  import torch
  from torch import nn
  torch.set_num_threads(os.cpu_count() or 1)
  torch.manual_seed(seed)
  x = torch.from_numpy(images.reshape(images.shape[0], -1).astype(np.float32) / 255.0)
  y = torch.from_numpy(labels.astype(np.int64))
  dims = [x.shape[1], *hidden]
  layers = [m for a, b in zip(dims[:-1], dims[1:]) for m in (nn.Linear(a, b), nn.ReLU())]
  model = nn.Sequential(*layers, nn.Linear(dims[-1], NUM_CLASSES))
  optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
  forward = torch.compile(model) if mode == "torch.compile" else model
  autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if mode == "torch bf16" \
      else contextlib.nullcontext
  generator, steps = torch.Generator().manual_seed(seed), x.shape[0] // batch_size
  def run_epoch(_):
    perm = torch.randperm(x.shape[0], generator=generator)
    for idx in perm[:steps * batch_size].view(steps, -1):
      optimizer.zero_grad(set_to_none=True)
      with autocast():
        loss = nn.functional.cross_entropy(forward(x[idx]), y[idx])
      loss.backward()
      optimizer.step()
    return loss.item()
  return MethodTiming.timed(mode, run_epoch, repeats, steps, batch_size)


def _torch_row(images, labels, mode: str, common: dict) -> MethodTiming | None:
  """`bench_torch`, or None (reported as not measured) when this PyTorch cannot run the row,
  e.g. ``torch.compile`` without a working C++ compiler."""
  try:
    return bench_torch(images, labels, mode=mode, **common)
  except Exception as err:  # pylint: disable=broad-except
    if mode == "torch":
      raise
    print(f"{mode}: not measured ({type(err).__name__}: {str(err).splitlines()[0][:200]})",
          flush=True)
    return None


def _row(key: str, t: MethodTiming | None, fused: MethodTiming) -> tuple[str, dict]:
  """One table line and its JSON keys (``{key}_s_per_epoch`` ...; nulls when not measured)."""
  record = {f"{key}_s_per_epoch": t and t.seconds, f"{key}_samples_per_s": t and
            t.samples_per_second, f"{key}_epoch_seconds": t and list(t.epoch_seconds)}
  if t is None:
    return f"{key:<13} {'-':>9} {'-':>11} {'-':>10} {'-':>10}  (not measured)", record
  r = t.seconds / fused.seconds
  versus = "reference" if t is fused else f"{r:.2f}x the fused time (fused speedup {r:.2f}x)"
  return (f"{t.name:<13} {t.seconds:>9.3f} {t.samples_per_second:>11.0f} "
          f"{t.warmup_seconds:>10.2f} {t.final_loss:>10.4f}  {versus}"), record


def summarize(fused: MethodTiming, loop: MethodTiming, torch: MethodTiming | None, *,
              peak_gflops: float, peak_size: int, flops_per_epoch: int,
              executed_flops_per_epoch: int, gemm_floor_s: float,
              optimizer_floor_s: float | None = None, others: dict | None = None,
              extra: dict) -> tuple:
  """Human-readable lines and the JSON record of one benchmark run (pure).

  `others`: more rows, JSON key -> timing or None (``bf16``, ``torch_compile``, ``torch_bf16``).
  """
  fused_gflops, executed = flops_per_epoch / fused.seconds / 1e9, executed_flops_per_epoch
  executed_gflops = executed / fused.seconds / 1e9
  fraction, speedup_loop = fused_gflops / peak_gflops, loop.seconds / fused.seconds
  speedup_torch = None if torch is None else torch.seconds / fused.seconds
  lines, record = [f"{'method':<13} {'s/epoch':>9} {'samples/s':>11} {'warm-up s':>10} "
                   f"{'last loss':>10}  vs fused"], {}
  others = others or {}
  rows = [("fused", fused), ("loop", loop), *((k, v) for k, v in others.items()
                                              if not k.startswith("torch")),
          ("torch", torch), *((k, v) for k, v in others.items() if k.startswith("torch"))]
  for key, t in rows:
    line, keys = _row(key, t, fused)
    lines.append(line)
    record.update(keys)
  floors = None if optimizer_floor_s is None else gemm_floor_s + optimizer_floor_s
  over_floors = None if floors is None else fused.seconds / floors
  lines += [
      f"matmul peak: {peak_gflops:.1f} GFLOP/s (float32 jnp.dot, best at n={peak_size})",
      f"fused trainer: {flops_per_epoch / 1e9:.1f} GFLOP per epoch -> {fused_gflops:.1f} GFLOP/s "
      f"= {100 * fraction:.1f}% of peak (model FLOPs, 6 per weight and example)",
      f"  counting only the products executed (no input gradient of the first layer): "
      f"{executed / 1e9:.1f} GFLOP -> {executed_gflops:.1f} GFLOP/s "
      f"= {100 * executed_gflops / peak_gflops:.1f}% of peak",
      f"GEMM floor: the matrix products alone take {gemm_floor_s:.3f} s/epoch "
      f"({executed / gemm_floor_s / 1e9:.1f} GFLOP/s)"]
  if floors is not None:
    lines.append(
        f"optimizer floor: the epoch's {fused.steps} Adam updates alone take "
        f"{optimizer_floor_s:.3f} s/epoch; breakdown of the fused {fused.seconds:.3f} s/epoch: "
        f"products {gemm_floor_s:.3f} + optimizer {optimizer_floor_s:.3f} + the rest "
        f"{fused.seconds - floors:.3f} (= {over_floors:.3f}x the sum of the floors)")
  if torch is not None:
    lines.append(f"  {TARGET_SPEEDUP_VS_TORCH:g}x torch would need <= "
                 f"{torch.seconds / TARGET_SPEEDUP_VS_TORCH:.3f} s/epoch")
  targets = {"speedup_vs_torch": ("speedup over torch", speedup_torch, TARGET_SPEEDUP_VS_TORCH),
             "speedup_vs_loop": ("speedup over loop", speedup_loop, TARGET_SPEEDUP_VS_LOOP),
             "fraction_of_peak": ("fraction of matmul peak", fraction, TARGET_FRACTION_OF_PEAK),
             "over_floors": ("time over the sum of the floors", over_floors, TARGET_OVER_FLOORS)}
  met = {}
  for key, (what, value, target) in targets.items():
    scale, unit = (100, "%") if "fraction" in what else (1, "x")
    at_most = key == "over_floors"
    sign = "<=" if at_most else ">="
    met[key] = None if value is None else (value <= target if at_most else value >= target)
    lines.append(f"SKIP  fused {what} (not measured; target {sign} {scale * target:g}{unit})"
                 if value is None else
                 f"{'PASS' if met[key] else 'FAIL'}  fused {what}: {scale * value:.3g}"
                 f"{unit} (target {sign} {scale * target:g}{unit})")
  record.update(matmul_peak_gflops=peak_gflops, fused_gflops=fused_gflops,
                fused_fraction_of_peak=fraction, executed_flops_per_epoch=executed,
                fused_executed_gflops=executed_gflops, gemm_floor_s_per_epoch=gemm_floor_s,
                optimizer_floor_s_per_epoch=optimizer_floor_s, fused_over_floors=over_floors,
                speedup_vs_loop=speedup_loop, speedup_vs_torch=speedup_torch,
                flops_per_epoch=flops_per_epoch, steps_per_epoch=fused.steps,
                targets_met=met, **extra)
  return lines, record


def gpu_goals(platform: str, fused: MethodTiming, vmapped: Sequence[ModelsTiming]) -> tuple:
  """``(lines, met)`` of the GPU goals; SKIP (None) on other platforms, or without the 1- and
  64-model rows for the second goal."""
  per = {r.models: r.timing.seconds for r in vmapped}
  on_gpu = platform == "gpu"
  epoch = fused.seconds if on_gpu else None
  ratio = per[GPU_MODELS] / per[1] if on_gpu and 1 in per and GPU_MODELS in per else None
  met = {"gpu_epoch": None if epoch is None else epoch < GPU_EPOCH_SECONDS,
         "gpu_64_models": None if ratio is None else ratio < GPU_MODELS_FACTOR}
  why = "" if on_gpu else f" (a GPU goal; this run is on {platform})"
  lines = [
      f"SKIP  GPU epoch under {1000 * GPU_EPOCH_SECONDS:g} ms{why}" if epoch is None else
      f"{'PASS' if met['gpu_epoch'] else 'FAIL'}  GPU epoch: {1000 * epoch:.1f} ms "
      f"(goal < {1000 * GPU_EPOCH_SECONDS:g} ms)",
      f"SKIP  {GPU_MODELS} vmapped models under {GPU_MODELS_FACTOR:g}x one"
      f"{why or ' (needs --models with 1 and 64)'}" if ratio is None else
      f"{'PASS' if met['gpu_64_models'] else 'FAIL'}  {GPU_MODELS} vmapped models: "
      f"{ratio:.2f}x the time of one (goal < {GPU_MODELS_FACTOR:g}x)"]
  return lines, met


def models_lines(rows: Sequence[ModelsTiming]) -> list[str]:
  """The vmapped-throughput table: per model count, s/epoch, per model, compile s, memory."""
  if not rows:
    return []
  one = rows[0].timing.seconds / rows[0].models
  lines = [f"{'vmapped models':>14} {'s/epoch':>9} {'s/model/epoch':>14} {'vs 1 model':>10} "
           f"{'compile s':>10} {'memory MB':>10}"]
  for r in rows:
    per = r.timing.seconds / r.models
    memory = "-" if r.memory_bytes is None else f"{r.memory_bytes / 2**20:.0f}"
    lines.append(f"{r.models:>14} {r.timing.seconds:>9.3f} {per:>14.4f} {one / per:>9.2f}x "
                 f"{r.compile_seconds:>10.2f} {memory:>10}")
  return lines


def main(argv: Sequence[str] | None = None) -> dict:
  """Runs the benchmark, prints the report (last line: JSON) and returns the JSON record."""
  s = cli.parse(Settings, argv, prog="python -m experiments.benchmark", check=_problems,
                description="Seconds per MNIST training epoch; the last line printed is JSON.")
  env = outputs.print_device()
  has_torch = not s.no_torch and importlib.util.find_spec("torch") is not None
  torch = importlib.import_module("torch") if has_torch else None  # None: not measured
  libs = {"python": env["python"],
          **{k: env["versions"][k] for k in ("jax", "jaxlib", "flax", "optax", "numpy")},
          "torch": None if torch is None else torch.__version__}
  print("versions: " + ", ".join(f"{k} {v}" for k, v in libs.items() if v is not None))
  data = harness.load(s)
  images, labels = data.train_images, data.train_labels
  input_dim, steps = int(np.prod(images.shape[1:])), images.shape[0] // s.batch_size
  print(f"MLP {input_dim}-{'-'.join(map(str, s.hidden))}-{NUM_CLASSES}, Adam {LEARNING_RATE:g}, "
        f"batch {s.batch_size}, {steps} steps/epoch, median of {s.repeats} epoch(s)", flush=True)
  peak, peak_size = matmul_peak_gflops(s.matmul_sizes, s.matmul_repeats, s.seed)
  common = dict(hidden=s.hidden, batch_size=s.batch_size, repeats=s.repeats, seed=s.seed)
  fused, loop = bench_jax(images, labels, **common), bench_jax(images, labels, loop=True, **common)
  others = {"bf16": bench_jax(images, labels, precision="bf16", **common)}
  timings = {mode: None if torch is None else _torch_row(images, labels, mode, common)
             for mode in TORCH_ROWS}
  others.update(torch_compile=timings["torch.compile"], torch_bf16=timings["torch bf16"])
  vmapped = [bench_models(images, labels, models=m, **common) for m in s.models]
  floor = gemm_floor_seconds(input_dim, s.hidden, steps=steps, batch_size=s.batch_size,
                             repeats=s.repeats)
  opt_floor = optimizer_floor_seconds(input_dim, s.hidden, steps=steps, repeats=s.repeats)
  flops = [epoch_flops(steps, s.batch_size, input_dim, s.hidden, executed=e) for e in (False, True)]
  device = "{platform} ({device_kind}), {device_count} device(s), {cpu_count} CPUs".format(
      **env["device"])
  lines, record = summarize(
      fused, loop, timings["torch"], peak_gflops=peak, peak_size=peak_size,
      flops_per_epoch=flops[0], executed_flops_per_epoch=flops[1], gemm_floor_s=floor,
      optimizer_floor_s=opt_floor, others=others, extra={
          "device": device, "versions": libs, "batch_size": s.batch_size,
          "hidden": list(s.hidden), "train_examples": len(images), "repeats": s.repeats,
          "vmapped": [r.as_dict() for r in vmapped]})
  goal_lines, goals = gpu_goals(env["device"]["platform"], fused, vmapped)
  record["targets_met"].update(goals)
  print("\n".join([*lines, *goal_lines, *models_lines(vmapped), json.dumps(record)]), flush=True)
  return record


if __name__ == "__main__":
  main()
