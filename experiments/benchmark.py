"""Speed of one MNIST training epoch: fused JAX trainer vs a per-step loop vs PyTorch.

One epoch of the default MLP (784-512-512-10, ReLU; `jaxloss.train.MLP`), Adam
with learning rate 1e-3, batch 128, softmax cross-entropy, on the full MNIST
training set (60000 images, the ragged last batch dropped), in three ways:

* ``fused``: jaxloss' trainer, ``jax.jit(make_train_epoch(make_train_step(...), 128))``:
  the data is on the device once, each epoch is shuffled with a JAX PRNG key and
  the whole epoch is ONE call (``lax.scan`` over the steps);
* ``loop``: the common tutorial pattern: the same jitted ``train_step`` called
  from a Python loop, the batches sliced on the host from NumPy (a NumPy
  permutation per epoch) and transferred to the device at every step;
* ``torch``: PyTorch eager, the same architecture (``nn.Sequential``),
  ``torch.optim.Adam`` and ``F.cross_entropy``, the training set converted to
  float32 once before timing, ``torch.set_num_threads(os.cpu_count())``
  (skipped, reported as null, when PyTorch is not importable or ``--no-torch``).

A fourth measurement times hyperparameter grids: ``--grid R,S`` (default 5,5)
trains R learning rates (half decades from 1e-4) x S seeds as ONE vmapped
epoch program (the rate is data in each model's optimizer state, see
`jaxloss.train.make_optimizer`), and reports the seconds per model per epoch
for the grid next to the single fused model's (``--grid 0`` skips it).

Each is timed over ``--repeats`` epochs after one warm-up epoch (which includes
compilation); the median seconds per epoch is reported (JAX results are waited
for with ``block_until_ready``), with samples/s and the ratio to ``fused``.

The machine's float32 matmul peak is measured with a jitted ``jnp.dot`` of
square matrices (best GFLOP/s over the sizes and repeats), and compared with the
fused trainer's achieved rate, counting ``6 * batch * sum(weight-matrix sizes)``
FLOPs per step (forward 2x, backward 4x; biases, activations and the optimizer
are ignored: the usual "model FLOPs" convention). The FLOPs actually executed
are fewer (the images need no gradient, so the first layer's input-gradient
product is skipped) and are reported too, with a GEMM floor: the time of one
epoch's matrix products alone (`gemm_floor_seconds`), the bound no trainer on
the same kernels can beat.

Targets (printed as PASS/FAIL lines; the exit status is 0 either way): fused at
least 1.5x faster than PyTorch, at least 1.15x faster than the loop, and at
least 75% of the matmul peak.

The LAST line printed is one JSON object with (at least) the keys
``fused_s_per_epoch``, ``loop_s_per_epoch``, ``torch_s_per_epoch`` (null
without PyTorch), ``matmul_peak_gflops`` and ``fused_gflops``.

Usage::

  JAXLOSS_MNIST_DIR=/path/to/mnist python -m experiments.benchmark
  python -m experiments.benchmark --mnist-dir /path/to/mnist --repeats 5
  python -m experiments.benchmark --train-subset 2048 --repeats 1 --no-torch --hidden 64,64
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import time
from typing import Callable, Sequence

import flax
import jax
import jax.numpy as jnp
import jaxlib
import numpy as np
import optax

from jaxloss import softmax_cross_entropy_with_integer_labels
from jaxloss.train import (MLP, init_state, load_mnist, make_optimizer, make_train_epoch,
                           make_train_step, seed_keys, with_learning_rate)

__all__ = [
    "MethodTiming",
    "TARGET_FRACTION_OF_PEAK",
    "TARGET_SPEEDUP_VS_LOOP",
    "TARGET_SPEEDUP_VS_TORCH",
    "bench_fused",
    "bench_grid",
    "bench_loop",
    "bench_torch",
    "dense_weight_sizes",
    "device_description",
    "epoch_flops",
    "executed_epoch_flops",
    "gemm_floor_seconds",
    "main",
    "matmul_peak_gflops",
    "parse_args",
    "softmax_cross_entropy_loss",
    "summarize",
    "time_epochs",
    "versions",
]

NUM_CLASSES = 10
LEARNING_RATE = 1e-3
TARGET_SPEEDUP_VS_TORCH = 1.5
TARGET_SPEEDUP_VS_LOOP = 1.15
TARGET_FRACTION_OF_PEAK = 0.75


@dataclasses.dataclass(frozen=True)
class MethodTiming:
  """Timings of one training method.

  Attributes:
    name: ``fused``, ``loop`` or ``torch``.
    warmup_seconds: the warm-up epoch (compilation included for JAX).
    epoch_seconds: each timed epoch.
    steps: optimizer steps per epoch.
    batch_size: examples per step.
    final_loss: the training loss of the last step (a sanity check that the
      three methods train the same thing).
  """

  name: str
  warmup_seconds: float
  epoch_seconds: tuple[float, ...]
  steps: int
  batch_size: int
  final_loss: float

  @property
  def seconds(self) -> float:
    """Median seconds per timed epoch."""
    return statistics.median(self.epoch_seconds)

  @property
  def samples_per_second(self) -> float:
    """Training examples per second at the median epoch time."""
    return self.steps * self.batch_size / self.seconds


# ----------------------------------------------------------------------------
# Command line.


def _int_list(text: str) -> tuple[int, ...]:
  try:
    values = tuple(int(v) for v in text.split(",") if v.strip())
  except ValueError as err:
    raise argparse.ArgumentTypeError(
        f"expected a comma-separated list of integers, got {text!r}") from err
  if any(v < 1 for v in values):
    raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
  return values


def _grid(text: str) -> tuple[int, int] | None:
  if text.strip() == "0":
    return None
  values = _int_list(text)
  if len(values) != 2:
    raise argparse.ArgumentTypeError(f"expected R,S (two positive integers) or 0, got {text!r}")
  return values


def _positive_int(text: str) -> int:
  value = int(text)
  if value < 1:
    raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
  return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  """The command line (see ``python -m experiments.benchmark --help``)."""
  parser = argparse.ArgumentParser(
      prog="python -m experiments.benchmark",
      description=(
          "Seconds per MNIST training epoch of the default MLP (Adam 1e-3, softmax "
          "cross-entropy) for jaxloss' fused trainer (one jitted lax.scan per epoch), a "
          "jitted step in a Python loop fed from NumPy, and PyTorch eager; plus the "
          "float32 matmul peak and the fraction of it the fused trainer reaches. The last "
          "line printed is a JSON object with the results."),
      epilog=(
          f"Targets (PASS/FAIL lines, exit status 0 either way): fused >= "
          f"{TARGET_SPEEDUP_VS_TORCH:g}x faster than PyTorch, >= {TARGET_SPEEDUP_VS_LOOP:g}x "
          f"faster than the loop, >= {100 * TARGET_FRACTION_OF_PEAK:g}% of the matmul peak."))
  parser.add_argument(
      "--mnist-dir", default=None,
      help="folder with the four original MNIST .gz files (default: $JAXLOSS_MNIST_DIR)")
  parser.add_argument(
      "--data-dir", default=None,
      help="tensorflow-datasets data directory where MNIST is prepared once "
           "(default: $JAXLOSS_DATA_DIR, else ~/tensorflow_datasets)")
  parser.add_argument(
      "--repeats", type=_positive_int, default=3,
      help="timed epochs per method, after one warm-up epoch; the median is reported (default: 3)")
  parser.add_argument("--batch-size", type=_positive_int, default=128,
                      help="examples per step (default: 128)")
  parser.add_argument(
      "--hidden", type=_int_list, default=(512, 512),
      help="comma-separated hidden layer widths of the MLP (default: 512,512)")
  parser.add_argument(
      "--train-subset", type=_positive_int, default=None, metavar="N",
      help="use only the first N training images (quick runs and tests; default: all 60000)")
  parser.add_argument("--no-torch", action="store_true",
                      help="skip the PyTorch measurement (reported as null)")
  parser.add_argument(
      "--matmul-sizes", type=_int_list, default=(1024, 2048, 4096),
      help="square matrix sizes for the float32 matmul peak, the best GFLOP/s is kept "
           "(default: 1024,2048,4096)")
  parser.add_argument(
      "--matmul-repeats", type=_positive_int, default=3,
      help="timed matmuls per size, after one warm-up call (default: 3)")
  parser.add_argument(
      "--grid", type=_grid, default=(5, 5), metavar="R,S",
      help="also time R learning rates x S seeds trained as one vmapped program, per model "
           "and epoch (default: 5,5; 0 skips it)")
  parser.add_argument("--seed", type=int, default=0,
                      help="seed of the initializations and the shuffling (default: 0)")
  return parser.parse_args(argv)


# ----------------------------------------------------------------------------
# Environment.


def device_description() -> str:
  """``platform (device_kind)`` of JAX's default device, and the CPU count."""
  device = jax.devices()[0]
  return (f"{device.platform} ({device.device_kind}), {len(jax.devices())} device(s), "
          f"{os.cpu_count()} CPUs")


