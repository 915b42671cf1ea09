"""What a search leaves behind, derived from its storage alone: export (trials.csv, pareto/, best.yaml,
summary.json), the HTML report and its plots, and the comparison with hand-designed presets."""
from .export import export_run, open_run, select_best

__all__ = ["export_run", "open_run", "select_best"]
