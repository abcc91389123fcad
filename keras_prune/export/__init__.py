"""Getting results out: plain models (`strip`), SavedModel, reports, plots, summaries."""

from keras_prune.export.strip import removable_channels, strip

__all__ = ["removable_channels", "strip"]