def _torch_module():
  """PyTorch, or None when it is not importable."""
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError:
    return None
  return torch


def versions(with_torch: bool = True) -> dict[str, str | None]:
  """Versions of Python, JAX, jaxlib, Flax, Optax, NumPy and (optionally) PyTorch."""
  torch = _torch_module() if with_torch else None
  return {
      "python": platform.python_version(),
      "jax": jax.__version__,
      "jaxlib": jaxlib.__version__,
      "flax": flax.__version__,
      "optax": optax.__version__,
      "numpy": np.__version__,
      "torch": None if torch is None else torch.__version__,
  }


# ----------------------------------------------------------------------------
# FLOP counts and the matmul peak.


def dense_weight_sizes(input_dim: int, hidden: Sequence[int],
                       num_classes: int = NUM_CLASSES) -> list[int]:
  """Number of weights of each dense layer's matrix, e.g. ``[784*512, 512*512, 512*10]``."""
  dims = [input_dim, *hidden, num_classes]
  return [a * b for a, b in zip(dims[:-1], dims[1:])]


def epoch_flops(steps: int, batch_size: int, weight_sizes: Sequence[int]) -> int:
  """Matmul FLOPs of one training epoch: ``steps * batch * 6 * sum(weight_sizes)``.

  Per weight and example: 2 FLOPs in the forward pass and 4 in the backward
  pass (gradients of the activations and of the weights); biases, activations,
  the loss and the optimizer update are ignored.
  """
  return steps * batch_size * 6 * int(sum(weight_sizes))


