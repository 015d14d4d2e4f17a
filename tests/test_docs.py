"""The documentation cannot rot: every ```python block of README.md and docs/*.md runs, docs/api.md lists exactly
the public names of each subpackage, every cited ``docs/<page>.md`` (and section) exists, every table renders.

The blocks of one page are executed in order in one namespace (later blocks use names defined earlier), in a
temporary working directory (blocks that train write a run folder), with the registries restored afterwards. A
block whose first line is ``# doctest: skip`` is shown to the reader but not run: reserved for blocks that need
data files that are not shipped, a GPU, or more than a few seconds (docs/design.md, "Documentation").
"""

from __future__ import annotations

import importlib
import re
import time
import traceback
from pathlib import Path

import pytest
import torch

DOCS = Path(__file__).resolve().parents[1] / "docs"
GUIDE = DOCS / "guide.md"
API = DOCS / "api.md"

SKIP_MARK = "# doctest: skip"
#: Budget of the whole guide run (the test-suite budget of this file is 30 s on 2 cores).
GUIDE_BUDGET_S = 30.0
#: Budget of each other page's examples: wall time on a busy 2-core machine, first-use imports included (an
#: optimiser's first step imports torch._dynamo: several seconds under load).
PAGE_BUDGET_S = 15.0

#: Subpackages documented in docs/api.md, in its order.
API_PACKAGES = (
    "neuralcollapse",
    "neuralcollapse.losses",
    "neuralcollapse.heads",
    "neuralcollapse.metrics",
    "neuralcollapse.ood",
    "neuralcollapse.openset",
    "neuralcollapse.robustness",
    "neuralcollapse.models",
    "neuralcollapse.data",
    "neuralcollapse.schedules",
    "neuralcollapse.training",
    "neuralcollapse.experiments",
    "neuralcollapse.bench",
)

_FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def python_blocks(text: str) -> list[tuple[int, str]]:
    """``(first line number of the code, code)`` of every ```python block, in order."""
    blocks = []
    for m in _FENCE.finditer(text):
        line = text.count("\n", 0, m.start(1)) + 1
        blocks.append((line, m.group(1)))
    return blocks


def _registries() -> list:
    from neuralcollapse import data, heads, losses, models, ood

    return [losses.TERMS, ood.DETECTORS, heads.HEADS, models.MODELS, data.DATASETS]


def test_extractor_finds_blocks_and_skip_marks():
    text = "intro\n```python\nx = 1\n```\ntext\n```python\n# doctest: skip\nboom()\n```\n```bash\nls\n```\n"
    blocks = python_blocks(text)
    assert [line for line, _ in blocks] == [3, 7]
    assert blocks[0][1] == "x = 1\n"
    assert blocks[1][1].splitlines()[0] == SKIP_MARK


def runnable_blocks(text: str) -> list[tuple[int, str]]:
    """The ```python blocks of ``text`` not marked ``# doctest: skip`` on their first line."""
    return [(line, code) for line, code in python_blocks(text) if code.lstrip().splitlines()[0].strip() != SKIP_MARK]


def run_page_blocks(page: Path, monkeypatch, tmp_path) -> float:
    """Run the runnable blocks of ``page`` in order in one namespace, isolated as the module docstring says;
    return the elapsed seconds. A failure names the page's own line."""
    # pages register example terms: restore every registry afterwards
    for registry in _registries():
        monkeypatch.setattr(registry, "_entries", dict(registry._entries))
        monkeypatch.setattr(registry, "_aliases", dict(registry._aliases))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NEURALCOLLAPSE_RUN_DIR", raising=False)
    monkeypatch.delenv("NEURALCOLLAPSE_DATA_DIR", raising=False)
    torch.manual_seed(0)
    namespace: dict = {"__name__": f"__{page.stem}__"}
    name = page.relative_to(DOCS.parent).as_posix() if page.is_relative_to(DOCS.parent) else page.name
    start = time.perf_counter()
    for line, code in runnable_blocks(page.read_text(encoding="utf-8")):
        # padded so that tracebacks show the line numbers of the page itself
        source = "\n" * (line - 1) + code
        try:
            exec(compile(source, str(page), "exec"), namespace)  # the page's own code
        except Exception as exc:  # pragma: no cover - the message is the point
            frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == str(page)]
            where = frames[-1].lineno if frames else line
            raise AssertionError(
                f"{name} line {where} (block starting at line {line}) failed: {type(exc).__name__}: {exc}"
            ) from exc
    return time.perf_counter() - start


