"""Generate docs/reference.md, the parameter reference, from the docstrings of the public operators, sensors
and triggers (``airflow_rtml.operators``, ``.sensors``, ``.triggers``).

Per class: its import path, the docstring's summary, and one row per ``__init__`` argument: name, type (the
signature's annotation), default, whether it is templated (``template_fields``) and its ``:param:`` text.
The arguments of a class are those of its own ``__init__``, those its ``**kwargs`` pass on to an airflow-rtml
base class, and for sensors the :class:`~airflow.sdk.BaseSensorOperator` arguments; ``BaseOperator``'s
(``task_id``, ``retries``, ...) are not listed. The output depends only on the code: same code, same page.

Usage: ``python scripts/gen_reference.py`` (writes the page) or ``python scripts/gen_reference.py --check``
(exit 1 if the page is not what the code gives now, or if an argument has no ``:param:`` line).
``tests/unit/test_reference.py`` runs both checks.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "docs" / "reference.md"
#: The packages whose classes are documented, in page order, with their section titles.
PACKAGES = (("airflow_rtml.operators", "Operators"), ("airflow_rtml.sensors", "Sensors"),
            ("airflow_rtml.triggers", "Triggers"))

_PARAM = re.compile(r"^(?P<indent>\s*):param (?P<name>\w+):(?P<text>.*)$")
_ROLE = re.compile(r":(?:class|func|meth|attr|data|mod|exc|obj):`(?P<tilde>~?)(?P<target>[^`]+)`")
_TEMPLATED = re.compile(r"Templated fields:(?P<rest>.*?)(?:\n\s*\n|\n\s*:param |\Z)", re.DOTALL)


@dataclass(frozen=True)
class Param:
    name: str
    annotation: str
    default: str
    templated: bool
    description: str | None  # None: no ``:param:`` line


@dataclass(frozen=True)
class ClassDoc:
    cls: type
    section: str
    params: list[Param]

    @property
    def import_line(self) -> str:
        return f"from {self.cls.__module__} import {self.cls.__qualname__}"


# ---------------------------------------------------------------------------------------------- discovery
def _airflow_bases() -> tuple[type, ...]:
    from airflow.sdk import BaseOperator
    from airflow.triggers.base import BaseTrigger

    return BaseOperator, BaseTrigger


def public_classes() -> list[tuple[str, type]]:
    """(section, class) of every public operator, sensor and trigger: defined (not imported) in a module of
    :data:`PACKAGES`, no leading underscore; in package order, then module name, then source line."""
    bases = _airflow_bases()
    found: list[tuple[int, str, int, str, type]] = []
    for rank, (package_name, section) in enumerate(PACKAGES):
        package = importlib.import_module(package_name)
        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
            module = importlib.import_module(f"{package_name}.{info.name}")
            for name, obj in vars(module).items():
                if (inspect.isclass(obj) and obj.__module__ == module.__name__ and not name.startswith("_")
                        and issubclass(obj, bases)):
                    found.append((rank, module.__name__, inspect.getsourcelines(obj)[1], section, obj))
    found.sort(key=lambda f: f[:3])
    return [(section, cls) for _, _, _, section, cls in found]


# ---------------------------------------------------------------------------------------------- signatures
def _own_init(cls: type) -> Any:
    """The ``__init__`` an airflow-rtml class defines itself, or None."""
    init = cls.__dict__.get("__init__")
    return init if init is not None and cls.__module__.startswith("airflow_rtml.") else None


def signature_params(cls: type) -> list[inspect.Parameter]:
    """The arguments a DAG author can pass to ``cls(...)``, besides ``BaseOperator``'s: its ``__init__``'s, then
    those its ``**kwargs`` reach in airflow-rtml base classes, then (sensors) ``BaseSensorOperator``'s. The most
    derived declaration of a name wins (its default is the one that applies)."""
    from airflow.sdk import BaseSensorOperator

    seen: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        if not klass.__module__.startswith("airflow_rtml."):
            continue
        init = _own_init(klass)
        if init is None:
            continue
        more = False
        for p in inspect.signature(init).parameters.values():
            if p.name == "self" or p.kind is inspect.Parameter.VAR_POSITIONAL:
                continue
            if p.kind is inspect.Parameter.VAR_KEYWORD:
                more = True
                continue
            seen.setdefault(p.name, p)
        if not more:
            break
    if issubclass(cls, BaseSensorOperator):
        for p in inspect.signature(BaseSensorOperator.__init__).parameters.values():
            if p.name != "self" and p.kind is not inspect.Parameter.VAR_KEYWORD:
                seen.setdefault(p.name, p)
    return list(seen.values())


def _annotation(p: inspect.Parameter) -> str:
    if p.annotation is inspect.Parameter.empty:
        return ""
    return p.annotation if isinstance(p.annotation, str) else inspect.formatannotation(p.annotation)


def _default(p: inspect.Parameter) -> str:
    value = p.default
    if value is inspect.Parameter.empty:
        return "required"
    if type(value) is object:  # a sentinel (e.g. a deprecated alias left unset): its repr has an address
        return "unset"
    if isinstance(value, timedelta):
        return _timedelta(value)
    return repr(value)


def _timedelta(value: timedelta) -> str:
    seconds = value.total_seconds()
    if seconds == 0:
        return "timedelta(0)"
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds % size == 0:
            return f"timedelta({unit}={int(seconds // size)})"
    return f"timedelta(seconds={seconds:g})"


# ---------------------------------------------------------------------------------------------- docstrings
def docstring(cls: type) -> str:
    """The class's own docstring (not inherited), dedented."""
    return inspect.cleandoc(cls.__dict__.get("__doc__") or "")


