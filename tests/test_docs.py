"""The documentation holds together: links, anchors, cited paths and commands (no TensorFlow).

Over the repository's Markdown and Python files:

(a) every relative link of every *.md file reaches a file, and every `#anchor` a heading
    of the page it points to (GitHub's heading slugs);
(b) every repository path cited in code or docs (`trainer/training/train_lib.py`, a folder,
    a glob, `docs/architecture.md#pitfalls`, `tests/test_docs.py::test_github_slugs`, a
    page such as BENCHMARKS.md at the top or beside the citing file) exists, and every dotted
    name in backticks (`trainer.inference.media.score_files`) names a module of the
    repository and, after it, a name that module defines; the "What moved where" table of
    docs/architecture.md lists old paths that are gone and new ones that exist;
(c) README.md stays an entry page (at most 300 lines, `make demo` and `make test` shown,
    a link to every page of docs/), and docs/ has one page per job;
(d) every `python -m <module>` and `dfd-<tool>` named in README.md and docs/*.md exists
    (a module file of the repository, a console script of setup.py).

Python files are read for their comments and string literals (tests: comments and
docstrings only, since their strings build planted trees). Each checker is also run on a
planted tree with one bad item of each kind, so a check that stopped checking fails here.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import io
import os
import pathlib
import re
import tokenize

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("trainer", "preprocessing", "tfds_builder", "deploy", "tests")
CITED_ROOTS = PACKAGES + ("docs",)
DOCS_PAGES = (
    "dataset.md",
    "video-datasets.md",
    "training.md",
    "evaluation.md",
    "photos-and-videos.md",
    "scoring-at-scale.md",
    "serving.md",
    "google-cloud.md",
    "troubleshooting.md",
    "architecture.md",
)
README_MAX_LINES = 300
MOVED_PAGE = "docs/architecture.md"
MOVED_SECTION = "What moved where"
SKIPPED_DIRS = {"build", "dist", "demo_out", "bench_out", "out", "__pycache__", "node_modules"}

FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[((?:[^\[\]]|\[[^\]]*\])*)\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
CITED = re.compile(
    r"(?<![\w./~:$-])((?:" + "|".join(CITED_ROOTS) + r")/(?:[\w.*-]|/|\{[\w.,/-]*\})*)"
    r"(#[\w-]+|::\w+)?"  # An anchor of a page, a test or function of a module.
)
UPPER_PAGE = re.compile(r"(?<![\w./-])([A-Z][A-Z0-9_]*\.md)\b")  # README.md, BENCHMARKS.md
DOTTED = re.compile(r"`((?:" + "|".join(PACKAGES) + r")(?:\.\w+)+)")
PYTHON_M = re.compile(r"\bpython3?\s+-m\s+([\w.]+)")
TOOL = re.compile(r"(?<![\w/.:@-])(dfd-[a-z]+(?:-[a-z]+)*)(?![\w-])")
CONSOLE_SCRIPT = re.compile(r"[\"'](dfd-[\w-]+)\s*=\s*([\w.]+):(\w+)[\"']")
IMAGE_NAME = re.compile(r"/(dfd-[a-z-]+):")


# ----------------------------------------------------------------------------- files


def _walk(root: pathlib.Path, suffix: str) -> list[pathlib.Path]:
    """Every `*suffix` file under `root`, without hidden, build or output folders."""
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = [
            f
            for f in subfolders
            if not (f.startswith(".") or f in SKIPPED_DIRS or f.endswith(".egg-info"))
        ]
        found += [pathlib.Path(folder, name) for name in files if name.endswith(suffix)]
    return sorted(found)


def markdown_files(root: pathlib.Path) -> list[pathlib.Path]:
    return _walk(root, ".md")


def python_files(root: pathlib.Path) -> list[pathlib.Path]:
    return _walk(root, ".py")


def _is_test(relative: pathlib.Path) -> bool:
    return relative.parts[0] == "tests" or relative.name.endswith("_test.py")


def _blank_fences(text: str) -> str:
    """`text` with every fenced code block's lines emptied (line numbers kept)."""
    lines, inside = [], False
    for line in text.split("\n"):
        if FENCE.match(line):
            inside = not inside
            lines.append("")
        else:
            lines.append("" if inside else line)
    return "\n".join(lines)


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


