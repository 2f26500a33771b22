"""Tests for jaxloss.train.data: MNIST through tensorflow-datasets, fail-fast and checked."""

import os
import shutil
import time

import numpy as np
import pytest

pytest.importorskip("tensorflow_datasets")

from jaxloss.train import data as data_lib  # noqa: E402

# Label counts of the original MNIST splits (LeCun et al.), digits 0..9.
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="session")
def prepared(prepared_mnist):
  """(data_dir, Mnist): MNIST prepared from the manual files once per session (conftest)."""
  return prepared_mnist


@pytest.fixture
def offline(monkeypatch):
  """Makes the download host unreachable, whatever the machine's network."""
  monkeypatch.setattr(data_lib, "_host_reachable", lambda *a, **k: False)


@pytest.mark.mnist
def test_load_mnist_shapes_dtypes_and_labels(prepared):
  _, mnist = prepared
  assert mnist.train_images.shape == (60000, 28, 28)
  assert mnist.test_images.shape == (10000, 28, 28)
  assert mnist.train_images.dtype == np.uint8 and mnist.test_images.dtype == np.uint8
  assert mnist.train_labels.shape == (60000,) and mnist.test_labels.shape == (10000,)
  assert mnist.train_labels.dtype == np.int32 and mnist.test_labels.dtype == np.int32
  assert np.bincount(mnist.train_labels, minlength=10).tolist() == TRAIN_COUNTS
  assert np.bincount(mnist.test_labels, minlength=10).tolist() == TEST_COUNTS
  assert mnist.train_images.max() == 255 and mnist.train_images.min() == 0
  # Real digits, not noise: mean intensity of MNIST is about 33/255.
  assert 30 < mnist.train_images.mean() < 36


@pytest.mark.mnist
def test_prepared_dataset_is_used_without_the_files(prepared, tmp_path, offline):
  data_dir, mnist = prepared
  again = data_lib.load_mnist(mnist_dir=tmp_path / "nowhere", data_dir=data_dir)
  np.testing.assert_array_equal(again.test_images, mnist.test_images)
  np.testing.assert_array_equal(again.train_labels, mnist.train_labels)