def test_guide_blocks_run(tmp_path, monkeypatch):
    blocks = python_blocks(GUIDE.read_text(encoding="utf-8"))
    assert len(blocks) >= 30, "the guide lost its examples"
    runnable = runnable_blocks(GUIDE.read_text(encoding="utf-8"))
    assert len(runnable) >= 0.8 * len(blocks), "too many skipped blocks: the guide would not be checked"
    elapsed = run_page_blocks(GUIDE, monkeypatch, tmp_path)
    assert elapsed < GUIDE_BUDGET_S, f"the guide's examples took {elapsed:.1f} s (budget {GUIDE_BUDGET_S} s)"


#: Every page but the guide (tested above with its own budget) that has a ```python block.
OTHER_PAGES = [
    page
    for page in (DOCS.parent / "README.md", *sorted(DOCS.glob("*.md")))
    if page != GUIDE and python_blocks(page.read_text(encoding="utf-8"))
]


def test_readme_has_runnable_examples():
    assert DOCS.parent / "README.md" in OTHER_PAGES
    assert runnable_blocks((DOCS.parent / "README.md").read_text(encoding="utf-8")), "README lost its example"


def test_a_failing_block_names_its_page_line_and_skip_marked_blocks_do_not_run(tmp_path, monkeypatch):
    page = tmp_path / "page.md"
    page.write_text(
        "# t\n```python\nx = 1\n```\n```python\n# doctest: skip\nboom()\n```\n```python\ny = x + 1\nz = 1 / 0\n```\n",
        encoding="utf-8",
    )
    expected = r"page\.md line 11 \(block starting at line 10\) failed: ZeroDivisionError"
    with pytest.raises(AssertionError, match=expected):
        run_page_blocks(page, monkeypatch, tmp_path)


@pytest.mark.parametrize("page", OTHER_PAGES, ids=lambda p: p.name)
def test_page_blocks_run(page, tmp_path, monkeypatch):
    """Every runnable ```python block of README.md and docs/*.md runs (in ``PAGE_BUDGET_S`` per page)."""
    elapsed = run_page_blocks(page, monkeypatch, tmp_path)
    assert elapsed < PAGE_BUDGET_S, f"{page.name}'s examples took {elapsed:.1f} s (budget {PAGE_BUDGET_S} s)"


def _first_line(obj: object) -> str:
    doc = getattr(obj, "__doc__", None) if callable(obj) or hasattr(obj, "__all__") else None
    return (doc or "").strip().splitlines()[0] if doc and doc.strip() else ""


def test_api_index_lists_exactly_the_public_names():
    text = API.read_text(encoding="utf-8")
    sections = re.split(r"^## ", text, flags=re.MULTILINE)[1:]
    documented: dict[str, set[str]] = {}
    for section in sections:
        title = section.splitlines()[0].strip().strip("`")
        documented[title] = set(re.findall(r"^\| `([A-Za-z_][\w]*)`", section, flags=re.MULTILINE))
    problems = []
    for package in API_PACKAGES:
        module = importlib.import_module(package)
        public = set(module.__all__)
        have = documented.get(package)
        if have is None:
            problems.append(f"{package}: no '## {package}' section")
            continue
        for name in sorted(public - have):
            problems.append(f"{package}: missing | `{name}` | {_first_line(getattr(module, name, None))} |")
        for name in sorted(have - public):
            problems.append(f"{package}: `{name}` is documented but not in __all__ (renamed or removed?)")
    assert not problems, "docs/api.md is out of date:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    ("what", "names"),
    [
        ("loss term", lambda: importlib.import_module("neuralcollapse.losses").term_names()),
        ("OOD detector", lambda: importlib.import_module("neuralcollapse.ood").names()),
        ("head", lambda: importlib.import_module("neuralcollapse.heads").names()),
        ("backbone", lambda: importlib.import_module("neuralcollapse.models").names()),
        ("data set", lambda: importlib.import_module("neuralcollapse.data").names()),
        ("objective preset", lambda: list(importlib.import_module("neuralcollapse.training.presets").OBJECTIVES)),
    ],
)
def test_guide_tables_cover_every_registered_name(what, names):
    text = GUIDE.read_text(encoding="utf-8")
    missing = [n for n in names() if f"`{n}`" not in text and f"`{n.replace('_', '-')}`" not in text]
    assert not missing, f"docs/guide.md does not mention the {what}(s) {missing}; add them to its table"


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def test_internal_links_resolve():
    guide = GUIDE.read_text(encoding="utf-8")
    outside_code = re.sub(r"^```.*?^```", "", guide, flags=re.MULTILINE | re.DOTALL)
    anchors = {_slug(h) for h in re.findall(r"^#{1,6} (.+)$", outside_code, flags=re.MULTILINE)}
    assert _slug("13.4 compare, report, bench") == "134-compare-report-bench"
    links = re.findall(r"\]\(#([^)]+)\)", guide) + re.findall(r"\]\(guide\.md#([^)]+)\)", API.read_text("utf-8"))
    assert links, "no internal links found"
    broken = sorted({link for link in links if link not in anchors})
    assert not broken, f"links to missing sections of docs/guide.md: {broken}"