# ----------------------------------------------------------------------------- (a) links


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"!?\[((?:[^\[\]]|\[[^\]]*\])*)\]\([^)]*\)", r"\1", heading)  # Link text.
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: pathlib.Path) -> set[str]:
    """Every `#anchor` of a Markdown page: its headings' slugs (repeats get -1, -2, ...)."""
    return _anchors(path.read_text(encoding="utf-8"))


@functools.cache
def _anchors(text: str) -> frozenset[str]:
    seen: dict[str, int] = {}
    found = set()
    for line in _blank_fences(text).split("\n"):
        match = HEADING.match(line)
        if not match:
            continue
        slug = github_slug(match.group(2))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return frozenset(found)


def _links(text: str):
    """(line, target) of every link outside code, inline or by reference."""
    prose = INLINE_CODE.sub(lambda m: " " * len(m.group(0)), _blank_fences(text))
    for match in LINK.finditer(prose):
        yield _line_of(prose, match.start()), match.group(2)
    for match in REFERENCE.finditer(prose):
        yield _line_of(prose, match.start()), match.group(1)


def check_links(root: pathlib.Path) -> list[str]:
    """'file:line: problem' for every relative link or anchor that leads nowhere."""
    root = root.resolve()
    problems = []
    for page in markdown_files(root):
        where = page.relative_to(root)
        for line, target in _links(page.read_text(encoding="utf-8")):
            if SCHEME.match(target):
                continue  # http(s), mailto: not checked here.
            path_part, _, anchor = target.partition("#")
            target_path = (page.parent / path_part).resolve() if path_part else page
            if not target_path.exists() or root not in (target_path, *target_path.parents):
                problems.append(f"{where}:{line}: link to {target}: no such file")
                continue
            if anchor and target_path.suffix == ".md" and anchor not in anchors(target_path):
                problems.append(f"{where}:{line}: link to {target}: no heading #{anchor}")
    return problems


# ----------------------------------------------------------------------------- (b) cited paths


def _expand(path: str) -> list[str]:
    """`a/{b,c}.py` -> [`a/b.py`, `a/c.py`] (nested braces too)."""
    match = re.search(r"\{([^{}]*)\}", path)
    if not match:
        return [path]
    return [
        expanded
        for choice in match.group(1).split(",")
        for expanded in _expand(path[: match.start()] + choice + path[match.end() :])
    ]


def _path_exists(root: pathlib.Path, path: str) -> bool:
    if "*" in path:
        return any(root.glob(path.rstrip("/")))
    return (root / path).exists()


def _defines(path: pathlib.Path, name: str) -> bool:
    pattern = rf"^\s*(?:async\s+)?(?:def|class)\s+{re.escape(name)}\b"
    return re.search(pattern, path.read_text(encoding="utf-8"), re.M) is not None


def _cited_problem(root: pathlib.Path, path: str, suffix: str | None) -> str | None:
    """Why the cited `path` (with `#anchor` or `::name`) leads nowhere, or None."""
    missing = [p for p in _expand(path) if not _path_exists(root, p)]
    if missing:
        return f"{', '.join(missing)}: no such file or folder"
    if suffix and suffix.startswith("#") and path.endswith(".md"):
        if suffix[1:] not in anchors(root / path):
            return f"{path}{suffix}: no such heading"
    if suffix and suffix.startswith("::") and path.endswith(".py"):
        if not _defines(root / path, suffix[2:]):
            return f"{path}{suffix}: no such test or function"
    return None