def executed_epoch_flops(steps: int, batch_size: int, weight_sizes: Sequence[int]) -> int:
  """Matmul FLOPs one epoch actually needs: `epoch_flops` minus the first layer's input gradient.

  The gradient with respect to the images is never needed, so XLA (and PyTorch)
  skip that product: per example ``4 * sum(weight_sizes) + 2 * sum(weight_sizes[1:])``.
  """
  return steps * batch_size * (4 * int(sum(weight_sizes)) + 2 * int(sum(weight_sizes[1:])))


def gemm_floor_seconds(input_dim: int, hidden: Sequence[int], *, steps: int, batch_size: int,
                       repeats: int = 3) -> float:
  """Seconds for the matrix products alone of one epoch, fused the same way (best of `repeats`).

  Per step, the MLP's forward products, the weight gradients and the
  activation gradients of every layer but the first, on constant data in a
  jitted `lax.scan`: no bias, activation, loss, optimizer or data shuffling.
  No trainer built on these products can run an epoch faster than this on the
  same matmul kernels.
  """
  dims = [input_dim, *hidden, NUM_CLASSES]
  weights = [jnp.full((a, b), 1e-3, jnp.float32) for a, b in zip(dims[:-1], dims[1:])]
  xs = jnp.ones((steps, batch_size, input_dim), jnp.float32)

  @jax.jit
  def products(weights, xs):
    def body(carry, x):
      acts = [x]
      for w in weights:
        acts.append(acts[-1] @ w)
      grad = acts[-1]
      total = carry
      for i in reversed(range(len(weights))):
        total = total + jnp.sum(acts[i].T @ grad)  # the weight gradient
        if i > 0:
          grad = grad @ weights[i].T  # the activation gradient
      return total, None
    return jax.lax.scan(body, jnp.zeros((), jnp.float32), xs)[0]

  products(weights, xs).block_until_ready()
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    products(weights, xs).block_until_ready()
    best = min(best, time.perf_counter() - t0)
  return best


