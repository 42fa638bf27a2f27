"""Command-line options read off the configuration dataclasses: one option per field, with its
type, default and help taken from the class, so that a field added to a config is an option of
every command that takes that config, with no second list to keep in step.

`add_config_options(parser, cls)` adds them; `config_values(args)` collects what was typed, by
dotted field name (`synthesis.apa_weight`), for `ExperimentConfig.from_dict` or a nested config's
`from_dict` to check once. Imports nothing heavy: the CLI builds its parsers before any model code.
"""
from __future__ import annotations

import argparse

# Options for config fields come from the dataclasses: one option per field, `--field-name`, its
# type, default and help (the field's comment or docstring entry) read from the class. Listed here:
# fields whose option has another name (aliases after the first, the names the README documents
# kept), or none (the model is positional; quantization overrides need a --config file).
_OPTION_NAMES = {
    "data_root": ("--data",), "eval_limit": ("--limit",), "heldout_limit": ("--heldout",),
    "model": (), "quant.overrides": (),
    "synthesis.iterations": ("--iterations", "--synth-iters", "--iters"),
    "synthesis.batch_size": ("--synth-batch-size",), "synthesis.lr": ("--synth-lr",),
}
_OPTION_PREFIX = {"synthesis.": "", "quant.": "", "recon.": "recon-"}  # recon fields: --recon-lr, ...


def _option_names(key: str, prefix: str, name: str) -> tuple[str, ...]:
    """The option(s) of config field `key`: `_OPTION_NAMES`, else `--field-name`, plus the
    paper's symbol for it (`--a1`, from the one alias table `PAPER_NAMES`)."""
    from .synthesis.config import PAPER_NAMES

    names = _OPTION_NAMES.get(key, (f"--{_OPTION_PREFIX.get(prefix, '')}{name.replace('_', '-')}",))
    symbols = [f"--{symbol}" for symbol, field in PAPER_NAMES.items() if prefix == "synthesis." and field == name]
    return (*names, *symbols) if names else ()


_NONE_WORDS = ("none", "null", "fp")


def add_config_options(parser, cls, *, prefix: str = "", hide: tuple[str, ...] = ()) -> None:
    """One option per field of the config dataclass `cls` (and of the configs nested in it), its
    default shown. An option not typed stays out of `args` (the parser's `argument_default` is
    SUPPRESS), so the dataclass default applies; the values given land in `args` under their
    dotted field names (`synthesis.apa_weight`), which `config_values(args)` collects."""
    import dataclasses
    import typing

    from .experiments.config import NESTED

    hints = typing.get_type_hints(cls)
    docs = _field_docs(cls)
    group = parser.add_argument_group(f"{cls.__name__} fields" + (f" ({prefix[:-1]})" if prefix else ""))
    for f in dataclasses.fields(cls):
        key = prefix + f.name
        if f.name in hide:
            continue
        if not prefix and f.name in NESTED:  # the experiment's seed sets the nested seeds
            add_config_options(parser, NESTED[f.name], prefix=f"{f.name}.", hide=("seed",))
            continue
        names = _option_names(key, prefix, f.name)
        kind = _option_kind(hints[f.name])
        if not names or kind is None:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        text = (docs.get(f.name, "") + f" (default: {_show(default)})").strip().replace("%", "%%")
        group.add_argument(*names, dest=key, help=text, **kind)
        parser.set_defaults(config_fields=(*(parser.get_default("config_fields") or ()), key))


def config_values(args: argparse.Namespace) -> dict:
    """The config fields given on the command line, by dotted name (the options of
    `add_config_options`; options not typed are absent)."""
    return {k: getattr(args, k) for k in getattr(args, "config_fields", ()) if hasattr(args, k)}


def _option_kind(hint) -> dict | None:
    """argparse keywords for a field's type; None for types the command line does not take."""
    import types
    import typing

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is bool or (origin in (typing.Union, types.UnionType) and set(args) == {bool, type(None)}):
        return {"action": argparse.BooleanOptionalAction}  # bool | None: not typed, None
    if origin is tuple:
        return {"type": args[0], "nargs": "+" if Ellipsis in args else len(args),
                "metavar": args[0].__name__.upper()}
    allowed = args if origin in (typing.Union, types.UnionType) else (hint,)
    if not set(allowed) <= {int, float, str, type(None)}:
        return None
    return {"type": _Scalar(allowed), "metavar": "/".join(
        "NONE" if t is type(None) else t.__name__.upper() for t in allowed)}


class _Scalar:
    """Parses an option's text as the first of the field's types that accepts it."""

    def __init__(self, types: tuple):
        self.types = types
        self.__name__ = " or ".join(t.__name__ for t in types)  # argparse names it in errors

    def __call__(self, text: str):
        if type(None) in self.types and text.strip().lower() in _NONE_WORDS:
            return None
        for kind in (int, float, str):
            if kind in self.types:
                try:
                    return kind(text)
                except ValueError:
                    pass
        raise argparse.ArgumentTypeError(f"{text!r} is not a valid {self.__name__}")


def _show(value) -> str:
    if isinstance(value, (tuple, list)):
        return " ".join(map(str, value))
    return "none" if value is None else str(value)


def _field_docs(cls) -> dict[str, str]:
    """The help of each field: its comment in the class body (`n: int = 32  # [paper] ...`, with
    comment lines below it) or its entry in the class docstring (`- `iters`: ...`, with the
    indented lines below it)."""
    import inspect
    import re

    docs = {}
    bullet = re.compile(r"^- `(\w+)`(?: / `(\w+)`)?: (.+(?:\n  .+)*)", re.M)
    for match in bullet.finditer(inspect.cleandoc(cls.__doc__ or "")):
        for name in filter(None, match.groups()[:2]):
            docs[name] = " ".join(match.group(3).split())
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):  # no source (a frozen install): help without the comments
        return docs
    comment = re.compile(r"^    (\w+): [^#\n]+#\s*(.+(?:\n {4,}#.+)*)", re.M)
    for match in comment.finditer(source):
        docs[match.group(1)] = " ".join(match.group(2).replace("#", " ").split())
    return docs
