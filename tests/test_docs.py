"""The documentation holds together: its links resolve, and its settings are the code's."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from close_sms.app.config import known_settings

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CONFIGURATION_PAGE = ROOT / "docs" / "configuration.md"

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$")
CODE_SPAN = re.compile(r"(`+).+?\1")
# An inline link or image: [text](target) or [text](target "title").
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
EXTERNAL = ("http://", "https://", "mailto:")
# A test named in a code span: `tests/room/test_x.py` or `tests/room/test_x.py::test_name`.
NAMED_TEST = re.compile(r"`(tests/[\w/]+?\.py)(?:::(\w+))?`")


def prose_lines(path: Path) -> list[str]:
    """The lines of a Markdown file outside fenced code blocks."""
    lines, fenced = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def github_slug(heading: str) -> str:
    """GitHub's anchor of a heading: lowercase, punctuation but `-` and `_` dropped, spaces to `-`."""
    text = re.sub(r"`|\*\*|__|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file; a repeated slug gets `-1`, `-2`, ... as on GitHub."""
    seen: Counter[str] = Counter()
    found = set()
    for line in prose_lines(path):
        match = HEADING.match(line)
        if not match:
            continue
        slug = github_slug(match.group(1))
        found.add(f"{slug}-{seen[slug]}" if seen[slug] else slug)
        seen[slug] += 1
    return found


def links(path: Path) -> list[str]:
    """The relative link targets of a Markdown file's prose (code blocks and spans skipped)."""
    targets = []
    for line in prose_lines(path):
        for target in LINK.findall(CODE_SPAN.sub("", line)):
            if not target.lower().startswith(EXTERNAL):
                targets.append(target)
    return targets


def shown(path: Path) -> str:
    """A path as the repository names it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name


def broken_link(source: Path, target: str) -> str | None:
    """Why a relative link of `source` does not resolve, or None when it does."""
    file_part, _, anchor = target.partition("#")
    linked = (source.parent / file_part).resolve() if file_part else source
    if not linked.exists():
        return f"{file_part} does not exist"
    if anchor and linked.suffix == ".md" and anchor not in anchors(linked):
        return f"no heading of {shown(linked)} has the anchor #{anchor}"
    return None


def settings_table(path: Path) -> list[str]:
    """The first column of the table headed `| setting | ...`, each a name in backticks."""
    names, in_table = [], False
    for line in prose_lines(path):
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.lstrip().startswith("|"):
            in_table = False
        elif cells[0].lower() == "setting":
            in_table = True
        elif in_table and not set(cells[0]) <= set("-: "):
            name = re.fullmatch(r"`(\w+)`", cells[0])
            assert name, f"{path.name}: a settings row must start with `name`: {line.strip()}"
            names.append(name.group(1))
    return names


def accepted_settings() -> set[str]:
    """Every setting the code reads: the source's arguments and the command's own settings."""
    return known_settings()


def test_the_documents_exist() -> None:
    for name in ("how-it-reads-close", "configuration", "operations", "reliability", "privacy"):
        assert (ROOT / "docs" / f"{name}.md").is_file(), f"docs/{name}.md is missing"


@pytest.mark.parametrize("page", DOC_FILES, ids=shown)
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    problems = [
        f"{shown(page)}: ({target}): {reason}"
        for target in links(page)
        if (reason := broken_link(page, target))
    ]
    assert not problems, "broken links:\n" + "\n".join(problems)


@pytest.mark.parametrize("page", DOC_FILES, ids=shown)
def test_every_test_the_docs_name_exists(page: Path) -> None:
    problems = []
    for line in prose_lines(page):
        for path, function in NAMED_TEST.findall(line):
            test_file = ROOT / path
            if not test_file.is_file():
                problems.append(f"{path} does not exist")
            elif function and f"def {function}(" not in test_file.read_text(encoding="utf-8"):
                problems.append(f"{path} has no {function}")
    assert not problems, f"{shown(page)} names missing tests:\n" + "\n".join(problems)


def test_the_configuration_page_names_every_setting_and_no_other() -> None:
    documented = settings_table(CONFIGURATION_PAGE)
    repeated = sorted(name for name, count in Counter(documented).items() if count > 1)
    missing = sorted(accepted_settings() - set(documented))
    extra = sorted(set(documented) - accepted_settings())
    problems = [
        f"{what}: {names}"
        for what, names in (
            ("listed twice", repeated),
            ("not documented", missing),
            ("documented but not read by the code", extra),
        )
        if names
    ]
    assert not problems, "docs/configuration.md, settings " + "; ".join(problems)


def test_the_slugs_follow_github() -> None:
    assert github_slug("What the sync assumes about Close") == "what-the-sync-assumes-about-close"
    assert github_slug("Exit 2: bad option or `setting`") == "exit-2-bad-option-or-setting"
    assert github_slug("Rows h & i (3 keys)") == "rows-h--i-3-keys"
    assert github_slug("snake_case and-dash") == "snake_case-and-dash"


def test_a_broken_link_or_anchor_is_named(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n## Part\n## Part\n```\n[in code](nowhere.md)\n```\n"
        "[ok](#part-1) [bad](#part-2) [gone](missing.md) [web](https://example.com/x)\n",
        encoding="utf-8",
    )
    assert links(page) == ["#part-1", "#part-2", "missing.md"]
    assert broken_link(page, "#part-1") is None
    assert "#part-2" in (broken_link(page, "#part-2") or "")
    assert broken_link(page, "missing.md") == "missing.md does not exist"