def matmul_peak_gflops(sizes: Sequence[int] = (1024, 2048, 4096), repeats: int = 3,
                       seed: int = 0) -> tuple[float, int]:
  """Best float32 GFLOP/s of a jitted ``jnp.dot`` of two ``n x n`` matrices.

  Each size gets one warm-up call (compilation) and `repeats` timed calls;
  a call counts ``2 n^3`` FLOPs.

  Returns:
    ``(best GFLOP/s, the size that reached it)``.
  """
  dot = jax.jit(jnp.dot)
  best, best_size = 0.0, sizes[0]
  for n in sizes:
    ka, kb = jax.random.split(jax.random.fold_in(jax.random.key(seed), n))
    a = jax.random.normal(ka, (n, n), jnp.float32)
    b = jax.random.normal(kb, (n, n), jnp.float32)
    dot(a, b).block_until_ready()
    for _ in range(repeats):
      t0 = time.perf_counter()
      dot(a, b).block_until_ready()
      gflops = 2.0 * n**3 / (time.perf_counter() - t0) / 1e9
      if gflops > best:
        best, best_size = gflops, n
  return best, best_size


# ----------------------------------------------------------------------------
# The three training methods.


def softmax_cross_entropy_loss(logits, labels):
  """Mean softmax cross-entropy over the batch (the registry's ``softmax_cross_entropy``)."""
  return softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def time_epochs(run_epoch: Callable[[int], float],
                repeats: int) -> tuple[float, list[float], float]:
  """Runs ``run_epoch(epoch)`` once to warm up, then `repeats` timed times.

  `run_epoch` must return only once its work is finished (block on JAX
  results) and returns the last training loss.

  Returns:
    ``(warm-up seconds, timed seconds per epoch, last loss)``.
  """
  t0 = time.perf_counter()
  loss = run_epoch(0)
  warmup = time.perf_counter() - t0
  seconds = []
  for epoch in range(1, repeats + 1):
    t0 = time.perf_counter()
    loss = run_epoch(epoch)
    seconds.append(time.perf_counter() - t0)
  return warmup, seconds, float(loss)


def _jax_model_and_step(hidden: Sequence[int]):
  """The MLP, Adam 1e-3 and the pure training step shared by ``fused`` and ``loop``."""
  model = MLP(hidden=tuple(hidden), num_classes=NUM_CLASSES)
  tx = make_optimizer("adam", LEARNING_RATE)
  return model, tx, make_train_step(model.apply, tx, softmax_cross_entropy_loss)


def bench_fused(images: np.ndarray, labels: np.ndarray, *, hidden: Sequence[int],
                batch_size: int, repeats: int, seed: int = 0) -> MethodTiming:
  """jaxloss' trainer: the whole epoch (shuffle, gather, ``lax.scan``) in one jitted call.

  The data is put on the device once, before timing; epoch ``e`` shuffles
  with ``fold_in(data_key, e)`` as `jaxloss.train.iterate_training` does.
  """
  model, tx, step = _jax_model_and_step(hidden)
  x, y = jax.device_put((images, labels.astype(np.int32)))
  init_key, data_key = jax.random.split(jax.random.key(seed))
  state = init_state(model, tx, init_key, x[:1])
  train_epoch = jax.jit(make_train_epoch(step, batch_size))

  def run_epoch(epoch: int) -> float:
    nonlocal state
    state, metrics = train_epoch(state, jax.random.fold_in(data_key, epoch), x, y)
    jax.block_until_ready((state, metrics))
    return metrics["train_loss"]

  warmup, seconds, loss = time_epochs(run_epoch, repeats)
  steps = images.shape[0] // batch_size
  return MethodTiming("fused", warmup, tuple(seconds), steps, batch_size, loss)


