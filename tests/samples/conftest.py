"""Fixtures of the README sample and other-client tests: the npm packages of
tests/node, installed from its package-lock.json on first use."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from .readme import NODE_DIR

_STAMP = ".installed-lock-sha256"


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """tests/node/node_modules, installed with `npm ci` when it is missing or
    older than package-lock.json. Node.js and npm must be on the PATH."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.fail("these tests run Node.js: put node and npm (Node.js 18 or later) on the PATH")
    modules = NODE_DIR / "node_modules"
    wanted = hashlib.sha256((NODE_DIR / "package-lock.json").read_bytes()).hexdigest()
    stamp = modules / _STAMP
    if not stamp.is_file() or stamp.read_text().strip() != wanted:
        # Install scripts are not needed by these packages; skip them.
        done = subprocess.run(
            [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=100,
            check=False,
        )
        if done.returncode != 0:
            pytest.fail(f"`npm ci` in {NODE_DIR} failed:\n{done.stdout}\n{done.stderr}")
        stamp.write_text(wanted + "\n")
    return modules
