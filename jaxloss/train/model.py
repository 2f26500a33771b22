"""The multilayer perceptron used for the MNIST loss comparison (Flax Linen).

Used functionally::

  model = MLP(hidden=(512, 512))
  params = model.init(key, images_BxHxW)["params"]
  logits_BxC = model.apply({"params": params}, images_BxHxW)

Images go in as stored (uint8 pixels 0..255 on the device); flattening, the
cast to float32 and the 1/255 scaling happen inside the model, so they fuse
into the first matmul's program.

``precision="bf16"`` is mixed precision as on accelerators: each matrix
product takes bfloat16 inputs (activations and weights rounded to bf16) and
accumulates in float32; parameters, biases, activations between layers, the
logits, the loss and the optimizer state stay float32.
"""

from __future__ import annotations

import functools
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["ACTIVATIONS", "INITS", "MLP", "PRECISIONS"]

PRECISIONS = ("float32", "bf16")


def _bf16_operands(inputs, kernel, bias, dtype=None):
  """Flax ``Dense.promote_dtype`` for ``precision="bf16"``: bf16 matmul operands, f32 bias."""
  del dtype
  return inputs.astype(jnp.bfloat16), kernel.astype(jnp.bfloat16), bias


# bf16 x bf16 products accumulated and returned in float32.
_dot_f32 = functools.partial(jax.lax.dot_general, preferred_element_type=jnp.float32)

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "gelu": jax.nn.gelu,
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "silu": jax.nn.silu,
}


def _torch_uniform(fan_in_axis: int = 0):
  """PyTorch's `nn.Linear` default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""

  def init(key, shape, dtype=jnp.float32, *, fan_in=None):
    fan_in = shape[fan_in_axis] if fan_in is None else fan_in
    bound = 1.0 / jnp.sqrt(jnp.asarray(fan_in, jnp.float32))
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


# name -> (kernel_init, bias_init(fan_in)) of every Dense layer.
INITS: dict[str, Callable] = {
    # Flax's default: LeCun-normal weights, zero biases.
    "lecun_normal": lambda fan_in: (nn.initializers.lecun_normal(), nn.initializers.zeros),
    # The fastai book's `init_params`: N(0, 1) weights and biases (chapter 4).
    "standard_normal": lambda fan_in: (nn.initializers.normal(1.0), nn.initializers.normal(1.0)),
    # PyTorch's nn.Linear default, weights and biases U(+-1/sqrt(fan_in)).
    "torch": lambda fan_in: (_torch_uniform(),
                             lambda key, shape, dtype=jnp.float32: _torch_uniform()(
                                 key, shape, dtype, fan_in=fan_in)),
}


class MLP(nn.Module):
  """Fully connected classifier: ``Dense -> activation`` per hidden layer, then ``Dense``.

  Attributes:
    hidden: widths of the hidden layers (``()`` gives a linear model).
    num_classes: number of output logits.
    activation: one of ``relu``, ``gelu``, ``tanh``, ``sigmoid``, ``silu``.
    initializer: initialization of every layer, one of `INITS`: ``lecun_normal``
      (Flax's default), ``standard_normal`` (the fastai book's ``init_params``)
      or ``torch`` (PyTorch's ``nn.Linear`` default).
    precision: ``"float32"``, or ``"bf16"``: bfloat16 matmul inputs with float32
      accumulation, float32 everything else (see the module docstring).

  Input: images ``[B, H, W]`` (or ``[B, H, W, 1]``) or flat ``[B, D]``, uint8
  or float, in pixel units 0..255 (floats are scaled by 1/255 as well).
  Output: float32 logits ``[B, num_classes]``.
  """

  hidden: tuple[int, ...] = (512, 512)
  num_classes: int = 10
  activation: str = "relu"
  initializer: str = "lecun_normal"
  precision: str = "float32"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.activation not in ACTIVATIONS:
      raise ValueError(
          f"Unknown activation {self.activation!r}; valid: {', '.join(ACTIVATIONS)}.")
    if self.initializer not in INITS:
      raise ValueError(f"Unknown initializer {self.initializer!r}; valid: {', '.join(INITS)}.")
    if self.precision not in PRECISIONS:
      raise ValueError(f"Unknown precision {self.precision!r}; valid: {', '.join(PRECISIONS)}.")
    mixed = {"promote_dtype": _bf16_operands, "dot_general": _dot_f32} \
        if self.precision == "bf16" else {}
    act = ACTIVATIONS[self.activation]
    x = jnp.asarray(x)
    if x.ndim < 2:
      raise ValueError(f"MLP expects a batch [B, ...], got shape {x.shape}.")
    x = x.reshape(x.shape[0], -1).astype(jnp.float32) * (1.0 / 255.0)
    def dense(width, x):
      kernel_init, bias_init = INITS[self.initializer](x.shape[-1])
      return nn.Dense(width, kernel_init=kernel_init, bias_init=bias_init, **mixed)(x)

    for width in self.hidden:
      x = act(dense(width, x))
    return dense(self.num_classes, x)
