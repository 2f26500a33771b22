"""Tests for experiments/datasets.py (host-side dataset constructions) and `validation_split`.

All tests but one use small synthetic `Mnist` objects; the one marked ``mnist``
checks shapes on the real data.
"""

import numpy as np
import pytest

from experiments import datasets
from jaxloss.train.data import Mnist, validation_split


def fake_mnist(n_train=600, n_test=200, seed=0, num_classes=10):
  """Random uint8 images (all distinct) with labels covering every class."""
  rng = np.random.default_rng(seed)

  def split(n):
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = (rng.permutation(n) % num_classes).astype(np.int32)
    return images, labels

  return Mnist(*split(n_train), *split(n_test))


def assert_mnist_equal(a, b):
  for name in ("train_images", "train_labels", "test_images", "test_labels"):
    np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def row_index(images, candidates):
  """For each image, the index of the identical image in `candidates` (or -1)."""
  flat = candidates.reshape(len(candidates), -1)
  lookup = {row.tobytes(): i for i, row in enumerate(flat)}
  return np.array([lookup.get(img.tobytes(), -1) for img in images.reshape(len(images), -1)])


# --------------------------------------------------------------- validation_split


def test_validation_split_is_disjoint_and_covers_train_once():
  data = fake_mnist()
  split = validation_split(data, size=150, seed=3)
  assert split.test_images.shape == (150, 28, 28) and split.train_images.shape == (450, 28, 28)
  assert split.train_images.dtype == np.uint8 and split.train_labels.dtype == np.int32
  train_idx = row_index(split.train_images, data.train_images)
  val_idx = row_index(split.test_images, data.train_images)
  assert (train_idx >= 0).all() and (val_idx >= 0).all()
  assert not set(train_idx.tolist()) & set(val_idx.tolist())
  np.testing.assert_array_equal(np.sort(np.concatenate([train_idx, val_idx])), np.arange(600))
  # Labels travel with their images.
  np.testing.assert_array_equal(split.train_labels, data.train_labels[train_idx])
  np.testing.assert_array_equal(split.test_labels, data.train_labels[val_idx])
  # The original test split is neither returned nor modified.
  assert row_index(split.test_images, data.test_images).max() == -1
  np.testing.assert_array_equal(data.test_images, fake_mnist().test_images)


def test_validation_split_determinism():
  data = fake_mnist()
  a = validation_split(data, size=100, seed=1)
  assert_mnist_equal(a, validation_split(data, size=100, seed=1))
  b = validation_split(data, size=100, seed=2)
  assert not np.array_equal(a.test_images, b.test_images)


@pytest.mark.parametrize("size", [0, 600, -1, 1000])
def test_validation_split_bad_size(size):
  with pytest.raises(ValueError, match="validation size"):
    validation_split(fake_mnist(), size=size)


# ------------------------------------------------------------------ binary_digits


def test_binary_digits_keeps_two_digits_with_book_labels():
  data = fake_mnist()
  binary = datasets.binary_digits(data)
  for images, labels, src_images, src_labels in (
      (binary.train_images, binary.train_labels, data.train_images, data.train_labels),
      (binary.test_images, binary.test_labels, data.test_images, data.test_labels)):
    keep = (src_labels == 3) | (src_labels == 7)
    np.testing.assert_array_equal(images, src_images[keep])  # Order preserved.
    np.testing.assert_array_equal(labels, (src_labels[keep] == 3).astype(np.int32))
    assert labels.dtype == np.int32 and set(labels.tolist()) == {0, 1}
  swapped = datasets.binary_digits(data, positive=7, negative=3)
  np.testing.assert_array_equal(swapped.train_labels, 1 - binary.train_labels)
  with pytest.raises(ValueError, match="differ"):
    datasets.binary_digits(data, positive=3, negative=3)


# --------------------------------------------------------------- two-digit images


