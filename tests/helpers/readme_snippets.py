"""The shell blocks of README.md and of every page under docs/: found, classified by their
marker, and run against a real server.

A shell block (```bash, sh, shell, console) is one of:

- marked ``<!-- not-run: <reason> -->`` on the line directly before its fence: not runnable here
  (GitHub only, needs a cluster, ...), with the reason;
- marked ``<!-- tested-by: tests/<path>.py -->``: that test runs the block's commands; the file
  must exist and name the block's section heading or contain one of its command lines;
- unmarked: run by ``tests/e2e/test_readme_snippets.py`` with bash (``-e -o pipefail``) in a
  scratch copy of the checkout, ``127.0.0.1:8000`` pointing at a real ``modelserve serve`` on a
  free port (started by the test unless the block starts its own) and ``/tmp/`` at a scratch
  directory. A block followed by a line starting with ``returns`` and then a ```json block must
  print that JSON last; ``…`` in it stands for any value (``"3f0c…"`` any string, ``[[…]]``
  any list).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.helpers.support import BIN, ROOT

SHELL = {"bash", "sh", "shell", "console"}
FENCE = re.compile(r"^```(\w*)\s*$")
MARKER = re.compile(r"^<!-- (not-run|tested-by): (.+?) -->\s*$")
HEADING = re.compile(r"^#{1,4} (.+?)\s*$")  # a page's title (#) too
README_URL = "127.0.0.1:8000"
ANY = "\x00any"
README = ROOT / "README.md"


@dataclass(frozen=True)
class Block:
    page: str  # README.md, docs/guide/api.md, ...
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    heading: str
    marker: tuple[str, str] | None
    expected: str | None  # the ```json block after "returns"

    @property
    def id(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.heading.lower()).strip("-")
        return f"{self.page}:L{self.line}-{slug}"

    def commands(self) -> list[str]:
        """Command lines without comments, prompts or continuation backslashes."""
        lines = [
            re.sub(r"\s+#.*$", "", ln).strip().removeprefix("$ ") for ln in self.code.splitlines()
        ]
        return [ln.rstrip("\\").strip() for ln in lines if ln and not ln.startswith("#")]


def parse(text: str, page: str = "README.md") -> list[Block]:
    lines = text.splitlines()
    blocks: list[Block] = []
    heading = ""
    i = 0
    while i < len(lines):
        if m := HEADING.match(lines[i]):
            heading = m.group(1)
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
        marker = MARKER.match(lines[i - 1]) if i else None
        blocks.append(
            Block(
                page=page,
                line=i + 1,
                lang=fence.group(1),
                code="\n".join(lines[i + 1 : end]) + "\n",
                heading=heading,
                marker=(marker.group(1), marker.group(2).strip()) if marker else None,
                expected=_expected_after(lines, end),
            )
        )
        i = end + 1
    return blocks


def _expected_after(lines: list[str], end: int) -> str | None:
    rest = [(j, ln) for j, ln in enumerate(lines[end + 1 : end + 6], end + 1) if ln.strip()]
    if len(rest) >= 2 and rest[0][1].startswith("returns") and rest[1][1].strip() == "```json":
        start = rest[1][0] + 1
        stop = next(j for j in range(start, len(lines)) if lines[j].strip() == "```")
        return "\n".join(lines[start:stop])
    return None


def pages(root: Path = ROOT) -> list[Path]:
    """README.md, then every Markdown page of the documentation site, by path."""
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def page_name(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name


def shell_blocks(page: Path = README) -> list[Block]:
    return [b for b in parse(page.read_text(), page_name(page)) if b.lang in SHELL]


def all_shell_blocks(root: Path = ROOT) -> list[Block]:
    return [b for page in pages(root) for b in shell_blocks(page)]


def marker_problem(block: Block, root: Path = ROOT) -> str | None:
    """Why a block's marker does not hold, or None."""
    if block.marker is None:
        return None
    kind, value = block.marker
    if kind == "not-run":
        return None if len(value) >= 8 else f"not-run needs a reason, got {value!r}"
    path = root / value
    if not (value.startswith("tests/") and value.endswith(".py") and path.is_file()):
        return f"tested-by names {value!r}, which is not a test file under tests/"
    source = path.read_text()
    if block.heading and block.heading in source:
        return None
    if any(cmd in source for cmd in block.commands()):
        return None
    return f"{value} names neither the section {block.heading!r} nor any of its commands"


