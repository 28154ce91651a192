"""The production image: locked, hash-checked dependencies without the dev extras."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
LOCK = (ROOT / "requirements.lock").read_text()


def _locked() -> dict[str, str]:
    return {
        name.lower().replace("_", "-"): version
        for name, version in re.findall(r"^([A-Za-z0-9_.\-]+)==([^\s\\]+)", LOCK, re.MULTILINE)
    }


def test_every_dependency_is_locked_at_its_pinned_version_with_hashes() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    locked = _locked()
    for requirement in project["dependencies"]:
        pinned = re.fullmatch(r"([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==(\S+)", requirement)
        assert pinned, f"{requirement} is not pinned exactly"
        name, version = pinned.groups()
        assert locked.get(name.lower().replace("_", "-")) == version, requirement
    entries = re.split(r"\n(?=[A-Za-z0-9])", LOCK.split("\n\n", 1)[-1].strip())
    assert all("--hash=sha256:" in entry for entry in entries if "==" in entry)


def test_the_embedded_servers_and_dev_tools_stay_out_of_the_image() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    locked = _locked()
    for requirement in extras["embedded"] + extras["dev"]:
        name = re.split(r"[=\[<>]", requirement)[0].lower()
        assert name not in locked, requirement


def test_the_image_installs_the_lock_runs_unprivileged_and_checks_the_configured_port() -> None:
    assert re.search(r"^FROM python:3\.11-slim[\w.-]*@sha256:[0-9a-f]{64}$", DOCKERFILE, re.M)
    assert "pip install --no-deps --require-hashes -r requirements.lock" in DOCKERFILE
    assert re.search(r"^USER \d+:\d+$", DOCKERFILE, re.M)
    assert "STOPSIGNAL SIGTERM" in DOCKERFILE
    healthcheck = DOCKERFILE[DOCKERFILE.index("HEALTHCHECK") :]
    assert "--start-period=" in healthcheck.splitlines()[0]
    assert 'CMD ["python"' in healthcheck and "os.environ.get('PORT'" in healthcheck
    assert 'ENTRYPOINT ["./entrypoint.sh"]' in DOCKERFILE
