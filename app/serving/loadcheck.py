"""Can a server serve this version? Load it and score its stored example in a fresh process.

A checksum says the bytes are the ones registered, not that they load: a pickle may need a
module or a library version this environment lacks. Running servers that fail to load a
promoted version keep the old one, which hides the problem until a server restarts onto it.
``check_in_fresh_process`` is the registry's load check for every alias move made by the CLI:
the same load, warm-up and smoke prediction as the server's, in a new interpreter, so what the
CLI process itself has imported (a training module, say) cannot make it pass.

Run as ``python -m app.serving.loadcheck ROOT NAME VERSION``: exit 0, or 1 with the reason as
the last line of stderr.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from app.registry.errors import VersionNotLoadableError

TIMEOUT_S = 300.0
"""A large forest takes seconds to load on a busy host; a hung load is refused after this."""


def check_in_fresh_process(root: Path, name: str, version: str) -> None:
    """Raise VersionNotLoadableError unless a fresh process loads and warms the version."""
    command = [sys.executable, "-m", __name__, str(root), name, version]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=TIMEOUT_S, env=_child_env()
        )
    except subprocess.TimeoutExpired:
        raise VersionNotLoadableError(
            f"version {version} of {name!r} did not load within {TIMEOUT_S:g} s"
        ) from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        reason = lines[-1] if lines else f"the check exited with {done.returncode}"
        raise VersionNotLoadableError(
            f"version {version} of {name!r} cannot be served here: {reason}"
        )


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # its metrics are nobody's: keep them in memory
    return env


def main(argv: list[str]) -> int:
    from concurrent.futures import ThreadPoolExecutor

    from app.config import Settings
    from app.registry.store import Registry
    from app.serving.runner import ServedModel

    root, name, version = argv
    executor = ThreadPoolExecutor(max_workers=1)
    try:
        ServedModel.load(
            Registry(Path(root)), name, version, Settings(registry=Path(root)), executor
        )
    except Exception as exc:  # any failure is the answer, said in one line
        text = " ".join(str(exc).split()) or "(no message)"
        print(f"{type(exc).__name__}: {text}", file=sys.stderr)
        return 1
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
