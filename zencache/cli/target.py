"""TARGET loading for the CLI: `package.module:attr` or `path/to/file.py:attr`, plus `-p`.

Owns importing the user's module, finding the pipeline in it and binding the
`-p name=value` parameters; every failure is a one-line TargetError (exit 2)
that says what was wrong and how to fix it. Imports pipeline and errors; prints nothing.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import json
import os
import sys
import traceback
import types
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.pipeline import Pipeline, PipelineInstance
from ..core.steps import Step, StepInstance
from ..errors import TargetError, ZencacheError

_FORMS = "module:pipeline or path/to/file.py:pipeline"


@dataclass(frozen=True, slots=True)
class Target:
    text: str  # as the user wrote it, kept in the run record
    module: types.ModuleType
    attr: str
    instance: PipelineInstance


def parse_params(pairs: Sequence[str]) -> dict[str, str]:
    """`-p name=value` pairs as text; `_coerce` decides what each value means."""
    params: dict[str, str] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise TargetError(
                f"-p {pair!r} is not name=value; write e.g. -p gamma=0.01 (quote JSON strings "
                "with spaces: -p 'label=\"a b\"')"
            )
        if name in params:
            raise TargetError(f"-p {name} is given twice; pass each parameter once")
        params[name] = text
    return params


def param_value(text: str) -> Any:
    """JSON where it parses (0.01, true, [1, 2], "a b"), else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def load_target(text: str, pairs: Sequence[str] = ()) -> Target:
    """Import TARGET's module and return the pipeline instance it names, bound with -p."""
    params = parse_params(pairs)
    where, sep, attr = text.rpartition(":")
    if not sep or not where or not attr:
        raise TargetError(
            f"TARGET {text!r} is malformed: expected {_FORMS}, "
            "e.g. examples/digits/pipeline.py:digits"
        )
    if where.endswith(".py") or os.sep in where or "/" in where:
        module = _import_file(text, Path(where))
    else:
        module = _import_module(text, where)
    obj = _attribute(text, where, module, attr)
    instance = _instance(text, obj, params)
    try:
        instance.trace()  # memoized: the commands reuse this DAG
    except ZencacheError:
        raise
    except Exception as exc:
        raise TargetError(
            f"TARGET {text!r}: tracing pipeline {instance.name!r} failed: {_one_line(exc)}"
            f"{_location(exc)}; fix the pipeline function (--debug shows the traceback)"
        ) from exc
    return Target(text, module, attr, instance)


# --- importing ----------------------------------------------------------------------------


def _import_file(text: str, path: Path) -> types.ModuleType:
    if not path.is_file():
        hint = "it is a directory" if path.is_dir() else "no such file"
        raise TargetError(
            f"TARGET {text!r}: cannot open {path} ({hint}, relative to {os.getcwd()}); "
            "check the path, or name a module as package.module:pipeline"
        )
    path = path.resolve()
    name = path.stem
    if not name.isidentifier():
        raise TargetError(
            f"TARGET {text!r}: the file name {path.name!r} is not a valid module name; "
            "rename it (letters, digits and underscores)"
        )
    loaded = sys.modules.get(name)
    if loaded is not None:
        loaded_file = getattr(loaded, "__file__", None)
        if loaded_file and Path(loaded_file).resolve() == path:
            return loaded
        raise TargetError(
            f"TARGET {text!r}: cannot import {path.name} as module {name!r}, a module of that "
            f"name is already loaded from {loaded_file or 'the interpreter'}; rename the file"
        )
    # Its siblings import each other by plain name (`from steps import trainer`),
    # as they do when the file is run as a script.
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise TargetError(f"TARGET {text!r}: {path} cannot be imported as Python source")
    module = importlib.util.module_from_spec(spec)
    # Registered before it runs, so that pickling, dataclasses and fingerprints find it.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        sys.modules.pop(name, None)
        raise _import_failure(text, name, exc) from exc
    return module


def _import_module(text: str, name: str) -> types.ModuleType:
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (name == missing or name.startswith(missing + ".")):
            raise TargetError(
                f"TARGET {text!r}: module {missing!r} not found from {cwd}; check the name, run "
                "from the project's folder, or name a file as path/to/file.py:pipeline"
            ) from exc
        raise _import_failure(text, name, exc) from exc
    except BaseException as exc:
        raise _import_failure(text, name, exc) from exc


def _import_failure(text: str, name: str, exc: BaseException) -> BaseException:
    if isinstance(exc, KeyboardInterrupt):
        return exc
    if isinstance(exc, SystemExit):
        return TargetError(
            f"TARGET {text!r}: module {name!r} called sys.exit({exc.code!r}) while being imported; "
            'put script code under `if __name__ == "__main__":`'
        )
    return TargetError(
        f"TARGET {text!r}: importing module {name!r} failed: {_one_line(exc)}{_location(exc)}; "
        "fix the error in that module (--debug shows the traceback)"
    )


