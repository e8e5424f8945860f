"""TARGET loading for the CLI: `package.module:attr` or `path/to/file.py:attr`, plus `-p`.

Owns importing the user's module, finding the pipeline in it and binding the
`-p name=value` parameters (checked against their annotations before anything
runs); every failure is a one-line TargetError (exit 2) that says what was wrong
and how to fix it. While the module is imported, a pipeline it runs at import
time executes nothing (executors.runs_skipped): the command decides what runs.
Imports pipeline, executors and errors; prints nothing.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
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
from ..executors import runs_skipped, skipping
from .params import annotations_of, coerce_params

_FORMS = "module:pipeline or path/to/file.py:pipeline"


@dataclass(frozen=True, slots=True)
class Target:
    text: str  # as the user wrote it, kept in the run record
    module: types.ModuleType
    attr: str
    instance: PipelineInstance
    # Pipelines the module ran while it was imported, which were skipped, and where
    # the import stopped when the module went on to use such a run's result.
    skipped: tuple[str, ...] = ()
    stopped: str | None = None

    def notes(self) -> list[str]:
        """What the user should know about the import (for stderr)."""
        if not self.skipped:
            return []
        names = ", ".join(repr(n) for n in dict.fromkeys(self.skipped))
        stop = f"; its import stopped {self.stopped}" if self.stopped else ""
        return [
            f"note: {self.module.__name__} runs pipeline {names} when imported; not executed "
            f'here{stop} (put that call under `if __name__ == "__main__":`)'
        ]


def parse_params(pairs: Sequence[str]) -> dict[str, str]:
    """`-p name=value` pairs as text; params.coerce_params decides what each value means."""
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


def load_target(text: str, pairs: Sequence[str] = ()) -> Target:
    """Import TARGET's module and return the pipeline instance it names, bound with -p.

    Nothing executes meanwhile: a `run()` the module makes at import time is skipped."""
    params = parse_params(pairs)
    where, sep, attr = text.rpartition(":")
    if not sep or not where or not attr:
        raise TargetError(
            f"TARGET {text!r} is malformed: expected {_FORMS}, "
            "e.g. examples/digits/pipeline.py:digits"
        )
    stops: list[str] = []
    with runs_skipped() as skipped:
        if where.endswith(".py") or os.sep in where or "/" in where:
            module = _import_file(text, Path(where), stops)
        else:
            module = _import_module(text, where, stops)
        obj = _attribute(text, where, module, attr, stops)
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
    return Target(text, module, attr, instance, tuple(skipped), stops[0] if stops else None)


# --- importing ----------------------------------------------------------------------------


def _import_file(text: str, path: Path, stops: list[str]) -> types.ModuleType:
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
    return _execute(text, name, spec, stops)


def _execute(
    text: str, name: str, spec: importlib.machinery.ModuleSpec, stops: list[str]
) -> types.ModuleType:
    """Run a module's code as an import would, its runs skipped; a stop is noted."""
    try:
        module, stop = skipping.exec_module(name, spec)
    except BaseException as exc:
        raise _import_failure(text, name, exc) from exc
    if stop is not None:
        where = _location(stop)[len(" (") : -len(")")] or f"in {name}"
        stops.append(f"{where}: {stop}")
    return module


def _import_module(text: str, name: str, stops: list[str]) -> types.ModuleType:
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    if name in sys.modules:
        return sys.modules[name]
    try:
        spec = importlib.util.find_spec(name)  # imports the parent packages
        if spec is None or spec.loader is None:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return _execute(text, name, spec, stops)
    except TargetError:
        raise
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


def _attribute(
    text: str, where: str, module: types.ModuleType, attr: str, stops: Sequence[str] = ()
) -> Any:
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
            if stops:
                hint = (
                    f"its import stopped {stops[0]}, before defining it; put the code that "
                    'runs pipelines under `if __name__ == "__main__":`'
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
        hints = annotations_of(obj.fn)
        return obj(**coerce_params(f"pipeline {obj.name!r}", obj.signature, params, hints))
    if isinstance(obj, Step | StepInstance):
        raise TargetError(
            f"TARGET {text!r} is a step, not a pipeline; name the @pipeline that calls it"
        )
    if isinstance(obj, types.FunctionType | types.MethodType | functools.partial):
        signature = inspect.signature(obj)
        what = f"function {getattr(obj, '__name__', text)!r}"
        _check_params(text, what, signature, params)
        arguments = coerce_params(what, signature, params, annotations_of(obj))
        try:
            result = obj(**arguments)
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
