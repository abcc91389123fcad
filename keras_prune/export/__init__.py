"""Getting results out: plain models (`strip`), SavedModel, reports, plots, summaries."""

from keras_prune.export.fold import fold_batch_norms
from keras_prune.export.latency import (
    measure_latency,
    measure_saved_model_latency,
    measure_saved_model_pair_latency,
    serving_latency_report,
)
from keras_prune.export.plots import plot_layer_channels, plot_trajectory
from keras_prune.export.report_md import render_markdown, write_markdown
from keras_prune.export.serving import compare_serving_latency, export_saved_model
from keras_prune.export.strip import removable_channels, strip
from keras_prune.export.summaries import RunSummaries

__all__ = [
    "RunSummaries",
    "compare_serving_latency",
    "export_saved_model",
    "fold_batch_norms",
    "measure_latency",
    "measure_saved_model_latency",
    "measure_saved_model_pair_latency",
    "plot_layer_channels",
    "plot_trajectory",
    "removable_channels",
    "render_markdown",
    "serving_latency_report",
    "strip",
    "write_markdown",
]
