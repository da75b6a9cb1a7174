"""What the `run` process imports in place of pydantic: the settings models without validation.

pydantic (with pydantic-core) is the largest part of the service's import floor, at least 8.8 MiB
of its resident memory (bench/RESULTS-issue19.md, phase 11), and a running gateway needs it
for one thing: to validate its YAML once at start (and at each reload). So `run` has a child
process validate the file with the real models (gateway/validated_config.py), and takes the
result as instances of the same classes built on this module: `install()` puts it in
`sys.modules` as `pydantic` before any settings model is imported, so every source, sink, driver
and codec module defines its models here unchanged, with their methods and properties, and the
child's values are set on them as they are.

What it is not: a validator. A model made here (`Model(**values)`, `create_model`) takes what it
is given, with the fields' defaults for the rest: what a settings class body or a plugin's code
does with its own constants. Validators are kept as the plain functions they decorate and never
called. What a model offers at run time: its fields as attributes, `model_fields` (name ->
`FieldInfo` with `is_required()`), `model_config`, private attributes and their defaults,
`model_dump()` (models to dicts, containers walked, every other value as it is: pydantic's
Python mode), `model_copy(update=...)`, equality, a hash for frozen models, a repr. Anything else
pydantic has is missing here and fails at the first use with an AttributeError or an
ImportError that names it, never silently; tests/unit/test_validated_config.py holds the models
built here to the real ones for every example config, field by field and dump by dump.

Only the `run` command of a fresh process installs it (gateway/cli.py); `check`, `schema`, the
other commands and the tests use pydantic itself.
"""

from __future__ import annotations

import copy
import re
import sys
import types
import typing
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

__all__ = [
    "BaseModel",
    "BeforeValidator",
    "ConfigDict",
    "Field",
    "FieldInfo",
    "PrivateAttr",
    "SecretStr",
    "ValidationError",
    "ValidationInfo",
    "create_model",
    "field_validator",
    "install",
    "installed",
    "model_validator",
]

F = TypeVar("F")


class _Missing:
    def __repr__(self) -> str:
        return "PydanticUndefined"


MISSING: Any = _Missing()


class FieldInfo:
    """A field's default (or default factory); the constraints a real `Field` takes are for the
    validator, which is not here, and are dropped."""

    __slots__ = ("default", "default_factory")

    def __init__(self, default: Any = MISSING, default_factory: Callable[[], Any] | None = None) -> None:
        self.default = MISSING if default is Ellipsis else default
        self.default_factory = default_factory

    def is_required(self) -> bool:
        return self.default is MISSING and self.default_factory is None

    def get_default(self) -> Any:
        if self.default_factory is not None:
            return self.default_factory()
        return self.default

    def __repr__(self) -> str:
        return f"FieldInfo(default={self.default!r}, default_factory={self.default_factory!r})"


def Field(default: Any = MISSING, *, default_factory: Callable[[], Any] | None = None, **_: Any) -> Any:
    return FieldInfo(default, default_factory)


class _PrivateInfo(FieldInfo):
    __slots__ = ()


def PrivateAttr(default: Any = MISSING, *, default_factory: Callable[[], Any] | None = None) -> Any:
    return _PrivateInfo(default, default_factory)


def ConfigDict(**settings: Any) -> dict[str, Any]:
    return dict(settings)


class BeforeValidator:
    """Kept in `Annotated[...]` metadata, never called."""

    def __init__(self, func: Callable[..., Any]) -> None:
        self.func = func


class ValidationInfo:
    """Named in validators' signatures only."""


class ValidationError(ValueError):
    """Never raised here (nothing is validated); there so `except ValidationError` reads."""


def field_validator(*_fields: str, **_kwargs: Any) -> Callable[[F], F]:
    return _keep


def model_validator(**_kwargs: Any) -> Callable[[F], F]:
    return _keep


def _keep(func: F) -> F:
    return func


_CLASS_VAR = re.compile(r"^(?:\w+\.)?ClassVar(?:\[|$)")


def _is_class_var(annotation: Any) -> bool:
    if isinstance(annotation, str):  # `from __future__ import annotations`: ClassVar, typing.ClassVar[...]
        return _CLASS_VAR.match(annotation.strip()) is not None
    return annotation is ClassVar or typing.get_origin(annotation) is ClassVar


class SecretStr:
    """A secret that prints as stars, as pydantic's does."""

    __slots__ = ("_secret_value",)

    def __init__(self, secret_value: str) -> None:
        self._secret_value = secret_value

    def get_secret_value(self) -> str:
        return self._secret_value

    def __str__(self) -> str:
        return "**********" if self._secret_value else ""

    def __repr__(self) -> str:
        return f"SecretStr('{self}')"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretStr) and other._secret_value == self._secret_value

    def __hash__(self) -> int:
        return hash(self._secret_value)

    def __len__(self) -> int:
        return len(self._secret_value)


