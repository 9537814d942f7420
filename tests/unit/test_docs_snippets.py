"""The docs cannot drift from the code: every snippet of README.md and docs/*.md is checked.

- A fenced block whose info string starts with ``python`` names the DAG file it shows: ``python file=<path>``.
  The block is that file or an exact excerpt of it (consecutive lines), the file is under ``dags/`` and loads in
  Airflow's own ``DagBag`` with at least one DAG and no import error. So every snippet is a complete DAG file a
  reader can open and copy; ``tests/system/test_snippets.py`` runs the README's on the local stack. Every file of
  ``dags/examples/snippets/`` is shown by some page, and the local stack's ``dags/.airflowignore`` keeps them out
  of its Airflow (they name Flink jobs and topics of the reader's own).
- Each block must parse (``ast.parse``, after dedenting an excerpt), and each of its ``import`` /
  ``from … import`` statements of ``airflow_rtml`` and ``airflow`` must import: the module imports and every
  imported name exists. ``python parse-only`` (or ``python not-run``) blocks are only parsed.
- ``yaml`` blocks must load; ``bash`` blocks must pass ``bash -n``.
- Relative links point at files that exist, and README.md links every page of docs/.

Pages are discovered by glob: a page added to docs/ is checked without touching this file.
"""

from __future__ import annotations

import ast
import importlib
import re
import shutil
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHECKED_ROOTS = ("airflow_rtml", "airflow")
PARSE_ONLY = ("parse-only", "not-run")
# Pages another change is writing, which the docs already link: a link to one may dangle until it lands (once
# the page exists it is checked like any other). Remove an entry when its page is in the repository.
PENDING_PAGES: set = set()

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^\n`]*)$")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    info: str
    code: str

    @property
    def lang(self) -> str:
        return self.info.split()[0].lower() if self.info.split() else ""

    @property
    def parse_only(self) -> bool:
        return any(flag in self.info for flag in PARSE_ONLY)

    @property
    def file(self) -> str | None:
        """The ``file=<path>`` of the info string (relative to the repository), or None."""
        m = re.search(r"(?:^|\s)file=(\S+)", self.info)
        return m.group(1) if m else None

    def __str__(self) -> str:
        return f"{self.page.relative_to(REPO) if self.page.is_relative_to(REPO) else self.page}:{self.line}"


def doc_pages() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def code_blocks(page: Path) -> list[Block]:
    """Fenced code blocks (``` or ~~~, CommonMark rules for the closing fence) of a Markdown page."""
    blocks: list[Block] = []
    lines = page.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, start = m.group("fence"), i
        body: list[str] = []
        i += 1
        while i < len(lines):
            close = _FENCE.match(lines[i])
            if close and close.group("fence")[0] == fence[0] and len(close.group("fence")) >= len(fence) \
                    and not close.group("info").strip():
                break
            body.append(lines[i])
            i += 1
        else:
            raise AssertionError(f"{page}:{start + 1}: code block never closed")
        blocks.append(Block(page, start + 1, m.group("info").strip(), "\n".join(body) + "\n"))
        i += 1
    return blocks


def import_errors(block: Block) -> list[str]:
    """Why the block's imports of airflow_rtml / airflow fail, or [] when they all resolve."""
    tree = ast.parse(textwrap.dedent(block.code), filename=str(block))
    errors: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [(node.module, alias.name) for alias in node.names]
        else:
            continue
        for module, name in targets:
            if module.split(".")[0] not in CHECKED_ROOTS:
                continue
            try:
                mod = importlib.import_module(module)
            except Exception as exc:  # noqa: BLE001 - any failure to import is the finding
                errors.append(f"line {node.lineno}: import {module}: {type(exc).__name__}: {exc}")
                continue
            if name and name != "*" and not hasattr(mod, name):
                try:
                    importlib.import_module(f"{module}.{name}")  # a submodule
                except ImportError:
                    errors.append(f"line {node.lineno}: {module} has no name {name!r}")
    return errors


