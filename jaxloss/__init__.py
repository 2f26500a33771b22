"""jaxloss: classification losses in pure JAX, exact, fast and hard to misuse.

This module is the whole public face of the library: every public name is
re-exported here explicitly, one per line. The implementation lives in the
private package `jaxloss._src` (the loss core, then metrics, the registry and
`checked` above it); import from ``jaxloss`` directly, never from ``_src``.

Importing jaxloss pulls in JAX and NumPy only. The training wing lives in
`jaxloss.train` (Flax, Optax, TFDS) and is imported only on request.
"""

# The loss core.
from jaxloss._src.absolute_error import softmax_absolute_error as softmax_absolute_error
from jaxloss._src.cross_entropy import cross_entropy as cross_entropy
from jaxloss._src.cross_entropy import label_smoothing_cross_entropy as label_smoothing_cross_entropy
from jaxloss._src.cross_entropy import nll_loss as nll_loss
from jaxloss._src.cross_entropy import smooth_labels as smooth_labels
from jaxloss._src.cross_entropy import softmax_cross_entropy as softmax_cross_entropy
from jaxloss._src.cross_entropy import softmax_cross_entropy_with_integer_labels as softmax_cross_entropy_with_integer_labels
from jaxloss._src.divergence import kl_divergence as kl_divergence
from jaxloss._src.focal import poly1_cross_entropy as poly1_cross_entropy
from jaxloss._src.focal import sigmoid_focal_loss as sigmoid_focal_loss
from jaxloss._src.focal import softmax_focal_loss as softmax_focal_loss
from jaxloss._src.multiclass_hinge import multiclass_hinge_loss as multiclass_hinge_loss
from jaxloss._src.ovr_margin import MARGIN_LOSSES as MARGIN_LOSSES
from jaxloss._src.ovr_margin import ovr_exponential as ovr_exponential
from jaxloss._src.ovr_margin import ovr_hinge as ovr_hinge
from jaxloss._src.ovr_margin import ovr_logistic as ovr_logistic
from jaxloss._src.ovr_margin import ovr_margin_loss as ovr_margin_loss
from jaxloss._src.ovr_margin import ovr_savage as ovr_savage
from jaxloss._src.ovr_margin import ovr_smooth_hinge as ovr_smooth_hinge
from jaxloss._src.ovr_margin import ovr_square as ovr_square
from jaxloss._src.ovr_margin import ovr_squared_hinge as ovr_squared_hinge
from jaxloss._src.ovr_margin import ovr_tangent as ovr_tangent
from jaxloss._src.reductions import weighted_mean as weighted_mean
from jaxloss._src.sigmoid import balanced_sigmoid_difference as balanced_sigmoid_difference
from jaxloss._src.sigmoid import sigmoid_binary_cross_entropy as sigmoid_binary_cross_entropy
from jaxloss._src.sigmoid import sigmoid_difference as sigmoid_difference
from jaxloss._src.squared import brier_score as brier_score
from jaxloss._src.squared import square_loss as square_loss

# Metrics: accuracy, likelihood, calibration, rejection, multi-label decoding.
from jaxloss._src.metrics import accuracy as accuracy
from jaxloss._src.metrics import calibration_bins as calibration_bins
from jaxloss._src.metrics import expected_calibration_error as expected_calibration_error
from jaxloss._src.metrics import multilabel_accuracy as multilabel_accuracy
from jaxloss._src.metrics import negative_log_likelihood as negative_log_likelihood
from jaxloss._src.multilabel import exact_set_accuracy as exact_set_accuracy
from jaxloss._src.multilabel import macro_f1 as macro_f1
from jaxloss._src.multilabel import per_class_f1 as per_class_f1
from jaxloss._src.multilabel import threshold_multi_hot as threshold_multi_hot
from jaxloss._src.multilabel import top_k_multi_hot as top_k_multi_hot
from jaxloss._src.rejection import auroc as auroc
from jaxloss._src.rejection import max_sigmoid_score as max_sigmoid_score
from jaxloss._src.rejection import max_softmax_score as max_softmax_score
from jaxloss._src.rejection import not_class_score as not_class_score
from jaxloss._src.rejection import rejection_rate as rejection_rate
from jaxloss._src.rejection import threshold_at_recall as threshold_at_recall

# Losses by name, and opt-in value checks.
from jaxloss._src.registry import PRESETS as PRESETS
from jaxloss._src.registry import LossSpec as LossSpec
from jaxloss._src.registry import available as available
from jaxloss._src.registry import get as get
from jaxloss._src.registry import multiclass as multiclass
from jaxloss._src.checked import checked as checked

__version__ = "0.2.0"
