"""`ExperimentConfig`: everything that defines one experiment, as one validated, nested value.

An experiment is a model (and its weights), a `SynthesisConfig` (how the calibration set is made),
a `QuantConfig` (how the model is quantized), a `ReconConfig` (block reconstruction), how it is
evaluated, and one seed. The same value is built in Python, from `sardfq run` options, from a
`--config` JSON file or a sweep row, and read back from a result record:

    {"model": "vit_tiny_cifar10", "checkpoint": null, "seed": 0,
     "synthesis": {"method": "sardfq", "n": 32, "iterations": 1000, "apa_weight": null, ...},
     "quant": {"w_bits": 4, "a_bits": 4, "attn_bits": "a_bits", ...},
     "recon": {"iters": 1000, "lr": 4e-05, ...},
     "eval_limit": null, "heldout_limit": 0, "eval_batch_size": 256,
     "device": "cpu", "data_root": null}

In a mapping, a nested field may also be written as a dotted key (`"synthesis.apa_weight": 10.0`
is `"synthesis": {"apa_weight": 10.0}`), a nested mapping may list only the fields it changes, and
the bit setting `"setting": "w4a4"` (or by its old name, `"bits": "w4a4"`) sets `quant.w_bits` and
`quant.a_bits` (`"w4a4-attn2"` sets `quant.attn_bits` too). A key that is not a field, at any level,
is a ConfigError naming it and the closest field. Configurations of version-1 records (flat fields
such as `synth_iters`, and `synthesis_options` / `quant_options` dicts) are converted when read.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Mapping

from ..errors import ConfigError, reject_unknown
from ..io import to_plain
from ..models.names import DEFAULT_MODEL, model_slug
from ..quant.config import SAME_AS_ACTIVATIONS, QuantConfig, ReconConfig, parse_setting
from ..registry import Registry
from ..synthesis.config import METHODS, PAPER_NAMES, SynthesisConfig

# The experiment functions a sweep may name (`experiment: NAME` in a sweep file), each registered
# where it is defined (`sardfq.experiments.run` registers `run_experiment` when the wing is
# imported): a file names code only by a registered name. The registry lives here, below the
# runner and the sweeps, so that `sweep` finds an experiment without importing `run`.
EXPERIMENTS: Registry[Callable] = Registry("experiment")

NESTED: dict[str, type] = {"synthesis": SynthesisConfig, "quant": QuantConfig, "recon": ReconConfig}
# the synthesis fields an experiment's name and table columns show; the others are its "design"
_SYNTHESIS_CORE = ("method", "apa", "msr", "sl", "n", "iterations", "seed")
# names of version 1 (and the paper's a1), pointed at their place in the nested layout
_MOVED = {"synth_iters": "synthesis.iterations", "recon_iters": "recon.iters",
          "synthesis_options": "synthesis", "quant_options": "quant", "recon_options": "recon",
          **{k: f"synthesis.{v}" for k, v in PAPER_NAMES.items()}}


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything that defines one experiment; the nested configs hold the paper's defaults, each
    tagged with its source. Built from a mapping with `from_dict`, changed with `replace`."""

    model: str = DEFAULT_MODEL  # timm name or the embedded teacher
    checkpoint: str | None = None  # local weights file for a timm model
    seed: int = 0  # seeds synthesis, quantization and reconstruction (their `seed` fields follow it)
    synthesis: SynthesisConfig = field(default_factory=SynthesisConfig)
    quant: QuantConfig = field(default_factory=QuantConfig)
    recon: ReconConfig = field(default_factory=ReconConfig)  # recon.iters = 0: calibration only
    eval_limit: int | None = None  # evaluate on an even spread of this many test images (None: all)
    heldout_limit: int = 0  # also evaluate on this many held-out training images (0: skip), to
    #                         choose hyper-parameters without looking at the test set
    eval_batch_size: int = 256  # images per evaluation batch
    device: str = "cpu"  # cpu | cuda | cuda:N | mps
    data_root: str | None = None  # data folder (None: $SARDFQ_DATA)

    def __post_init__(self):
        def need(cond: bool, name: str, what: str):
            if not cond:
                raise ConfigError(f"ExperimentConfig.{name}: {what}, got {getattr(self, name)!r}")

        def whole(name: str, low: int) -> None:
            value = getattr(self, name)
            need(isinstance(value, int) and not isinstance(value, bool) and value >= low, name,
                 f"must be an integer >= {low}")

        need(isinstance(self.model, str) and bool(self.model), "model", "must be a model name")
        for name, low in (("seed", 0), ("heldout_limit", 0), ("eval_batch_size", 1)):
            whole(name, low)
        need(self.eval_limit is None or (isinstance(self.eval_limit, int) and not isinstance(self.eval_limit, bool)
                                         and self.eval_limit >= 1),
             "eval_limit", "must be a positive integer or null (the whole test set)")
        need(isinstance(self.device, str) and (self.device == "cpu" or self.device.startswith("cuda")
                                               or self.device == "mps"),
             "device", "must be 'cpu', 'cuda', 'cuda:N' or 'mps'")
        for name in ("data_root", "checkpoint"):
            need(getattr(self, name) is None or isinstance(getattr(self, name), str), name,
                 "must be a path or null")
        for name, kind in NESTED.items():
            value = getattr(self, name)
            if isinstance(value, Mapping):  # built directly, not through from_dict
                _check_keys({name: value})
                value = _nested(name, kind, value, self.seed)
            need(isinstance(value, kind), name, f"must be a {kind.__name__} or a mapping of its fields")
            if getattr(value, "seed", self.seed) != self.seed:
                if value.seed != 0:  # an explicit other seed: say so rather than overwrite it
                    raise ConfigError(f"ExperimentConfig.{name}.seed is {value.seed} but the experiment's "
                                      f"seed is {self.seed}: the experiment's `seed` seeds every stage")
                value = dataclasses.replace(value, seed=self.seed)
            object.__setattr__(self, name, value)

    # -- names ---------------------------------------------------------------------------------
    @property
    def setting(self) -> str:
        """The bit setting, as `QuantConfig.label` and the records' `setting` column write it:
        'w4a4', or 'w4a4-attn2' where the attention map has other bits than the activations."""
        return self.quant.label

    @property
    def bits(self) -> str:
        """The old name of the bit setting without the attention map's bits (`quant.name`, e.g.
        'w4a4'), as the records' `bits` field holds it; `setting` is the name to use."""
        return self.quant.name

    @property
    def variant(self) -> str:
        """The calibration source as one short name: 'sardfq', 'sardfq[apa+sl]', 'noise', ..."""
        s = self.synthesis
        if s.method != "sardfq" or (s.apa and s.msr and s.sl):
            return s.method
        on = [k for k in ("apa", "msr", "sl") if getattr(s, k)]
        return f"sardfq[{'+'.join(on) or 'none'}]"

    @property
    def design(self) -> dict:
        """The synthesis fields changed from their defaults, beyond the method, its switches, the
        number of images, iterations and seed (e.g. `{"prior": "laplace"}`)."""
        return non_default(self.synthesis, skip=_SYNTHESIS_CORE)

    # -- conversions ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain JSON-ready values, the nested configs whole."""
        return {f.name: (getattr(self, f.name).to_dict() if f.name in NESTED else getattr(self, f.name))
                for f in fields(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, *layers: Mapping[str, Any]) -> "ExperimentConfig":
        """Build from one or more mappings (a record's "config", a `--config` file, a sweep row,
        command-line options), each of nested mappings and/or dotted keys with the bit setting
        (`setting`, or its old name `bits`) as a shorthand, later layers winning key by key. Every
        key of every level is checked once, before anything is built: an unknown one is a
        ConfigError naming the closest field."""
        values: dict = {}
        for layer in layers:
            if not isinstance(layer, Mapping):
                raise ConfigError(f"an experiment configuration must be a mapping of field names to values, "
                                  f"got {type(layer).__name__}")
            layer = _setting_key(nest(layer))
            if {"synthesis_options", "quant_options"} <= set(layer):  # a version-1 record's config
                layer = _from_v1(layer)
            values = merge(values, layer)
        setting = values.pop("setting", None)
        _check_keys(values)
        if setting is not None:  # wins over quant.w_bits / quant.a_bits given beside it
            w, a, attn = parse_setting(setting)
            widths = {"w_bits": w, "a_bits": a, **({} if attn == SAME_AS_ACTIVATIONS else {"attn_bits": attn})}
            values = merge(values, {"quant": widths})
        seed = values.get("seed", 0)
        for name, kind in NESTED.items():
            if isinstance(values.get(name), Mapping):
                values[name] = _nested(name, kind, values[name], seed)
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> "ExperimentConfig":
        return cls.from_dict(json.loads(text))

    def replace(self, **changes) -> "ExperimentConfig":
        """A copy with `changes`: top-level fields, the bit `setting` (or `bits`), nested configs (a
        config object replaces the nested config, a mapping changes only its keys), or dotted keys
        via `**{"synthesis.n": 8}`."""
        base = self.to_dict()
        changes = nest(changes)
        for name in NESTED:
            if isinstance(changes.get(name), NESTED[name]):
                base[name] = {}
                changes[name] = changes[name].to_dict()
                if changes[name].get("seed") == 0:  # the class default: follow the experiment's seed
                    changes[name].pop("seed")
            if "seed" in changes:  # the nested seeds follow the new seed
                base[name].pop("seed", None)
        return type(self).from_dict(merge(base, changes))

    # -- identifiers ---------------------------------------------------------------------------
    def run_id(self) -> str:
        """A readable, stable identifier: model-variant-bits-seed plus a hash of what defines the
        run (device, data location and evaluation batch size excluded: they say where and how fast
        a run ran, not what it is). The hash is taken over the version-1 flat layout, with only
        the changed nested fields, so the runs recorded before the nesting keep their identifiers."""
        s, q, r = self.synthesis, self.quant, self.recon
        d = {"model": self.model, "checkpoint": self.checkpoint, "seed": self.seed, "method": s.method,
             "apa": s.apa, "msr": s.msr, "sl": s.sl, "n": s.n, "synth_iters": s.iterations,
             "w_bits": q.w_bits, "a_bits": q.a_bits, "recon_iters": r.iters, "eval_limit": self.eval_limit,
             "synthesis_options": self.design, "quant_options": non_default(q, skip=("w_bits", "a_bits"))}
        recon_options = non_default(r, skip=("iters", "seed"))
        if recon_options:
            d["recon_options"] = recon_options
        if self.heldout_limit:
            d["heldout_limit"] = self.heldout_limit
        return f"{model_slug(self.model)}-{self._slug()}-{self.quant.name}-s{self.seed}-{_digest(d)}"

    def synthesis_id(self) -> str:
        """Identifies the calibration set alone: runs that differ only in bit-width, reconstruction
        or evaluation share it (a sweep synthesizes it once). Synthesis is deterministic only on
        the CPU, so a set made on another device kind (cuda, mps) gets its own identifier."""
        s = self.synthesis
        d = {"model": self.model, "checkpoint": self.checkpoint, "method": s.method, "n": s.n,
             "seed": self.seed, "synthesis_options": self.design}
        if METHODS.get(s.method).optimizes:  # noise and real images do not iterate
            d["synth_iters"] = s.iterations
        if s.switches is not None:
            d.update(s.switches)
        kind = self.device.split(":")[0]
        if kind != "cpu":
            d["device"] = kind
        return f"{model_slug(self.model)}-{self._slug()}-s{self.seed}-{_digest(d)}"

    def _slug(self) -> str:
        return self.variant.replace("[", "-").replace("]", "").replace("+", "-")


def _digest(d: Mapping) -> str:
    return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:8]