def bench_grid(images: np.ndarray, labels: np.ndarray, *, hidden: Sequence[int],
               batch_size: int, repeats: int, grid: tuple[int, int],
               seed: int = 0) -> MethodTiming:
  """R rates x S seeds of the fused trainer as one program: the epoch ``jax.vmap``-ed.

  Rates ``1e-4 * 10**(i/2)`` (the protocol's half-decade grid), seeds
  ``seed .. seed+S-1``, each model keyed as `jaxloss.train.iterate_training`
  keys it. The timing is of all ``R * S`` models together; ``final_loss`` is
  their mean last loss.
  """
  n_rates, n_seeds = grid
  model, tx, step = _jax_model_and_step(hidden)
  x, y = jax.device_put((images, labels.astype(np.int32)))
  rates = np.repeat(1e-4 * 10.0 ** (np.arange(n_rates) / 2), n_seeds)
  init_keys, data_keys = seed_keys([seed + s for _ in range(n_rates) for s in range(n_seeds)])
  states = jax.vmap(lambda key: init_state(model, tx, key, x[:1]))(init_keys)
  states = states.replace(opt_state=with_learning_rate(states.opt_state, rates))
  train_epoch = jax.jit(jax.vmap(make_train_epoch(step, batch_size), in_axes=(0, 0, None, None)))
  fold = jax.jit(jax.vmap(jax.random.fold_in, in_axes=(0, None)))

  def run_epoch(epoch: int) -> float:
    nonlocal states
    states, metrics = train_epoch(states, fold(data_keys, epoch), x, y)
    jax.block_until_ready((states, metrics))
    return jnp.mean(metrics["train_loss"])

  warmup, seconds, loss = time_epochs(run_epoch, repeats)
  steps = images.shape[0] // batch_size
  return MethodTiming(f"grid{n_rates}x{n_seeds}", warmup, tuple(seconds), steps, batch_size, loss)


def bench_loop(images: np.ndarray, labels: np.ndarray, *, hidden: Sequence[int],
               batch_size: int, repeats: int, seed: int = 0) -> MethodTiming:
  """The tutorial pattern: a jitted step called per batch, batches sliced on the host.

  Every epoch draws a NumPy permutation; every step slices its batch from the
  NumPy arrays and transfers it (``jax.device_put``) before calling the step.
  The training loss is read back once per epoch (the state is blocked on).
  """
  model, tx, step = _jax_model_and_step(hidden)
  labels = labels.astype(np.int32)
  state = init_state(model, tx, jax.random.key(seed), jax.device_put(images[:1]))
  train_step = jax.jit(step)
  rng = np.random.default_rng(seed)
  steps = images.shape[0] // batch_size

  def run_epoch(epoch: int) -> float:
    del epoch
    nonlocal state
    perm = rng.permutation(images.shape[0])
    metrics = None
    for i in range(steps):
      idx = perm[i * batch_size:(i + 1) * batch_size]
      batch = jax.device_put((images[idx], labels[idx]))
      state, metrics = train_step(state, batch)
    jax.block_until_ready((state, metrics))
    return metrics["train_loss"]

  warmup, seconds, loss = time_epochs(run_epoch, repeats)
  return MethodTiming("loop", warmup, tuple(seconds), steps, batch_size, loss)


def bench_torch(images: np.ndarray, labels: np.ndarray, *, hidden: Sequence[int],
                batch_size: int, repeats: int, seed: int = 0) -> MethodTiming | None:
  """PyTorch eager with the same architecture, Adam 1e-3 and ``F.cross_entropy``.

  The training set is converted to a float32 tensor in ``[0, 1]`` once, before
  timing; every epoch draws a ``torch.randperm`` and slices the batches from it.
  Uses all CPUs (``torch.set_num_threads(os.cpu_count())``).

  Returns:
    The timings, or None when PyTorch is not importable.
  """
  torch = _torch_module()
  if torch is None:
    return None
  from torch import nn  # pylint: disable=import-outside-toplevel
  from torch.nn import functional as F  # pylint: disable=import-outside-toplevel

  torch.set_num_threads(os.cpu_count() or 1)
  torch.manual_seed(seed)
  x = torch.from_numpy(images.reshape(images.shape[0], -1).astype(np.float32) / 255.0)
  y = torch.from_numpy(labels.astype(np.int64))
  dims = [x.shape[1], *hidden]
  layers: list[nn.Module] = []
  for a, b in zip(dims[:-1], dims[1:]):
    layers += [nn.Linear(a, b), nn.ReLU()]
  model = nn.Sequential(*layers, nn.Linear(dims[-1], NUM_CLASSES))
  optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
  generator = torch.Generator().manual_seed(seed)
  steps = x.shape[0] // batch_size

  def run_epoch(epoch: int) -> float:
    del epoch
    perm = torch.randperm(x.shape[0], generator=generator)
    loss = None
    for i in range(steps):
      idx = perm[i * batch_size:(i + 1) * batch_size]
      optimizer.zero_grad(set_to_none=True)
      loss = F.cross_entropy(model(x[idx]), y[idx])
      loss.backward()
      optimizer.step()
    return loss.item()

  model.train()
  warmup, seconds, loss = time_epochs(run_epoch, repeats)
  return MethodTiming("torch", warmup, tuple(seconds), steps, batch_size, loss)


