"""What ``pip install .`` (the image) gets: every folder of ``app/`` that holds Python code is a
package setuptools finds, so nothing that the editable checkout imports is left out."""

from __future__ import annotations

from setuptools import find_packages  # type: ignore[import-untyped]

from tests.helpers.support import ROOT


def test_every_code_folder_of_app_is_an_installed_package() -> None:
    folders = {
        ".".join(path.parent.relative_to(ROOT).parts)
        for path in (ROOT / "app").rglob("*.py")
        if "__pycache__" not in path.parts
    }
    found = set(find_packages(where=str(ROOT), include=["app*"]))
    assert folders - found == set(), "add an __init__.py to each"
