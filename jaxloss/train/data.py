"""Full MNIST through tensorflow-datasets, as NumPy arrays, checked and fail-fast.

`load_mnist` prepares the TFDS ``mnist`` dataset (version 3.0.1) once in a data
directory and returns both splits as NumPy arrays. Where the four original
``.gz`` files come from:

* the dataset is already prepared in ``data_dir``: nothing else is read;
* otherwise ``mnist_dir`` (or ``$JAXLOSS_MNIST_DIR``), a folder holding the four
  files, is given to TFDS as its manual download directory. TFDS checks every
  file against the SHA-256 sum it registers for it
  (``tensorflow_datasets/url_checksums/mnist.txt``); a mismatch becomes a
  `MnistCorruptError` naming the file, so a corrupted copy is never trained on;
* with no usable folder TFDS downloads the files itself, but only when the
  download host answers within a few seconds; without network access
  `MnistNotFoundError` is raised at once instead of TFDS retrying for minutes.

tensorflow-datasets (and TensorFlow behind it) is imported inside the functions
only, so ``import jaxloss.train`` stays light.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import threading
import urllib.request

import numpy as np

__all__ = [
    "MNIST_FILES",
    "Mnist",
    "MnistCorruptError",
    "MnistNotFoundError",
    "default_data_dir",
    "default_mnist_dir",
    "load_mnist",
    "to_device",
    "validation_split",
    "verify_files",
]

# The four original files and the SHA-256 sums tensorflow-datasets registers for
# them (tensorflow_datasets/url_checksums/mnist.txt); used to name a corrupted
# file and as a fallback check.
MNIST_FILES: dict[str, str] = {
    "train-images-idx3-ubyte.gz":
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz":
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz":
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz":
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}

# One of the files TFDS would download (tensorflow_datasets/url_checksums/mnist.txt).
_PROBE_URL = "https://storage.googleapis.com/cvdf-datasets/mnist/t10k-labels-idx1-ubyte.gz"


class MnistNotFoundError(FileNotFoundError):
  """MNIST is neither prepared, nor in a manual folder, nor downloadable."""


class MnistCorruptError(ValueError):
  """An MNIST file does not match its registered SHA-256 sum."""


@dataclasses.dataclass(frozen=True)
class Mnist:
  """Both MNIST splits (NumPy arrays, or device arrays after `to_device`).

  Attributes:
    train_images: uint8 ``[60000, 28, 28]``.
    train_labels: int32 ``[60000]``, values 0..9.
    test_images: uint8 ``[10000, 28, 28]``.
    test_labels: int32 ``[10000]``.
  """

  train_images: np.ndarray
  train_labels: np.ndarray
  test_images: np.ndarray
  test_labels: np.ndarray

  def subset(self, train: int | None = None, test: int | None = None) -> Mnist:
    """The first ``train`` / ``test`` examples of each split (for quick runs)."""
    return Mnist(self.train_images[:train], self.train_labels[:train],
                 self.test_images[:test], self.test_labels[:test])

  def save(self, path: str | os.PathLike) -> None:
    """Writes the four arrays to one compressed ``.npz`` (about 11 MB for MNIST): a copy
    for a machine without TensorFlow (see `Mnist.load` and ``$JAXLOSS_MNIST_NPZ``)."""
    np.savez_compressed(path, **{f.name: np.asarray(getattr(self, f.name))
                                 for f in dataclasses.fields(self)})

  @classmethod
  def load(cls, path: str | os.PathLike) -> Mnist:
    """Reads a `Mnist.save` file.

    Raises:
      MnistNotFoundError: no such file.
      MnistCorruptError: not an .npz of the four arrays (uint8 images ``[N, 28, 28]``,
        integer labels ``[N]``).
    """
    if not os.path.isfile(path):
      raise MnistNotFoundError(f"no MNIST .npz at {os.fspath(path)!r} (make one with "
                               "jaxloss.train.load_mnist().save(path)).")
    try:
      with np.load(path) as arrays:
        fields = {f.name: arrays[f.name] for f in dataclasses.fields(cls)}
    except Exception as err:  # pylint: disable=broad-except
      raise MnistCorruptError(f"{os.fspath(path)!r} is not a saved MNIST .npz "
                              f"({type(err).__name__}: {err}).") from err
    for split in ("train", "test"):
      images, labels = fields[f"{split}_images"], fields[f"{split}_labels"]
      if (images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28)
          or labels.ndim != 1 or len(labels) != len(images)
          or not np.issubdtype(labels.dtype, np.integer)):
        raise MnistCorruptError(
            f"{os.fspath(path)!r}: the {split} split is images {images.dtype} "
            f"{images.shape} and labels {labels.dtype} {labels.shape}; expected uint8 "
            "[N, 28, 28] images and N integer labels.")
    return cls(**{k: v.astype(np.int32) if k.endswith("labels") else v
                  for k, v in fields.items()})


def default_mnist_dir() -> str | None:
  """``$JAXLOSS_MNIST_DIR``, or None."""
  return os.environ.get("JAXLOSS_MNIST_DIR") or None


def default_data_dir() -> str:
  """``$JAXLOSS_DATA_DIR``, else ``~/tensorflow_datasets`` (TFDS' default)."""
  return os.path.expanduser(os.environ.get("JAXLOSS_DATA_DIR") or "~/tensorflow_datasets")


def _missing_files(folder: str | os.PathLike | None) -> list[str]:
  if folder is None or not os.path.isdir(folder):
    return list(MNIST_FILES)
  return [name for name in MNIST_FILES if not os.path.isfile(os.path.join(folder, name))]


def _not_found_message(mnist_dir, data_dir, missing) -> str:
  where = ("no folder was given" if mnist_dir is None else
           f"{os.fspath(mnist_dir)!r} is not a folder" if not os.path.isdir(mnist_dir) else
           f"{os.fspath(mnist_dir)!r} lacks {', '.join(missing)}")
  return (
      f"MNIST is not prepared in {data_dir!r}, its download host is unreachable "
      f"(no network), and {where}. Set JAXLOSS_MNIST_DIR (or pass mnist_dir= / "
      "--mnist-dir) to a folder holding the four original files: "
      + ", ".join(MNIST_FILES) + ".")


def _host_reachable(url: str = _PROBE_URL, timeout: float = 3.0) -> bool:
  """Whether an HTTPS HEAD request to `url` answers within `timeout` seconds.

  A full request, not a bare TCP connect: some sandboxes accept every TCP
  connection. Name resolution has no timeout of its own, so the probe runs in
  a daemon thread that is abandoned after `timeout` seconds.
  """
  ok = []

  def probe():
    try:
      request = urllib.request.Request(url, method="HEAD")
      with urllib.request.urlopen(request, timeout=timeout) as response:
        ok.append(response.status < 400)
    except (OSError, ValueError):  # URLError, HTTPError, timeouts, TLS errors.
      pass

  thread = threading.Thread(target=probe, daemon=True)
  thread.start()
  thread.join(timeout)
  return bool(ok) and ok[0]


def _sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      digest.update(chunk)
  return digest.hexdigest()


def verify_files(mnist_dir: str | os.PathLike) -> None:
  """Checks the four files' SHA-256 sums; raises `MnistCorruptError` naming the bad ones."""
  bad = [name for name, want in MNIST_FILES.items()
         if _sha256(os.path.join(mnist_dir, name)) != want]
  if bad:
    raise MnistCorruptError(
        f"MNIST file(s) {', '.join(bad)} in {os.fspath(mnist_dir)!r} do not match the "
        "SHA-256 sums registered by tensorflow-datasets: the copy is corrupted or "
        "truncated. Replace them with the original files.")


def _quiet_tensorflow() -> None:
  # TensorFlow's C++ logging is read once, at its first import.
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def load_mnist(*, mnist_dir: str | os.PathLike | None = None,
               data_dir: str | os.PathLike | None = None) -> Mnist:
  """Loads full MNIST (both splits) as NumPy arrays through tensorflow-datasets.

  Args:
    mnist_dir: folder with the four original ``.gz`` files (`MNIST_FILES`),
      used as TFDS' manual download directory when the dataset is not yet
      prepared; default ``$JAXLOSS_MNIST_DIR``. Read only.
    data_dir: TFDS data directory where the dataset is prepared (about 75 MB,
      once); default ``$JAXLOSS_DATA_DIR``, else ``~/tensorflow_datasets``.

  Returns:
    A `Mnist` of NumPy arrays: uint8 images ``[N, 28, 28]``, int32 labels ``[N]``.

  Raises:
    MnistNotFoundError: not prepared, no folder with the four files, and the
      download host is unreachable (raised within seconds).
    MnistCorruptError: a file fails TFDS' checksum check (the message names it),
      or the prepared dataset cannot be read (the message names its folder and
      says how to rebuild it).
  """
  mnist_dir = default_mnist_dir() if mnist_dir is None else os.fspath(mnist_dir)
  data_dir = default_data_dir() if data_dir is None else os.fspath(data_dir)
  _quiet_tensorflow()
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

  builder = tfds.builder("mnist", data_dir=data_dir)
  if not builder.is_prepared():
    missing = _missing_files(mnist_dir)
    if not missing:
      config = tfds.download.DownloadConfig(manual_dir=mnist_dir)
    elif _host_reachable():
      config = None  # TFDS downloads the files itself (and checks their sums).
    else:
      raise MnistNotFoundError(_not_found_message(mnist_dir, data_dir, missing))
    try:
      builder.download_and_prepare(download_config=config)
    except Exception as err:  # pylint: disable=broad-except
      # tfds.core.download.download_manager.NonMatchingChecksumError; matched by
      # name since its module path is not part of TFDS' public API.
      if type(err).__name__ != "NonMatchingChecksumError":
        raise
      if config is not None:
        verify_files(mnist_dir)  # Raises MnistCorruptError naming the file(s).
      raise MnistCorruptError(f"MNIST checksum mismatch: {err}") from err

  def split(name: str) -> tuple[np.ndarray, np.ndarray]:
    arrays = tfds.as_numpy(builder.as_dataset(split=name, batch_size=-1))
    images = np.asarray(arrays["image"], dtype=np.uint8)
    return images.reshape(images.shape[0], 28, 28), np.asarray(arrays["label"], np.int32)

  try:
    train_images, train_labels = split("train")
    test_images, test_labels = split("test")
  except Exception as err:  # pylint: disable=broad-except
    # A prepared folder damaged after the fact (a truncated or edited record file,
    # a half-copied folder): TensorFlow's own error names neither the folder nor
    # the fix. (MNIST is small: both splits are read whole, so this is one place.)
    folder = builder.data_dir
    raise MnistCorruptError(
        f"the prepared MNIST dataset in {folder} cannot be read "
        f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}). "
        f"Delete that folder and run again: it is prepared again from the four .gz files "
        f"(or downloaded).") from err
  return Mnist(train_images, train_labels, test_images, test_labels)