def _python_texts(path: pathlib.Path, relative: pathlib.Path):
    """(line, text) of the comments and strings of a module (tests: comments, docstrings)."""
    source = path.read_text(encoding="utf-8")
    all_strings = not _is_test(relative)
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT or (all_strings and token.type == tokenize.STRING):
            yield token.start[0], token.string
    if not all_strings:
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                docstring = ast.get_docstring(node, clean=False)
                if docstring:
                    yield (node.body[0].lineno, docstring)


def _moved_rows(text: str) -> list[tuple[int, str, str]]:
    """(line index, old cell, new cell) of the table under the "What moved where" heading."""
    rows, inside = [], False
    for index, line in enumerate(text.split("\n")):
        heading = HEADING.match(line)
        if heading:
            inside = heading.group(2).strip() == MOVED_SECTION
            continue
        cells = line.strip().strip("|").split("|")
        if inside and line.lstrip().startswith("|") and len(cells) >= 2:
            old, new = cells[0].strip(), cells[1].strip()
            if old != "old" and not set(old) <= set("-: "):
                rows.append((index, old, new))
    return rows


def _code_spans(cell: str) -> list[str]:
    return [span.strip("`") for span in INLINE_CODE.findall(cell)]


def check_moved_table(root: pathlib.Path) -> list[str]:
    """Each old path of the "What moved where" table is gone, and each new path exists."""
    page = root / MOVED_PAGE
    if not page.exists():
        return [f"{MOVED_PAGE}: missing"]
    rows = _moved_rows(page.read_text(encoding="utf-8"))
    problems = [] if rows else [f"{MOVED_PAGE}: no '{MOVED_SECTION}' table"]
    for index, old, new in rows:
        for span in _code_spans(old):
            for path in _expand(span):
                if CITED.fullmatch(span) and _path_exists(root, path):
                    problems.append(f"{MOVED_PAGE}:{index + 1}: old path {path} still exists")
        for span in _code_spans(new):
            for path in _expand(span):
                if CITED.fullmatch(span) and not _path_exists(root, path):
                    problems.append(f"{MOVED_PAGE}:{index + 1}: new path {path} does not exist")
    return problems


def _texts(root: pathlib.Path):
    """(relative path, line, text) of every Markdown line and Python comment or string."""
    for page in markdown_files(root):
        relative = page.relative_to(root)
        lines = page.read_text(encoding="utf-8").split("\n")
        if relative.as_posix() == MOVED_PAGE:
            for index, old, _ in _moved_rows("\n".join(lines)):
                lines[index] = lines[index].replace(old, " " * len(old), 1)  # Gone on purpose.
        for number, line in enumerate(lines, 1):
            yield relative, number, line
    for module in python_files(root):
        relative = module.relative_to(root)
        for number, text in _python_texts(module, relative):
            yield relative, number, text


def _top_level_names(path: pathlib.Path) -> set[str]:
    return _names(path.read_text(encoding="utf-8"))


@functools.cache
def _names(source: str) -> frozenset[str]:
    names: set[str] = set()
    statements = list(ast.parse(source).body)
    while statements:
        node = statements.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.If, ast.Try)):
            statements.extend(node.body + node.orelse + getattr(node, "finalbody", []))
            for handler in getattr(node, "handlers", []):
                statements.extend(handler.body)
    return frozenset(names)


def module_file(root: pathlib.Path, dotted: str) -> pathlib.Path | None:
    """The file of repository module `dotted` (a package's __init__.py), or None."""
    base = root.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def dotted_problem(root: pathlib.Path, dotted: str) -> str | None:
    """Why `dotted` (module, then maybe a name in it) names nothing in the repository."""
    parts = dotted.split(".")
    for size in range(len(parts), 0, -1):
        found = module_file(root, ".".join(parts[:size]))
        if found is None:
            continue
        rest, prefix = parts[size:], ".".join(parts[:size])
        if rest and rest[0] not in _top_level_names(found):
            if found.name == "__init__.py":
                return f"{dotted}: no module {prefix}.{rest[0]}"
            return f"{dotted}: {prefix} defines no {rest[0]}"
        return None
    return f"{dotted}: no such module"


