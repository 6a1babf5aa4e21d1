"""Length-prefixed pickles over a pipe: how the server speaks to the helper processes it
starts (the off-path scorer, the prediction log's writer) over their stdin and stdout."""

from __future__ import annotations

import os
import pickle
import struct
import sys
from typing import IO, Any

HEADER = struct.Struct(">I")


def helper_env() -> dict[str, str]:
    """The environment to start a helper process with: this one's imports, no metrics (in the
    workers' multiprocess directory its files would be read as a worker's)."""
    env = {k: v for k, v in os.environ.items() if k.lower() != "prometheus_multiproc_dir"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env


def frame(message: object) -> bytes:
    """``message`` as one length-prefixed pickle (both ends of the pipe)."""
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(payload)) + payload


def write_frame(stream: IO[bytes], message: object) -> None:
    stream.write(frame(message))
    stream.flush()


def read_frame(stream: IO[bytes]) -> Any:
    """The next message, or None at end of stream (the other end has gone)."""
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    (size,) = HEADER.unpack(header)
    payload = stream.read(size)
    if len(payload) < size:
        return None
    # The only writer is the process at the other end of a pipe this one was started with.
    return pickle.loads(payload)  # noqa: S301
