"""Host-side (NumPy) dataset constructions for the experiments (experiment-only data).

Every function works on NumPy arrays (usually a `Mnist`), keeps no global state and draws
only from an explicit integer ``seed``: the same seed gives identical arrays on every call.

* `binary_digits`: two digits only, labels 1 / 0 (fastai book, chapter 4: 3s vs 7s).
* `two_digit_images` / `two_digit_mnist`: two different digits side by side (``[28, 56]``
  images) with multi-hot targets, for multi-label losses.
* `multi_digit_images`: 1 to 3 (any counts) different digits in random slots of a
  ``[28, 28 * slots]`` canvas, so that the number of labels is unknown.
* `open_set_split`: train on some digits, keep the others as unseen test images.
* `non_digit_images` / `with_na_class`: synthetic (or given real) images as an extra "not a
  digit" class.
* `symmetric_label_noise`: flips an exact fraction of labels to other classes.

The generic validation split is `jaxloss.train.validation_split`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jaxloss.train.data import Mnist

__all__ = ["binary_digits", "multi_digit_images", "non_digit_images", "open_set_split",
           "symmetric_label_noise", "two_digit_images", "two_digit_mnist", "with_na_class"]

_SIDE = 28  # MNIST images are _SIDE x _SIDE.


def _derived_seeds(seed: int, count: int) -> list[int]:
  """`count` independent integer seeds derived from `seed` (one per split / use)."""
  return [int(s) for s in np.random.SeedSequence(seed).generate_state(count)]


def _integer_labels(labels, name: str = "labels") -> np.ndarray:
  labels = np.asarray(labels)
  if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"{name} must be a 1-D integer array, got dtype {labels.dtype} "
                     f"and shape {labels.shape}")
  return labels


def binary_digits(data: Mnist, positive: int = 3, negative: int = 7) -> Mnist:
  """Only the images of two digits, labelled 1 (`positive`) and 0 (`negative`).

  The fastai book's chapter-4 setup ("3s vs 7s", the 3s being target 1); both splits keep
  their order.

  Args:
    data: a `Mnist` with integer labels ``[N]``.
    positive: the digit labelled 1.
    negative: the digit labelled 0.

  Returns:
    A `Mnist`: images as in `data`, int32 labels ``[M]`` in ``{0, 1}``.
  """
  if positive == negative:
    raise ValueError(f"positive and negative must differ, both are {positive}")

  def split(images, labels):
    labels = _integer_labels(labels)
    keep = (labels == positive) | (labels == negative)
    return images[keep], (labels[keep] == positive).astype(np.int32)

  return Mnist(*split(data.train_images, data.train_labels),
               *split(data.test_images, data.test_labels))


def two_digit_images(images, labels, *, n: int, seed: int,
                     num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
  """Images of two different digits side by side, with multi-hot targets.

  Each of the `n` examples is ``left | right`` (along the width): `left` drawn uniformly
  from `images`, `right` uniformly among the images of the other digits.

  Args:
    images: ``[N, 28, 28]`` images (uint8).
    labels: integer digits ``[N]`` in ``[0, num_classes)``, at least two distinct.
    n: number of examples to build.
    seed: seed of the draws.
    num_classes: length of the multi-hot target.

  Returns:
    ``(images, targets)``: uint8 ``[n, 28, 56]`` and float32 ``[n, num_classes]`` with
    exactly two ones, at the two digits.

  Example:
    >>> images = np.stack([np.full((28, 28), d, np.uint8) for d in range(3)])
    >>> x, y = two_digit_images(images, np.arange(3), n=2, seed=0, num_classes=3)
    >>> x.shape, x.dtype, y.dtype, y.sum(axis=1).tolist()
    ((2, 28, 56), dtype('uint8'), dtype('float32'), [2.0, 2.0])
  """
  images = np.asarray(images)
  labels = _integer_labels(labels)
  if images.ndim != 3 or len(images) != len(labels):
    raise ValueError(f"images must be [N, H, W] matching labels [N], got {images.shape} "
                     f"and {labels.shape}")
  if n < 0:
    raise ValueError(f"n must be non-negative, got {n}")
  if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
    raise ValueError(f"labels must be in [0, {num_classes}), got range "
                     f"[{labels.min()}, {labels.max()}]")
  if np.unique(labels).size < 2:
    raise ValueError("two_digit_images needs images of at least two different digits")
  rng = np.random.default_rng(seed)
  left = rng.integers(0, len(labels), size=n)
  right = rng.integers(0, len(labels), size=n)
  # Rejection sampling: redraw each right image whose digit equals the left one.
  same = labels[left] == labels[right]
  while same.any():
    right[same] = rng.integers(0, len(labels), size=int(same.sum()))
    same = labels[left] == labels[right]
  pairs = np.concatenate([images[left], images[right]], axis=2).astype(np.uint8)
  targets = np.zeros((n, num_classes), np.float32)
  rows = np.arange(n)
  targets[rows, labels[left]] = 1.0
  targets[rows, labels[right]] = 1.0
  return pairs, targets


def two_digit_mnist(data: Mnist, *, train_size: int = 60000, test_size: int = 10000,
                    seed: int = 0) -> Mnist:
  """`two_digit_images` for both splits (each from its own split): a multi-label MNIST.

  Args:
    data: a `Mnist` with integer labels 0..9.
    train_size: number of training pairs.
    test_size: number of test pairs.
    seed: seed from which the two per-split seeds are derived.

  Returns:
    A `Mnist` whose images are uint8 ``[size, 28, 56]`` and whose ``*_labels`` fields
    hold float32 multi-hot targets ``[size, 10]`` (two ones each).
  """
  train_seed, test_seed = _derived_seeds(seed, 2)
  return Mnist(*two_digit_images(data.train_images, data.train_labels, n=train_size,
                                 seed=train_seed),
               *two_digit_images(data.test_images, data.test_labels, n=test_size,
                                 seed=test_seed))


def multi_digit_images(images, labels, *, n: int, seed: int, counts: Sequence[int] = (1, 2, 3),
                       num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
  """Images of 1 to 3 (any of `counts`) different digits in random slots, with multi-hot targets.

  The canvas has ``max(counts)`` slots of 28x28 side by side. Each of the `n` examples
  draws its count uniformly from `counts`, its first image uniformly from `images`, each
  next one uniformly among the images of the digits not yet drawn (so the digits of an
  image differ, as in `two_digit_images`), and puts them in that many slots chosen
  uniformly; the other slots stay blank (0). A model therefore sees neither the count nor
  where the digits are, and a decoder of its outputs must find the count itself.

  Args:
    images: ``[N, 28, 28]`` images (uint8).
    labels: integer digits ``[N]`` in ``[0, num_classes)``, at least ``max(counts)`` distinct.
    n: number of examples to build.
    seed: seed of the draws (counts, images, slots).
    counts: the digit counts, distinct, each in ``[1, num_classes]``.
    num_classes: length of the multi-hot target.

  Returns:
    ``(images, targets)``: uint8 ``[n, 28, 28 * max(counts)]`` and float32
    ``[n, num_classes]`` with ones at the digits shown (``targets.sum(1)`` is the count).

  Example:
    >>> images = np.stack([np.full((28, 28), d + 1, np.uint8) for d in range(4)])
    >>> x, y = multi_digit_images(images, np.arange(4), n=3, seed=0, num_classes=4)
    >>> x.shape, x.dtype, y.dtype, y.sum(axis=1).tolist()
    ((3, 28, 84), dtype('uint8'), dtype('float32'), [3.0, 2.0, 2.0])
  """
  images = np.asarray(images)
  labels = _integer_labels(labels)
  counts = [int(c) for c in counts]
  if images.ndim != 3 or images.shape[1:] != (_SIDE, _SIDE) or len(images) != len(labels):
    raise ValueError(f"images must be [N, {_SIDE}, {_SIDE}] matching labels [N], got "
                     f"{images.shape} and {labels.shape}")
  if n < 0:
    raise ValueError(f"n must be non-negative, got {n}")
  if not counts or len(set(counts)) != len(counts) or min(counts) < 1 \
      or max(counts) > num_classes:
    raise ValueError(f"counts must be distinct integers in [1, {num_classes}], got {counts}")
  if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
    raise ValueError(f"labels must be in [0, {num_classes}), got range "
                     f"[{labels.min()}, {labels.max()}]")
  slots = max(counts)
  if np.unique(labels).size < slots:
    raise ValueError(f"multi_digit_images needs images of at least {slots} different digits "
                     f"(counts up to {slots}), got {np.unique(labels).size}")
  rng = np.random.default_rng(seed)
  count_N = rng.choice(np.asarray(counts), size=n)
  # Image j of every example: redrawn while its digit equals an earlier one of the example
  # (rejection sampling; drawn for every slot, used for the first count_N of them).
  pick_NxS = np.zeros((n, slots), np.int64)
  for j in range(slots):
    pick_NxS[:, j] = rng.integers(0, len(labels), size=n)
    same = np.any(labels[pick_NxS[:, :j]] == labels[pick_NxS[:, j:j + 1]], axis=1)
    while same.any():
      pick_NxS[same, j] = rng.integers(0, len(labels), size=int(same.sum()))
      same = np.any(labels[pick_NxS[:, :j]] == labels[pick_NxS[:, j:j + 1]], axis=1)
  slot_NxS = np.argsort(rng.random((n, slots)), axis=1)  # image j goes to slot slot_NxS[:, j]
  canvas = np.zeros((n, slots, _SIDE, _SIDE), np.uint8)
  targets = np.zeros((n, num_classes), np.float32)
  for j in range(slots):
    rows = np.flatnonzero(j < count_N)
    canvas[rows, slot_NxS[rows, j]] = images[pick_NxS[rows, j]]
    targets[rows, labels[pick_NxS[rows, j]]] = 1.0
  return canvas.transpose(0, 2, 1, 3).reshape(n, _SIDE, slots * _SIDE), targets


def open_set_split(data: Mnist, seen: Sequence[int] = (0, 1, 2, 3, 4)
                   ) -> tuple[Mnist, np.ndarray, np.ndarray]:
  """Splits digits into seen (trained on) and unseen (open-set test) ones.

  Args:
    data: a `Mnist` with integer labels ``[N]``.
    seen: the digits kept for training, distinct; their labels are remapped
      to ``0..len(seen)-1`` in this order.

  Returns:
    ``(mnist, unseen_test_images, unseen_test_labels)``: a `Mnist` holding only the seen
    digits in both splits (order preserved, int32 remapped labels); the test images of
    every other digit; and their original digits (int32).
  """
  seen = [int(d) for d in seen]
  if not seen or len(set(seen)) != len(seen) or min(seen) < 0:
    raise ValueError(f"seen must be distinct non-negative digits, got {seen}")
  train_labels = _integer_labels(data.train_labels, "train_labels")
  test_labels = _integer_labels(data.test_labels, "test_labels")
  seen_array = np.asarray(seen)

  def keep(labels):
    mask = np.isin(labels, seen_array)
    # argmax over the one matching position gives the index of the digit in `seen`.
    remapped = np.argmax(labels[mask][:, None] == seen_array[None, :], axis=1)
    return mask, remapped.astype(np.int32)

  train_mask, train_remapped = keep(train_labels)
  test_mask, test_remapped = keep(test_labels)
  known = Mnist(data.train_images[train_mask], train_remapped,
                data.test_images[test_mask], test_remapped)
  return known, data.test_images[~test_mask], test_labels[~test_mask].astype(np.int32)


def _grid() -> tuple[np.ndarray, np.ndarray]:
  """Pixel-centre coordinates (rows, cols), each ``[1, 28, 28]`` float."""
  r, c = np.mgrid[0:_SIDE, 0:_SIDE].astype(np.float64)
  return r[None], c[None]


def _noise(rng: np.random.Generator, m: int) -> np.ndarray:
  # Sparse uniform noise: each pixel lit with an image-specific probability.
  density = rng.uniform(0.05, 0.35, size=(m, 1, 1))
  lit = rng.random((m, _SIDE, _SIDE)) < density
  return lit * rng.uniform(0.0, 255.0, size=(m, _SIDE, _SIDE))


def _blobs(rng: np.random.Generator, m: int, k: int = 3) -> np.ndarray:
  r, c = _grid()
  centre = rng.uniform(3.0, _SIDE - 4.0, size=(m, k, 2, 1, 1))
  sigma = rng.uniform(1.5, 5.0, size=(m, k, 1, 1))
  # 1..k blobs per image: unused blobs get amplitude 0.
  count = rng.integers(1, k + 1, size=(m, 1))
  amplitude = rng.uniform(120.0, 300.0, size=(m, k)) * (np.arange(k)[None] < count)
  d2 = (r[:, None] - centre[:, :, 0]) ** 2 + (c[:, None] - centre[:, :, 1]) ** 2
  return np.sum(amplitude[..., None, None] * np.exp(-d2 / (2 * sigma ** 2)), axis=1)


def _strokes(rng: np.random.Generator, m: int, k: int = 3) -> np.ndarray:
  r, c = _grid()
  # 2..k straight segments (one could pass for a "1"), ~1-3 px wide: each pixel's distance.
  p = rng.uniform(2.0, _SIDE - 3.0, size=(m, k, 2, 1, 1))
  q = rng.uniform(2.0, _SIDE - 3.0, size=(m, k, 2, 1, 1))
  d = q - p
  length2 = np.maximum(d[:, :, 0] ** 2 + d[:, :, 1] ** 2, 1e-9)
  t = np.clip(((r[:, None] - p[:, :, 0]) * d[:, :, 0]
               + (c[:, None] - p[:, :, 1]) * d[:, :, 1]) / length2, 0.0, 1.0)
  dist = np.hypot(r[:, None] - p[:, :, 0] - t * d[:, :, 0],
                  c[:, None] - p[:, :, 1] - t * d[:, :, 1])
  width = rng.uniform(0.6, 1.6, size=(m, k, 1, 1))
  count = rng.integers(2, k + 1, size=(m, 1))
  intensity = rng.uniform(150.0, 255.0, size=(m, k)) * (np.arange(k)[None] < count)
  # Soft edge over one pixel, like anti-aliased MNIST pen strokes.
  lines = np.max(intensity[..., None, None] * np.clip(width + 0.5 - dist, 0.0, 1.0), axis=1)
  # Half of these images also get an axis-aligned rectangle outline.
  top, left = rng.integers(1, 14, size=(2, m, 1, 1))
  height, wide = rng.integers(6, 14, size=(2, m, 1, 1))
  inside = (r >= top) & (r <= top + height) & (c >= left) & (c <= left + wide)
  interior = (r > top + 1) & (r < top + height - 1) & (c > left + 1) & (c < left + wide - 1)
  outline = inside & ~interior & (rng.random((m, 1, 1)) < 0.5)
  return np.maximum(lines, outline * rng.uniform(150.0, 255.0, size=(m, 1, 1)))


def _patterns(rng: np.random.Generator, m: int) -> np.ndarray:
  r, c = _grid()
  period = rng.integers(2, 8, size=(m, 1, 1))
  kind = rng.integers(0, 4, size=(m, 1, 1))  # rows, columns, diagonals, checkerboard.
  ri, ci = r.astype(np.int64), c.astype(np.int64)
  on = np.where(kind == 0, (ri // period) % 2,
                np.where(kind == 1, (ci // period) % 2,
                         np.where(kind == 2, ((ri + ci) // period) % 2,
                                  (ri // period + ci // period) % 2)))
  # Confine the pattern to a random window so the background stays mostly dark.
  top, left = rng.integers(0, 14, size=(2, m, 1, 1))
  height, wide = rng.integers(8, 15, size=(2, m, 1, 1))
  window = (r >= top) & (r < top + height) & (c >= left) & (c < left + wide)
  return on * window * rng.uniform(100.0, 255.0, size=(m, 1, 1))


def non_digit_images(n: int, *, seed: int) -> np.ndarray:
  """Synthetic images that are not digits, for an extra "NA" class.

  A shuffled mix in (almost) equal shares of sparse uniform noise, 1-3 Gaussian blobs,
  2-3 straight strokes (half with a rectangle outline) and stripe/checkerboard patterns
  in a random window. Like MNIST: a mostly black background, lit pixels over 0..255.

  Args:
    n: number of images.
    seed: seed of the draws.

  Returns:
    uint8 ``[n, 28, 28]``.

  Example:
    >>> images = non_digit_images(8, seed=0)
    >>> images.shape, images.dtype
    ((8, 28, 28), dtype('uint8'))
  """
  if n < 0:
    raise ValueError(f"n must be non-negative, got {n}")
  rng = np.random.default_rng(seed)
  kinds = rng.permutation(np.arange(n) % 4)
  out = np.zeros((n, _SIDE, _SIDE), np.float64)
  for kind, make in enumerate((_noise, _blobs, _strokes, _patterns)):
    where = np.flatnonzero(kinds == kind)
    out[where] = make(rng, where.size)
  return np.clip(np.round(out), 0, 255).astype(np.uint8)


def with_na_class(data: Mnist, *, n_train: int, n_test: int, seed: int,
                  images=None) -> Mnist:
  """Adds a "not a digit" class, of `non_digit_images` or of given real images, to both splits.

  Its label is one more than the largest label of either split (10 for MNIST). The extra
  images are appended to each split; then the training split is shuffled (from `seed`),
  while the test split keeps its original images first. With `images` (e.g. the training
  images of digits held out from the known classes: outlier exposure), the NA examples are
  drawn from them uniformly without replacement, the test ones disjoint from the training
  ones, instead of being synthesized.

  Args:
    data: a `Mnist` with integer labels ``[N]``.
    n_train: number of NA images added to the training split.
    n_test: number of NA images added to the test split.
    seed: seed from which the image (or draw) and shuffle seeds are derived.
    images: optional ``[M, 28, 28]`` images to draw the NA examples from, ``M >= n_train +
      n_test``; None: `non_digit_images`.

  Returns:
    A `Mnist` with ``N_train + n_train`` / ``N_test + n_test`` examples, uint8 images and
    int32 labels.

  Raises:
    ValueError: `images` holds fewer than ``n_train + n_test`` images.

  Example:
    >>> images = np.zeros((3, 28, 28), np.uint8)
    >>> data = Mnist(images, np.array([0, 1, 2], np.int32), images, np.array([2, 0, 1], np.int32))
    >>> np.sort(with_na_class(data, n_train=2, n_test=1, seed=0).train_labels)
    array([0, 1, 2, 3, 3], dtype=int32)
    >>> real = np.arange(4, dtype=np.uint8)[:, None, None] * np.ones((1, 28, 28), np.uint8)
    >>> out = with_na_class(data, n_train=2, n_test=1, seed=0, images=real)
    >>> drawn = [*out.train_images[out.train_labels == 3, 0, 0], out.test_images[3, 0, 0]]
    >>> len({int(v) for v in drawn}), out.test_labels.tolist()  # 3 different real images
    (3, [2, 0, 1, 3])
  """
  train_labels = _integer_labels(data.train_labels, "train_labels")
  test_labels = _integer_labels(data.test_labels, "test_labels")
  na = int(max(train_labels.max(initial=-1), test_labels.max(initial=-1))) + 1
  train_seed, test_seed, shuffle_seed = _derived_seeds(seed, 3)
  if images is not None:
    images = np.asarray(images, np.uint8)
    if len(images) < n_train + n_test:
      raise ValueError(f"with_na_class: {n_train} + {n_test} NA images asked for, but only "
                       f"{len(images)} images given to draw them from")
    drawn = np.random.default_rng(train_seed).permutation(len(images))
    chosen = {"train": images[drawn[:n_train]], "test": images[drawn[n_train:n_train + n_test]]}
  else:
    chosen = {"train": non_digit_images(n_train, seed=train_seed),
              "test": non_digit_images(n_test, seed=test_seed)}

  def extend(split_images, labels, extra):
    return (np.concatenate([np.asarray(split_images, np.uint8), extra]),
            np.concatenate([labels.astype(np.int32), np.full(len(extra), na, np.int32)]))

  train_images, train_labels = extend(data.train_images, train_labels, chosen["train"])
  test_images, test_labels = extend(data.test_images, test_labels, chosen["test"])
  perm = np.random.default_rng(shuffle_seed).permutation(len(train_labels))
  return Mnist(train_images[perm], train_labels[perm], test_images, test_labels)


def symmetric_label_noise(labels, *, rate: float, num_classes: int,
                          seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Flips exactly ``round(rate * N)`` labels, each to a different class.

  The flipped positions are drawn uniformly without replacement; each flipped label
  becomes one of the other ``num_classes - 1`` classes, uniformly.

  Args:
    labels: integer labels ``[N]`` in ``[0, num_classes)``.
    rate: fraction of labels to flip, in ``[0, 1]``.
    num_classes: number of classes (at least 2).
    seed: seed of the draws.

  Returns:
    ``(noisy_labels, flipped)``: int32 ``[N]`` and a boolean mask ``[N]`` of the flipped
    positions (``noisy_labels != labels`` exactly there).

  Raises:
    ValueError: `rate` outside ``[0, 1]``, fewer than 2 classes, or labels out of range.

  Example:
    >>> noisy, flipped = symmetric_label_noise(np.zeros(10, np.int32), rate=0.3,
    ...                                        num_classes=4, seed=0)
    >>> int(flipped.sum()), bool(np.all(noisy[flipped] != 0)), bool(np.all(noisy[~flipped] == 0))
    (3, True, True)
  """
  labels = _integer_labels(labels)
  if not 0.0 <= rate <= 1.0:
    raise ValueError(f"rate must be in [0, 1], got {rate}")
  if num_classes < 2:
    raise ValueError(f"num_classes must be at least 2, got {num_classes}")
  if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
    raise ValueError(f"labels must be in [0, {num_classes}), got range "
                     f"[{labels.min()}, {labels.max()}]")
  rng, n = np.random.default_rng(seed), labels.size
  count = round(rate * n)
  flipped_at = rng.choice(n, size=count, replace=False)
  # A non-zero offset mod num_classes is uniform over the other classes.
  offset = rng.integers(1, num_classes, size=count)
  noisy = labels.astype(np.int32)  # A copy.
  noisy[flipped_at] = (noisy[flipped_at] + offset) % num_classes
  flipped = np.zeros(n, bool)
  flipped[flipped_at] = True
  return noisy, flipped
