"""The documentation site (issue #23, Docs): a strict build that fails on a broken link or
anchor, references generated from the code that are fresh and leave nothing out, a short README.

The completeness checks enumerate the code on their own (``Settings.model_fields``, the metric
objects of ``app.metrics``, the click commands behind the typer app), not through
``scripts/gen_docs.py``, so a generator that skipped something would be caught too.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from prometheus_client.metrics import MetricWrapperBase
from pydantic.fields import FieldInfo

import app.metrics
from app.cli import cli
from app.config import Settings
from scripts import gen_docs
from tests.helpers.app_factory import HTTP_METRICS
from tests.helpers.support import BIN, ROOT

REFERENCE = ROOT / "docs" / "reference"
README_MAX_LINES = 200


def _build(root: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "mkdocs"), "build", "--strict", "-f", str(root / "mkdocs.yml"), "-d", str(site)],
        cwd=root,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def _site_copy(dst: Path) -> Path:
    shutil.copy2(ROOT / "mkdocs.yml", dst / "mkdocs.yml")
    shutil.copy2(ROOT / "README.md", dst / "README.md")
    shutil.copytree(ROOT / "docs", dst / "docs")
    return dst


# ---- the strict build ------------------------------------------------------------------------


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    built = _build(ROOT, tmp_path / "site")
    assert built.returncode == 0, built.stdout + built.stderr
    quickstart = (tmp_path / "site" / "guide" / "quickstart" / "index.html").read_text()
    assert "two commands do all set-up" in quickstart  # the README section it includes


@pytest.mark.parametrize(
    ("page", "text", "complaint"),
    [
        ("guide/quickstart.md", "[x](api.md#no-such-anchor)", "does not contain an anchor"),
        ("guide/api.md", "[x](#no-such-heading)", "no such anchor on this page"),
        ("guide/quickstart.md", "[x](no-such-page.md)", "is not found among documentation files"),
        ("guide/orphan.md", "# A page no nav names", 'not included in the "nav"'),
        ("guide/quickstart.md", '--8<-- "README.md:no-such-section"', "no-such-section"),
    ],
)
def test_a_broken_anchor_link_page_or_include_fails_the_build(
    tmp_path: Path, page: str, text: str, complaint: str
) -> None:
    (tmp_path / "copy").mkdir()
    root = _site_copy(tmp_path / "copy")
    target = root / "docs" / page
    target.write_text((target.read_text() if target.exists() else "") + f"\n{text}\n")
    built = _build(root, tmp_path / "site")
    assert built.returncode != 0, built.stdout + built.stderr
    assert complaint in built.stdout + built.stderr


# ---- generated references: fresh ---------------------------------------------------------------


def test_the_generated_references_are_fresh() -> None:
    """Run in its own process: the generator builds the app, which registers HTTP metrics."""
    check = subprocess.run(
        [sys.executable, "-m", "scripts.gen_docs", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert check.returncode == 0, check.stderr


def test_a_stale_page_fails_the_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    page = tmp_path / "page.md"
    page.write_text("as committed\n")
    monkeypatch.setattr(gen_docs, "PAGES", {page: lambda: "as the code says now\n"})
    assert gen_docs.main(["--check"]) == 1
    assert page.read_text() == "as committed\n"  # --check writes nothing
    assert gen_docs.main([]) == 0
    assert page.read_text() == "as the code says now\n"


# ---- generated references: complete ------------------------------------------------------------


def _row(text: str, first_cell: str) -> str | None:
    match = re.search(rf"^\| {re.escape(first_cell)} \|(.*)$", text, re.M)
    return match.group(1) if match else None


def _plain(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|").replace("<", "&lt;")


def _variable(name: str, field: FieldInfo) -> str:
    """What pydantic-settings reads the field from: its alias, else the prefixed name."""
    alias = field.validation_alias
    return alias.upper() if isinstance(alias, str) else f"MODELSERVE_{name.upper()}"


def missing_settings(page: str) -> list[str]:
    """Settings fields without a row naming their variable, their description included."""
    missing = []
    for name, field in Settings.model_fields.items():
        row = _row(page, f"`{_variable(name, field)}`")
        if row is None or not field.description or _plain(field.description) not in row:
            missing.append(name)
    return missing


def _metrics() -> list[Any]:
    return [v for v in vars(app.metrics).values() if isinstance(v, MetricWrapperBase)]


def missing_metrics(page: str) -> list[str]:
    """Metric families of app.metrics (and the instrumentator's) without their row."""
    missing = []
    for metric in _metrics():
        (family,) = metric.describe()
        name = f"{family.name}_total" if family.type == "counter" else family.name
        labels = ", ".join(f"`{label}`" for label in metric._labelnames) or "–"
        row = _row(page, f"`{name}`")
        described = row is not None and _plain(family.documentation) in row
        if not described or f" {family.type} | {labels} |" not in f"{row}|":
            missing.append(name)
    missing += [name for name in HTTP_METRICS if _row(page, f"`{name}`") is None]
    return missing


def _commands(command: Any, path: str) -> Iterator[tuple[str, Any]]:
    yield path, command
    ctx = command.context_class(command, info_name=path)
    for name in getattr(command, "list_commands", lambda _: [])(ctx):
        yield from _commands(command.get_command(ctx, name), f"{path} {name}")


def missing_commands(page: str) -> list[str]:
    """Commands without their section, or with an argument or option their section lacks."""
    missing = []
    for path, command in list(_commands(typer.main.get_command(cli), "modelserve"))[1:]:
        section = re.search(rf"^## {path}\n(.*?)(?=^## |\Z)", page, re.S | re.M)
        if section is None:
            missing.append(path)
            continue
        cells = re.findall(r"^\| `([^`]+)` \|", section.group(1), re.M)
        shown = {word for c in cells for word in re.split(r"[ ,/]+", c)}
        for param in command.params:
            if param.param_type_name == "option":
                names = [*param.opts, *param.secondary_opts]
            else:
                names = [param.metavar or param.name]
            if not set(names) <= shown:
                missing.append(f"{path} {names[0]}")
    return missing


def test_every_setting_is_in_the_configuration_reference() -> None:
    assert missing_settings((REFERENCE / "configuration.md").read_text()) == []


def test_every_metric_is_in_the_metrics_reference() -> None:
    assert missing_metrics((REFERENCE / "metrics.md").read_text()) == []


def test_every_command_and_option_is_in_the_cli_reference() -> None:
    assert missing_commands((REFERENCE / "cli.md").read_text()) == []


def test_the_completeness_checks_catch_a_missing_entry() -> None:
    config = (REFERENCE / "configuration.md").read_text()
    without = re.sub(r"^\| `MODELSERVE_QUEUE_SIZE` \|.*\n", "", config, flags=re.M)
    assert missing_settings(without) == ["queue_size"]

    metrics = (REFERENCE / "metrics.md").read_text()
    without = re.sub(r"^\| `modelserve_shadow_dropped_total` \|.*\n", "", metrics, flags=re.M)
    assert missing_metrics(without) == ["modelserve_shadow_dropped_total"]
    without = re.sub(r"^\| `http_requests_inprogress` \|.*\n", "", metrics, flags=re.M)
    assert missing_metrics(without) == ["http_requests_inprogress"]

    commands = (REFERENCE / "cli.md").read_text()
    without = re.sub(r"^## modelserve verify\n.*?(?=^## )", "", commands, flags=re.S | re.M)
    assert missing_commands(without) == ["modelserve verify"]
    without = commands.replace("`--max-p99-ratio", "`--p99")
    assert missing_commands(without) == ["modelserve rollout --max-p99-ratio"]


def test_every_setting_has_a_description() -> None:
    """The generator refuses a field without one; this names it before the generator runs."""
    assert [name for name, f in Settings.model_fields.items() if not f.description] == []


# ---- the README ------------------------------------------------------------------------------


def _github_slug(heading: str) -> str:
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    headings = re.findall(r"^#{1,6} (.+?)\s*$", page.read_text(), re.M)
    return {_github_slug(h) for h in headings}


def test_the_readme_is_short_and_its_links_reach_pages_and_headings() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= README_MAX_LINES
    links = re.findall(r"\]\(([^)\s]+)\)", readme)
    local = [link for link in links if not re.match(r"[a-z]+://", link)]
    assert len(local) >= 15, local  # every page of the site is linked from the front page
    for link in local:
        path, _, anchor = link.partition("#")
        target = ROOT / path if path else ROOT / "README.md"
        assert target.is_file(), link
        if anchor:
            assert anchor in _anchors(target), link
