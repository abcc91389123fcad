"""report.md: the run's report.json as a page a person reads.

Sections, in order: title and headline, dense-vs-pruned summary (with the pruned/dense
ratio), timings, the per-layer table, one section per method detail, the resolved
config, the environment. Every value may be missing or None (a run that stopped early):
it is shown as "—".
"""

import math
import numbers

from keras_prune.export.report_io import atomic_write

__all__ = [
    "render_markdown",
    "write_markdown",
    "format_count",
    "format_percent",
    "format_seconds",
]

MISSING = "—"
# Method details: a list longer than this is left in report.json, not rendered.
_MAX_INLINE_VALUES = 16
_MAX_TABLE_ROWS = 50
_UNITS = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K"))


def format_count(value, unit=""):
    """Formats a count with an SI prefix: 1.62 G, 313.2 M, 25.6 M, 431 (None gives "—").

    Args:
        value: a number or None.
        unit: appended after the prefix, e.g. "params" gives "25.6 M params".
    """
    if not _is_number(value):
        return MISSING
    value = float(value)
    suffix = f" {unit}" if unit else ""
    for scale, prefix in _UNITS:
        if abs(value) >= scale:
            scaled = value / scale
            # Three significant figures below 10 (1.62 G), one decimal above (313.2 M).
            digits = 2 if abs(scaled) < 10 else 1
            return f"{scaled:.{digits}f} {prefix}{suffix}"
    text = f"{value:.0f}" if value == int(value) else f"{value:.2f}"
    return text + suffix


def format_percent(fraction, *, digits=1):
    """Formats a fraction as a percentage: 0.9812 gives "98.1 %" (None gives "—")."""
    if not _is_number(fraction):
        return MISSING
    return f"{100.0 * float(fraction):.{digits}f} %"


def format_seconds(seconds):
    """Formats a duration: "12.3 s", "4 min 05 s", "2 h 03 min" (None gives "—")."""
    if not _is_number(seconds):
        return MISSING
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def render_markdown(report):
    """Renders a report dict (the schema of report.json) as Markdown.

    Args:
        report: the dict the pipeline writes to report.json.

    Returns:
        The Markdown text, ending with a newline.
    """
    if not isinstance(report, dict):
        raise TypeError(f"Expected `report` to be a dict. Received: report={type(report).__name__}")
    parts = [_title(report), _summary(report), _layers(report)]
    details = report.get("method_details") or {}
    if details:
        parts.append(_method_details(details))
    if report.get("data"):  # what a server of the exported model must feed it
        parts.append("## Model inputs\n\n" + _key_value_table(flatten_keys(report["data"]), "Item"))
    if report.get("config"):
        parts.append("## Config\n\n" + _key_value_table(flatten_keys(report["config"]), "Flag"))
    environment = {**flatten_keys(report.get("versions") or {}), **flatten_keys(report.get("machine") or {})}
    if environment:
        parts.append("## Environment\n\n" + _key_value_table(environment, "Item"))
    return "\n\n".join(p.rstrip("\n") for p in parts if p) + "\n"


def write_markdown(report, path):
    """Writes `render_markdown(report)` to `path`, atomically."""
    atomic_write(path, render_markdown(report))


def _title(report):
    method, model, dataset = (_text(report.get(k)) for k in ("method", "model", "dataset"))
    lines = [f"# Pruning report: {method} on {model} / {dataset}", ""]
    base, pruned = report.get("baseline") or {}, report.get("pruned") or {}
    headline = [
        f"accuracy {format_percent(base.get('accuracy'), digits=2)} → "
        f"{format_percent(pruned.get('accuracy'), digits=2)}",
        f"FLOPs {format_count(base.get('flops'))} → {format_count(pruned.get('flops'))} MACs "
        f"({format_percent(_ratio(pruned.get('flops'), base.get('flops')))} kept)",
        f"params {format_count(base.get('params'))} → {format_count(pruned.get('params'))}",
    ]
    lines.append("**" + "; ".join(headline) + ".**")
    return "\n".join(lines)


def _summary(report):
    base, pruned = report.get("baseline") or {}, report.get("pruned") or {}
    base_compression = _ratio(base.get("params"), base.get("nonzero_params"))
    pruned_compression = _ratio(pruned.get("params"), pruned.get("nonzero_params"))

    def row(label, dense, after, fmt):
        return [label, fmt(dense), fmt(after), _format_ratio(_ratio(after, dense))]

    rows = [
        row("Accuracy", base.get("accuracy"), pruned.get("accuracy"),
            lambda v: format_percent(v, digits=2)),
        row("FLOPs (MACs)", base.get("flops"), pruned.get("flops"), format_count),
        row("Params", base.get("params"), pruned.get("params"), format_count),
        row("Non-zero params", base.get("nonzero_params"), pruned.get("nonzero_params"),
            format_count),
        row("Compression (params / non-zero)", base_compression, pruned_compression,
            _format_ratio),
        # The figure papers quote: every dense weight against the pruned model's non-zeros.
        ["Compression vs dense (dense params / non-zero)", _format_ratio(base_compression),
         _format_ratio(_ratio(base.get("params"), pruned.get("nonzero_params"))), ""],
        row("Latency, batch 1 (ms)", base.get("latency_ms"), pruned.get("latency_ms"),
            lambda v: f"{float(v):.2f}" if _is_number(v) else MISSING),
    ]
    for key, times in sorted((report.get("serving_latency") or {}).items(), key=lambda kv: int(kv[0].split("_")[1])):
        rows.append(row(f"SavedModel latency, batch {key.split('_')[1]} (ms)", times["dense_ms"], times["pruned_ms"],
                        lambda v: f"{float(v):.2f}"))
    table = _table(["", "Dense", "Pruned", "Pruned / dense"], rows, align="lrrr")
    timing = (
        f"Search: {format_seconds(report.get('search_seconds'))}; "
        f"retraining: {format_seconds(report.get('retrain_seconds'))}; "
        f"total: {format_seconds(report.get('total_seconds'))}."
    )
    return f"## Summary\n\n{table}\n\n{timing}"