def _blocks(lang: str) -> list[Block]:
    return [b for page in doc_pages() for b in code_blocks(page) if b.lang == lang]


PYTHON = _blocks("python")


def test_docs_are_found_and_have_python_snippets():
    pages = doc_pages()
    assert len(pages) > 5 and all(p.exists() for p in pages)
    assert len(PYTHON) >= 8, "the pages keep their Python examples"
    assert any("airflow_rtml" in b.code for b in PYTHON)


@pytest.mark.parametrize("block", PYTHON, ids=str)
def test_python_snippet_parses_and_its_imports_resolve(block):
    try:
        ast.parse(textwrap.dedent(block.code), filename=str(block))
    except SyntaxError as exc:
        pytest.fail(f"{block}: does not parse: {exc.msg} at snippet line {exc.lineno}: {exc.text!r}")
    if block.parse_only:
        return
    assert import_errors(block) == [], f"{block}: imports do not resolve"


def excerpt_error(block: Block, repo: Path = REPO) -> str | None:
    """Why ``block`` is not its ``file=``'s text or an exact excerpt of it (consecutive whole lines), or None."""
    if not block.file:
        return f"{block}: a python block names the DAG file it shows: ```python file=dags/..."
    path = (repo / block.file).resolve()
    if not path.is_file() or not path.is_relative_to(repo / "dags"):
        return f"{block}: file={block.file} is not a file under dags/"
    want = [line.rstrip() for line in block.code.rstrip("\n").split("\n")]
    have = [line.rstrip() for line in path.read_text().split("\n")]
    if not any(line.strip() for line in want):
        return f"{block}: empty block"
    for i in range(len(have) - len(want) + 1):
        if have[i:i + len(want)] == want:
            return None
    first = next((n for n, line in enumerate(want) if line not in have), None)
    hint = f"snippet line {first + 1} ({want[first]!r}) is not in the file" if first is not None else \
        "every line is in the file, but not consecutively in this order"
    return f"{block}: not an excerpt of {block.file}: {hint}. Copy the block from the file again."


@pytest.mark.parametrize("block", PYTHON, ids=str)
def test_python_snippet_is_an_excerpt_of_a_dag_file(block):
    assert excerpt_error(block) is None, excerpt_error(block)


SNIPPETS_DIR = REPO / "dags" / "examples" / "snippets"
SNIPPET_FILES = sorted({REPO / b.file for b in PYTHON if b.file} | set(SNIPPETS_DIR.glob("*.py")))


def _dagbag(path: Path):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(path))