def test_two_digit_images_halves_and_targets():
  data = fake_mnist()
  images, targets = datasets.two_digit_images(data.train_images, data.train_labels, n=500, seed=0)
  assert images.shape == (500, 28, 56) and images.dtype == np.uint8
  assert targets.shape == (500, 10) and targets.dtype == np.float32
  left = row_index(images[:, :, :28], data.train_images)
  right = row_index(images[:, :, 28:], data.train_images)
  assert (left >= 0).all() and (right >= 0).all()
  left_digit, right_digit = data.train_labels[left], data.train_labels[right]
  assert (left_digit != right_digit).all()
  expected = np.zeros((500, 10), np.float32)
  expected[np.arange(500), left_digit] = 1
  expected[np.arange(500), right_digit] = 1
  np.testing.assert_array_equal(targets, expected)
  np.testing.assert_array_equal(targets.sum(axis=1), 2.0)
  assert set(np.unique(targets).tolist()) == {0.0, 1.0}
  # Every digit shows up on both sides.
  assert set(left_digit.tolist()) == set(range(10)) == set(right_digit.tolist())


def test_two_digit_images_determinism_and_errors():
  data = fake_mnist()
  a = datasets.two_digit_images(data.train_images, data.train_labels, n=50, seed=4)
  b = datasets.two_digit_images(data.train_images, data.train_labels, n=50, seed=4)
  c = datasets.two_digit_images(data.train_images, data.train_labels, n=50, seed=5)
  np.testing.assert_array_equal(a[0], b[0])
  np.testing.assert_array_equal(a[1], b[1])
  assert not np.array_equal(a[0], c[0])
  with pytest.raises(ValueError, match="two different digits"):
    datasets.two_digit_images(data.train_images[:3], np.full(3, 4, np.int32), n=2, seed=0)
  with pytest.raises(ValueError, match="labels must be in"):
    datasets.two_digit_images(data.train_images, data.train_labels, n=2, seed=0, num_classes=5)


def test_two_digit_mnist_splits():
  data = fake_mnist()
  pairs = datasets.two_digit_mnist(data, train_size=120, test_size=40, seed=0)
  assert pairs.train_images.shape == (120, 28, 56) and pairs.test_images.shape == (40, 28, 56)
  assert pairs.train_labels.shape == (120, 10) and pairs.train_labels.dtype == np.float32
  # Train pairs come from the train split only, test pairs from the test split only.
  assert (row_index(pairs.train_images[:, :, :28], data.train_images) >= 0).all()
  assert (row_index(pairs.train_images[:, :, 28:], data.train_images) >= 0).all()
  assert (row_index(pairs.test_images[:, :, :28], data.test_images) >= 0).all()
  assert (row_index(pairs.test_images[:, :, 28:], data.test_images) >= 0).all()
  assert_mnist_equal(pairs, datasets.two_digit_mnist(data, train_size=120, test_size=40, seed=0))
  other = datasets.two_digit_mnist(data, train_size=120, test_size=40, seed=1)
  assert not np.array_equal(pairs.train_images, other.train_images)


# ----------------------------------------------------------------- open-set split


def test_open_set_split_remaps_and_separates():
  data = fake_mnist()
  known, unseen_images, unseen_labels = datasets.open_set_split(data)
  for labels in (known.train_labels, known.test_labels):
    assert labels.dtype == np.int32 and set(labels.tolist()) == set(range(5))
  # No digit 5-9 in training or seen test: the kept images are exactly those of digits 0-4.
  np.testing.assert_array_equal(known.train_images, data.train_images[data.train_labels < 5])
  np.testing.assert_array_equal(known.train_labels, data.train_labels[data.train_labels < 5])
  np.testing.assert_array_equal(known.test_images, data.test_images[data.test_labels < 5])
  np.testing.assert_array_equal(unseen_images, data.test_images[data.test_labels >= 5])
  np.testing.assert_array_equal(unseen_labels, data.test_labels[data.test_labels >= 5])
  assert unseen_labels.dtype == np.int32 and set(unseen_labels.tolist()) == set(range(5, 10))
  assert len(known.test_labels) + len(unseen_labels) == len(data.test_labels)


