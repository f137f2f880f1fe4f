"""Rules for the documents (README.md, docs/*.md): a short user's guide, no project-management
vocabulary or links outside the repository, links that resolve, and `docs/runs/` holding exactly
the runs that a document cites."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
RUNS = REPO / "docs" / "runs"
FORBIDDEN = ("../shared", "gate ", "issue", "session")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def text(path: Path) -> str:
    return path.read_text()


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    s = re.sub(r"[`*_]", "", heading.strip().lower())
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(m) for m in re.findall(r"^#+ (.+)$", text(path), re.M)}


def test_readme_is_short() -> None:
    assert len(text(REPO / "README.md").splitlines()) <= 300


def test_readme_opens_with_the_pipeline_and_the_ci_test_command() -> None:
    first = re.search(r"```bash\n(.*?)```", text(REPO / "README.md"), re.S).group(1).strip().splitlines()
    assert len(first) == 2 and first[0].endswith("dvc repro")
    assert first[1] in text(REPO / ".ci" / "run").splitlines()


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_no_tracker_vocabulary_or_outside_links(path: Path) -> None:
    low = text(path).lower()
    assert not [w for w in FORBIDDEN if w in low]


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_relative_links_resolve(path: Path) -> None:
    for target in LINK.findall(text(path)):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        assert dest.exists(), f"{path.name}: {target}"
        if anchor and dest.suffix == ".md":
            assert anchor in anchors(dest), f"{path.name}: no heading for {target}"


def test_every_cited_run_exists_and_every_run_is_cited() -> None:
    docs = "\n".join(text(p) for p in DOCS)
    cited = set(re.findall(r"(?<![\w-])(?:docs/)?runs/([\w.-]+?)(?=[/`)\s]|$)", docs, re.M))
    kept = {p.name for p in RUNS.iterdir() if p.is_dir()}
    assert cited <= kept, f"cited but missing: {sorted(cited - kept)}"
    uncited = [n for n in kept if not re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", docs)]
    assert not uncited, f"in docs/runs/ but cited nowhere: {uncited}"