@pytest.mark.parametrize("path", SNIPPET_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_snippet_file_loads_in_a_dagbag(path):
    bag = _dagbag(path)
    assert bag.import_errors == {}, f"{path.relative_to(REPO)}: {bag.import_errors}"
    assert bag.dags, f"{path.relative_to(REPO)} defines no DAG"


def test_every_snippet_file_is_shown_and_none_is_parsed_by_the_local_stack():
    shown = {REPO / b.file for b in PYTHON if b.file}
    assert SNIPPETS_DIR.is_dir() and len(list(SNIPPETS_DIR.glob("*.py"))) >= 5
    assert sorted(set(SNIPPETS_DIR.glob("*.py")) - shown) == [], "snippet files no page shows"
    from airflow.utils.file import list_py_file_paths

    parsed = {Path(p).resolve() for p in list_py_file_paths(str(REPO / "dags"))}
    assert REPO / "dags" / "examples" / "stream_wait_results.py" in parsed  # the ignore file is that narrow
    assert not {p for p in parsed if p.is_relative_to(SNIPPETS_DIR)}, "dags/.airflowignore misses the snippets"


@pytest.mark.parametrize("block", _blocks("yaml"), ids=str)
def test_yaml_snippet_loads(block):
    yaml.safe_load(block.code)


@pytest.mark.parametrize("block", _blocks("bash"), ids=str)
def test_bash_snippet_is_valid_shell(block):
    bash = shutil.which("bash")
    assert bash
    proc = subprocess.run([bash, "-n"], input=block.code, capture_output=True, text=True)
    assert proc.returncode == 0, f"{block}: {proc.stderr}"


_LINK = re.compile(r"\[[^\]]*\]\((?P<target>[^)\s]+)\)")


@pytest.mark.parametrize("page", doc_pages(), ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    broken = []
    for m in _LINK.finditer(text):
        target = m.group("target").split("#")[0]
        if not target or re.match(r"^[a-z]+:", target):
            continue
        path = (page.parent / target).resolve()
        if not path.exists() and path not in PENDING_PAGES:
            broken.append(m.group("target"))
    assert broken == [], f"{page.name}: links to missing files"


def test_readme_maps_every_docs_page_and_keeps_the_two_commands():
    readme = (REPO / "README.md").read_text()
    linked = {m.group("target").split("#")[0] for m in _LINK.finditer(readme)}
    unmapped = [p.relative_to(REPO).as_posix() for p in sorted((REPO / "docs").glob("*.md"))
                if p.relative_to(REPO).as_posix() not in linked]
    assert unmapped == [], "README.md's docs map misses these pages"
    assert re.search(r"^make demo +# ", readme, re.M) and re.search(r"^make test +# ", readme, re.M)
    assert len(readme.splitlines()) <= 180, "README.md stays short: detail goes to docs/"


# --------------------------------------------------------------------------------------------------
# the checker itself must be able to fail


def test_the_checker_catches_drift(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "text\n"
        "```python\nfrom airflow_rtml.sensors.watermark import StreamWatermarkSensor, NoSuchSensor\n```\n"
        "```python\nimport airflow_rtml.no_such_module\n```\n"
        "````python parse-only\nfrom airflow_rtml.gone import X\n```\nstill inside\n````\n"
        "```python\nStreamWatermarkSensor(task_id=…)\n```\n"
        "~~~yaml\na: [1\n~~~\n"
    )
    blocks = code_blocks(page)
    assert [b.lang for b in blocks] == ["python", "python", "python", "python", "yaml"]
    first, second, parse_only, ellipsis = blocks[:4]
    assert import_errors(first) == ["line 1: airflow_rtml.sensors.watermark has no name 'NoSuchSensor'"]
    assert len(import_errors(second)) == 1 and "ModuleNotFoundError" in import_errors(second)[0]
    assert parse_only.parse_only and "still inside" in parse_only.code
    with pytest.raises(SyntaxError):
        ast.parse(ellipsis.code)  # "…" is prose, not Python
    with pytest.raises(yaml.YAMLError):
        yaml.safe_load(blocks[4].code)


def test_the_excerpt_check_catches_drift(tmp_path):
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "d.py").write_text("a = 1\nb = 2\nc = 3\n")
    page = tmp_path / "page.md"
    page.write_text("```python file=dags/d.py\nb = 2\nc = 3\n```\n"       # an excerpt
                    "```python file=dags/d.py\na = 1\nc = 3\n```\n"       # lines not consecutive
                    "```python file=dags/d.py\nb = 22\n```\n"              # drifted
                    "```python file=dags/none.py\na = 1\n```\n"            # no such file
                    "```python\na = 1\n```\n")                             # names no file
    excerpt, gap, drift, missing, unnamed = (excerpt_error(b, tmp_path) for b in code_blocks(page))
    assert excerpt is None
    assert "not consecutively" in gap and "'b = 22'" in drift
    assert "not a file under dags/" in missing and "names the DAG file" in unnamed


def test_an_unclosed_block_is_an_error(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("```python\nx = 1\n")
    with pytest.raises(AssertionError, match="never closed"):
        code_blocks(page)