def check_cited_paths(root: pathlib.Path) -> list[str]:
    """'file:line: problem' for every cited repository path or dotted module name that is gone."""
    root = root.resolve()
    problems = []
    for relative, first_line, text in _texts(root):
        found_here = []
        for match in CITED.finditer(text):
            path = match.group(1).rstrip(".-")
            found_here.append((match.start(), _cited_problem(root, path, match.group(2))))
        for match in UPPER_PAGE.finditer(text):
            page = match.group(1)
            if not ((root / page).exists() or (root / relative).parent.joinpath(page).exists()):
                found_here.append((match.start(), f"{page}: no such page here or at the top"))
        for match in DOTTED.finditer(text):
            found_here.append((match.start(), dotted_problem(root, match.group(1))))
        for at, problem in found_here:
            if problem:
                line = first_line + text.count("\n", 0, at)  # Where in a long docstring.
                problems.append(f"{relative}:{line}: {problem}")
    return problems + check_moved_table(root)


# ----------------------------------------------------------------------------- (c) pages


def check_pages(root: pathlib.Path) -> list[str]:
    """README.md is an entry page to docs/, and docs/ has one page per job."""
    problems = []
    readme = root / "README.md"
    text = readme.read_text(encoding="utf-8") if readme.exists() else ""
    lines = len(text.splitlines())
    if lines > README_MAX_LINES:
        problems.append(f"README.md: {lines} lines, more than {README_MAX_LINES}")
    for command in ("make demo", "make test"):
        if command not in text:
            problems.append(f"README.md: does not show `{command}`")
    linked = {target.partition("#")[0] for _, target in _links(text)}
    for page in DOCS_PAGES:
        if not (root / "docs" / page).exists():
            problems.append(f"docs/{page}: missing")
        elif f"docs/{page}" not in linked:
            problems.append(f"README.md: no link to docs/{page}")
    return problems


# ----------------------------------------------------------------------------- (d) commands


def console_scripts(root: pathlib.Path) -> dict[str, tuple[str, str]]:
    """{'dfd-x': (module, function)} from setup.py's console_scripts."""
    setup = root / "setup.py"
    text = setup.read_text(encoding="utf-8") if setup.exists() else ""
    return {m.group(1): (m.group(2), m.group(3)) for m in CONSOLE_SCRIPT.finditer(text)}


def image_names(root: pathlib.Path) -> set[str]:
    """The container images deploy/docker/build_and_push.sh builds (dfd-train, dfd-tools...)."""
    script = root / "deploy" / "docker" / "build_and_push.sh"
    return set(IMAGE_NAME.findall(script.read_text(encoding="utf-8"))) if script.exists() else set()


def check_commands(root: pathlib.Path) -> list[str]:
    """Every `python -m` module and `dfd-*` tool named in README.md and docs/*.md exists."""
    root = root.resolve()
    scripts, images = console_scripts(root), image_names(root)
    problems = []
    for tool, (module, function) in sorted(scripts.items()):
        found = module_file(root, module)
        if found is None or function not in _top_level_names(found):
            problems.append(f"setup.py: {tool} -> {module}:{function}, which does not exist")
    pages = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    for page in (p for p in pages if p.exists()):
        text = page.read_text(encoding="utf-8")
        found_here = []
        for match in PYTHON_M.finditer(text):
            module = match.group(1).rstrip(".")
            if module.split(".")[0] in PACKAGES:
                found = module_file(root, module)
                if found is None or found.name == "__init__.py":
                    found_here.append((match.start(), f"python -m {module}: no such module file"))
            elif importlib.util.find_spec(module.split(".")[0]) is None:
                found_here.append((match.start(), f"python -m {module}: not installed"))
        for match in TOOL.finditer(text):
            if match.group(1) not in scripts and match.group(1) not in images:
                found_here.append((match.start(), f"{match.group(1)}: no such console script"))
        where = page.relative_to(root)
        problems += [f"{where}:{_line_of(text, at)}: {what}" for at, what in sorted(found_here)]
    return problems


