"""Which architectures to try, and where: config, Optuna samplers through Ray Tune, storage, resume, results, CLI.

The only package that imports Optuna or Ray.
"""
from .config import Config, load_config, parse_config
from .errors import ConfigError
from .results import export_run, open_run, select_best
from .run import init_ray, run_search, search_from_config
from .samplers import SAMPLERS, make_sampler
from .schedulers import SCHEDULERS
from .space_def import InvalidSample, SearchSpace, sample_archs
from .storage import make_storage

__all__ = [
    "SAMPLERS", "SCHEDULERS", "Config", "ConfigError", "InvalidSample", "SearchSpace", "export_run", "init_ray",
    "load_config", "make_sampler", "make_storage", "open_run", "parse_config", "run_search", "sample_archs",
    "search_from_config", "select_best",
]