def test_open_set_split_custom_order():
  data = fake_mnist()
  seen = (7, 2, 9)
  known, _, unseen_labels = datasets.open_set_split(data, seen=seen)
  mask = np.isin(data.train_labels, seen)
  original = data.train_labels[mask]
  np.testing.assert_array_equal(np.asarray(seen)[known.train_labels], original)
  assert not set(unseen_labels.tolist()) & set(seen)
  with pytest.raises(ValueError, match="distinct"):
    datasets.open_set_split(data, seen=(1, 1))


# --------------------------------------------------------------- non-digit images


def test_non_digit_images_dtype_shape_range():
  images = datasets.non_digit_images(400, seed=0)
  assert images.shape == (400, 28, 28) and images.dtype == np.uint8
  assert images.min() == 0 and images.max() == 255
  # Mostly dark background, like MNIST (about 19% of its pixels are non-zero).
  assert 0.05 < (images > 0).mean() < 0.5
  assert 10 < images.mean() < 60
  # No blank images, and lit pixels spread over the intensity range.
  assert (images.reshape(400, -1).max(axis=1) > 0).all()
  lit = images[images > 0]
  assert np.histogram(lit, bins=4, range=(0, 256))[0].min() > 0.05 * lit.size
  np.testing.assert_array_equal(images, datasets.non_digit_images(400, seed=0))
  assert not np.array_equal(images, datasets.non_digit_images(400, seed=1))
  assert datasets.non_digit_images(0, seed=0).shape == (0, 28, 28)


def test_with_na_class():
  data = fake_mnist(n_train=100, n_test=50)
  out = datasets.with_na_class(data, n_train=30, n_test=20, seed=0)
  assert out.train_images.shape == (130, 28, 28) and out.test_images.shape == (70, 28, 28)
  assert out.train_images.dtype == np.uint8 and out.train_labels.dtype == np.int32
  assert np.bincount(out.train_labels).tolist() == np.bincount(data.train_labels).tolist() + [30]
  assert np.bincount(out.test_labels).tolist() == np.bincount(data.test_labels).tolist() + [20]
  # The digits keep their labels (train is shuffled: match images back).
  idx = row_index(out.train_images, data.train_images)
  digits = idx >= 0
  assert digits.sum() == 100 and (out.train_labels[~digits] == 10).all()
  np.testing.assert_array_equal(out.train_labels[digits], data.train_labels[idx[digits]])
  assert not np.array_equal(out.train_labels[:100], data.train_labels)  # Shuffled.
  np.testing.assert_array_equal(out.test_images[:50], data.test_images)
  assert (out.test_labels[50:] == 10).all()
  assert_mnist_equal(out, datasets.with_na_class(data, n_train=30, n_test=20, seed=0))
  other = datasets.with_na_class(data, n_train=30, n_test=20, seed=1)
  assert not np.array_equal(out.train_labels, other.train_labels)
  # Binary data: the NA class is 2.
  binary = datasets.with_na_class(datasets.binary_digits(data), n_train=3, n_test=1, seed=0)
  assert set(binary.train_labels.tolist()) == {0, 1, 2}


# ------------------------------------------------------------------- label noise


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.37, 0.5, 1.0])
def test_symmetric_label_noise_exact_fraction(rate):
  labels = (np.arange(1001) % 10).astype(np.int32)
  noisy, flipped = datasets.symmetric_label_noise(labels, rate=rate, num_classes=10, seed=0)
  assert noisy.dtype == np.int32 and flipped.dtype == bool and noisy.shape == labels.shape
  assert flipped.sum() == round(rate * 1001)
  np.testing.assert_array_equal(noisy != labels, flipped)  # Never flipped to the same class.
  assert ((noisy >= 0) & (noisy < 10)).all()
  np.testing.assert_array_equal(labels, np.arange(1001) % 10)  # Input untouched.


