"""jaxloss: classification losses in pure JAX, exact, fast and hard to misuse.

Importing jaxloss pulls in JAX and NumPy only. The training wing lives in
`jaxloss.train` (Flax, Optax, TFDS) and is imported only on request.
"""

from jaxloss.cross_entropy import *  # noqa: F401,F403
from jaxloss.checked import *  # noqa: F401,F403
from jaxloss.divergence import *  # noqa: F401,F403
from jaxloss.focal import *  # noqa: F401,F403
from jaxloss.hinge import *  # noqa: F401,F403
from jaxloss.margin import *  # noqa: F401,F403
from jaxloss.metrics import *  # noqa: F401,F403
from jaxloss.multilabel import *  # noqa: F401,F403
from jaxloss.reductions import *  # noqa: F401,F403
from jaxloss.registry import *  # noqa: F401,F403
from jaxloss.rejection import *  # noqa: F401,F403
from jaxloss.sigmoid import *  # noqa: F401,F403
from jaxloss.squared import *  # noqa: F401,F403

__version__ = "0.1.0"
