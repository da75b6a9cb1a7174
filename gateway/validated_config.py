"""`run`'s configuration, validated by pydantic in a child process and read without it.

The service validates its YAML with the real models, as `check` does, in a short-lived child
(`load`): the same file, environment and `--env-file`, the same problems on stderr, line by line,
and the same exit code 2 for a bad file. The child sends the validated `Config` back through a
pipe, pickled so that each model is only (its class, its field values, its private values): no
pydantic object crosses. The parent, running on gateway/pydantic_stand_in.py, rebuilds each
model as an instance of the same class (a class `create_model` made, a sensor entry's, is
rebuilt as a subclass of its nearest importable class with the same name and fields). So the
running service never imports pydantic: at least 8.8 MiB less resident memory for the years it
runs (issue 19), for a child that lives a second at start and at each reload.

What the pipe may carry is what settings hold: the parent's unpickler takes the rebuilders below
(models, secrets, paths), classes (and enums) of the gateway's own packages, and dates and times;
anything else is refused with its name, a configuration the service cannot take
(`ConfigTransferError`); so is a class the child has that is not importable by its name and
defines more than fields (its methods would not cross).
Secrets cross the pipe, never a file.
"""

from __future__ import annotations

import functools
import importlib
import io
import os
import pickle
import subprocess
import sys
from pathlib import Path, PosixPath, PurePath, PurePosixPath
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.config import Config

OWN_PACKAGES = ("gateway", "firmware_bridge")
CHILD_TIMEOUT_S = 120.0  # seconds on a Pi Zero are plenty; as the unit's TimeoutStartSec
# what pickle names by module for a value settings can hold (sets, tuples, bytes have opcodes)
_SAFE_GLOBALS = {("datetime", "timedelta"), ("datetime", "datetime"), ("datetime", "date"), ("datetime", "time"),
                 ("datetime", "timezone")}  # fmt: skip


class ConfigTransferError(Exception):
    """The child failed, or sent what the service does not take."""


# ---------------------------------------------------------------- both sides: what a pickle names


def _model(module: str, qualname: str, dynamic: tuple[str, tuple[str, ...]] | None,
           values: dict[str, Any], private: dict[str, Any]) -> Any:  # fmt: skip
    """A model as the child had it, built on the stand-in (a class of the gateway's packages)."""
    from gateway.pydantic_stand_in import BaseModel

    found = _own_class(module, qualname)
    if not (isinstance(found, type) and issubclass(found, BaseModel)):
        raise ConfigTransferError(f"{module}.{qualname} is not a settings model here")
    cls: Any = found if dynamic is None else _dynamic_class(module, qualname, *dynamic)
    return cls._from_validated(values, private)


def _secret(value: str) -> Any:
    from gateway.pydantic_stand_in import SecretStr

    return SecretStr(value)


_PATHS = {"PosixPath": PosixPath, "PurePosixPath": PurePosixPath}


def _path(kind: str, value: str) -> PurePath:
    """A path by its text: pickle names pathlib's classes by a module that moved in 3.13."""
    return _PATHS[kind](value)


@functools.cache
def _dynamic_class(module: str, qualname: str, name: str, fields: tuple[str, ...]) -> Any:
    """A class `create_model` made in the child (a sensor entry of one driver, `inputs`, the
    config itself): a subclass of its nearest importable base with its name and fields, in its
    order."""
    base = _own_class(module, qualname)
    cls: Any = type(name, (base,), {"__module__": base.__module__, "__qualname__": name})
    known = base.model_fields
    from gateway.pydantic_stand_in import FieldInfo

    cls.model_fields = {f: known.get(f, FieldInfo(None)) for f in fields}
    return cls


def _own_class(module: str, qualname: str) -> Any:
    if module.split(".")[0] not in OWN_PACKAGES:
        raise ConfigTransferError(f"{module}.{qualname}: not of the gateway's packages")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


# ---------------------------------------------------------------- the child: validate, pickle


class _Pickler(pickle.Pickler):
    """Models and secrets as calls of `_model` and `_secret`; the rest as pickle has it."""

    def reducer_override(self, obj: Any) -> Any:
        from pydantic import BaseModel, SecretStr

        if isinstance(obj, BaseModel):
            cls = type(obj)
            static = _importable_base(cls)
            fields = tuple(cls.model_fields)
            values = {f: getattr(obj, f) for f in fields}
            values.update(obj.__pydantic_extra__ or {})
            private = {k: v for k, v in (obj.__pydantic_private__ or {}).items() if not _undefined(v)}
            dynamic = None if static is cls else (cls.__name__, fields)
            return _model, (static.__module__, static.__qualname__, dynamic, values, private)
        if isinstance(obj, SecretStr):
            return _secret, (obj.get_secret_value(),)
        if isinstance(obj, PurePath):
            kind = "PosixPath" if isinstance(obj, PosixPath) else "PurePosixPath"
            if not isinstance(obj, PurePosixPath):
                raise ConfigTransferError(f"a {type(obj).__name__} in the config: `run` takes POSIX paths")
            return _path, (kind, str(obj))
        return NotImplemented