def to_device(mnist: Mnist, sharding=None) -> Mnist:
  """Puts the four arrays on the device once, dtypes unchanged (images stay uint8).

  Args:
    mnist: a `Mnist` of NumPy (or device) arrays.
    sharding: optional `jax.sharding.Sharding` (e.g. replicated over a mesh, see
      `jaxloss.train.sharding.replicated`); default the default device.
  """
  import jax  # pylint: disable=import-outside-toplevel

  arrays = (mnist.train_images, mnist.train_labels, mnist.test_images, mnist.test_labels)
  return Mnist(*jax.device_put(arrays, sharding))


def validation_split(data: Mnist, *, size: int = 10000, seed: int = 0) -> Mnist:
  """A held-out validation split carved from the training set.

  The training split is permuted with ``default_rng(seed)``; the first `size`
  examples of the permutation become the returned object's ``test_*`` fields
  (the validation set), the remaining ones its ``train_*`` fields, both in
  permuted order. ``data``'s own test split is never read or returned.

  Args:
    data: a `Mnist` (images ``[N, ...]``, labels ``[N, ...]``).
    size: number of validation examples, in ``[1, N - 1]``.
    seed: seed of the permutation.

  Returns:
    A `Mnist` with ``N - size`` training and ``size`` validation examples;
    dtypes unchanged.

  Raises:
    ValueError: `size` not in ``[1, N - 1]``.

  Example:
    >>> data = Mnist(np.zeros((5, 28, 28), np.uint8), np.arange(5, dtype=np.int32),
    ...              np.zeros((2, 28, 28), np.uint8), np.zeros(2, np.int32))
    >>> split = validation_split(data, size=2, seed=0)
    >>> split.train_images.shape, split.test_images.shape
    ((3, 28, 28), (2, 28, 28))
    >>> sorted(np.concatenate([split.train_labels, split.test_labels]).tolist())
    [0, 1, 2, 3, 4]
  """
  n = len(data.train_labels)
  if len(data.train_images) != n:
    raise ValueError(f"train_images ({len(data.train_images)}) and train_labels ({n}) "
                     "differ in length")
  if not 1 <= size <= n - 1:
    raise ValueError(f"validation size must be in [1, {n - 1}] (N={n} training "
                     f"examples), got {size}")
  perm = np.random.default_rng(seed).permutation(n)
  held, kept = perm[:size], perm[size:]
  return Mnist(data.train_images[kept], data.train_labels[kept],
               data.train_images[held], data.train_labels[held])
