"""Record the app modules one ``POST /predict`` executes, in a real server on a socket.

Run as ``python -m tests.helpers.request_path REGISTRY``: a profile hook is installed in every
thread before the app is imported (``sys.setprofile`` and ``threading.setprofile``), uvicorn
serves ``create_app`` with the project's own options (uvloop, the header-deadline protocol) on a
free loopback port in a thread, one warm-up request is answered, then the hook records the file
of every Python function called in any thread while one more request is answered and its rows
are written to the prediction log. The log's writer process runs under the same hook
(``--writer``), recording while it writes that request's rows. Prints the modules, relative to
the checkout, one per line, in the order each was first entered (the server's, then the
writer's).
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
APP = str(ROOT / "app") + "/"

_recording = False
_seen: dict[str, None] = {}


def _profile(frame: FrameType, event: str, arg: Any) -> None:
    if _recording and event == "call":
        filename = frame.f_code.co_filename
        if filename.startswith(APP) and filename not in _seen:
            _seen[filename] = None


def main(registry: str) -> None:
    global _recording
    sys.setprofile(_profile)
    threading.setprofile(_profile)

    import httpx
    import uvicorn

    from app.config import Settings
    from app.main import create_app
    from app.monitoring.logwriter import ProcessSink
    from app.server.run import uvicorn_options
    from tests.helpers.support import free_port

    # Attribution sampling on, at a rate that samples neither row: an answer's usual path.
    settings = Settings(
        registry=Path(registry), port=free_port(), poll_interval_s=0, attribution_sample_rate=1e-9
    )
    app = create_app(settings)
    options = uvicorn_options(settings)
    options.pop("factory")
    options.pop("workers")
    server = uvicorn.Server(uvicorn.Config(app, **options))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{settings.port}"
    with httpx.Client(base_url=url, timeout=30) as client:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if client.get("/health/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        services = app.state.services
        sink = services.prediction_log.sink
        assert isinstance(sink, ProcessSink)
        writer_out = Path(tempfile.mkdtemp()) / "writer-modules"
        sink.command = [
            sys.executable,
            "-m",
            "tests.helpers.request_path",
            "--writer",
            str(writer_out),
        ]
        name = settings.default_model
        meta = services.registry.metadata(name, services.registry.resolve(name, "production"))
        body = {"instances": [list(meta.example)]}
        assert client.post("/predict", json=body).status_code == 200  # warm-up
        services.prediction_log.flush(10.0)
        _recording = True
        response = client.post("/predict", json=body)
        services.prediction_log.flush(10.0)
        _recording = False
    assert response.status_code == 200, response.text
    server.should_exit = True
    thread.join(30)  # the lifespan stops the prediction log, and so its writer
    for filename in dict.fromkeys([*_seen, *writer_out.read_text().split()]):
        print(Path(filename).relative_to(ROOT))


def writer(out: str) -> None:
    """The log writer process under the hook, recording from the third frame it reads (after
    its start and the warm-up's rows) to the end of its input."""
    from app import frames
    from app.monitoring import logwriter

    read: Callable[..., Any] = frames.read_frame
    seen_frames = 0

    def counted(stream: Any) -> Any:
        global _recording
        nonlocal seen_frames
        message = read(stream)
        seen_frames += 1
        _recording = seen_frames >= 3 and message is not None
        return message

    setattr(logwriter, "read_frame", counted)  # noqa: B010 (it names the frames' function)
    sys.setprofile(_profile)
    threading.setprofile(_profile)
    logwriter.main()
    Path(out).write_text("\n".join(_seen))


if __name__ == "__main__":
    if sys.argv[1] == "--writer":
        writer(sys.argv[2])
    else:
        main(sys.argv[1])
