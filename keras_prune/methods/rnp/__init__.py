"""`rnp`: Runtime Neural Pruning (Lin et al., NeurIPS 2017), per-input channel groups.

1. The backbone (a chain of conv blocks, e.g. `conv4` or `vgg16`) keeps all its weights;
   each conv after the first has its output channels ordered (`--rnp_order`, default by
   filter norm) and split into `--rnp_groups` groups.
2. A decision network (per-layer encoder, one shared GRU cell, per-layer Q-head) picks,
   per input and layer by layer, how many leading groups to compute.
3. Optional warm-up: the backbone is fine-tuned under uniformly random group counts.
4. `--rnp_rounds` rounds of: `--rnp_decision_steps` deep Q-learning minibatches with the
   backbone frozen (epsilon-greedy, reward -p per extra group and -alpha * the pruned
   pass's cross-entropy at the last layer), then `--rnp_backbone_steps` minibatches of
   backbone fine-tuning under the greedy decisions with the decision network frozen.
   Each completed round is checkpointed; `--resume` continues after the last one.
5. The export is a SavedModel whose batch-1 path computes only the chosen groups;
   `flops_bias` trades accuracy for speed at run time.

The result is dynamic, so the method hands the pipeline its own `stats` and `export`
(see `MethodResult`); `model` is the fine-tuned dense backbone.
"""

import importlib

from keras_prune.methods.rnp.settings import ORDERS, RNPSettings, settings_from_config

__all__ = [
    "CHECKPOINT", "ORDERS", "RNPSettings", "build", "preflight", "run", "settings_from_config",
    "train",
]

# The TensorFlow parts load on first use, so the command line can read the settings (to
# define and validate its flags) without them, as for lstm and olmp.
_LAZY = frozenset({"CHECKPOINT", "build", "preflight", "run", "train"})


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module("keras_prune.methods.rnp.method"), name)
    raise AttributeError(f"module 'keras_prune.methods.rnp' has no attribute {name!r}")
