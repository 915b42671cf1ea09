"""The search config: one YAML file, validated whole before anything starts.

Every problem becomes a :class:`ConfigError` whose message is one line naming the field and what
would be valid (pydantic models with ``extra="forbid"``; choice names checked against the registries).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

import space
from evaluators import (
                        METRICS,
                        cheap_hint,
                        cheap_under,
                        get_metric,
                        list_metrics,
                        metric_alternatives,
                        metric_evaluator,
                        objective_names,
                        settings_key,
                        settings_model,
                        settings_models,
)
from evaluators.latency import check_device_name
from evaluators.onnx_runtime import host_device
from space.registry import ACTIVATIONS, ATTENTIONS, BLOCKS, NORMS, Registry
from train.config_base import ConfigModel as _Model
from train.config_base import FieldError, error_location, first_error
from train.data import DataSetName
from train.methods import MethodsConfig

from .errors import ConfigError
from .limits import TIE_BREAK, ConstraintsConfig, SelectConfig, given_limits, import_plugins
from .samplers import DEFAULT_SAMPLER, SAMPLERS
from .schedulers import SCHEDULERS, check_scheduler, scheduler_options
from .storage import check_storage_url
from .yaml_file import read_yaml

RUN_NAME = re.compile(r"[A-Za-z0-9._-]+")


def check_run_name(name: str) -> str:
    """A run name is one folder name under ``--results``: letters, digits, ``._-``, never ``.`` or ``..``."""
    if not RUN_NAME.fullmatch(name) or name in (".", ".."):
        raise ValueError(f"must be a folder name of letters, digits, '.', '_' or '-' (not '.' or '..'), got {name!r}")
    return name


class DataConfig(_Model):
    name: DataSetName = "digits"
    data_dir: str | None = None
    download: bool = False
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    image_size: int | None = Field(None, ge=8)

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, v: str | None) -> str | None:
        """Relative to where ``nas`` runs: trials run in other folders (and on other machines)."""
        return None if v is None else str(Path(v).expanduser().resolve())


class ProxyConfig(_Model):
    """Short proxy training of every sampled architecture (the accuracy objective).

    ``methods``: the training methods (:class:`train.methods.MethodsConfig`): ``gradinit*`` (GradInit, Zhu
    et al. 2021), ``lr_rule``/``lr_base_batch`` (``lr`` is the one tuned at ``lr_base_batch``; Granziol et
    al. 2022), ``elr``/``elr_radius`` (log or fix the effective lr of scale-invariant weights; Kodryan et al.
    2022)."""

    epochs: int = Field(3, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(0.1, gt=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(5e-4, ge=0.0)
    device: str = "cpu"
    amp: Literal["none", "bf16", "fp16"] = Field("none", description="autocast dtype, as nas retrain --amp")
    channels_last: bool | None = Field(None, description="channels_last memory format (default: on for CUDA)")
    methods: MethodsConfig = Field(default_factory=MethodsConfig)


class LatencyConfig(_Model):
    """Latency on ``device`` (``cpu``, ``cuda``, ``cuda:N`` with torch; ``ort-cpu``, ``ort-cuda``: the model exported
    to ONNX and run by ONNX Runtime): ``measure`` each architecture (once; cached in the run folder) or ``predict``
    it from a per-unit ``table`` (``nas latency-table``; cheap, so ``constraints.max_latency_ms`` may use
    it; every trial process reads it, so on a cluster it must be at the same path on every node, like the
    data). ``isolate``: measurements hold a machine-wide gate that pauses gated training meanwhile
    (evaluators/latency_gate.py); ``lock_dir``: where its lock files live (default: ``/tmp/nas-<uid>``, mode 0700).
    ``protocol``: ``plain`` (``warmup`` + ``repeats`` passes, median of those not preempted) or ``interleaved``
    (alternating rounds with the ``wrn-16-1`` reference until the ratio's 95% interval is within ``ci`` of it or
    ``max_seconds`` passed; latency = ratio × the reference's latency, calibrated once with ``warmup``/``repeats``
    and stored in the run folder and in ``lock_dir``; evaluators/latency_protocol.py). ``remeasure_front``: the
    export times the front (and compared presets) again in one interleaved session (``front_latency.csv``;
    search/results/front_latency.py) when ``latency_ms`` is an objective or a limit."""

    device: str = "cpu"
    batch_sizes: list[int] = Field(default_factory=lambda: [1], min_length=1)
    warmup: int = Field(5, ge=0)
    repeats: int = Field(20, ge=1)
    threads: int | None = Field(1, ge=1)
    mode: Literal["measure", "predict"] = "measure"
    table: str | None = None
    isolate: bool = True
    lock_dir: str | None = None
    protocol: Literal["plain", "interleaved"] = "plain"
    ci: float = Field(0.02, gt=0.0, lt=1.0)
    max_seconds: float = Field(10.0, gt=0.0)
    remeasure_front: bool = True

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        try:
            return check_device_name(v, field="latency.device")
        except ValueError as exc:  # pydantic would prefix the field again
            raise ValueError(str(exc).removeprefix("latency.device: ")) from None

    @field_validator("batch_sizes")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if any(b < 1 for b in v):
            raise ValueError("every batch size must be >= 1")
        return v

    @field_validator("table", "lock_dir")
    @classmethod
    def _absolute(cls, v: str | None) -> str | None:
        return None if v is None else str(Path(v).expanduser().resolve())  # trials run in other folders


class SpaceConfig(_Model):
    """Which choices are open. Lists are the candidates; ``per_stage`` names what varies per stage."""

    strides: list[int] = Field(default_factory=lambda: [1, 2, 2], min_length=1)
    base_widths: list[int] = Field(default_factory=lambda: [16, 32, 64], min_length=1)
    width_mult: list[float] = Field(default_factory=lambda: [1.0], min_length=1)
    depth: list[int] = Field(default_factory=lambda: [1, 2, 3], min_length=1)
    stem_width: list[int] = Field(default_factory=lambda: [16], min_length=1)
    block: list[str] = Field(default_factory=lambda: ["basic"], min_length=1)
    order: list[str] = Field(default_factory=lambda: ["pre"], min_length=1)
    norm: list[str] = Field(default_factory=lambda: ["bn"], min_length=1)
    attention: list[str] = Field(default_factory=lambda: ["none"], min_length=1)
    act: list[str] = Field(default_factory=lambda: ["relu"], min_length=1)
    per_stage: list[Literal["depth", "width_mult", "block", "order", "norm", "attention", "act"]] = Field(
        default_factory=lambda: ["depth"])
    block_args: dict[str, dict[str, Any]] = Field(default_factory=dict)
    norm_args: dict[str, dict[str, Any]] = Field(default_factory=dict)
    attn_args: dict[str, dict[str, Any]] = Field(default_factory=dict)
    head_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    skeleton: str | None = Field(None, description="a preset whose stages stay fixed; only block_choices open")
    block_choices: dict[str, dict[str, list]] = Field(default_factory=dict)

    @field_validator("skeleton")
    @classmethod
    def _skeleton(cls, v: str | None) -> str | None:
        if v is not None:
            space.get_preset(v)  # ValueError listing the presets
        return v

    @field_validator("strides")
    @classmethod
    def _strides(cls, v: list[int]) -> list[int]:
        if any(s not in (1, 2) for s in v):
            raise ValueError("every stride must be 1 or 2")
        return v

    @field_validator("base_widths", "depth", "stem_width")
    @classmethod
    def _positive_ints(cls, v: list[int]) -> list[int]:
        if any(x < 1 for x in v):
            raise ValueError("every value must be >= 1")
        return v

    @field_validator("width_mult")
    @classmethod
    def _positive_floats(cls, v: list[float]) -> list[float]:
        if any(x <= 0 for x in v):
            raise ValueError("every value must be > 0")
        return v

    @field_validator("block", "norm", "attention", "act", "order")
    @classmethod
    def _known_names(cls, v: list[str], info: Any) -> list[str]:
        registry = {"block": BLOCKS, "norm": NORMS, "attention": ATTENTIONS, "act": ACTIVATIONS}.get(info.field_name)
        valid = registry.names() if registry is not None else list(space.ORDERS)
        out = []
        for i, name in enumerate(v):
            key = space.registry.normalize_name(name)
            if key not in valid:
                raise ValueError(f"item {i}: unknown {info.field_name} {name!r}; valid: {', '.join(valid)}")
            out.append(key)
        if len(set(out)) != len(out):
            raise ValueError("duplicate choices")
        return out

    @model_validator(mode="after")
    def _skeleton_space(self) -> SpaceConfig:
        from .space_def import check_block_choices

        if self.skeleton is not None:
            fixed = [f for f, info in type(self).model_fields.items() if f not in ("skeleton", "block_choices")
                     and getattr(self, f) != info.get_default(call_default_factory=True)]  # a dump repeats defaults
            if fixed:
                raise FieldError(fixed[0], "not with space.skeleton (its stages are fixed; open block options "
                                           "in space.block_choices)")
        try:
            check_block_choices(self.skeleton, self.block_choices)
        except ValueError as exc:
            key, _, problem = str(exc).partition(": ")
            raise FieldError(key, problem) from None
        return self

    @model_validator(mode="after")
    def _lengths(self) -> SpaceConfig:
        if len(self.base_widths) != len(self.strides):
            raise ValueError(f"base_widths has {len(self.base_widths)} entries but strides has "
                             f"{len(self.strides)}; give one width per stage")
        for field, registry in (("block_args", BLOCKS), ("norm_args", NORMS), ("attn_args", ATTENTIONS)):
            for name in getattr(self, field):
                if name not in registry:
                    raise ValueError(f"{field}: unknown name {name!r}; valid: {', '.join(registry.names())}")
        return self


def _registered(registry: Registry, name: str) -> str:
    """``name``'s canonical spelling in ``registry``, or a one-line error listing the registered names."""
    if name not in registry:
        raise ValueError(f"must be one of {', '.join(registry.names())}; got {name!r}")
    return registry.entry(name).name