def test_relative_file_links_of_docs_and_readme_exist():
    """Every relative Markdown link of README.md and docs/*.md points at a file of the repository."""
    pages = [DOCS.parent / "README.md", *sorted(DOCS.glob("*.md"))]
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text("utf-8")):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.name} -> {target}")
    assert not broken, f"broken relative links: {broken}"


_TABLE_SEPARATOR = re.compile(r"^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?$")


def _table_columns(row: str) -> int:
    row = row.strip().removeprefix("|").removesuffix("|")
    return len(re.split(r"(?<!\\)\|", row))


def markdown_tables(text: str) -> list[tuple[int, list[str]]]:
    """``(first line number, rows)`` of every run of lines starting with ``|`` outside fenced code."""
    tables, rows, start, fenced = [], [], 0, False
    for number, line in enumerate([*text.splitlines(), ""], start=1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if not fenced and line.lstrip().startswith("|"):
            if not rows:
                start = number
            rows.append(line.strip())
        elif rows:
            tables.append((start, rows))
            rows = []
    return tables


def table_problem(rows: list[str]) -> str | None:
    """Why a Markdown table does not render (GitHub's rules: header, then a separator row with as many
    cells), or None."""
    if len(rows) < 2 or not _TABLE_SEPARATOR.match(rows[1]):
        return "no |---| separator row under the header (or a blank line splits the table)"
    width = _table_columns(rows[0])
    for offset, row in enumerate(rows[1:], start=1):
        if _table_columns(row) != width:
            # GitHub drops the extra cells of a row (an unescaped | inside a cell, even in a code span)
            return f"row {offset + 1} has {_table_columns(row)} cells, the header {width} (escape a | in a cell: \\|)"
    return None


def test_table_checker_catches_a_missing_separator_and_a_split_table():
    good = "| a | b |\n|---|:---:|\n| 1 | 2 |\n"
    assert [table_problem(rows) for _, rows in markdown_tables(good)] == [None]
    assert table_problem(markdown_tables("| a | b |\n| 1 | 2 |\n")[0][1]) is not None
    split = markdown_tables(good + "\n| 3 | 4 |\n")
    assert [line for line, _ in split] == [1, 5] and table_problem(split[1][1]) is not None
    assert table_problem(["| a | b |", "|---|"]) is not None
    assert table_problem(["| a | b |", "|---|---|", "| 1 | abs|x| |"]) is not None
    assert table_problem(["| a | b |", "|---|---|", "| 1 | abs\\|x\\| |"]) is None
    assert markdown_tables("```\n| not | a table |\n```\n") == []


def test_every_markdown_table_has_a_separator_row():
    pages = [DOCS.parent / "README.md", *sorted(DOCS.rglob("*.md"))]
    broken = [
        f"{page.relative_to(DOCS.parent)}:{line}: {problem}"
        for page in pages
        for line, rows in markdown_tables(page.read_text(encoding="utf-8"))
        if (problem := table_problem(rows)) is not None
    ]
    assert not broken, "tables that do not render:\n" + "\n".join(broken)


ROOT = DOCS.parent
#: ``docs/<page>.md`` anywhere; ``docs/<page>.md §N`` / ``§N of docs/<page>.md``; ``docs/<page>.md, "<heading>"``
_CITED_PAGE = re.compile(r"docs/([\w\-/]+)\.md")
_CITED_SECTION = re.compile(
    r"docs/([\w\-/]+)\.md`?\]?,?\s*§\s*(\d+(?:\.\d+)*)|§\s*(\d+(?:\.\d+)*) of `?docs/([\w\-/]+)\.md"
)
_CITED_HEADING = re.compile(r'docs/([\w\-/]+)\.md`?,\s*"([^"]+)"')
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def _outside_code(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)


def page_sections(text: str) -> tuple[set[str], set[str]]:
    """``(section numbers, titles)`` of a Markdown page: "## 2. Title" and "### 2.5 Title" give "2", "2.5"; the
    titles are the headings and the bold lead-ins (``**Title**``) that name paragraphs."""
    text = _outside_code(text)
    headings = [h.strip() for h in _HEADING.findall(text)]
    numbers = {m.group(1) for h in headings if (m := re.match(r"(\d+(?:\.\d+)*)\.?\s", h))}
    bold = [" ".join(b.split()) for b in re.findall(r"\*\*([^*]+)\*\*", text)]
    return numbers, set(headings) | set(bold)


def citations(text: str) -> list[tuple[str, str | None, str | None]]:
    """``(page, section number or None, heading or None)`` of every docs/ citation in ``text``."""
    found = [(page, None, None) for page in _CITED_PAGE.findall(text)]
    for m in _CITED_SECTION.finditer(text):
        found.append((m.group(1) or m.group(4), m.group(2) or m.group(3), None))
    found += [(page, None, " ".join(heading.split())) for page, heading in _CITED_HEADING.findall(text)]
    return found


def _citing_files() -> list[Path]:
    files = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
    for folder in (ROOT / "src", ROOT / "tests"):
        for path in sorted(folder.rglob("*")):
            if path.suffix in {".py", ".yaml", ".md"} and not any(part.endswith(".egg-info") for part in path.parts):
                files.append(path)
    return files


def test_citation_parser_reads_the_three_forms():
    page = "docs/" + "methods.md"  # built, so that this test's own source cites nothing
    text = f"see {page} §2.5 and `{page}` §12, §7.3 of {page}; ({page}, \"The core\n    contract\")"
    assert citations(text) == [
        ("methods", None, None), ("methods", None, None), ("methods", None, None), ("methods", None, None),
        ("methods", "2.5", None), ("methods", "12", None), ("methods", "7.3", None),
        ("methods", None, "The core contract"),
    ]
    numbers, headings = page_sections("# T\n## 2. Anti-classes\n### 2.5 Dual head\n```\n## 9. not a heading\n```\n")
    assert numbers == {"2", "2.5"} and "2.5 Dual head" in headings


def test_every_cited_page_and_section_exists():
    """Each ``docs/<page>.md`` cited in src/, tests/, docs/ and README.md exists, with the cited ``§N`` or
    heading."""
    problems, seen = [], set()
    for path in _citing_files():
        for page, number, heading in citations(path.read_text(encoding="utf-8")):
            where = path.relative_to(ROOT).as_posix()
            target = ROOT / "docs" / f"{page}.md"
            if not target.exists():
                problems.append(f"{where}: docs/{page}.md does not exist")
                continue
            numbers, headings = page_sections(target.read_text(encoding="utf-8"))
            if number is not None and number not in numbers:
                problems.append(f"{where}: docs/{page}.md has no section §{number}")
            if heading is not None and heading not in headings:
                problems.append(f'{where}: docs/{page}.md has no heading "{heading}"')
            seen.add((page, number, heading))
    assert ("methods", "9", None) in seen and ("design", None, "The core contract") in seen, "parser found nothing"
    assert not problems, "citations of missing documentation:\n" + "\n".join(sorted(set(problems)))


def test_links_to_sections_of_pages_resolve():
    """``[text](page.md#anchor)`` and ``[text](#anchor)`` in README.md and docs/*.md name an existing heading."""
    broken = []
    for page in [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]:
        for target, anchor in re.findall(r"\]\(([^)#\s]*)#([^)\s]+)\)", page.read_text("utf-8")):
            linked = page if not target else page.parent / target
            if linked.suffix != ".md" or not linked.exists():
                continue  # a missing file is test_relative_file_links_of_docs_and_readme_exist's report
            _, headings = page_sections(linked.read_text("utf-8"))
            if anchor not in {_slug(h) for h in headings}:
                broken.append(f"{page.name} -> {target or page.name}#{anchor}")
    assert not broken, f"links to missing sections: {broken}"
