"""The one settings mechanism: frozen dataclasses whose field annotations carry their rules.

A settings class subclasses :class:`Settings` and is a frozen dataclass. Each field's type says
what it holds; ``Annotated`` adds pydantic ``Field`` bounds (``gt``, ``ge``, ``lt``, ``le``), a
:func:`one_of` choice of modes or a :class:`Rule`. Rules across fields live in the class's
``problems()``. Construction checks everything with pydantic (strict: no bool for a number, no
number for a string) and raises :class:`SettingsError`, whose message names each bad field, what
it must be and what it got: ``"<what> <field> must be > 0, got 0"`` for settings made in code,
and, through :func:`from_mapping`, ``"<source>: key '<kebab-key>' must be > 0, got 0"`` for
settings read from a file or the Flower run config.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, dataclass, fields
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, create_model
from pydantic_core import PydanticCustomError, core_schema

# The run config's differential-privacy modes and the keys each one uses (read by the run
# settings, the server's DP wrapper and the report).
DP_MODE_KEYS: dict[str, tuple[str, ...]] = {
    "off": (),
    "fixed": ("dp-noise-multiplier", "dp-clipping-norm"),
    "adaptive": ("dp-noise-multiplier", "dp-clipping-norm", "dp-target-quantile",
                 "dp-clip-norm-lr", "dp-clipped-count-stddev"),
}
DP_MODES = tuple(DP_MODE_KEYS)


class ConfigError(ValueError):
    """A setting is unknown, of the wrong type or out of range; the message names it."""


@dataclass(frozen=True)
class Problem:
    """One broken rule: ``field`` (None for a rule across fields) and what is wrong."""

    field: str | None
    text: str  # "must be > 0, got 0"; a whole sentence when ``field`` is None


class SettingsError(ConfigError):
    """The problems of one settings object, named the way code writes them."""

    def __init__(self, what: str, problems: Iterable[Problem],
                 titles: Mapping[str, str] | None = None) -> None:
        self.problems = tuple(problems)
        self.titles = dict(titles or {})
        super().__init__("; ".join(
            f"{what}: {p.text}" if p.field is None else f"{what} {self._label(p.field)} {p.text}"
            for p in self.problems))

    def _label(self, name: str) -> str:
        title = self.titles.get(name)
        return f"{name} ({title})" if title else name

    def at(self, source: str) -> ConfigError:
        """The same problems as read from ``source``, under the kebab-case keys a file uses."""
        return ConfigError("; ".join(
            f"{source}: " + (p.text if p.field is None else f"key '{kebab(p.field)}' {p.text}")
            for p in self.problems))


@dataclass(frozen=True)
class Rule:
    """Field metadata: ``test(value)`` must hold; ``expected`` words it ("one of [...]")."""

    test: Callable[[Any], bool]
    expected: str

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> core_schema.CoreSchema:
        def check(value: Any) -> Any:
            if not self.test(value):
                raise PydanticCustomError("rule", "{expected}", {"expected": self.expected})
            return value
        return core_schema.no_info_after_validator_function(check, handler(source))


def one_of(choices: tuple[str, ...]) -> Rule:
    """The rule "one of ``choices``" (a mode list defined once, where the modes are)."""
    return Rule(lambda v: v in choices, f"one of {list(choices)}")


def kebab(name: str) -> str:
    """A field name as a run-config / YAML key (``dp_clip_norm_lr`` -> ``dp-clip-norm-lr``)."""
    return name.replace("_", "-")


class Settings:
    """Base of the settings dataclasses: fields checked on construction (and on ``replace``).

    Subclasses set ``WHAT`` (how messages name them: "preprocessing", "encoder") and may
    override :meth:`problems` with their rules across fields.
    """

    WHAT: ClassVar[str]
    TITLES: ClassVar[dict[str, str]] = {}  # field -> what it is, shown after its name

    def __post_init__(self) -> None:
        values = {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]
        _check(type(self), values)
        broken = [Problem(None, text) for text in self.problems()]
        if broken:
            raise SettingsError(self.WHAT, broken)

    def problems(self) -> list[str]:
        """Rules across fields that this object breaks (none by default)."""
        return []


S = TypeVar("S", bound=Settings)
T = TypeVar("T")

_STRICT = ConfigDict(strict=True, extra="forbid")
_MODELS: dict[type, type[BaseModel]] = {}


def _model(cls: type[Settings]) -> type[BaseModel]:
    """A pydantic model with the fields, types, defaults and rules of dataclass ``cls``."""
    if cls in _MODELS:
        return _MODELS[cls]
    hints = typing.get_type_hints(cls, include_extras=True)
    specs: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        default = f.default_factory() if f.default_factory is not MISSING else f.default
        specs[f.name] = (hints[f.name], ... if default is MISSING else default)
    model: type[BaseModel] = create_model(cls.__name__, __config__=_STRICT, **specs)
    _MODELS[cls] = model
    return model


def _check(cls: type[Settings], values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` checked against the fields of ``cls`` (numbers as the field's type: an int
    for a float field becomes a float); :class:`SettingsError` names every bad field."""
    model = _model(cls)
    try:
        checked = model.model_validate(dict(values))
    except ValidationError as exc:
        raise SettingsError(cls.WHAT, _problems(model, values, exc), cls.TITLES) from None
    return {name: getattr(checked, name) for name in values}