class ScreenConfig(_Model):
    """Proxy-guided search: for every trial handed to Ray, the searcher samples ``candidates`` new architectures,
    scores each with ``metric`` in the driver, trains the best by the metric's direction and records the others
    PRUNED (``screened_out``) without training them (search/searcher.py). ``metric``: a metric of the table
    with a direction that is cheap under this config (a zero-cost proxy such as ``synflow``, or ``params``,
    ``macs``; checked by :func:`parse_config`)."""

    metric: str
    candidates: int = Field(4, ge=2)


class SearchConfig(_Model):
    """``sampler``: a name in search/samplers.py's ``SAMPLERS``. ``screen``: proxy-guided search
    (:class:`ScreenConfig`; None: every sampled architecture is trained)."""

    sampler: str = DEFAULT_SAMPLER
    n_trials: int = Field(12, ge=1)
    max_concurrent: int | None = Field(None, ge=1)
    seed: int = 0
    screen: ScreenConfig | None = None

    @field_validator("sampler")
    @classmethod
    def _sampler(cls, v: str) -> str:
        return _registered(SAMPLERS, v)


class SchedulerConfig(_Model):
    """Early stopping: ``name`` is a scheduler of ``search.schedulers.SCHEDULERS`` — ``none`` (every trial
    trains ``proxy.epochs``) or ``mo_asha`` (multi-objective ASHA, rungs at ``grace_period·reduction_factor^k``
    epochs; stopped trials are PRUNED) — and the other keys are that scheduler's options, declared where it
    registers (e.g. ``{name: mo_asha, grace_period: 1, reduction_factor: 3}``)."""

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)
    name: str = "none"

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _registered(SCHEDULERS, v)

    @model_validator(mode="after")
    def _options(self) -> SchedulerConfig:
        try:
            scheduler_options(self.name, self.model_extra or {})
        except ValueError as exc:  # "KEY: problem" → the line names scheduler.KEY
            key, _, problem = str(exc).partition(": ")
            raise FieldError(key, problem) from None
        return self

    @property
    def options(self) -> dict[str, Any]:
        """Every option of the named scheduler, the config's values over the declared defaults."""
        return scheduler_options(self.name, self.model_extra or {})


