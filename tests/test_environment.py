"""environment.yml and pyproject.toml must tell one story."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _env() -> dict:
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def test_python_pin_agrees():
    requires = _pyproject()["project"]["requires-python"]
    conda_python = next(
        d for d in _env()["dependencies"] if isinstance(d, str) and d.startswith("python")
    )
    version = conda_python.split("=", 1)[1]
    assert f">={version}" in requires, (conda_python, requires)


def test_pip_section_installs_this_project_with_declared_extras():
    pip = next(d["pip"] for d in _env()["dependencies"] if isinstance(d, dict))
    extras = set(_pyproject()["project"]["optional-dependencies"])
    lines = [line for line in pip if line.startswith("-e .")]
    assert lines, "environment.yml must install the project itself"
    named = set(re.search(r"\[(.*)\]", lines[0]).group(1).split(","))
    assert named <= extras, named - extras


def test_conda_listed_packages_are_declared_in_pyproject():
    project = _pyproject()["project"]
    declared = {
        re.split(r"[<>=\[ ]", spec)[0].lower()
        for spec in project["dependencies"]
        + [s for group in project["optional-dependencies"].values() for s in group]
    }
    for dep in _env()["dependencies"]:
        if isinstance(dep, str):
            name = re.split(r"[<>= ]", dep)[0].lower()
            assert name in {"python", "pip"} | declared, f"{name} is not declared in pyproject"