# ----------------------------------------------------------------------------- the repository


def test_every_link_and_anchor_resolves():
    assert check_links(REPO) == []


def test_every_cited_path_and_module_exists():
    assert check_cited_paths(REPO) == []


def test_readme_is_an_entry_page_to_one_page_per_job():
    assert check_pages(REPO) == []


def test_every_command_named_in_the_docs_exists():
    assert check_commands(REPO) == []


# ----------------------------------------------------------------------------- planted trees


def _write(root: pathlib.Path, relative: str, text: str = "") -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_github_slugs():
    assert github_slug("Bad input: `rejects.jsonl` and the summary") == (
        "bad-input-rejectsjsonl-and-the-summary"
    )
    assert github_slug("(c) Backup cost per 1,000 steps, before and after") == (
        "c-backup-cost-per-1000-steps-before-and-after"
    )
    assert github_slug("Faces: detection + scoring of photos (issue 10)") == (
        "faces-detection--scoring-of-photos-issue-10"
    )
    assert github_slug("Video dataset build: videos/s") == "video-dataset-build-videoss"
    assert github_slug("A [linked](x.md) `--flag_name` heading") == "a-linked---flag_name-heading"


def test_a_planted_broken_link_or_anchor_is_found(tmp_path):
    _write(tmp_path, "docs/page.md", "# Page\n\n## Same\n\n## Same\n\n```\n# not a heading\n```\n")
    _write(
        tmp_path,
        "README.md",
        "[ok](docs/page.md) [ok](docs/page.md#same-1) [ok](#top) [web](https://example.com/a)\n"
        "# Top\n\n"
        "```\n[in code](nowhere.md)\n```\n`[inline](nowhere.md)`\n",
    )
    assert check_links(tmp_path) == []

    _write(
        tmp_path, "deploy/serving/NOTES.md", "[up](../../docs/gone.md)\n[ref]: ../../docs/x.md\n"
    )
    _write(
        tmp_path, "docs/other.md", "See [the page](page.md#not-there) and\n[a folder](../docs/).\n"
    )
    assert check_links(tmp_path) == [
        "deploy/serving/NOTES.md:1: link to ../../docs/gone.md: no such file",
        "deploy/serving/NOTES.md:2: link to ../../docs/x.md: no such file",
        "docs/other.md:1: link to page.md#not-there: no heading #not-there",
    ]


def _planted_repo(root: pathlib.Path) -> None:
    _write(root, "trainer/__init__.py")
    _write(root, "trainer/real.py", "PRESENT = 1\n\n\ndef run_main():\n    pass\n")
    _write(
        root, "tests/test_real.py", '"""Checks trainer/real.py."""\n\n\ndef test_one():\n    pass\n'
    )
    _write(
        root,
        "docs/architecture.md",
        "# Architecture\n\n## Pitfalls\n\n## What moved where\n\n| old | new |\n|---|---|\n"
        "| `trainer/{old,older}.py` | `trainer/real.py` |\n",
    )
    _write(
        root,
        "docs/page.md",
        "`trainer/real.py`, `trainer/*.py`, `tests/test_real.py::test_one`,\n"
        "docs/architecture.md#pitfalls and `trainer.real.PRESENT`.\n",
    )


