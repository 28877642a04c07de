"""The Docker image, docker-compose file and systemd unit: what can be checked without running them.

An image build runs only where a Docker engine answers (skipped with the reason otherwise).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parents[2]
DOCKER = ROOT / "deploy" / "docker"
DOCKERFILE = (DOCKER / "Dockerfile").read_text()
UNIT = ROOT / "deploy" / "systemd" / "givbridge.service"


def instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(
        r"\\\n", " ", "\n".join(line for line in dockerfile.splitlines() if not line.lstrip().startswith("#"))
    )
    result = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def final_stage(dockerfile: str) -> list[tuple[str, str]]:
    steps = instructions(dockerfile)
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


# ---------------------------------------------------------------------------- Dockerfile


def test_no_build_from_and_explicit_bases() -> None:
    assert "BUILD_FROM" not in DOCKERFILE
    bases = [args.split()[0] for word, args in instructions(DOCKERFILE) if word == "FROM"]
    assert len(bases) == 2 and all(base.startswith("python:3.") and "slim" in base for base in bases)


def test_runs_as_a_non_root_user_with_a_data_volume_and_healthcheck() -> None:
    stage = final_stage(DOCKERFILE)
    users = [args for word, args in stage if word == "USER"]
    assert users and users[-1] not in ("root", "0", "0:0")
    assert ("VOLUME", "/data") in stage
    healthcheck = [args for word, args in stage if word == "HEALTHCHECK"]
    assert healthcheck and '"givbridge", "health"' in healthcheck[0]
    assert ("CMD", '["run"]') in stage and ("ENTRYPOINT", '["givbridge"]') in stage


def test_the_runtime_stage_installs_the_built_wheel_only() -> None:
    stage = final_stage(DOCKERFILE)
    assert any(word == "COPY" and args.startswith("--from=build /wheels") for word, args in stage)
    assert any(word == "RUN" and "--no-index" in args for word, args in stage)
    assert not any(word == "COPY" and "givbridge" in args.split()[0] for word, args in stage)  # no source


def test_the_build_context_holds_what_the_wheel_needs() -> None:
    """Every file the wheel packs is under a COPY, symlinks included (discovery_templates)."""
    copied_paths = {
        source for word, args in instructions(DOCKERFILE) if word == "COPY" and "--from" not in args
        for source in args.split()[:-1]
    }  # fmt: skip
    for needed in ("pyproject.toml", "README.md", "LICENSE", "givbridge", "discovery_templates"):
        assert needed in copied_paths, f"the image build does not copy {needed}"
    for link in (ROOT / "givbridge").rglob("*"):
        if link.is_symlink():
            target = link.resolve().relative_to(ROOT)
            assert target.parts[0] in copied_paths, f"{link.relative_to(ROOT)} points outside the copied files"
    ignore = (DOCKER / "Dockerfile.dockerignore").read_text().split()
    for needed in ("!pyproject.toml", "!README.md", "!LICENSE", "!givbridge/", "!discovery_templates/"):
        assert needed in ignore


# ---------------------------------------------------------------------------- compose


def test_compose_runs_givbridge_and_mosquitto() -> None:
    compose = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"mosquitto", "givbridge"}
    givbridge = services["givbridge"]
    context = (DOCKER / givbridge["build"]["context"]).resolve()
    assert context == ROOT and (context / givbridge["build"]["dockerfile"]).is_file()
    assert givbridge["environment"]["GIVBRIDGE_MQTT__HOST"] == "mosquitto"
    assert any(volume.endswith(":/data") for volume in givbridge["volumes"])
    assert givbridge["read_only"] is True and givbridge["cap_drop"] == ["ALL"]
    assert givbridge["restart"] == "unless-stopped"
    assert services["mosquitto"]["image"].startswith("eclipse-mosquitto:2")


def test_the_compose_broker_requires_logins() -> None:
    conf = (DOCKER / "mosquitto" / "mosquitto.conf").read_text()
    assert re.search(r"^allow_anonymous false$", conf, re.MULTILINE)
    assert re.search(r"^password_file ", conf, re.MULTILINE)


# ---------------------------------------------------------------------------- systemd


def unit_directives() -> dict[str, list[str]]:
    directives: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            directives.setdefault(key.strip(), []).append(value.strip())
    return directives


def test_systemd_unit_is_hardened() -> None:
    unit = unit_directives()
    expected = {
        "DynamicUser": "yes",
        "StateDirectory": "givbridge",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "Restart": "on-failure",
        "CapabilityBoundingSet": "",
    }
    for key, value in expected.items():
        assert unit.get(key) == [value], f"{key}={unit.get(key)}"
    families = set(unit["RestrictAddressFamilies"][0].split())
    assert families == {"AF_INET", "AF_INET6", "AF_UNIX"}
    restart_sec = re.fullmatch(r"(\d+)s?", unit["RestartSec"][0])
    assert restart_sec and 5 <= int(restart_sec[1]) <= 60
    assert unit["RestartPreventExitStatus"] == ["2"]  # a settings error does not heal by restarting
    assert "%d/givbridge.yaml" in unit["ExecStart"][0]  # the settings arrive as a credential
    assert unit["LoadCredential"] == ["givbridge.yaml:/etc/givbridge/givbridge.yaml"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_rates_the_unit_well(tmp_path: Path) -> None:
    unit = tmp_path / "givbridge.service"
    unit.write_text(UNIT.read_text())
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(unit)], capture_output=True, text=True, timeout=60
    )
    exposure = re.search(r"Overall exposure level for givbridge.service: ([\d.]+)", result.stdout)
    assert exposure, result.stdout + result.stderr
    assert float(exposure[1]) <= 2.0


# ---------------------------------------------------------------------------- a real build, where possible


def docker_engine() -> str | None:
    """Why no image can be built here, or None when a Docker engine answers."""
    if shutil.which("docker") is None:
        return "the docker command is not installed"
    try:
        result = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"docker info failed: {exc}"
    if result.returncode != 0:
        return "no Docker engine answers: " + (result.stderr.strip().splitlines() or ["?"])[-1]
    return None


@pytest.mark.timeout(1800)
def test_the_image_builds_and_runs() -> None:
    reason = docker_engine()
    if reason:
        pytest.skip(reason)
    tag = f"givbridge-test:{os.getpid()}"
    build = ["docker", "build", "-f", str(DOCKER / "Dockerfile"), "-t", tag, str(ROOT)]
    subprocess.run(build, check=True, timeout=1700)
    try:
        version = subprocess.run(["docker", "run", "--rm", tag, "version"], capture_output=True, text=True, timeout=60)
        assert version.returncode == 0 and version.stdout.startswith("givbridge ")
        user = subprocess.run(
            ["docker", "run", "--rm", "--entrypoint", "id", tag, "-u"], capture_output=True, text=True, timeout=60
        )
        assert user.stdout.strip() not in ("", "0")
        health = subprocess.run(["docker", "run", "--rm", tag, "health"], capture_output=True, text=True, timeout=60)
        assert health.returncode == 1 and "no health document" in health.stdout  # nothing running
    finally:
        subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True, timeout=120)