def _location(exc: BaseException) -> str:
    """` (at file:line)` of the innermost frame of the user's code, if any."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f" ({_shown(exc.filename)}, line {exc.lineno})"
    own = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    user = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if not f.filename.startswith(own) and "importlib" not in f.filename
    ]
    return f" (at {_shown(user[-1].filename)}:{user[-1].lineno})" if user else ""


def _shown(filename: str) -> str:
    """A path relative to the current directory when it is inside it."""
    try:
        return str(Path(filename).resolve().relative_to(Path.cwd().resolve()))
    except (OSError, ValueError):
        return filename


def _one_line(exc: BaseException) -> str:
    message = str(exc).strip().splitlines()
    if isinstance(exc, SyntaxError):
        message = [exc.msg or ""]
    return f"{type(exc).__name__}: {message[0]}" if message and message[0] else type(exc).__name__


# --- finding and binding the pipeline ---------------------------------------------------------


def _attribute(text: str, where: str, module: types.ModuleType, attr: str) -> Any:
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            found = pipelines_in(module)
            hint = (
                f"it defines the pipelines {', '.join(found)}; use e.g. {where}:{found[0]}"
                if found
                else "it defines no @pipeline; check the module, or decorate a function "
                "with @pipeline"
            )
            raise TargetError(
                f"TARGET {text!r}: module {module.__name__!r} has no attribute {attr!r}; {hint}"
            ) from None
    return obj


def pipelines_in(module: types.ModuleType) -> list[str]:
    """Names of the pipelines and pipeline instances a module defines."""
    return sorted(
        name
        for name, value in vars(module).items()
        if isinstance(value, Pipeline | PipelineInstance) and not name.startswith("_")
    )


def _instance(text: str, obj: Any, params: dict[str, str]) -> PipelineInstance:
    if isinstance(obj, PipelineInstance):
        if params:
            raise TargetError(
                f"TARGET {text!r} is a pipeline instance whose parameters are already bound, so "
                f"-p {', '.join(params)} cannot apply; name the @pipeline itself, or a function "
                "that returns the instance"
            )
        return obj
    if isinstance(obj, Pipeline):
        _check_params(text, f"pipeline {obj.name!r}", obj.signature, params)
        missing = [
            p.name
            for p in obj.signature.parameters.values()
            if p.default is inspect.Parameter.empty
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            and p.name not in params
        ]
        if missing:
            raise TargetError(
                f"TARGET {text!r}: pipeline {obj.name!r} needs {', '.join(missing)} with no "
                "default; pass -p NAME=VALUE, or (for injected steps) name a function that "
                "returns the pipeline instance"
            )
        return obj(**_coerce(obj.signature, params))
    if isinstance(obj, Step | StepInstance):
        raise TargetError(
            f"TARGET {text!r} is a step, not a pipeline; name the @pipeline that calls it"
        )
    if isinstance(obj, types.FunctionType | types.MethodType | functools.partial):
        signature = inspect.signature(obj)
        _check_params(text, f"function {getattr(obj, '__name__', text)!r}", signature, params)
        try:
            result = obj(**_coerce(signature, params))
        except ZencacheError:
            raise
        except Exception as exc:
            raise TargetError(
                f"TARGET {text!r}: calling it failed: {_one_line(exc)}{_location(exc)}; fix the "
                "function (--debug shows the traceback)"
            ) from exc
        if isinstance(result, Pipeline):
            return _instance(text, result, {})
        if not isinstance(result, PipelineInstance):
            raise TargetError(
                f"TARGET {text!r} returned {type(result).__name__}, not a pipeline instance; "
                "return my_pipeline(...) from it"
            )
        return result
    raise TargetError(
        f"TARGET {text!r} is of type {type(obj).__name__}, not a pipeline; name a @pipeline, a "
        "pipeline instance, or a function that returns one"
    )


def _check_params(
    text: str, what: str, signature: inspect.Signature, params: dict[str, str]
) -> None:
    accepted = signature.parameters
    if any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        return
    valid = [
        p.name for p in accepted.values() if p.kind not in (p.VAR_POSITIONAL, p.POSITIONAL_ONLY)
    ]
    for name in params:
        if name not in valid:
            listed = ", ".join(valid) if valid else "none"
            raise TargetError(
                f"TARGET {text!r}: {what} has no parameter {name!r}; its parameters are: {listed}"
            )


def _coerce(signature: inspect.Signature, params: dict[str, str]) -> dict[str, Any]:
    """Values from -p text, matched to the annotation where JSON would guess wrong:
    `-p gamma=1` for `gamma: float` is 1.0 (else its key differs from `gamma=1.0`'s),
    and `-p tag=2024` for `tag: str` stays the text "2024"."""
    out = {}
    for name, text in params.items():
        param = signature.parameters.get(name)
        annotation = param.annotation if param is not None else inspect.Parameter.empty
        value = param_value(text)
        if annotation in (str, "str") and not text.startswith('"'):
            value = text
        elif annotation in (float, "float") and type(value) is int:
            value = float(value)
        out[name] = value
    return out