def _problems(model: type[BaseModel], values: Mapping[str, Any],
              exc: ValidationError) -> list[Problem]:
    """One :class:`Problem` per field of ``exc`` (pydantic's errors, worded as ours)."""
    out: dict[str, Problem] = {}
    for err in exc.errors():
        name = str(err["loc"][0])
        if name in out:
            continue
        value = values[name]
        field = model.model_fields[name]
        if err["type"] == "rule":
            expected = err["msg"]
        elif err["type"] in _BOUND_ERRORS:
            expected = field.description or _bounds(field.metadata, field.annotation)
        else:
            out[name] = Problem(name, f"must be {_type_words(field.annotation)}, got {value!r} "
                                      f"({type(value).__name__})")
            continue
        out[name] = Problem(name, f"must be {expected}, got {value!r}")
    return list(out.values())


_BOUND_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}


def _bounds(metadata: list[Any], annotation: Any) -> str:
    """Bounds ``gt=0, le=1`` -> "in (0, 1]"; one bound -> "> 0"; an int's ``ge, le`` -> "an
    integer 0..12"."""
    b = {k: getattr(m, k) for m in metadata for k in ("gt", "ge", "lt", "le")
         if getattr(m, k, None) is not None}
    low = "gt" if "gt" in b else "ge" if "ge" in b else None
    high = "lt" if "lt" in b else "le" if "le" in b else None
    if low and high:
        if annotation is int and (low, high) == ("ge", "le"):
            return f"an integer {b['ge']}..{b['le']}"
        return f"in {'(' if low == 'gt' else '['}{b[low]}, {b[high]}{')' if high == 'lt' else ']'}"
    symbols = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
    key = low or high
    assert key is not None, "a bound error needs a bound"
    return f"{symbols[key]} {b[key]}"


def _type_words(annotation: Any) -> str:
    return "true or false" if annotation is bool else f"of type {_type_name(annotation)}"


def _type_name(annotation: Any) -> str:
    """``int``, ``list[str]``, ``int | None`` (constraints left out)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if annotation is type(None):
        return "None"
    plain = isinstance(annotation, type) and not isinstance(annotation, types.GenericAlias)
    return annotation.__name__ if plain else str(annotation)


def reject_unknown(cls: type[Settings], keys: Iterable[str], source: str | None = None) -> None:
    """:class:`ConfigError` naming the ``keys`` that are no field of ``cls`` (kebab-case keys
    and ``"<source>: ..."`` when ``source`` is given, else the field names)."""
    key = kebab if source else str
    known = sorted(key(f.name) for f in fields(cls))  # type: ignore[arg-type]
    unknown = sorted(set(keys) - set(known))
    if not unknown:
        return
    if source:
        raise ConfigError(f"{source}: unknown key(s) {unknown}; known keys: {known}")
    raise ConfigError(f"unknown {cls.WHAT} config keys {unknown}; known keys: {known}")


def from_dict(cls: type[S], data: Mapping[str, Any]) -> S:
    """``cls`` from a dictionary of its field names (``to_dict()``); unknown keys are an error."""
    reject_unknown(cls, data)
    return cls(**data)


def from_mapping(cls: type[S], data: Mapping[str, Any], source: str) -> S:
    """``cls`` from the kebab-case keys of ``source`` (the run config, a YAML section):
    :class:`ConfigError` ``"<source>: key '<key>' must be ..., got ..."``."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping of keys, got {type(data).__name__}")
    reject_unknown(cls, data, source)
    try:
        return cls(**_check(cls, {k.replace("-", "_"): v for k, v in data.items()}))
    except SettingsError as exc:
        raise exc.at(source) from None


def from_attributes(cls: type[T], source: object, **values: Any) -> T:
    """Dataclass ``cls`` from the attributes of ``source`` named like its fields, then
    ``values`` (one settings object mapped onto another without copying field by field)."""
    shared = {f.name: getattr(source, f.name) for f in fields(cls)  # type: ignore[arg-type]
              if hasattr(source, f.name)}
    return cls(**{**shared, **values})