class RayConfig(_Model):
    """``address``: join an existing cluster (``host:port``, ``ray://host:port``, ``auto``); None starts Ray here
    with ``num_cpus``/``temp_dir``. Every trial reserves ``cpus_per_trial`` CPUs (also its torch threads) and
    ``gpus_per_trial`` GPUs (a fraction shares one GPU). ``trial_logs``: Ray Tune's per-trial result logs
    (``result.json``, ``progress.csv``, TensorBoard events under ``RUN/ray``); false drops Tune's logger
    callbacks, ~40 ms per trial, which matters only when trials are look-ups (the study keeps every result)."""

    address: str | None = None
    num_cpus: int | None = Field(None, ge=1)
    cpus_per_trial: float = Field(1.0, gt=0)
    gpus_per_trial: float = Field(0.0, ge=0)
    temp_dir: str | None = None
    trial_logs: bool = True

    @field_validator("address")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        from .cluster import split_address

        if v is not None:
            split_address(v)
        return v


class InjectConfig(_Model):
    """TESTING ONLY: make a seeded ``rate`` of the trials fail on purpose (search/faults.py)."""

    rate: float = Field(ge=0.0, le=1.0)
    kinds: list[Literal["exception", "nan", "oom", "crash"]] = Field(min_length=1)
    seed: int = 0


