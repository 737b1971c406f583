"""Rendering pydantic's validation errors as gatecheck's one-line problems: the file, the key
path as written in YAML, what is wrong, the bad value (never a secret's), and for an unknown
key the keys that would have been valid."""

from __future__ import annotations

import inspect
import re
import types
import typing
from typing import Annotated, Any, Union

from pydantic import BaseModel, Tag, ValidationError

from gatecheck.errors import did_you_mean, redact


def _unwrap(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            members = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(members) != 1:
                return tp
            tp = members[0]
        else:
            return tp


def _is_model(tp: Any) -> bool:
    return inspect.isclass(tp) and issubclass(tp, BaseModel)


def _describe_location(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[str, list[str] | None]:
    """Render a pydantic error location as a dotted key path; for the last model on the
    path, list its allowed keys (so an unknown key can say what would have been valid)."""
    parts: list[str] = []
    tp: Any = model
    allowed: list[str] | None = None
    for index, part in enumerate(loc):
        tp = _unwrap(tp)
        if _is_model(tp):
            allowed = [f.alias or name for name, f in tp.model_fields.items()]
            fld = tp.model_fields.get(part) if isinstance(part, str) else None
            if fld is None and isinstance(part, str):
                fld = next((f for f in tp.model_fields.values() if f.alias == part), None)
            parts.append(str(part))
            tp = fld.annotation if fld is not None else None
            if index == len(loc) - 1:
                return _join_path(parts), allowed
            continue
        origin = typing.get_origin(tp)
        if origin is dict:
            parts.append(str(part))
            tp = typing.get_args(tp)[1]
        elif origin is list:
            parts.append(f"[{part}]")
            tp = typing.get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            # A discriminated union puts the tag into the location; do not print it.
            match = None
            for member in typing.get_args(tp):
                # A callable-discriminated union tags its members: Annotated[X, Tag("x")].
                if typing.get_origin(member) is Annotated and any(
                    isinstance(m, Tag) and m.tag == part for m in typing.get_args(member)[1:]
                ):
                    match = _unwrap(member)
                    break
                member = _unwrap(member)
                if _is_model(member) and "type" in member.model_fields:
                    literal = typing.get_args(member.model_fields["type"].annotation)
                    if part in literal:
                        match = member
            if match is not None:
                tp = match
            elif isinstance(part, str) and not part.startswith(("float", "int", "str", "bool")):
                parts.append(part)
                tp = None
        else:
            parts.append(str(part))
            tp = None
    return _join_path(parts), None


_PLAIN_KEY = re.compile(r"^(?:[A-Za-z0-9_$][A-Za-z0-9_$\-]*|\[\d+\])$")


def _join_path(parts: list[str]) -> str:
    # A key that is not a plain name (empty, spaces, dots, newlines…) is quoted.
    return ".".join(p if _PLAIN_KEY.match(p) else repr(p) for p in parts).replace(".[", "[")


_SECRET_KEYS = ("password", "token", "secret")


def _format_validation_error(label: str, model: type[BaseModel], exc: ValidationError) -> list[str]:
    problems = []
    for error in exc.errors():
        path, allowed = _describe_location(model, tuple(error["loc"]))
        where = f"{label}: {path}" if path else label
        if error["type"] == "extra_forbidden":
            hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
            guess = did_you_mean(str(error["loc"][-1]), allowed) if allowed else ""
            problems.append(f"{where}: unknown key{guess}{hint}")
            continue
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "missing":
            problems.append(f"{where}: required key is missing")
            continue
        shown = error.get("input")
        if (
            any(s in path.lower() for s in _SECRET_KEYS)
            or isinstance(shown, dict | list)  # a rule of the whole mapping: no one bad value (and its URLs)
            or repr(shown) in message  # the message names it already
        ):
            problems.append(f"{where}: {message}")
        else:
            text = redact(repr(shown))
            text = text if len(text) <= 60 else text[:57] + "..."
            problems.append(f"{where}: {message} (got {text})")
    return problems


def parse(label: str, model: type[BaseModel], data: Any, problems: list[str]) -> Any:
    """``model`` from ``data``, or None with its problems added to ``problems``."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems.extend(_format_validation_error(label, model, exc))
        return None