def _layers(report):
    layers = report.get("layers") or []
    if not layers:
        return "## Layers\n\nNo prunable layers were recorded."
    rows = []
    for layer in layers:
        before, after = layer.get("channels_before"), layer.get("channels_after")
        rows.append([
            f"`{_escape(_text(layer.get('name')))}`",
            f"{_channels(before)} → {_channels(after)}",
            format_percent(_ratio(after, before)),
            f"{format_count(layer.get('flops_before'))} → {format_count(layer.get('flops_after'))}",
            format_percent(layer.get("sparsity")),
        ])
    totals = {k: _sum(layer.get(k) for layer in layers)
              for k in ("channels_before", "channels_after", "flops_before", "flops_after")}
    rows.append([
        f"**All {len(layers)} layers**",
        f"{_channels(totals['channels_before'])} → {_channels(totals['channels_after'])}",
        format_percent(_ratio(totals["channels_after"], totals["channels_before"])),
        f"{format_count(totals['flops_before'])} → {format_count(totals['flops_after'])}",
        "",
    ])
    header = ["Layer", "Channels", "Kept", "FLOPs (MACs)", "Sparsity"]
    return "## Layers\n\n" + _table(header, rows, align="lrrrr")


def _method_details(details):
    sections = ["## Method details"]
    sections.extend(_detail_section("Values", details, level=3))
    return "\n\n".join(sections)


def _detail_section(title, details, *, level):
    """Yields Markdown blocks: one key/value table of the scalars, then each nested item."""
    scalars, blocks = {}, []
    heading = "#" * level
    for key, value in details.items():
        if isinstance(value, dict):
            blocks.extend(_detail_section(str(key), value, level=min(level + 1, 6)))
        elif _is_list_of_dicts(value):
            blocks.append(f"{heading} {key}\n\n" + _records_table(value))
        else:
            scalars[key] = value
    if scalars:
        blocks.insert(0, f"{heading} {title}\n\n" + _key_value_table(scalars, "Key"))
    return blocks


def _records_table(records):
    columns = []
    for record in records:
        columns.extend(k for k in record if k not in columns)
    shown = records[:_MAX_TABLE_ROWS]
    rows = [[_cell(record.get(c)) for c in columns] for record in shown]
    numeric = [all(_is_number(r.get(c)) or r.get(c) is None for r in shown) for c in columns]
    table = _table([str(c) for c in columns], rows, align=["r" if n else "l" for n in numeric])
    if len(records) > len(shown):
        table += f"\n\n… {len(records) - len(shown)} more rows in report.json."
    return table


def _key_value_table(mapping, key_label):
    rows = [[f"`{key}`", _cell(value)] for key, value in mapping.items()]
    return _table([key_label, "Value"], rows)


def _table(header, rows, *, align=None):
    align = align or "l" * len(header)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = [_row(header), _row(rule)]
    lines.extend(_row(r) for r in rows)
    return "\n".join(lines)


def _row(cells):
    return "| " + " | ".join(cells) + " |"


def _cell(value):
    """One table cell: numbers compact, short lists inline, large arrays left out."""
    if value is None:
        return MISSING
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return _format_float(float(value))
    if isinstance(value, (list, tuple)):
        if len(value) > _MAX_INLINE_VALUES or any(isinstance(v, (list, tuple, dict)) for v in value):
            return f"({_count_values(value)} values, in report.json)"
        return _escape("[" + ", ".join(_cell(v) for v in value) + "]")
    if isinstance(value, dict):
        return _escape(", ".join(f"{k}={_cell(v)}" for k, v in value.items()))
    return _escape(str(value))


def _format_float(value):
    if math.isnan(value) or math.isinf(value):
        return str(value)
    if value == 0 or 1e-3 <= abs(value) < 1e6:
        return f"{value:.4g}"
    return f"{value:.3e}"


def _format_ratio(ratio):
    return MISSING if ratio is None else f"{ratio:.3f}×"


def _ratio(numerator, denominator):
    if not (_is_number(numerator) and _is_number(denominator)) or float(denominator) == 0:
        return None
    return float(numerator) / float(denominator)


def _sum(values):
    values = list(values)
    return sum(values) if values and all(_is_number(v) for v in values) else None


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_list_of_dicts(value):
    return isinstance(value, (list, tuple)) and bool(value) and all(isinstance(v, dict) for v in value)


def _count_values(value):
    if isinstance(value, (list, tuple)):
        return sum(_count_values(v) for v in value)
    if isinstance(value, dict):
        return sum(_count_values(v) for v in value.values())
    return 1


def flatten_keys(mapping, prefix=""):
    """Nested dicts as one level with dotted keys: {"a": {"b": 1}} gives {"a.b": 1}."""
    flat = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten_keys(value, prefix=name + "."))
        else:
            flat[name] = value
    return flat


def _text(value):
    return MISSING if value is None else str(value)


def _channels(value):
    """A channel count; a mean over inputs (rnp's) to two decimals, not float noise."""
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.2f}"
    return _text(value if not isinstance(value, float) else int(value))


def _escape(text):
    # A pipe would end the cell; a newline would end the row.
    return text.replace("|", "\\|").replace("\n", " ")
