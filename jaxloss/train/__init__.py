"""jaxloss.train: functional training of MLPs on MNIST with any jaxloss loss.

Imported only on request (``import jaxloss`` does not load it). Needs Flax and
Optax; tensorflow-datasets is imported by `load_mnist` only.

Example::

  import jaxloss
  from jaxloss import train as jt

  data = jt.load_mnist()          # $JAXLOSS_MNIST_DIR: the four .gz files
  spec = jaxloss.get("softmax_cross_entropy")
  for record in jt.iterate_training(jt.TrainConfig(), data,
                                    loss_fn=spec.loss_from_labels,
                                    predict_fn=spec.predict, seeds=(0, 1, 2)):
    print(record.epoch, record["test_accuracy"], record.seconds)
"""

from __future__ import annotations

from jaxloss.train.data import *  # noqa: F401,F403
from jaxloss.train.model import *  # noqa: F401,F403
from jaxloss.train.optim import *  # noqa: F401,F403
from jaxloss.train.sharding import *  # noqa: F401,F403
from jaxloss.train.trainer import *  # noqa: F401,F403
