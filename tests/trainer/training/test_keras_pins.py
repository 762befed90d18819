"""Keras: installs admit only the versions the work-arounds were checked on, and a canary.

`keras_workarounds.pins.KERAS_VERSIONS_CHECKED` is the one list. setup.py must admit
exactly those minors (a wider range lets a fresh clone install a Keras that multi-GPU
training refuses); the installed Keras must be one of them; and the canary asks the
package registry (`pip index versions keras`) whether a newer minor exists. When one
does, the canary fails on purpose: nothing is broken for users (the pin holds), but the
work-arounds must be re-checked on it before the pin moves (docs/architecture.md,
"Keras work-arounds"). Without a network the canary skips and says so.
"""

import ast
import pathlib
import subprocess
import sys

import keras
from packaging import requirements, version
import pytest

from trainer.training.keras_workarounds import loss_scale, multi_step, multiworker, pins

REPO = pathlib.Path(__file__).resolve().parents[3]
RECHECK = (
    "re-run tests/trainer/training/test_multi_step.py, test_multiworker.py and "
    "test_loss_scale.py on it (each module's removal condition says what their result means), "
    "then add it to KERAS_VERSIONS_CHECKED in trainer/training/keras_workarounds/pins.py and "
    "widen setup.py's keras range to match."
)


def _minor(text: str) -> str:
    return ".".join(text.split(".")[:2])


def _setup_keras_requirement() -> requirements.Requirement:
    """The `keras...` string of setup.py's install_requires, read without running setup.py."""
    tree = ast.parse((REPO / "setup.py").read_text(encoding="utf-8"))
    found = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value.startswith("keras")
    ]
    assert len(found) == 1, f"setup.py: expected one keras requirement, found {found}"
    return requirements.Requirement(found[0])


def test_every_work_around_uses_the_one_list_of_checked_versions():
    assert multi_step.KERAS_VERSIONS_CHECKED is pins.KERAS_VERSIONS_CHECKED
    assert multiworker.KERAS_VERSIONS_CHECKED is pins.KERAS_VERSIONS_CHECKED
    for check in (multi_step.check_keras, multiworker.check_keras, loss_scale.check_keras):
        check(f"{pins.KERAS_VERSIONS_CHECKED[-1]}.9")
        with pytest.raises(RuntimeError, match="keras_workarounds/.*Fix: "):
            check("3.99.0")


def test_setup_py_admits_only_the_checked_keras_minors():
    spec = _setup_keras_requirement().specifier
    for checked in pins.KERAS_VERSIONS_CHECKED:
        for patch in ("0", "1", "9"):
            assert spec.contains(f"{checked}.{patch}"), (
                f"setup.py's {spec} refuses Keras {checked}.{patch}, which "
                "KERAS_VERSIONS_CHECKED (trainer/training/keras_workarounds/pins.py) lists."
            )
    major, minor = (int(v) for v in pins.KERAS_VERSIONS_CHECKED[-1].split("."))
    for outside in (f"{major}.{minor + 1}.0", f"{major + 1}.0.0", "3.13.2"):
        if _minor(outside) in pins.KERAS_VERSIONS_CHECKED:
            continue
        assert not spec.contains(outside), (
            f"setup.py's keras{spec} admits {outside}, which the work-arounds refuse "
            f"(checked: {pins.KERAS_VERSIONS_CHECKED}); narrow it to the checked minors."
        )


def test_the_installed_keras_is_one_the_work_arounds_were_checked_on():
    assert _minor(keras.__version__) in pins.KERAS_VERSIONS_CHECKED, (
        f"Keras {keras.__version__} is installed, but the trainer's work-arounds were checked on "
        f"{', '.join(pins.KERAS_VERSIONS_CHECKED)} only and refuse it: reinstall with "
        "`pip install -e .` (setup.py pins the checked range), or, to adopt it, " + RECHECK
    )


def _registry_versions() -> list[version.Version]:
    try:
        result = subprocess.run(
            [sys.executable, "-m", "pip", "index", "versions", "keras"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.skip("Keras canary: `pip index versions keras` timed out (no registry?)")
    lines = [line for line in result.stdout.splitlines() if "versions:" in line]
    if result.returncode != 0 or not lines:
        pytest.skip(
            "Keras canary: the registry did not answer `pip index versions keras` "
            f"({result.stderr.strip().splitlines()[-1:] or result.returncode}); not checked."
        )
    return [version.Version(v.strip()) for v in lines[0].split(":", 1)[1].split(",")]


def test_canary_no_newer_keras_minor_than_the_checked_one_on_the_registry():
    """Fails the day the registry has a Keras minor newer than the checked ones."""
    releases = [v for v in _registry_versions() if not v.is_prerelease]
    newest = max(releases)
    allowed = [v for v in releases if _setup_keras_requirement().specifier.contains(v)]
    assert allowed, "Keras canary: no release on the registry satisfies setup.py's keras range."
    assert _minor(str(max(allowed))) in pins.KERAS_VERSIONS_CHECKED
    checked = max(version.Version(v) for v in pins.KERAS_VERSIONS_CHECKED)
    assert version.Version(_minor(str(newest))) <= checked, (
        f"Keras canary: Keras {newest} is on the registry, newer than the checked "
        f"{', '.join(pins.KERAS_VERSIONS_CHECKED)}. Installs are safe (setup.py keeps "
        f"{max(allowed)}), but the pin is now behind: install Keras {newest} in a scratch venv and "
        + RECHECK
    )
