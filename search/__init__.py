"""Which architectures, where: config, Optuna samplers through Ray Tune, storage, export, retrain, CLI.

The only package that imports Optuna or Ray.
"""
from .config import OBJECTIVES, Config, ConfigError, load_config, parse_config
from .export import export_run, open_run, select_best
from .run import init_ray, make_sampler, make_storage, run_search, search_from_config
from .space_def import InvalidSample, SearchSpace

__all__ = [
    "OBJECTIVES", "Config", "ConfigError", "InvalidSample", "SearchSpace", "export_run", "init_ray", "load_config",
    "make_sampler", "make_storage", "open_run", "parse_config", "run_search", "search_from_config", "select_best",
]