class FaultsConfig(_Model):
    """``oom_retry``: retry an out-of-memory trial once with half the batch (and half the lr)."""

    oom_retry: bool = True
    inject: InjectConfig | None = None


class Config(_Model):
    """``plugins``: modules imported before anything else is validated (here and in every trial process),
    for evaluators outside ``evaluators/`` (see :mod:`evaluators.metrics`). ``evaluators``: settings of the
    evaluators that registered a ``settings_model`` (``{zero_cost: {batch_size: 64}}``), each validated by
    that model. ``metric_evaluators``: metric → the evaluator that computes it instead of its default one
    (``{val_acc: nb201_table}``: look NAS-Bench-201 cells up instead of training them)."""

    name: str = "search"
    plugins: list[str] = Field(default_factory=list)
    data: DataConfig = Field(default_factory=DataConfig)
    space: SpaceConfig = Field(default_factory=SpaceConfig)
    objectives: list[str] = Field(default_factory=lambda: ["val_acc", "macs"], min_length=1)
    proxy: ProxyConfig = Field(default_factory=ProxyConfig)
    latency: LatencyConfig = Field(default_factory=LatencyConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
    storage: str | None = None
    select: SelectConfig = Field(default_factory=SelectConfig)
    constraints: ConstraintsConfig = Field(default_factory=ConstraintsConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    faults: FaultsConfig = Field(default_factory=FaultsConfig)
    evaluators: dict[str, dict[str, Any]] = Field(default_factory=dict)
    metric_evaluators: dict[str, str] = Field(default_factory=dict)

    @field_validator("evaluators")
    @classmethod
    def _evaluator_settings(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        models = settings_models()
        for key, options in v.items():
            if key not in models:
                raise FieldError(key, f"no evaluator reads these settings; valid: {', '.join(sorted(models))}")
            try:
                models[key].model_validate(options or {})
            except ValidationError as exc:
                loc, problem = error_location(exc, models[key])
                raise FieldError(".".join([key, *loc]), problem) from None
        return v

    @field_validator("metric_evaluators")
    @classmethod
    def _metric_evaluators(cls, v: dict[str, str]) -> dict[str, str]:
        for metric, evaluator in v.items():
            if metric not in METRICS:
                raise FieldError(metric, f"unknown metric; valid: {', '.join(METRICS)}")
            valid = [metric_evaluator(metric), *metric_alternatives(metric)]
            if evaluator not in valid:
                raise FieldError(metric, f"must be one of {', '.join(valid)}; got {evaluator!r}")
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_run_name(v)

    @field_validator("plugins")
    @classmethod
    def _plugins(cls, v: list[str]) -> list[str]:
        import_plugins(v)
        return v

    @field_validator("objectives")
    @classmethod
    def _objectives(cls, v: list[str]) -> list[str]:
        valid = objective_names()
        for name in v:
            if name not in valid:
                raise ValueError(f"unknown objective {name!r}; valid: {', '.join(valid)}")
        if v[0] != "val_acc":
            raise ValueError("the first objective must be val_acc")
        if len(set(v)) != len(v):
            raise ValueError("duplicate objectives")
        return v

    @field_validator("storage")
    @classmethod
    def _storage(cls, v: str | None) -> str | None:
        if v is not None and check_storage_url(v).password:
            raise ValueError("must not contain a password (it would be saved in the run folder); put the URL in "
                             "the NAS_STORAGE_URL environment variable or use ~/.pgpass")
        return v

    @property
    def directions(self) -> list[str]:
        return [get_metric(o).direction for o in self.objectives]

    @property
    def needed_metrics(self) -> list[str]:
        """What every trial computes: the objectives, the metrics of given constraints and select budgets, and
        the select rule's tie-break."""
        limited = [m.name for section in (self.constraints, self.select) for _, m, _ in given_limits(section)]
        return list(dict.fromkeys([*self.objectives, *limited, TIE_BREAK]))

    def settings_for(self, evaluator: str) -> Any:
        """The config section evaluator ``evaluator`` registered as its settings (None if none); for one with a
        ``settings_model``, its entry of ``evaluators:`` validated by that model (defaults when absent)."""
        key, model = settings_key(evaluator), settings_model(evaluator)
        if model is not None:
            return model.model_validate(self.evaluators.get(key) or {})
        return getattr(self, key) if key is not None else None

    def evaluator_of(self, metric: str) -> str:
        """The evaluator that computes ``metric`` in this search (``metric_evaluators:`` or the table's default)."""
        return self.metric_evaluators.get(metric) or metric_evaluator(metric)

    def resolved_storage(self, run_dir: Path) -> str:
        """Storage URL: ``NAS_STORAGE_URL`` if set (checked here), else the config's, else ``run_dir/study.db``."""
        env = os.environ.get("NAS_STORAGE_URL")
        if env:
            try:
                check_storage_url(env)
            except ValueError as exc:
                raise ConfigError(f"NAS_STORAGE_URL: {exc}") from None
        return env or self.storage or f"sqlite:///{(run_dir / 'study.db').resolve()}"


def parse_config(data: Any) -> Config:
    """Validate a config mapping; raise :class:`ConfigError` with one line naming the field."""
    if data is None:
        raise ConfigError("<config>: the file is empty; expected a mapping (see configs/quickstart.yaml)")
    if not isinstance(data, dict):
        raise ConfigError(f"<config>: expected a mapping at the top level, got {type(data).__name__}")
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(first_error(exc, Config)) from None
    _check_buildable(cfg)
    _check_scheduler(cfg)
    _check_devices(cfg)
    _check_constraints(cfg)
    _check_screen(cfg)
    _check_latency(cfg)
    _check_methods(cfg)
    return cfg


def _check_constraints(cfg: Config) -> None:
    """Hard limits need a cheap evaluator under this config (latency: only when predicted)."""
    for key, metric, _ in given_limits(cfg.constraints):
        if not cheap_under(metric, cfg.settings_for(cfg.evaluator_of(metric.name))):
            hint = cheap_hint(metric)
            raise ConfigError(f"constraints.{key}: hard constraints need a cheap evaluator; "
                              f"{hint + ', or ' if hint else ''}use select.{key}")


def screen_metrics(cfg: Config) -> list[str]:
    """The metrics ``search.screen.metric`` may name: those with a direction that are cheap under ``cfg``."""
    return [name for name in list_metrics() if get_metric(name).direction is not None
            and cheap_under(get_metric(name), cfg.settings_for(cfg.evaluator_of(name)))]


def _check_screen(cfg: Config) -> None:
    """Screening scores every candidate in the driver: its metric must be cheap (no training, no measurement)."""
    screen = cfg.search.screen
    if screen is None:
        return
    valid = screen_metrics(cfg)
    if screen.metric in valid:
        return
    if screen.metric not in METRICS:
        problem = f"unknown metric {screen.metric!r}"
    elif get_metric(screen.metric).direction is None:
        problem = f"{screen.metric!r} has no direction (recorded only), so no candidate is better"
    else:
        hint = cheap_hint(get_metric(screen.metric))
        problem = (f"{screen.metric!r} is not cheap under this config (screening scores every candidate before any "
                   f"training{'; ' + hint if hint else ''})")
    raise ConfigError(f"search.screen.metric: {problem}; valid: {', '.join(valid)}")


def _check_methods(cfg: Config) -> None:
    """The proxy's training methods with its optimizer (proxy training is SGD)."""
    try:
        cfg.proxy.methods.check_optimizer("sgd")
    except FieldError as exc:
        raise ConfigError(f"proxy.methods.{exc}") from None


def _check_latency(cfg: Config) -> None:
    """``predict`` needs a table built for this device, batch and thread count."""
    lat = cfg.latency
    if lat.mode == "measure":
        if lat.table is not None:
            raise ConfigError("latency.table: only read with latency.mode: predict (mode is measure)")
        return
    if lat.table is None:
        raise ConfigError("latency.table: required with latency.mode: predict (build one with `nas latency-table`)")
    from evaluators.latency_table import LatencyTable

    try:
        table = LatencyTable.load(lat.table)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    for field, want, have in (("device", table.device, lat.device), ("batch_sizes", [table.batch], lat.batch_sizes),
                              ("threads", table.threads, lat.threads)):
        if want != have:
            raise ConfigError(f"latency.{field}: is {have!r} but the table {lat.table!r} was measured with "
                              f"{want!r}; match it or build a table for this setting")


def _check_devices(cfg: Config) -> None:
    """Options that cannot work together on Ray: embedded-only settings with an address, GPU work on no GPU."""
    if cfg.ray.num_cpus is not None and cfg.ray.cpus_per_trial > cfg.ray.num_cpus:
        raise ConfigError(f"ray.cpus_per_trial: a trial needs {cfg.ray.cpus_per_trial:g} CPUs but the Ray started "
                          f"here has ray.num_cpus: {cfg.ray.num_cpus}; a trial could never start")
    if cfg.ray.address is not None:
        for key in ("num_cpus", "temp_dir"):
            if getattr(cfg.ray, key) is not None:
                raise ConfigError(f"ray.{key}: only for the Ray instance started here; a cluster joined through "
                                  f"ray.address has its own (remove one of them)")
    for field, device in (("proxy.device", cfg.proxy.device), ("latency.device", cfg.latency.device)):
        if host_device(device).startswith("cuda") and cfg.ray.gpus_per_trial == 0 and \
                (field == "proxy.device" or "latency_ms" in cfg.needed_metrics):
            raise ConfigError(f"ray.gpus_per_trial: is 0 but {field} is {device!r}; Ray hides GPUs from trials "
                              f"that reserve none (set e.g. gpus_per_trial: 0.5)")


def _check_scheduler(cfg: Config) -> None:
    """The scheduler's registered check against the proxy budget (mo_asha: ``proxy.epochs > grace_period``)."""
    problem = check_scheduler(cfg.scheduler.name, cfg.scheduler.options, max_t=cfg.proxy.epochs)
    if problem is not None:
        raise ConfigError(f"scheduler.{problem}")


def _check_buildable(cfg: Config) -> None:
    """The space's fixed block/norm/attention options must be accepted by those choices."""
    from .space_def import SearchSpace

    SearchSpace(cfg.space, input_size=1 << 30).check()


def load_config(path: str | Path) -> Config:
    """Read (:func:`search.yaml_file.read_yaml`: size, UTF-8, duplicate keys, safe loader) and validate a YAML
    config file."""
    return parse_config(read_yaml(path))


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
