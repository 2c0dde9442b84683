"""Tests that keep README.md true: its code runs, its commands and versions match."""

import re
from pathlib import Path

import numpy as np
import pytest

from sk_meanclf import NearestMeanImageClassifier

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()

MAIN_JOB_COMMAND = (
    'python3 -m venv .venv && .venv/bin/pip install -e ".[fastai,plot,fast]" '
    "&& .venv/bin/sk-meanclf --out results"
)
TEST_COMMAND = (
    'python3 -m venv .venv && .venv/bin/pip install -e ".[dev]" '
    "&& .venv/bin/python -m pytest"
)


def _section(title):
    """The text of the README section headed ``## title``."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.S | re.M)
    assert match is not None, f"README.md has no section {title!r}"
    return match.group(1)


def _pyproject():
    tomllib = pytest.importorskip("tomllib")
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _names(requirements):
    """Distribution names of PEP 508 requirement strings, lower-cased."""
    return {re.match(r"[A-Za-z0-9_.\-]+", r).group(0).lower() for r in requirements}


def test_quick_start_prints_what_the_readme_shows(fastai_home, monkeypatch, capsys):
    """Check that the quick-start block runs and prints the output shown below it."""
    section = _section("Quick start")
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    shown = re.search(r"```text\n(.*?)```", section, re.S).group(1)
    monkeypatch.setenv("FASTAI_HOME", str(fastai_home))
    namespace = {"__name__": "readme_quick_start"}
    exec(compile(code, str(REPO / "README.md"), "exec"), namespace)
    assert capsys.readouterr().out == shown
    assert namespace["clf"].centroids_.shape == (2, 784)


def test_dask_and_torch_blocks_match_numpy(fastai_home, monkeypatch):
    """Check that the Dask and torch blocks run after the quick start and agree."""
    pytest.importorskip("dask.array")
    pytest.importorskip("torch")
    pytest.importorskip("array_api_compat")
    quick = re.search(r"```python\n(.*?)```", _section("Quick start"), re.S).group(1)
    blocks = re.findall(
        r"```python\n(.*?)```", _section("Dask arrays and torch tensors"), re.S
    )
    assert len(blocks) == 2
    monkeypatch.setenv("FASTAI_HOME", str(fastai_home))
    namespace = {"__name__": "readme_quick_start"}
    exec(compile(quick, str(REPO / "README.md"), "exec"), namespace)
    expected = {
        norm: NearestMeanImageClassifier(norm=norm)
        .fit(namespace["X_train"], namespace["y_train"])
        .predict(namespace["X_train"])
        for norm in ("l1", "l2")
    }

    exec(compile(blocks[0], str(REPO / "README.md"), "exec"), namespace)
    np.testing.assert_array_equal(namespace["labels"].compute(), expected["l2"])

    exec(compile(blocks[1], str(REPO / "README.md"), "exec"), namespace)
    labels = namespace["labels"]
    assert type(labels).__module__ == "torch"
    assert labels.device == namespace["X"].device
    np.testing.assert_array_equal(labels.cpu().numpy(), expected["l1"])


def test_two_commands_are_in_readme_and_ci():
    """Check that the README shows both commands and .ci/run runs the test one."""
    commands = re.findall(r"^    (python3 -m venv .*)$", _section("Two commands"), re.M)
    assert commands == [MAIN_JOB_COMMAND, TEST_COMMAND]
    ci_lines = (REPO / ".ci" / "run").read_text().splitlines()
    assert TEST_COMMAND in ci_lines
    assert any(line.startswith(".venv/bin/sk-meanclf --out ") for line in ci_lines)


def test_python_version_matches_pyproject():
    """Check that the Python minimum in the README is pyproject's requires-python."""
    requires = _pyproject()["project"]["requires-python"]
    version = re.fullmatch(r">=(\d+\.\d+)", requires).group(1)
    assert f"needs Python {version} or newer" in README


def test_dependencies_match_pyproject():
    """Check that the README lists exactly the core dependencies and extras."""
    project = _pyproject()["project"]
    install = _section("Install")
    core = re.search(r"pip install \.\s+# core: (.*)", install).group(1)
    assert {name.lower() for name in core.split(", ")} == _names(
        project["dependencies"]
    )

    extras = project["optional-dependencies"]
    rows = re.findall(r"^\| `(\w+)` \| ([^|]+) \|", install, re.M)
    assert [extra for extra, _ in rows] == list(extras)
    for extra, cell in rows:
        listed = {name.strip().strip("`").lower() for name in cell.split(",")}
        own = [r for r in extras[extra] if r.startswith("sk_meanclf[")]
        expected = _names(set(extras[extra]) - set(own))
        before = list(extras)[: list(extras).index(extra)]
        for requirement in own:
            included = requirement[len("sk_meanclf[") : -1].split(",")
            if sorted(included) == sorted(before):
                expected.add("the extras above")
            else:
                expected.update(included)
        assert listed == expected, extra


def test_results_command_is_the_main_job():
    """Check that the results section names the command that produced its table."""
    section = _section("Results on MNIST_SAMPLE")
    assert "sk-meanclf --out results" in section
    assert re.search(r"^3 +1010 +0\.9168 +0\.\d{4}$", section, re.M)
    assert re.search(r"^7 +1028 +0\.9854 +0\.\d{4}$", section, re.M)
