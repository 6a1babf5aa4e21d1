"""Every shell block in README.md and in every page under docs/ is run against a real server,
or marked (issues #15 and #23).

Markers, on the line directly before the fence (see ``tests/helpers/readme_snippets.py``):
``<!-- not-run: <reason> -->`` or ``<!-- tested-by: tests/<path>.py -->``. Unmarked blocks run
here in page order (README.md first, then docs/ by path), each page in its own order, in a
scratch copy of the checkout, against ``modelserve serve`` on a free port; a block followed by
``returns`` and a JSON block must print that JSON.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import readme_snippets as snippets
from tests.helpers.support import ROOT, Server, free_port

pytestmark = pytest.mark.e2e
BLOCKS = snippets.all_shell_blocks()
UNMARKED = [b for b in BLOCKS if b.marker is None]


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_every_marker_holds(block: snippets.Block) -> None:
    assert snippets.marker_problem(block) is None, snippets.marker_problem(block)


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return snippets.scratch_checkout(tmp_path_factory.mktemp("checkout"))


@pytest.fixture(scope="module")
def server(checkout: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The Quickstart's server, for blocks that do not start their own."""
    with Server(checkout / "models", workdir=tmp_path_factory.mktemp("server")) as srv:
        srv.wait_ready()
        yield srv


@pytest.mark.parametrize("block", UNMARKED, ids=[b.id for b in UNMARKED])
def test_unmarked_block_runs_as_documented(
    block: snippets.Block, checkout: Path, server: Server, tmp_path: Path
) -> None:
    port = free_port() if snippets.starts_own_server(block) else server.port
    out = snippets.run_block(block, checkout, tmp_path, port)
    snippets.check_output(block, out)


def _page_with(text: str) -> Path:
    """The one page whose shell blocks (with their markers and documented output) have the text."""

    def whole(b: snippets.Block) -> str:
        marker = f"<!-- {b.marker[0]}: {b.marker[1]} -->" if b.marker else ""
        return f"{marker}\n{b.code}\n{b.expected or ''}"

    (page,) = {ROOT / b.page for b in BLOCKS if text in whole(b)}
    return page


def _mutated(tmp_path: Path, old: str, new: str) -> list[snippets.Block]:
    page = _page_with(old)
    copy = tmp_path / page.name
    copy.write_text(page.read_text().replace(old, new, 1))
    return snippets.shell_blocks(copy)


def _block_with(blocks: list[snippets.Block], text: str) -> snippets.Block:
    return next(b for b in blocks if text in b.code)


@pytest.mark.parametrize(
    ("old", "new", "in_block"),
    [
        # a documented output: the Quickstart's prediction
        ('"predictions":[0],"probabilities"', '"predictions":[1],"probabilities"', "/predict"),
        # a documented output: two digits of one probability swapped
        ("0.9999707266256721,", "0.9999707266256712,", "examples/rows.csv"),
        # a documented command
        ("--input examples/rows.csv", "--input examples/row.csv", "examples/row.csv"),
        ("modelserve models ", "modelserve modles ", "modelserve modles"),
    ],
)
def test_a_changed_command_or_output_fails(
    old: str, new: str, in_block: str, checkout: Path, server: Server, tmp_path: Path
) -> None:
    block = _block_with(_mutated(tmp_path, old, new), in_block)
    assert block.marker is None
    with pytest.raises(AssertionError, match="block at line"):
        out = snippets.run_block(block, checkout, tmp_path, server.port)
        snippets.check_output(block, out)


def test_a_marker_naming_no_test_or_a_test_of_something_else_fails(tmp_path: Path) -> None:
    marker = "<!-- tested-by: tests/deploy/test_stack.py -->"
    gone = _mutated(tmp_path, marker, "<!-- tested-by: tests/deploy/test_gone.py -->")
    assert "not a test file" in (snippets.marker_problem(_block_with(gone, "docker compose")) or "")
    other = _mutated(tmp_path, marker, "<!-- tested-by: tests/e2e/test_readme_dvc.py -->")
    assert "names neither" in (snippets.marker_problem(_block_with(other, "docker compose")) or "")
    page = _page_with("a usage synopsis").read_text()
    (line,) = [ln for ln in page.splitlines() if "a usage synopsis" in ln]
    bare = _mutated(tmp_path, line, "<!-- not-run: x -->")
    assert "needs a reason" in (snippets.marker_problem(_block_with(bare, "NAME ARTIFACT")) or "")


def test_every_page_of_the_site_is_scanned() -> None:
    """Each page the site's nav names (and README.md) is one whose blocks are found above."""
    nav = re.findall(r"^\s+- [^:]+: (\S+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(), re.M)
    assert len(nav) >= 15, nav
    scanned = set(snippets.pages())
    assert {ROOT / "README.md", *(ROOT / "docs" / page for page in nav)} <= scanned
    assert {b.page for b in BLOCKS} >= {"README.md", "docs/guide/api.md", "docs/guide/stack.md"}
