"""The small Dockerfile reader the entry-point test relies on."""

from __future__ import annotations

import pytest

from tests.helpers.dockerfile import DockerfileError, duration_seconds, instructions, runtime

SAMPLE = """\
# syntax=docker/dockerfile:1
FROM python:3.11-slim AS builder
ENV PATH="/opt/venv/bin:$PATH"
CMD ["builder-only"]

FROM python:3.11-slim
ENV A=1 \\
    # a comment inside a continuation
    B="two words" \\
    C=${A}-$B
ENV LEGACY value with spaces
EXPOSE 8000 9000/udp
USER 10001:10001
HEALTHCHECK --interval=5s --start-period=1m30s \\
    CMD ["python", "-c", "print('ok')"]
CMD ["modelserve", "serve"]
"""


def test_continuations_and_comments_are_joined() -> None:
    found = instructions(SAMPLE)
    assert [i.keyword for i in found][:3] == ["FROM", "ENV", "CMD"]
    env = next(i for i in found if i.args.startswith("A=1"))
    assert "comment" not in env.args and 'B="two words"' in env.args


def test_last_stage_env_cmd_and_healthcheck() -> None:
    image = runtime(SAMPLE, {"PATH": "/usr/bin"})
    assert image.base == "python:3.11-slim"
    assert image.cmd == ["modelserve", "serve"]
    assert image.env == {
        "PATH": "/usr/bin",  # the builder stage's ENV does not leak into the runtime
        "A": "1",
        "B": "two words",
        "C": "1-two words",
        "LEGACY": "value with spaces",
    }
    assert image.expose == ["8000", "9000/udp"]
    assert image.user == "10001:10001"
    assert image.healthcheck is not None
    assert image.healthcheck.command == ["python", "-c", "print('ok')"]
    assert duration_seconds(image.healthcheck.options["start-period"]) == 90.0


def test_path_expansion_uses_the_base_environment() -> None:
    image = runtime('FROM x\nENV PATH="/opt/venv/bin:$PATH"\nCMD ["a"]\n', {"PATH": "/bin"})
    assert image.env["PATH"] == "/opt/venv/bin:/bin"


@pytest.mark.parametrize(
    "text",
    [
        "FROM x\nCMD modelserve serve\n",  # shell form: not what the image should run
        "FROM x\nCMD []\n",
        "FROM x\nENV A=1\n",  # no CMD at all
        'CMD ["a"]\n',  # no FROM
        'FROM x\nHEALTHCHECK --interval 5s CMD ["a"]\nCMD ["a"]\n',
        "FROM x\nRUN a \\\n",  # dangling continuation
    ],
)
def test_malformed_dockerfiles_are_refused(text: str) -> None:
    with pytest.raises(DockerfileError):
        runtime(text, {})


def test_healthcheck_none_and_durations() -> None:
    assert runtime('FROM x\nHEALTHCHECK NONE\nCMD ["a"]\n', {}).healthcheck is None
    assert duration_seconds("500ms") == 0.5
    assert duration_seconds("1h2m3s") == 3723.0
    with pytest.raises(DockerfileError):
        duration_seconds("10 seconds")
