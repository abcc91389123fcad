"""`lstm`: Where to Prune (Zhong et al., IJCAI 2018), an LSTM that decides layer by layer where to prune.

1. A `PruningController` (descriptor embedding -> LSTM -> keep/prune softmax) reads the
   network's prunable groups in order (`StructureSpace.descriptors`: position, kernel size,
   stride, kept/original channels, FLOPs shares) and samples one decision per group.
2. Every "prune" removes `ceil(--prune_rate * n)` of the group's current n channels (kept
   counts rounded to multiples of `--round_to`), those with the smallest filter norm
   (`--lstm_criterion`), by physical, dependency-aware surgery;
   the child recovers for `--recovery_epochs` by distillation from its teacher
   (`--lstm_teacher`: its parent or the pre-trained network) plus cross-entropy.
3. Reward (after recovery, on the validation split): `--lstm_reward` (`settings.reward`).
4. REINFORCE: each controller epoch feeds the `--lstm_parents` (5) best structures in turn
   (the pre-trained network first), `--lstm_children` samples each, the parent's reward as
   the baseline. Stop after `--patience` epochs without a better structure, once the best
   has at most `--target_flops` of the FLOPs (not with the "target" reward), or after
   `--lstm_epochs`.
5. The best structure (by reward; with the "target" reward, among those at the target and
   within the accuracy tolerance, if any) is retrained on train + validation for `--finetune_epochs` at
   `--learning_rate` with `--schedule` (the same rate as the children's recovery; the paper's is a
   fixed 1e-3, which the recipes set: the flag's default is 0.01).

Children are cached by structure and the search is checkpointed after every child
(`<output_dir>/lstm/checkpoint.npz`), so `--resume` continues it. docs/PAPERS.md 4 says what is
verified and what is reconstructed.
"""

import importlib

from keras_prune.methods.lstm.settings import LSTMSettings

__all__ = ["LSTMSettings", "preflight", "run"]


def preflight(model, config):
    """Raises a PruneError for invalid settings or a model with fewer than two prunable groups
    (the pipeline calls it before pre-training)."""
    importlib.import_module("keras_prune.methods.lstm.method").preflight(model, config)


def run(model, data, ctx):
    """Prunes `model` with the LSTM-guided search; returns the retrained best structure and its report.

    (TensorFlow parts load on first use, so the command line can validate flags without them.)
    """
    return importlib.import_module("keras_prune.methods.lstm.method").run(model, data, ctx)
