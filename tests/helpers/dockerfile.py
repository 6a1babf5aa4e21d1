"""A small Dockerfile reader: enough to run the image's own CMD and HEALTHCHECK outside Docker.

It understands line continuations, comments, JSON-form (exec) instructions, ``ENV`` in both
``KEY=VALUE ...`` and legacy ``KEY VALUE`` form with ``$VAR``/``${VAR}`` expansion, and
``HEALTHCHECK [--option=value ...] CMD [...]``. Only the last stage matters for the runtime.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

_VAR = re.compile(r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")


class DockerfileError(ValueError):
    pass


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass(frozen=True)
class Healthcheck:
    command: list[str]
    options: dict[str, str]


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)


def instructions(text: str) -> list[Instruction]:
    """Logical instructions: comments dropped, ``\\``-continued lines joined."""
    result: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # comment lines inside a continuation are skipped by Docker too
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        joined = " ".join(part for part in pending if part)
        pending = []
        keyword, _, args = joined.partition(" ")
        result.append(Instruction(keyword.upper(), args.strip(), start))
    if pending:
        raise DockerfileError(f"line {start}: continuation runs past the end of the file")
    return result


def stages(text: str) -> list[Stage]:
    found: list[Stage] = []
    for inst in instructions(text):
        if inst.keyword == "FROM":
            parts = inst.args.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            found.append(Stage(base=parts[0], name=name))
        elif found:
            found[-1].instructions.append(inst)
        elif inst.keyword not in {"ARG"}:
            raise DockerfileError(f"line {inst.line}: {inst.keyword} before the first FROM")
    if not found:
        raise DockerfileError("no FROM instruction")
    return found


def exec_form(args: str, where: str) -> list[str]:
    """The JSON array of an exec-form instruction; shell form is refused on purpose."""
    try:
        value = json.loads(args)
    except json.JSONDecodeError as exc:
        raise DockerfileError(f"{where}: not JSON exec form ({exc})") from None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise DockerfileError(f"{where}: exec form must be a non-empty list of strings")
    return value


def expand(value: str, env: dict[str, str]) -> str:
    return _VAR.sub(lambda m: env.get(m.group("braced") or m.group("bare"), ""), value)


def parse_env(args: str, env: dict[str, str]) -> dict[str, str]:
    """One ENV instruction applied on top of ``env`` (later keys see earlier ones)."""
    tokens = shlex.split(args, posix=True)
    result = dict(env)
    if tokens and "=" not in tokens[0]:  # legacy form: ENV KEY the rest of the line
        key, _, value = args.partition(" ")
        result[key] = expand(value.strip(), result)
        return result
    for token in tokens:
        key, sep, value = token.partition("=")
        if not sep or not key:
            raise DockerfileError(f"ENV: expected KEY=VALUE, got {token!r}")
        result[key] = expand(value, result)
    return result


@dataclass(frozen=True)
class Runtime:
    """What the final stage would run: its CMD, HEALTHCHECK, environment and exposed ports."""

    cmd: list[str]
    healthcheck: Healthcheck | None
    env: dict[str, str]
    expose: list[str]
    user: str | None
    base: str


def runtime(text: str, base_env: dict[str, str]) -> Runtime:
    stage = stages(text)[-1]
    env = dict(base_env)
    cmd: list[str] | None = None
    health: Healthcheck | None = None
    expose: list[str] = []
    user: str | None = None
    for inst in stage.instructions:
        where = f"line {inst.line} {inst.keyword}"
        if inst.keyword == "ENV":
            env = parse_env(inst.args, env)
        elif inst.keyword == "CMD":
            cmd = exec_form(inst.args, where)
        elif inst.keyword == "EXPOSE":
            expose.extend(inst.args.split())
        elif inst.keyword == "USER":
            user = inst.args
        elif inst.keyword == "HEALTHCHECK":
            health = parse_healthcheck(inst.args, where)
    if cmd is None:
        raise DockerfileError("the final stage has no CMD")
    return Runtime(cmd, health, env, expose, user, stage.base)


def parse_healthcheck(args: str, where: str) -> Healthcheck | None:
    if args.strip().upper() == "NONE":
        return None
    options: dict[str, str] = {}
    rest = args.strip()
    while rest.startswith("--"):
        option, _, rest = rest.partition(" ")
        key, sep, value = option[2:].partition("=")
        if not sep:
            raise DockerfileError(f"{where}: option {option!r} needs =value")
        options[key] = value
        rest = rest.strip()
    keyword, _, command = rest.partition(" ")
    if keyword.upper() != "CMD":
        raise DockerfileError(f"{where}: expected CMD after the options, got {keyword!r}")
    return Healthcheck(exec_form(command.strip(), where), options)


def load(path: Path, base_env: dict[str, str]) -> Runtime:
    return runtime(path.read_text(), base_env)


def duration_seconds(value: str) -> float:
    """Docker durations as used by HEALTHCHECK options: ``30s``, ``1m30s``, ``500ms``."""
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise DockerfileError(f"not a duration: {value!r}")
    return sum(float(number) * units[unit] for number, unit in parts)
