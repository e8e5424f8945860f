"""`BaseStepConfig`: ZenML's step configuration of the seed's era, without pydantic.

A subclass declares typed fields with defaults in its body, as a pydantic model
does; a step takes it as a parameter annotated with that class (`config:
TrainerConfig`), filled with the class's defaults when the pipeline passes none.
Its fields enter the cache key one by one, as parameters named `config.gamma`
(plan.py), so that `cache status` names the field that changed. Imports errors only.
"""

from __future__ import annotations

import copy
import json
import sys
import typing
from collections.abc import Iterator
from typing import Any, ClassVar

from ..errors import PipelineDefinitionError

_REQUIRED = object()


class BaseStepConfig:
    """Subclass it with annotated fields: `gamma: float = 0.001`. Fields without a
    default must be given: `TrainerConfig(gamma=0.01)`."""

    _fields_cache: ClassVar[dict[str, tuple[Any, Any]] | None] = None

    def __init__(self, **values: Any) -> None:
        fields = type(self).fields()
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise PipelineDefinitionError(
                f"{type(self).__name__} has no field {unknown[0]!r}; its fields are: "
                f"{', '.join(fields) or 'none'}"
            )
        for name, (annotation, default) in fields.items():
            if name in values:
                value = _checked(type(self).__name__, name, annotation, values[name])
            elif default is _REQUIRED:
                raise PipelineDefinitionError(
                    f"{type(self).__name__} needs a value for field {name!r} (it has no "
                    f"default); pass {type(self).__name__}({name}=...)"
                )
            else:
                value = copy.deepcopy(default)  # a mutable default is never shared
            object.__setattr__(self, name, value)

    @classmethod
    def fields(cls) -> dict[str, tuple[Any, Any]]:
        """{name: (annotation, default or a marker for required)}, in declaration order."""
        cached = cls.__dict__.get("_fields_cache")
        if cached is not None:
            return cached
        hints: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            namespace = getattr(sys.modules.get(klass.__module__), "__dict__", {})
            for name, annotation in vars(klass).get("__annotations__", {}).items():
                hints[name] = _evaluated(annotation, namespace)
        fields: dict[str, tuple[Any, Any]] = {}
        for name, annotation in hints.items():
            if name.startswith("_") or typing.get_origin(annotation) is ClassVar:
                continue
            fields[name] = (annotation, getattr(cls, name, _REQUIRED))
        cls._fields_cache = fields
        return fields

    def items(self) -> Iterator[tuple[str, Any]]:
        for name in type(self).fields():
            yield name, getattr(self, name)

    def __iter__(self) -> Iterator[tuple[str, Any]]:  # pydantic: dict(model)
        return self.items()

    def dict(self) -> dict[str, Any]:
        return dict(self.items())

    model_dump = dict

    def json(self) -> str:
        return json.dumps(self.dict(), default=str)

    def copy(self, *, update: dict[str, Any] | None = None) -> BaseStepConfig:
        return type(self)(**{**self.dict(), **(update or {})})

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.dict() == other.dict()  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]  # mutable, like a pydantic model

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={value!r}" for name, value in self.items())
        return f"{type(self).__name__}({inner})"


def _evaluated(annotation: Any, namespace: dict[str, Any]) -> Any:
    """A string annotation evaluated in its module (not in the class body, where the
    methods `dict` and `json` would shadow the builtins); left as text if it fails."""
    if not isinstance(annotation, str):
        return annotation
    try:
        return eval(annotation, dict(namespace))
    except Exception:
        return annotation


def _checked(owner: str, name: str, annotation: Any, value: Any) -> Any:
    """pydantic's lenient reading of the plain scalar types; other annotations are trusted."""
    if annotation is float and type(value) is int:
        return float(value)
    if annotation in (int, float, str, bool) and not (
        isinstance(value, annotation) and (annotation is bool or type(value) is not bool)
    ):
        kind = annotation.__name__
        article = "an" if kind[0] in "aeiou" else "a"
        raise PipelineDefinitionError(
            f"{owner}.{name} must be {article} {kind} (got {value!r}); pass {article} {kind}"
        )
    return value


def config_class(annotation: Any, namespace: dict[str, Any]) -> type[BaseStepConfig] | None:
    """The BaseStepConfig subclass a parameter is annotated with, if any (a string
    annotation is looked up in the step's module)."""
    if isinstance(annotation, str):
        annotation = namespace.get(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseStepConfig):
        return annotation
    return None


def key_params(name: str, value: Any) -> Iterator[tuple[str, Any]]:
    """(name, value) pairs a parameter enters the key as: a config, field by field."""
    if isinstance(value, BaseStepConfig):
        for field, field_value in value.items():
            yield f"{name}.{field}", field_value
    else:
        yield name, value