def read_config_file(path: str | os.PathLike, what: str = "config file") -> dict:
    """A JSON file of `ExperimentConfig` fields (nested or dotted, any subset) as the mapping
    `from_dict` takes as one of its layers; a ConfigError naming `what` (`--config` on the command
    line) when it cannot be read, is not JSON or is not an object."""
    try:
        values = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot read it ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise ConfigError(f"{what} {path} is not valid JSON: {exc}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{what} {path} must hold a JSON object of ExperimentConfig fields, "
                          f"got {type(values).__name__}")
    return values


def non_default(config, *, skip: tuple[str, ...] = ()) -> dict:
    """The fields of a nested config whose values differ from the class defaults, as plain values."""
    defaults = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                for f in fields(config)}
    return {k: v for k, v in to_plain(config.to_dict()).items()
            if k not in skip and v != to_plain(defaults[k])}


def _setting_key(layer: dict) -> dict:
    """A layer's bit setting under its name, `setting`, when given by its old name, `bits`."""
    if "bits" not in layer:
        return layer
    layer = dict(layer)
    old = layer.pop("bits")
    if layer.get("setting", old) != old:
        raise ConfigError(f"ExperimentConfig: the bit setting is given twice, as setting {layer['setting']!r} "
                          f"and by its old name as bits {old!r}; give `setting` only")
    layer["setting"] = old
    return layer