@pytest.mark.mnist
def test_corrupt_prepared_dataset_names_its_folder(prepared, tmp_path, offline):
  """Issue 11: a damaged prepared folder is one clear error that says how to rebuild it."""
  import shutil

  data_dir, _ = prepared
  copy = tmp_path / "tfds"
  shutil.copytree(data_dir, copy)
  records = sorted(copy.rglob("*train.tfrecord*"))
  assert records, list(copy.rglob("*"))
  with open(records[0], "r+b") as f:  # truncate the first training record file
    f.truncate(f.seek(0, 2) // 2)
  with pytest.raises(data_lib.MnistCorruptError, match="Delete that folder") as err:
    data_lib.load_mnist(mnist_dir=tmp_path / "nowhere", data_dir=copy)
  assert str(copy) in str(err.value)


@pytest.mark.mnist
def test_subset_and_to_device(prepared):
  import jax

  _, mnist = prepared
  small = data_lib.to_device(mnist.subset(train=256, test=64))
  assert isinstance(small.train_images, jax.Array)
  assert small.train_images.shape == (256, 28, 28) and small.train_images.dtype == np.uint8
  assert small.test_labels.shape == (64,) and small.test_labels.dtype == np.int32


def test_missing_folder_fails_fast(tmp_path, offline):
  start = time.perf_counter()
  with pytest.raises(data_lib.MnistNotFoundError, match="JAXLOSS_MNIST_DIR") as info:
    data_lib.load_mnist(mnist_dir=tmp_path / "missing", data_dir=tmp_path / "tfds")
  assert time.perf_counter() - start < 10.0
  for name in data_lib.MNIST_FILES:
    assert name in str(info.value)
  assert isinstance(info.value, FileNotFoundError)


def test_folder_missing_one_file_names_it(tmp_path, offline):
  folder = tmp_path / "partial"
  folder.mkdir()
  for name in list(data_lib.MNIST_FILES)[:3]:
    (folder / name).write_bytes(b"x")
  with pytest.raises(data_lib.MnistNotFoundError, match="lacks t10k-labels-idx1-ubyte.gz"):
    data_lib.load_mnist(mnist_dir=folder, data_dir=tmp_path / "tfds")


def test_no_folder_reads_the_environment(tmp_path, offline, monkeypatch):
  monkeypatch.delenv("JAXLOSS_MNIST_DIR", raising=False)
  monkeypatch.setenv("JAXLOSS_DATA_DIR", str(tmp_path / "tfds"))
  assert data_lib.default_data_dir() == str(tmp_path / "tfds")
  with pytest.raises(data_lib.MnistNotFoundError, match="no folder was given"):
    data_lib.load_mnist()


def test_unreachable_host_probe_is_fast():
  # A private address that serves no HTTPS: the probe must say no within its timeout.
  start = time.perf_counter()
  assert not data_lib._host_reachable("https://10.255.255.1/", timeout=1.0)
  assert time.perf_counter() - start < 5.0


@pytest.mark.mnist
def test_corrupt_file_is_reported_not_trained_on(mnist_dir, tmp_path):
  bad_dir = tmp_path / "manual"
  bad_dir.mkdir()
  for name in data_lib.MNIST_FILES:
    shutil.copyfile(os.path.join(mnist_dir, name), bad_dir / name)
  victim = bad_dir / "t10k-labels-idx1-ubyte.gz"
  raw = bytearray(victim.read_bytes())
  raw[100] ^= 0xFF
  victim.write_bytes(bytes(raw))
  with pytest.raises(data_lib.MnistCorruptError, match="t10k-labels-idx1-ubyte.gz"):
    data_lib.load_mnist(mnist_dir=bad_dir, data_dir=tmp_path / "tfds")
  assert isinstance(data_lib.MnistCorruptError("x"), ValueError)


@pytest.mark.mnist
def test_registered_sums_match_real_files_and_tfds(mnist_dir):
  data_lib.verify_files(mnist_dir)  # Raises on mismatch.
  import importlib.resources

  text = (importlib.resources.files("tensorflow_datasets") / "url_checksums" / "mnist.txt")
  registered = {line.split("\t")[3].strip(): line.split("\t")[2]
                for line in text.read_text().splitlines() if line.strip()}
  assert registered == data_lib.MNIST_FILES


def _tiny_mnist(n_train=6, n_test=4):
  rng = np.random.default_rng(0)
  return data_lib.Mnist(rng.integers(0, 256, (n_train, 28, 28)).astype(np.uint8),
                        rng.integers(0, 10, n_train).astype(np.int64),
                        rng.integers(0, 256, (n_test, 28, 28)).astype(np.uint8),
                        rng.integers(0, 10, n_test).astype(np.int32))


def test_npz_copy_round_trip_and_bad_files(tmp_path):
  mnist = _tiny_mnist()
  path = tmp_path / "mnist.npz"
  mnist.save(path)
  back = data_lib.Mnist.load(path)
  for name in ("train_images", "train_labels", "test_images", "test_labels"):
    np.testing.assert_array_equal(getattr(back, name), getattr(mnist, name))
  assert back.train_labels.dtype == np.int32 and back.train_images.dtype == np.uint8
  with pytest.raises(data_lib.MnistNotFoundError, match="no MNIST .npz"):
    data_lib.Mnist.load(tmp_path / "missing.npz")
  (tmp_path / "junk.npz").write_bytes(b"not a zip")
  with pytest.raises(data_lib.MnistCorruptError, match="is not a saved MNIST .npz"):
    data_lib.Mnist.load(tmp_path / "junk.npz")
  np.savez(tmp_path / "flat.npz", train_images=np.zeros((2, 784), np.uint8),
           train_labels=np.zeros(2, np.int32), test_images=np.zeros((1, 28, 28), np.uint8),
           test_labels=np.zeros(1, np.int32))
  with pytest.raises(data_lib.MnistCorruptError, match=r"the train split is images uint8 \(2, 784\)"):
    data_lib.Mnist.load(tmp_path / "flat.npz")


def test_harness_reads_the_npz_named_by_the_environment(tmp_path, monkeypatch, capsys):
  from experiments import harness  # pylint: disable=import-outside-toplevel

  _tiny_mnist().save(tmp_path / "mnist.npz")
  monkeypatch.setenv("JAXLOSS_MNIST_NPZ", str(tmp_path / "mnist.npz"))
  monkeypatch.setenv("JAXLOSS_MNIST_DIR", str(tmp_path / "nowhere"))  # TFDS is not used
  got = harness.load(harness.Settings(train_subset=5))
  assert got.train_images.shape == (5, 28, 28) and got.test_images.shape == (4, 28, 28)
  assert "from $JAXLOSS_MNIST_NPZ" in capsys.readouterr().out
  monkeypatch.setenv("JAXLOSS_MNIST_NPZ", str(tmp_path / "missing.npz"))
  with pytest.raises(SystemExit) as exit_info:
    harness.load(harness.Settings())
  assert exit_info.value.code == 2
  assert "error: $JAXLOSS_MNIST_NPZ: no MNIST .npz" in capsys.readouterr().err