# ---- running ----------------------------------------------------------------------------


def scratch_checkout(dst: Path) -> Path:
    """The tracked files as they are in the working tree, and the venv, under ``dst``."""
    tracked = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for name in filter(None, tracked):
        src = ROOT / name
        if src.is_file():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / name)
    (dst / ".venv").symlink_to(BIN.parent)
    return dst


def run_block(block: Block, workdir: Path, tmp: Path, port: int, timeout: float = 300) -> str:
    """Run the block as pasted into a shell at the checkout root; its stdout (raises on error)."""
    code = block.code.replace(README_URL, f"127.0.0.1:{port}").replace("/tmp/", f"{tmp}/")
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "MODELSERVE_PORT": str(port),
        "MODELSERVE_HOST": "127.0.0.1",
        "MODELSERVE_REGISTRY": str(workdir / "models"),
        "MODELSERVE_POLL_INTERVAL_S": "1",
        "MODELSERVE_SHUTDOWN_DRAIN_S": "0",  # a block's own server stops with the block
        "TMPDIR": str(tmp),
    }
    for key in ("GITHUB_STEP_SUMMARY", "MODELSERVE_DATABASE_URL", "MODELSERVE_PREDICTION_LOG"):
        env.pop(key, None)  # as on a developer's machine
    proc = subprocess.Popen(
        ["bash", "-e", "-o", "pipefail", "-c", code],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # the block's own background server goes with its group
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    if proc.returncode != 0:
        raise AssertionError(
            f"{block.page} block at line {block.line} ({block.heading}) exited {proc.returncode}\n"
            f"--- stdout\n{out[-3000:]}\n--- stderr\n{err[-3000:]}"
        )
    return out


def starts_own_server(block: Block) -> bool:
    return any(re.search(r"modelserve serve\b", cmd) for cmd in block.commands())


# ---- documented output ------------------------------------------------------------------


def _pattern(expected: str) -> Any:
    """The documented JSON with ``…`` wildcards made explicit."""
    text = re.sub(r'"[^"]*…[^"]*"', lambda _: json.dumps(ANY), expected)
    text = text.replace("…", json.dumps(ANY))
    return json.loads(text)


def matches(expected: Any, actual: Any) -> bool:
    if expected == ANY:
        return True
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and expected.keys() == actual.keys()
            and all(matches(v, actual[k]) for k, v in expected.items())
        )
    if isinstance(expected, list):
        if expected == [ANY]:
            return isinstance(actual, list)
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(matches(e, a) for e, a in zip(expected, actual, strict=True))
        )
    if isinstance(expected, float) or isinstance(actual, float):  # 5.9e-8 as documented, 1 == 1.0
        numbers = (int, float)
        return type(expected) in numbers and type(actual) in numbers and expected == actual
    return bool(expected == actual and type(expected) is type(actual))


def check_output(block: Block, out: str) -> None:
    if block.expected is None:
        return
    expected = _pattern(block.expected)
    values = _json_values(out)
    assert values, f"{block.page} block at line {block.line} printed no JSON:\n{out[-2000:]}"
    assert matches(expected, values[-1]), (
        f"{block.page} block at line {block.line}: documented\n{block.expected}\nbut it printed\n"
        f"{json.dumps(values[-1])}"
    )


def _json_values(out: str) -> list[Any]:
    """The JSON values printed one after another (curl -s adds no newline between them)."""
    decoder = json.JSONDecoder()
    values, i = [], 0
    while i < len(out):
        start = min((k for k in (out.find("{", i), out.find("[", i)) if k >= 0), default=-1)
        if start < 0:
            break
        try:
            value, i = decoder.raw_decode(out, start)
        except ValueError:
            i = start + 1
            continue
        values.append(value)
    return values
