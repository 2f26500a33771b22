"""Learnable stand-in 'images' for the training tests (not a test module itself)."""

import numpy as np

from jaxloss import train as jt


def prototype_images(n_train: int, n_test: int, *, num_classes: int = 4, side: int = 6,
                     seed: int = 0) -> jt.Mnist:
  """A class prototype plus noise: uint8 ``[N, side, side]`` images, int32 labels.

  Every class has a random prototype image; an example is its class's prototype
  plus Gaussian noise (sd 60), clipped to 0..255. The same arguments give the same
  data in every process.
  """
  rng = np.random.default_rng(seed)
  protos = rng.integers(0, 256, (num_classes, side, side))

  def split(n):
    labels = rng.integers(0, num_classes, n).astype(np.int32)
    noise = rng.normal(0.0, 60.0, (n, side, side))
    return np.clip(protos[labels] + noise, 0, 255).astype(np.uint8), labels

  return jt.Mnist(*split(n_train), *split(n_test))