def _check_keys(values: Mapping) -> None:
    """The one check of an experiment mapping's keys, top level and nested (a nested config given
    as an object is already checked)."""
    reject_unknown("ExperimentConfig", values, (f.name for f in fields(ExperimentConfig)), _MOVED,
                   suggest=_dotted_names())
    for name, kind in NESTED.items():
        if isinstance(values.get(name), Mapping):
            reject_unknown(f"ExperimentConfig.{name} ({kind.__name__})", values[name],
                           (f.name for f in fields(kind)), PAPER_NAMES if kind is SynthesisConfig else None)


def _nested(name: str, kind: type, given: Mapping, seed: int):
    """A nested config from a mapping of its (checked) fields, its `seed` (if given) agreeing with
    `seed`."""
    given = dict(given)
    if "seed" in given and given["seed"] != seed:
        raise ConfigError(f"ExperimentConfig.{name}.seed is {given['seed']!r} but the experiment's seed is "
                          f"{seed!r}: the experiment's `seed` seeds every stage; set it alone")
    if "seed" in {f.name for f in fields(kind)}:
        given["seed"] = seed
    return kind(**given)


def _dotted_names() -> list[str]:
    return [f"{name}.{f.name}" for name, kind in NESTED.items() for f in fields(kind)]


def nest(values: Mapping[str, Any]) -> dict:
    """`{"synthesis.n": 8, "seed": 1}` -> `{"synthesis": {"n": 8}, "seed": 1}` (merged with a nested
    mapping given beside it). Keys whose prefix is not a nested config are left as they are."""
    out: dict = {}
    for key, value in values.items():
        prefix, dot, rest = str(key).partition(".")
        out = merge(out, {prefix: {rest: value}} if dot and prefix in NESTED else {key: value})
    return out


