"""The keys of a run, as ``metassl config METHOD`` prints them: read from the config dataclasses.

A key's type, range and default come from its dataclass field; its meaning is the comment the
field carries, on its own line(s) just above the field or at the end of the field's line. A
field that redefines an inherited one without a comment keeps the inherited comment.
"""
from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import io
import textwrap
import tokenize
import typing
from typing import Any, NamedTuple

from metassl import config as config_mod


class Key(NamedTuple):
    name: str      # dotted, as given on the command line
    type: str      # with its range, e.g. "float in [0, 1]"
    default: str   # as YAML writes it
    meaning: str


@functools.cache
def _class_comments(cls: type) -> dict[str, str]:
    """Field name -> its comment, for the fields that ``cls``'s own body defines."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    lines = source.splitlines()
    comments: dict[int, tuple[str, bool]] = {}  # line -> (text, whether the line is only the comment)
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            row = tok.start[0]
            comments[row] = (tok.string.lstrip("#").strip(), lines[row - 1].lstrip().startswith("#"))
    node = ast.parse(source).body[0]
    out = {}
    for item in getattr(node, "body", []):
        if not (isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)):
            continue
        above, row = [], item.lineno - 1
        while row in comments and comments[row][1]:
            above.insert(0, comments[row][0])
            row -= 1
        after = [comments[r][0] for r in range(item.lineno, item.end_lineno + 1)
                 if r in comments and not comments[r][1]]
        text = " ".join(t for t in above + after if t)
        if text:
            out[item.target.id] = text.replace("``", "`")
    return out


def field_comments(cls: type) -> dict[str, str]:
    """Field name -> comment for every field of dataclass ``cls``, inherited ones included."""
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass):
            out.update(_class_comments(klass))
    return out


def _length_meaning(f: dataclasses.Field, names: set[str]) -> str:
    """The meaning of an uncommented ``NAME_steps`` / ``NAME_fraction`` twin of a length key."""
    kind = f.metadata.get("length")
    for suffix, twin_suffix in (("_steps", "_fraction"), ("_fraction", "_steps")):
        if f.name.endswith(suffix) and f"{f.name[: -len(suffix)]}{twin_suffix}" in names:
            twin = f"{f.name[: -len(suffix)]}{twin_suffix}"
            if suffix == "_steps" or kind == "steps":
                return f"as {twin}, in steps (null: {twin} applies)"
            return f"as {twin}, as a share of the run's steps"
    return ""


def _yaml(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_yaml(v) for v in value) + "]"
    return str(value)


def _type(tp: Any, meta: typing.Mapping) -> str:
    args = typing.get_args(tp)
    if type(None) in args and len(args) == 2:
        return f"{_type(next(a for a in args if a is not type(None)), meta)} or null"
    name = config_mod._type_name(tp)
    lo, hi = meta.get("lo"), meta.get("hi")
    if lo is None and hi is None:
        return name
    if lo is not None and hi is not None:
        return f"{name} in {'(' if meta.get('lo_open') else '['}{_number(lo)}, {_number(hi)}]"
    if lo is not None:
        return f"{name} {'>' if meta.get('lo_open') else '>='} {_number(lo)}"
    return f"{name} <= {_number(hi)}"


def _number(value: float) -> str:
    """A bound as written: a whole number exactly (the seed's 4294967295), others short."""
    return str(value) if isinstance(value, int) else f"{value:g}"


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def dataclass_keys(cls: type, prefix: str = "") -> list[Key]:
    """Every key of dataclass ``cls`` (nested dataclasses expanded into dotted keys)."""
    hints = typing.get_type_hints(cls)
    comments = field_comments(cls)
    fields = [f for f in dataclasses.fields(cls) if not f.metadata.get("internal")]
    names = {f.name for f in fields}
    out = []
    for f in fields:
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out.extend(dataclass_keys(tp, f"{prefix}{f.name}."))
            continue
        meaning = comments.get(f.name) or _length_meaning(f, names)
        out.append(Key(prefix + f.name, _type(tp, f.metadata), _yaml(_default(f)), meaning))
    return out


def method_keys(method: str) -> list[Key]:
    """Every key of a run of ``method``: the top-level keys, then the method's own section."""
    from metassl.methods import METHODS

    method_cls = METHODS.get(method)
    keys = [k._replace(default=method) if k.name == "method" else k
            for k in dataclass_keys(config_mod.TrainConfig)]
    return keys + dataclass_keys(method_cls.Config, f"{method}.")


def format_keys(method: str) -> str:
    keys = method_keys(method)
    head = Key("key", "type", "default", "meaning")
    widths = [max(len(getattr(k, col)) for k in [head, *keys]) for col in ("name", "type", "default")]

    def line(k: Key) -> str:
        cells = [k.name.ljust(widths[0]), k.type.ljust(widths[1]), k.default.ljust(widths[2]), k.meaning]
        return "  ".join(cells).rstrip()

    own = sum(k.name.startswith(f"{method}.") for k in keys)
    intro = (f"Keys of a {method} run: metassl train method={method} KEY=VALUE ... or a YAML file of "
             f"them (dotted keys nest); the {own} keys of its own section start with '{method}.'.")
    return "\n".join([intro, "", line(head), *(line(k) for k in keys)]) + "\n"


README_BEGIN = "<!-- method keys: python -m metassl.config_keys -->"
README_END = "<!-- end of method keys -->"


def method_sections_markdown() -> str:
    """The README's table of every method's own section: each key with its default, in the
    order ``metassl config METHOD`` lists them (the meanings are there)."""
    from metassl.methods import METHODS

    rows = ["| method | its own keys (default) |", "|---|---|"]
    for name in METHODS.names():
        cells = ", ".join(f"`{k.name}` {k.default}" for k in dataclass_keys(METHODS.get(name).Config))
        rows.append(f"| `{name}` | {cells or 'none'} |")
    return "\n".join([README_BEGIN, *rows, README_END])


if __name__ == "__main__":
    print(method_sections_markdown())