def test_a_planted_stale_path_or_module_is_found(tmp_path):
    _planted_repo(tmp_path)
    assert check_cited_paths(tmp_path) == []

    _write(
        tmp_path,
        "docs/page.md",
        "`trainer/old.py` moved; `tests/test_real.py::test_two`; docs/architecture.md#nope;\n"
        "`trainer/*.cfg`; `trainer.real.ABSENT`; `trainer.gone.x`.\n",
    )
    _write(
        tmp_path,
        "trainer/more.py",
        '"""See trainer/training/gone.py."""\n\nX = "docs/no.md"  # See ARCHITECTURE.md.\n',
    )
    _write(tmp_path, "tests/test_more.py", 'PLANTED = "trainer/only_in_a_test_string.py"\n')
    assert check_cited_paths(tmp_path) == [
        "docs/page.md:1: trainer/old.py: no such file or folder",
        "docs/page.md:1: tests/test_real.py::test_two: no such test or function",
        "docs/page.md:1: docs/architecture.md#nope: no such heading",
        "docs/page.md:2: trainer/*.cfg: no such file or folder",
        "docs/page.md:2: trainer.real.ABSENT: trainer.real defines no ABSENT",
        "docs/page.md:2: trainer.gone.x: no module trainer.gone",
        "trainer/more.py:1: trainer/training/gone.py: no such file or folder",
        "trainer/more.py:3: docs/no.md: no such file or folder",
        "trainer/more.py:3: ARCHITECTURE.md: no such page here or at the top",
    ]


def test_a_wrong_row_of_the_moved_table_is_found(tmp_path):
    _planted_repo(tmp_path)
    _write(tmp_path, "trainer/older.py")  # An "old" path that is still there.
    text = (tmp_path / "docs/architecture.md").read_text(encoding="utf-8")
    text += "| `trainer/x.py` | `trainer/training/x.py` |\n"
    _write(tmp_path, "docs/architecture.md", text)
    assert check_moved_table(tmp_path) == [
        "docs/architecture.md:9: old path trainer/older.py still exists",
        "docs/architecture.md:10: new path trainer/training/x.py does not exist",
    ]


def test_a_long_readme_or_a_missing_page_is_found(tmp_path):
    links = "".join(f"[{page}](docs/{page})\n" for page in DOCS_PAGES)
    _write(tmp_path, "README.md", "make demo\nmake test\n" + links)
    for page in DOCS_PAGES:
        _write(tmp_path, f"docs/{page}", "# Page\n")
    assert check_pages(tmp_path) == []

    (tmp_path / "docs" / "serving.md").unlink()
    _write(tmp_path, "README.md", "make test\n" + links.replace("(docs/training.md)", "(x)") * 30)
    assert check_pages(tmp_path) == [
        "README.md: 301 lines, more than 300",
        "README.md: does not show `make demo`",
        "README.md: no link to docs/training.md",
        "docs/serving.md: missing",
    ]


def test_a_planted_unknown_module_or_tool_is_found(tmp_path):
    _planted_repo(tmp_path)
    _write(tmp_path, "setup.py", '"dfd-real=trainer.real:run_main",\n')
    _write(tmp_path, "deploy/docker/build_and_push.sh", "image=$IMAGE_PREFIX/dfd-tools:$TAG\n")
    _write(
        tmp_path,
        "README.md",
        "```bash\npython -m trainer.real --flag\ndfd-real x; python3 -m venv .venv\n```\n"
        "The `dfd-tools` image; gs://my-dfd-bucket; VM dfd-train-1; every `dfd-*` tool.\n",
    )
    assert check_commands(tmp_path) == []

    _write(
        tmp_path,
        "docs/page.md",
        "python -m trainer.nope\n`dfd-nope --flag`\npython -m trainer\npython -m no_such_package\n",
    )
    _write(
        tmp_path, "setup.py", '"dfd-real=trainer.real:run_main", "dfd-gone=trainer.gone:main",\n'
    )
    assert check_commands(tmp_path) == [
        "setup.py: dfd-gone -> trainer.gone:main, which does not exist",
        "docs/page.md:1: python -m trainer.nope: no such module file",
        "docs/page.md:2: dfd-nope: no such console script",
        "docs/page.md:3: python -m trainer: no such module file",
        "docs/page.md:4: python -m no_such_package: not installed",
    ]
