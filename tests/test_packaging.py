"""environment.yml (conda) and pyproject.toml must ask for the same packages."""
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_environment_yml_agrees_with_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = set(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        wanted |= set(extra)
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    listed = {line for line in pip_section if not line.startswith("-")}
    assert listed == wanted
    assert "python=3.11" in env["dependencies"]


def test_embedded_weights_ship_with_the_package():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "weights/*/*" in project["tool"]["setuptools"]["package-data"]["sardfq"]
    folder = ROOT / "sardfq" / "weights" / "vit_tiny_cifar10"
    assert (folder / "model.safetensors").stat().st_size > 10_000_000
    assert (folder / "config.json").is_file()
