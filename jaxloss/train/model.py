"""The multilayer perceptron used for the MNIST loss comparison (Flax Linen).

Used functionally::

  model = MLP(hidden=(512, 512))
  params = model.init(key, images_BxHxW)["params"]
  logits_BxC = model.apply({"params": params}, images_BxHxW)

Images go in as stored (uint8 pixels 0..255 on the device); flattening, the
cast to float32 and the 1/255 scaling happen inside the model, so they fuse
into the first matmul's program.
"""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["ACTIVATIONS", "MLP"]

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "gelu": jax.nn.gelu,
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "silu": jax.nn.silu,
}


class MLP(nn.Module):
  """Fully connected classifier: ``Dense -> activation`` per hidden layer, then ``Dense``.

  Attributes:
    hidden: widths of the hidden layers (``()`` gives a linear model).
    num_classes: number of output logits.
    activation: one of ``relu``, ``gelu``, ``tanh``, ``sigmoid``, ``silu``.

  Input: images ``[B, H, W]`` (or ``[B, H, W, 1]``) or flat ``[B, D]``, uint8
  or float, in pixel units 0..255 (floats are scaled by 1/255 as well).
  Output: float32 logits ``[B, num_classes]``.
  """

  hidden: tuple[int, ...] = (512, 512)
  num_classes: int = 10
  activation: str = "relu"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.activation not in ACTIVATIONS:
      raise ValueError(
          f"Unknown activation {self.activation!r}; valid: {', '.join(ACTIVATIONS)}.")
    act = ACTIVATIONS[self.activation]
    x = jnp.asarray(x)
    if x.ndim < 2:
      raise ValueError(f"MLP expects a batch [B, ...], got shape {x.shape}.")
    x = x.reshape(x.shape[0], -1).astype(jnp.float32) * (1.0 / 255.0)
    for width in self.hidden:
      x = act(nn.Dense(width)(x))
    return nn.Dense(self.num_classes)(x)