def _undefined(value: Any) -> bool:
    from pydantic_core import PydanticUndefined

    return value is PydanticUndefined


def _importable_base(cls: type) -> Any:
    """`cls` if its module has it under its name, else its nearest base that is, provided the
    classes between add fields only (what `create_model` makes): a method, property or setting
    of theirs would be lost on the way, so such a class is refused."""
    for c in cls.__mro__:
        try:
            found = _own_class(c.__module__, c.__qualname__) is c
        except (ConfigTransferError, AttributeError, ImportError):
            found = False
        if found:
            return c
        extra = sorted(k for k, v in vars(c).items() if not _bookkeeping(k, v, c))
        if extra:
            raise ConfigTransferError(f"{cls.__qualname__}: {c.__qualname__} is not importable by its name and "
                                      f"defines {', '.join(extra)}, which would not cross to `run`")  # fmt: skip
    raise ConfigTransferError(f"{cls.__qualname__} has no importable base in the gateway's packages")


def _bookkeeping(name: str, value: Any, cls: type) -> bool:
    """What pydantic puts in a model class's namespace (or what every class has), not the model's own."""
    if (name.startswith("__") and name.endswith("__")) or name == "_abc_impl":
        return True
    if name == "model_config":
        return bool(value == getattr(cls.__mro__[1], "model_config", value))  # the base's, unchanged
    if name == "model_post_init":  # pydantic's, setting the private attributes' defaults
        return getattr(value, "__module__", "").startswith("pydantic.")
    return False


def dumps(cfg: Config) -> bytes:
    out = io.BytesIO()
    _Pickler(out, protocol=pickle.HIGHEST_PROTOCOL).dump(cfg)
    return out.getvalue()


def child_main(argv: list[str]) -> int:
    """`[config, env_file or '']`: what `run` would load, validated, pickled to stdout; problems
    on stderr, exit 2 (gateway/cli.py's `_load`)."""
    sys.stdout.flush()
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything written to stdout below, by Python or C, goes to stderr, not into the pickle
    sys.stdout = sys.stderr
    from gateway.cli import _load

    loaded = _load(argv[0], argv[1] or None)
    if isinstance(loaded, int):
        return loaded
    with out:
        out.write(dumps(loaded[0]))
    return 0


# ---------------------------------------------------------------- the parent: spawn, unpickle


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == __name__ and name in ("_model", "_secret", "_path"):
            return globals()[name]
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        if module.split(".")[0] in OWN_PACKAGES and "." not in name:
            obj = _own_class(module, name)
            if isinstance(obj, type):
                return obj
        raise ConfigTransferError(f"the validated config holds a {module}.{name}, which `run` does not take")


def loads(data: bytes) -> Config:
    try:
        cfg: Config = _Unpickler(io.BytesIO(data)).load()
    except ConfigTransferError:
        raise
    except Exception as e:  # a truncated or garbled pipe: say so, whatever pickle raised
        raise ConfigTransferError(f"cannot read the validated config: {type(e).__name__}: {e}") from None
    return cfg


def child_command(config: str, env_file: str | None) -> list[str]:
    """This interpreter with this process's flags (`-O`, `-E`, `-s`...), finding this copy of the
    gateway, running `child_main`. `-P`: nothing from the working directory (for the service,
    its writable data dir) is importable, as for the console script that started the parent."""
    root = str(Path(__file__).resolve().parent.parent)
    code = f"import sys; sys.path.insert(0, {root!r}); from gateway.validated_config import child_main; sys.exit(child_main(sys.argv[1:]))"
    flags: list[str] = subprocess._args_from_interpreter_flags()  # type: ignore[attr-defined]
    return [sys.executable, *flags, "-P", "-c", code, config, env_file or ""]


def load(config: str, env_file: str | None) -> Config | int:
    """The config `run` would get from `_load`, validated in a child process; or the exit code
    after the child printed the problems (2, a bad config)."""
    from gateway.cli import EXIT_CONFIG

    command = child_command(config, env_file)
    try:
        done = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=os.environ,
                              timeout=CHILD_TIMEOUT_S, check=False)  # fmt: skip
    except OSError as e:
        raise ConfigTransferError(f"cannot start the config check ({command[0]}): {e.strerror or e}") from None
    except subprocess.TimeoutExpired:  # a secret file on a FIFO or a dead mount: killed by run()
        raise ConfigTransferError(f"the config check did not finish in {CHILD_TIMEOUT_S:g} s") from None
    if done.returncode == EXIT_CONFIG:
        return EXIT_CONFIG
    if done.returncode != 0:
        raise ConfigTransferError(f"the config check exited with {done.returncode}")
    return loads(done.stdout)