class BaseModel:
    """A settings model: fields from the class's annotations (and its bases'), in their order."""

    model_config: ClassVar[dict[str, Any]] = {}
    model_fields: ClassVar[dict[str, FieldInfo]] = {}
    __private_attributes__: ClassVar[dict[str, _PrivateInfo]] = {}

    def __init_subclass__(cls, **class_config: Any) -> None:
        super().__init_subclass__()
        fields: dict[str, FieldInfo] = {}
        private: dict[str, _PrivateInfo] = {}
        config: dict[str, Any] = {}
        for base in reversed(cls.__mro__[1:]):
            if issubclass(base, BaseModel):
                fields.update(base.model_fields)
                private.update(base.__private_attributes__)
                config.update(base.model_config)
        config.update(cls.__dict__.get("model_config", {}))
        config.update(class_config)
        own = cls.__dict__
        for name, annotation in own.get("__annotations__", {}).items():
            if _is_class_var(annotation) or name in ("model_config", "model_fields"):
                continue
            value = own.get(name, MISSING)
            if name.startswith("_"):
                private[name] = value if isinstance(value, _PrivateInfo) else _PrivateInfo(value)
            else:
                fields[name] = value if isinstance(value, FieldInfo) else FieldInfo(value)
            if value is not MISSING:
                delattr(cls, name)  # on the instance, as pydantic has it; never the FieldInfo
        for name, value in list(own.items()):
            if isinstance(value, _PrivateInfo) and name not in private:
                private[name] = value
                delattr(cls, name)
        cls.model_fields = fields
        cls.__private_attributes__ = private
        cls.model_config = config
        if "__hash__" not in own:
            cls.__hash__ = BaseModel._frozen_hash if config.get("frozen") else None  # type: ignore[assignment,method-assign]

    def __init__(self, **data: Any) -> None:
        for name, info in type(self).model_fields.items():
            if name in data:
                value = data.pop(name)
            elif info.is_required():
                raise TypeError(f"{type(self).__name__}: {name} is required")
            else:
                value = info.get_default()
            object.__setattr__(self, name, value)
        if data and type(self).model_config.get("extra") == "forbid":
            raise TypeError(f"{type(self).__name__}: unknown keys {sorted(data)}")
        self._set_private_defaults()

    def _set_private_defaults(self) -> None:
        for name, info in type(self).__private_attributes__.items():
            if not info.is_required():
                object.__setattr__(self, name, info.get_default())

    @classmethod
    def _from_validated(cls, values: dict[str, Any], private: dict[str, Any]) -> BaseModel:
        """An instance holding what the real model held, as gateway/validated_config.py read it."""
        obj = cls.__new__(cls)
        obj._set_private_defaults()
        for name, value in (*values.items(), *private.items()):
            object.__setattr__(obj, name, value)
        return obj

    def __setattr__(self, name: str, value: Any) -> None:
        if type(self).model_config.get("frozen") and name in type(self).model_fields:
            raise TypeError(f"{type(self).__name__} is frozen: {name} cannot be set")
        object.__setattr__(self, name, value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BaseModel):
            return NotImplemented
        return type(other) is type(self) and other.__dict__ == self.__dict__

    def _frozen_hash(self) -> int:
        return hash((type(self), *(getattr(self, f) for f in type(self).model_fields)))

    def __repr__(self) -> str:
        shown = ", ".join(f"{f}={getattr(self, f, MISSING)!r}" for f in type(self).model_fields)
        return f"{type(self).__name__}({shown})"

    def model_dump(self) -> dict[str, Any]:
        return {f: _dump(getattr(self, f)) for f in type(self).model_fields}

    def model_copy(self, *, update: dict[str, Any] | None = None, deep: bool = False) -> Any:
        new = type(self).__new__(type(self))
        object.__getattribute__(new, "__dict__").update(copy.deepcopy(self.__dict__) if deep else self.__dict__)
        for name, value in (update or {}).items():
            object.__setattr__(new, name, value)
        return new


def _dump(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump()
    if isinstance(value, dict):
        return {k: _dump(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return type(value)(_dump(v) for v in value)
    return value


def create_model(model_name: str, /, *, __base__: type[BaseModel] | None = None, __doc__: str | None = None,
                 __module__: str | None = None, **field_definitions: Any) -> Any:  # fmt: skip
    """A model class named `model_name` with fields `name=(type, default or FieldInfo)`."""
    annotations: dict[str, Any] = {}
    namespace: dict[str, Any] = {"__annotations__": annotations, "__qualname__": model_name, "__doc__": __doc__,
                                 "__module__": __module__ or sys._getframe(1).f_globals.get("__name__", __name__)}  # fmt: skip
    for name, definition in field_definitions.items():
        if isinstance(definition, tuple):
            annotations[name], default = definition
        else:
            annotations[name], default = definition, MISSING
        if default is not MISSING and default is not Ellipsis:
            namespace[name] = default
    return types.new_class(model_name, (__base__ or BaseModel,), exec_body=lambda ns: ns.update(namespace))


def installed() -> bool:
    """Whether this process runs on the stand-in."""
    return sys.modules.get("pydantic") is sys.modules[__name__]


def install() -> None:
    """Be `pydantic` for this process. Refused once the real one is loaded: models of both kinds
    in one process would not mix."""
    real = sys.modules.get("pydantic")
    if real is not None and real is not sys.modules[__name__]:
        raise RuntimeError("pydantic is loaded already: the stand-in would not mix with it")
    sys.modules["pydantic"] = sys.modules[__name__]
