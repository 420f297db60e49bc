"""deploy/Dockerfile, read as text (no container engine needed): a slim multi-stage build
of the wheel, a numeric non-root user matching the manifests, exec-form entry point and
health check, and the Alembic files where MEMSCORE_ALEMBIC_CONFIG says they are."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import PurePosixPath

import pytest
import yaml

from tests.deploy.manifests import DEPLOY

DOCKERFILE = DEPLOY / "Dockerfile"

Instruction = tuple[str, str]


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    """(KEYWORD, arguments) per instruction, continuations joined, comments dropped."""
    lines = [
        line
        for line in DOCKERFILE.read_text(encoding="utf-8").splitlines()
        if not line.lstrip().startswith("#")
    ]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    parsed = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, arguments = line.strip().partition(" ")
            parsed.append((keyword.upper(), arguments.strip()))
    return parsed


def _all(instructions: list[Instruction], keyword: str) -> list[str]:
    return [arguments for k, arguments in instructions if k == keyword]


def _last_stage(instructions: list[Instruction]) -> list[Instruction]:
    start = max(i for i, (k, _) in enumerate(instructions) if k == "FROM")
    return instructions[start:]


def _env(instructions: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for arguments in _all(_last_stage(instructions), "ENV"):
        for pair in shlex.split(arguments):
            key, _, value = pair.partition("=")
            env[key] = value
    return env


def test_base_image_is_slim_python_3_11(instructions: list[Instruction]) -> None:
    default = next(a for a in _all(instructions, "ARG") if a.startswith("PYTHON_IMAGE="))
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11-slim(-\w+)?", default)


def test_build_is_multi_stage(instructions: list[Instruction]) -> None:
    stages = [a.split() for a in _all(instructions, "FROM")]
    assert [s[-1] for s in stages] == ["build", "runtime"]


def test_runtime_copies_only_the_built_environment_from_the_build_stage(
    instructions: list[Instruction],
) -> None:
    copies = [a for a in _all(_last_stage(instructions), "COPY") if a.startswith("--from=")]
    assert copies == ["--from=build /opt/memscore /opt/memscore"]


def test_wheel_is_built_without_extras(instructions: list[Instruction]) -> None:
    runs = " ".join(_all(instructions, "RUN"))
    assert ("pip wheel --no-deps" in runs, "[dev" in runs or "devmodel" in runs) == (True, False)


def test_runs_as_the_numeric_user_the_manifests_expect(instructions: list[Instruction]) -> None:
    deployment = yaml.safe_load(
        (DEPLOY / "k8s" / "base" / "deployment.yaml").read_text(encoding="utf-8")
    )
    expected = deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
    user = _all(_last_stage(instructions), "USER")[-1]
    assert user.split(":")[0] == str(expected)


def test_entrypoint_and_command_are_exec_form_memscore_run(
    instructions: list[Instruction],
) -> None:
    entrypoint = json.loads(_all(instructions, "ENTRYPOINT")[-1])
    command = json.loads(_all(instructions, "CMD")[-1])
    assert entrypoint + command == ["memscore", "run"]


def test_healthcheck_asks_healthz_with_python_in_exec_form(
    instructions: list[Instruction],
) -> None:
    healthcheck = _all(instructions, "HEALTHCHECK")[-1]
    exec_form = json.loads(healthcheck.partition(" CMD ")[2])
    assert (exec_form[:2], "/healthz" in exec_form[-1]) == (["python", "-c"], True)


def test_exposes_the_default_metrics_port(instructions: list[Instruction]) -> None:
    assert (_all(instructions, "EXPOSE"), _env(instructions)["MEMSCORE_HTTP_PORT"]) == (
        ["9400"],
        "9400",
    )


def test_alembic_config_and_migrations_land_where_the_setting_points(
    instructions: list[Instruction],
) -> None:
    stage = _last_stage(instructions)
    workdir = PurePosixPath(_all(stage, "WORKDIR")[-1])
    copied = {
        str(workdir / destination): source
        for source, destination in (a.split() for a in _all(stage, "COPY") if "--from" not in a)
    }
    config = PurePosixPath(_env(instructions)["MEMSCORE_ALEMBIC_CONFIG"])
    assert (copied.get(str(config)), copied.get(str(config.parent / "migrations"))) == (
        "alembic.ini",
        "migrations",
    )