def merge(base: Mapping, changes: Mapping) -> dict:
    """`base` updated with `changes`, the nested configs' mappings (or config objects) merged key by
    key rather than replaced."""
    out = dict(base)
    for key, value in changes.items():
        inner = out.get(key)
        if key in NESTED and isinstance(value, Mapping) and (isinstance(inner, Mapping) or hasattr(inner, "to_dict")):
            out[key] = merge(inner.to_dict() if hasattr(inner, "to_dict") else inner, value)
        else:
            out[key] = value
    return out


def _from_v1(values: Mapping) -> dict:
    """A version-1 configuration (flat fields, option dicts) in the nested layout: the same run."""
    v = dict(values)
    synthesis = dict(v.pop("synthesis_options", None) or {})
    quant = dict(v.pop("quant_options", None) or {})
    for old, new in (("method", "method"), ("apa", "apa"), ("msr", "msr"), ("sl", "sl"), ("n", "n"),
                     ("synth_iters", "iterations")):
        if old in v:
            synthesis[new] = v.pop(old)
    for name in ("w_bits", "a_bits"):
        if name in v:
            quant[name] = v.pop(name)
    recon = {"iters": v.pop("recon_iters")} if "recon_iters" in v else {}
    recon.update(v.pop("recon_options", None) or {})
    return merge(v, {"synthesis": synthesis, "quant": quant, "recon": recon})
