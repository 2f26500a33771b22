"""jaxloss: classification losses in pure JAX, exact, fast and hard to misuse.

Importing jaxloss pulls in JAX and NumPy only. The training wing lives in
`jaxloss.train` (Flax, Optax, TFDS) and is imported only on request.
"""

from jaxloss.cross_entropy import *  # noqa: F401,F403
from jaxloss.reductions import *  # noqa: F401,F403

__version__ = "0.1.0"
