"""The README is a front page and the documentation holds together: every relative link in
README.md and docs/ leads to a file of this repository (and to a heading that exists, when it
names one), nothing points at a document outside the repository, and the README stays short
enough to read on one screen or two."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
README_MAX_LINES = 150

_FENCE = re.compile(r"^```.*?^```", re.M | re.S)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def prose(text: str) -> str:
    """`text` without fenced blocks and code spans, where brackets are not links."""
    return _CODE_SPAN.sub("", _FENCE.sub("", text))


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = unicodedata.normalize("NFC", heading.replace("`", "")).lower()
    kept = "".join(c for c in text if c.isalnum() or c in " -_")
    return kept.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading anchor of a Markdown page (repeated headings get -1, -2, ...)."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for heading in _HEADING.findall(_FENCE.sub("", page.read_text())):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(page: Path) -> list[str]:
    return _LINK.findall(prose(page.read_text()))


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    broken = []
    for target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...
            continue
        path_part, _, anchor = target.partition("#")
        resolved = (page.parent / path_part).resolve() if path_part else page
        if not resolved.is_relative_to(root):
            broken.append(f"{target}: outside the repository")
        elif not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading #{anchor} in {resolved.relative_to(root)}")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    assert broken_links(page) == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_page_cites_a_document_outside_the_repository(page: Path) -> None:
    text = page.read_text()
    assert "DESIGN.md" not in text
    assert "../shared" not in text


def test_the_readme_is_a_front_page() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines"
    assert any("make run" in line for line in lines[:15]), "the two commands come first"
    assert any("make test" in line for line in lines[:15]), "the two commands come first"


def test_the_readme_links_every_page_of_the_docs() -> None:
    linked = {(ROOT / target.partition("#")[0]).resolve() for target in links(README)}
    missing = [p.name for p in DOCS if p.name != "README.md" and p.resolve() not in linked]
    assert missing == []


def test_the_checker_sees_a_broken_link_and_a_missing_heading(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# A `code` heading: yes\n\n[ok](#a-code-heading-yes) [gone](nowhere.md) "
        "[no anchor](#nope) `[not a link](nowhere.md)`\n"
    )
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "up.md").write_text("[escape](../../elsewhere.md)\n")
    assert anchors(page) == {"a-code-heading-yes"}
    assert links(page) == ["#a-code-heading-yes", "nowhere.md", "#nope"]
    assert broken_links(page, tmp_path) == [
        "nowhere.md: no such file",
        "#nope: no heading #nope in page.md",
    ]
    assert broken_links(tmp_path / "sub" / "up.md", tmp_path) == [
        "../../elsewhere.md: outside the repository"
    ]