# ----------------------------------------------------------------------------
# Report.


def _target_line(name: str, value: float | None, target: float, unit: str) -> str:
  if value is None:
    return f"SKIP  {name} (not measured; target >= {target:g}{unit})"
  verdict = "PASS" if value >= target else "FAIL"
  return f"{verdict}  {name}: {value:.3g}{unit} (target >= {target:g}{unit})"


def summarize(fused: MethodTiming, loop: MethodTiming, torch: MethodTiming | None, *,
              peak_gflops: float, peak_size: int, flops_per_epoch: int,
              executed_flops_per_epoch: int | None = None, gemm_floor_s: float | None = None,
              extra: dict | None = None) -> tuple[list[str], dict]:
  """Human-readable lines and the JSON record of one benchmark run (pure)."""
  fused_gflops = flops_per_epoch / fused.seconds / 1e9
  executed = flops_per_epoch if executed_flops_per_epoch is None else executed_flops_per_epoch
  executed_gflops = executed / fused.seconds / 1e9
  fraction = fused_gflops / peak_gflops
  speedup_loop = loop.seconds / fused.seconds
  speedup_torch = None if torch is None else torch.seconds / fused.seconds

  lines = [f"{'method':<6} {'s/epoch':>9} {'samples/s':>11} {'warm-up s':>10} "
           f"{'last loss':>10}  vs fused"]
  for timing in (fused, loop, torch):
    if timing is None:
      lines.append(f"{'torch':<6} {'-':>9} {'-':>11} {'-':>10} {'-':>10}  (not measured)")
      continue
    ratio = timing.seconds / fused.seconds
    versus = ("reference" if timing is fused else
              f"{ratio:.2f}x slower than fused (fused speedup {ratio:.2f}x)")
    lines.append(f"{timing.name:<6} {timing.seconds:>9.3f} {timing.samples_per_second:>11.0f} "
                 f"{timing.warmup_seconds:>10.2f} {timing.final_loss:>10.4f}  {versus}")
  lines += [
      f"matmul peak: {peak_gflops:.1f} GFLOP/s (float32 jnp.dot, best at n={peak_size})",
      f"fused trainer: {flops_per_epoch / 1e9:.1f} GFLOP per epoch -> {fused_gflops:.1f} GFLOP/s "
      f"= {100 * fraction:.1f}% of peak (model FLOPs, 6 per weight and example)",
      f"  counting only the products executed (no input gradient of the first layer): "
      f"{executed / 1e9:.1f} GFLOP -> {executed_gflops:.1f} GFLOP/s "
      f"= {100 * executed_gflops / peak_gflops:.1f}% of peak",
  ]
  if gemm_floor_s is not None:
    lines.append(
        f"GEMM floor: the matrix products alone take {gemm_floor_s:.3f} s/epoch "
        f"({executed / gemm_floor_s / 1e9:.1f} GFLOP/s); the fused trainer spends "
        f"{fused.seconds - gemm_floor_s:.3f} s/epoch on everything else")
    if torch is not None:
      lines.append(
          f"  {TARGET_SPEEDUP_VS_TORCH:g}x torch would need <= "
          f"{torch.seconds / TARGET_SPEEDUP_VS_TORCH:.3f} s/epoch")
  lines += [
      _target_line("fused speedup over torch", speedup_torch, TARGET_SPEEDUP_VS_TORCH, "x"),
      _target_line("fused speedup over loop", speedup_loop, TARGET_SPEEDUP_VS_LOOP, "x"),
      _target_line("fused fraction of matmul peak", 100 * fraction,
                   100 * TARGET_FRACTION_OF_PEAK, "%"),
  ]
  record = {
      "fused_s_per_epoch": fused.seconds,
      "loop_s_per_epoch": loop.seconds,
      "torch_s_per_epoch": None if torch is None else torch.seconds,
      "matmul_peak_gflops": peak_gflops,
      "fused_gflops": fused_gflops,
      "fused_fraction_of_peak": fraction,
      "executed_flops_per_epoch": executed,
      "fused_executed_gflops": executed_gflops,
      "gemm_floor_s_per_epoch": gemm_floor_s,
      "speedup_vs_loop": speedup_loop,
      "speedup_vs_torch": speedup_torch,
      "fused_samples_per_s": fused.samples_per_second,
      "loop_samples_per_s": loop.samples_per_second,
      "torch_samples_per_s": None if torch is None else torch.samples_per_second,
      "fused_epoch_seconds": list(fused.epoch_seconds),
      "loop_epoch_seconds": list(loop.epoch_seconds),
      "torch_epoch_seconds": None if torch is None else list(torch.epoch_seconds),
      "flops_per_epoch": flops_per_epoch,
      "steps_per_epoch": fused.steps,
      "targets_met": {
          "speedup_vs_torch": (None if speedup_torch is None
                               else speedup_torch >= TARGET_SPEEDUP_VS_TORCH),
          "speedup_vs_loop": speedup_loop >= TARGET_SPEEDUP_VS_LOOP,
          "fraction_of_peak": fraction >= TARGET_FRACTION_OF_PEAK,
      },
      **(extra or {}),
  }
  return lines, record