def test_symmetric_label_noise_uniform_over_other_classes():
  num_classes, n = 5, 50000
  labels = np.zeros(n, np.int32)
  noisy, flipped = datasets.symmetric_label_noise(labels, rate=0.4, num_classes=num_classes,
                                                  seed=1)
  counts = np.bincount(noisy[flipped], minlength=num_classes)
  assert counts[0] == 0
  expected = flipped.sum() / (num_classes - 1)
  # 5000 per class: a 5% band is about 3.5 standard deviations.
  np.testing.assert_allclose(counts[1:], expected, rtol=0.05)
  # Flipped positions are spread over the array, not clustered.
  halves = flipped.reshape(2, -1).sum(axis=1)
  np.testing.assert_allclose(halves, flipped.sum() / 2, rtol=0.05)


def test_symmetric_label_noise_determinism_and_errors():
  labels = (np.arange(200) % 4).astype(np.int32)
  a = datasets.symmetric_label_noise(labels, rate=0.3, num_classes=4, seed=7)
  b = datasets.symmetric_label_noise(labels, rate=0.3, num_classes=4, seed=7)
  c = datasets.symmetric_label_noise(labels, rate=0.3, num_classes=4, seed=8)
  np.testing.assert_array_equal(a[0], b[0])
  np.testing.assert_array_equal(a[1], b[1])
  assert not np.array_equal(a[1], c[1])
  for rate in (-0.1, 1.5):
    with pytest.raises(ValueError, match=r"rate must be in \[0, 1\]"):
      datasets.symmetric_label_noise(labels, rate=rate, num_classes=4, seed=0)
  with pytest.raises(ValueError, match="labels must be in"):
    datasets.symmetric_label_noise(labels, rate=0.1, num_classes=3, seed=0)
  with pytest.raises(ValueError, match="integer"):
    datasets.symmetric_label_noise(labels.astype(np.float32), rate=0.1, num_classes=4, seed=0)


# ---------------------------------------------------------------- real MNIST


@pytest.mark.mnist
@pytest.mark.usefixtures("mnist_loaded_once")
def test_constructions_on_real_mnist(mnist_dir):
  pytest.importorskip("tensorflow_datasets")
  from jaxloss import train as jt  # pylint: disable=import-outside-toplevel

  data = jt.load_mnist(mnist_dir=mnist_dir)
  pairs = datasets.two_digit_mnist(data, train_size=2000, test_size=500, seed=0)
  assert pairs.train_images.shape == (2000, 28, 56) and pairs.test_images.shape == (500, 28, 56)
  assert pairs.train_labels.shape == (2000, 10) and pairs.train_labels.dtype == np.float32
  np.testing.assert_array_equal(pairs.test_labels.sum(axis=1), 2.0)

  known, unseen_images, unseen_labels = datasets.open_set_split(data)
  n_seen_train = int((data.train_labels < 5).sum())
  n_seen_test = int((data.test_labels < 5).sum())
  assert known.train_images.shape == (n_seen_train, 28, 28)
  assert known.test_images.shape == (n_seen_test, 28, 28)
  assert unseen_images.shape == (10000 - n_seen_test, 28, 28)
  assert set(unseen_labels.tolist()) == set(range(5, 10))
  assert known.train_labels.max() == 4

  binary = datasets.binary_digits(data)
  # Counts of 3s and 7s in the original MNIST splits.
  assert binary.train_images.shape == (6131 + 6265, 28, 28)
  assert binary.test_images.shape == (1010 + 1028, 28, 28)
  assert binary.train_labels.sum() == 6131 and binary.test_labels.sum() == 1010

  split = validation_split(data, size=10000, seed=0)
  assert split.train_images.shape == (50000, 28, 28) and split.test_images.shape == (10000, 28, 28)