def documented_params(doc: str) -> dict[str, str]:
    """``:param name: text`` entries of ``doc``: the line and its continuation lines (indented deeper)."""
    out: dict[str, str] = {}
    lines = doc.splitlines()
    i = 0
    while i < len(lines):
        match = _PARAM.match(lines[i])
        i += 1
        if not match:
            continue
        indent, parts = len(match["indent"]), [match["text"].strip()]
        while i < len(lines) and lines[i].strip() and len(lines[i]) - len(lines[i].lstrip()) > indent:
            parts.append(lines[i].strip())
            i += 1
        out[match["name"]] = " ".join(p for p in parts if p)
    return out


def listed_templated_fields(doc: str) -> list[str] | None:
    """The names in the docstring's "Templated fields: ``a``, ``b``." sentence; None without one."""
    match = _TEMPLATED.search(doc)
    if match is None:
        return None
    sentence = match["rest"].split(". ")[0]
    return re.findall(r"``(\w+)``", sentence)


def summary(doc: str) -> str:
    """The docstring's first paragraph, on one line."""
    return " ".join(doc.split("\n\n")[0].split())


def to_markdown(text: str) -> str:
    """reST inline markup as Markdown: ````x```` and ``:class:`~a.B``` as code; ``|`` escaped for tables."""
    text = _ROLE.sub(lambda m: "``" + (m["target"].rsplit(".", 1)[-1] if m["tilde"] else m["target"]) + "``",
                     text)
    text = re.sub(r"``(.+?)``", lambda m: "`" + m[1] + "`", text)
    return text.replace("|", "\\|")


def describe_class(section: str, cls: type) -> ClassDoc:
    doc = docstring(cls)
    described = documented_params(doc)
    templated = set(getattr(cls, "template_fields", ()) or ())
    params = [Param(p.name, _annotation(p), _default(p), p.name in templated, described.get(p.name))
              for p in signature_params(cls)]
    return ClassDoc(cls, section, params)


def problems(classes: list[ClassDoc] | None = None) -> list[str]:
    """What the docstrings lack: an argument without ``:param:``, a ``:param:`` for no argument, a summary, and
    a "Templated fields:" sentence that does not list exactly ``template_fields``."""
    out = []
    for c in classes if classes is not None else [describe_class(*sc) for sc in public_classes()]:
        name = c.cls.__name__
        doc = docstring(c.cls)
        if not summary(doc).endswith("."):
            out.append(f"{name}: the docstring needs a summary ending with a period")
        out += [f"{name}: argument {p.name!r} has no ':param {p.name}:' line" for p in c.params
                if p.description is None]
        known = {p.name for p in c.params}
        out += [f"{name}: ':param {n}:' documents no argument of {name}" for n in documented_params(doc)
                if n not in known]
        fields = list(getattr(c.cls, "template_fields", ()) or ())
        if fields:
            listed = listed_templated_fields(doc)
            if listed is None:
                out.append(f"{name}: the docstring needs a 'Templated fields: ...' sentence listing {fields}")
            elif sorted(listed) != sorted(fields):
                out.append(f"{name}: 'Templated fields:' lists {listed}, template_fields is {fields}")
    return out


# ---------------------------------------------------------------------------------------------- the page
def _anchor(name: str) -> str:
    return name.lower()


def render() -> str:
    classes = [describe_class(*sc) for sc in public_classes()]
    lines = [
        "# Parameter reference",
        "",
        "<!-- Generated by scripts/gen_reference.py from the docstrings: do not edit by hand. -->",
        "",
        "Every public operator, sensor and trigger of airflow-rtml with its arguments, generated from the classes'",
        "docstrings and signatures by `scripts/gen_reference.py` (`tests/unit/test_reference.py` fails when this",
        "page is stale: regenerate it with `.venv/bin/python scripts/gen_reference.py`). Operators and sensors also",
        "take every argument of Airflow's `BaseOperator` (`task_id`, `retries`, `pool`, `execution_timeout`, ...),",
        "not repeated here. *templated*: rendered with Jinja before the task runs (the class's `template_fields`).",
        "How the sensors' Airflow arguments behave on each path: [sensors](sensors.md).",
        "",
    ]
    for _, section in PACKAGES:
        members = [c for c in classes if c.section == section]
        if members:
            lines.append(f"- **{section}**: " + ", ".join(
                f"[`{c.cls.__qualname__}`](#{_anchor(c.cls.__qualname__)})" for c in members))
    for _, section in PACKAGES:
        members = [c for c in classes if c.section == section]
        if not members:
            continue
        lines += ["", f"## {section}"]
        for c in members:
            lines += ["", f"### {c.cls.__qualname__}", "", f"`{c.import_line}`", "",
                      to_markdown(summary(docstring(c.cls))), ""]
            if not c.params:
                lines.append("No arguments of its own.")
                continue
            lines += ["| name | type | default | templated | description |", "|---|---|---|---|---|"]
            for p in c.params:
                annotation = f"`{to_markdown(p.annotation)}`" if p.annotation else ""
                description = to_markdown(p.description) if p.description is not None else "**undocumented**"
                lines.append(f"| `{p.name}` | {annotation} | `{to_markdown(p.default)}` | "
                             f"{'yes' if p.templated else 'no'} | {description} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    missing = problems()
    for line in missing:
        print(f"docstring: {line}", file=sys.stderr)
    page = render()
    if check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != page:
            print(f"{OUTPUT.relative_to(REPO)} is stale: run python scripts/gen_reference.py", file=sys.stderr)
            return 1
        return 1 if missing else 0
    OUTPUT.write_text(page, encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(REPO)}")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main(sys.argv[1:]))