def main(argv: Sequence[str] | None = None) -> dict:
  """Runs the benchmark, prints the report (last line: JSON) and returns the JSON record."""
  args = parse_args(argv)

  device = device_description()
  libs = versions(with_torch=not args.no_torch)
  print(f"device: {device}")
  print("versions: " + ", ".join(f"{k} {v}" for k, v in libs.items() if v is not None))
  data = load_mnist(mnist_dir=args.mnist_dir, data_dir=args.data_dir)
  data = data.subset(train=args.train_subset)
  images, labels = data.train_images, data.train_labels
  input_dim = int(np.prod(images.shape[1:]))
  steps = images.shape[0] // args.batch_size
  if steps == 0:
    raise SystemExit(
        f"--batch-size {args.batch_size} exceeds the {images.shape[0]} training images.")
  print(f"MLP {input_dim}-{'-'.join(map(str, args.hidden))}-{NUM_CLASSES}, "
        f"Adam {LEARNING_RATE:g}, batch {args.batch_size}, {images.shape[0]} training images, "
        f"{steps} steps/epoch, median of {args.repeats} epoch(s) after 1 warm-up", flush=True)

  peak, peak_size = matmul_peak_gflops(args.matmul_sizes, args.matmul_repeats, args.seed)
  common = dict(hidden=args.hidden, batch_size=args.batch_size, repeats=args.repeats,
                seed=args.seed)
  fused = bench_fused(images, labels, **common)
  loop = bench_loop(images, labels, **common)
  torch = None if args.no_torch else bench_torch(images, labels, **common)
  grid = None if args.grid is None else bench_grid(images, labels, grid=args.grid, **common)
  sizes = dense_weight_sizes(input_dim, args.hidden)
  floor = gemm_floor_seconds(input_dim, args.hidden, steps=steps, batch_size=args.batch_size,
                             repeats=max(args.repeats, 1))
  lines, record = summarize(
      fused, loop, torch, peak_gflops=peak, peak_size=peak_size,
      flops_per_epoch=epoch_flops(steps, args.batch_size, sizes),
      executed_flops_per_epoch=executed_epoch_flops(steps, args.batch_size, sizes),
      gemm_floor_s=floor,
      extra={"device": device, "versions": libs, "batch_size": args.batch_size,
             "hidden": list(args.hidden), "train_examples": int(images.shape[0]),
             "repeats": args.repeats})
  if grid is not None:
    models = args.grid[0] * args.grid[1]
    per_model = grid.seconds / models
    lines.append(
        f"grid {args.grid[0]}x{args.grid[1]} (rates x seeds, {models} models, one program): "
        f"{grid.seconds:.3f} s/epoch = {per_model:.4f} s per model per epoch, vs "
        f"{fused.seconds:.4f} for 1 model ({fused.seconds / per_model:.2f}x the throughput; "
        f"warm-up {grid.warmup_seconds:.2f} s)")
    record.update(grid=list(args.grid), grid_s_per_epoch=grid.seconds,
                  grid_s_per_model_epoch=per_model, single_s_per_model_epoch=fused.seconds,
                  grid_epoch_seconds=list(grid.epoch_seconds))
  print("\n".join(lines))
  print(json.dumps(record), flush=True)
  return record


if __name__ == "__main__":
  main(sys.argv[1:])
