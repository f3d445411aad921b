"""Checks that hookline is typed for its users once installed: installs the
package (not editable) into a throwaway environment under the dev venv, then
runs mypy as a user's project would see it, from site-packages, where only the
py.typed markers make mypy read the package. tests/typing/good_usage.py must
type-check; tests/typing/bad_usage.py must fail on exactly the lines whose
comment names the error code expected. Run by scripts/lint, with the dev venv's Python."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TYPING = ROOT / "tests" / "typing"
ENV = Path(sys.prefix) / "typing-check"
MARK = re.compile(r"#\s*error:\s*\[([a-z-]+)\]")


def package_digest() -> str:
    """What the installed copy was built from: reinstalled only when it changed."""
    digest = hashlib.sha256()
    for path in sorted([ROOT / "pyproject.toml", *ROOT.glob("client/hookline/**/*"), *ROOT.glob("server/**/*.py")]):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def installed_python() -> Path:
    python = ENV / "bin" / "python"
    if not python.exists():
        venv.create(ENV, with_pip=False)
    where = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(subprocess.check_output([python, "-c", where], text=True).strip())
    # Its dependencies and their stubs are the dev venv's; hookline itself is a real install.
    (site / "dev-venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    stamp = ENV / "hookline-digest"
    digest = package_digest()
    if not stamp.exists() or stamp.read_text() != digest:
        # From a clean copy: setuptools would also ship what an earlier build left
        # in build/ and *.egg-info, markers included.
        with tempfile.TemporaryDirectory() as tmp:
            for name in ("pyproject.toml", "README.md"):
                shutil.copy(ROOT / name, tmp)
            for tree in ("client", "server"):
                shutil.copytree(
                    ROOT / tree, Path(tmp) / tree, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
                )
            pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps"]
            subprocess.run(
                [*pip, "--no-build-isolation", "--force-reinstall", tmp], check=True, stdout=subprocess.DEVNULL
            )
        stamp.write_text(digest)
    return python


def mypy(python: Path, file: Path) -> tuple[int, str]:
    command = [sys.executable, "-m", "mypy", "--config-file", str(TYPING / "mypy.ini")]
    command += ["--python-executable", str(python), "--cache-dir", str(ENV / "mypy-cache"), str(file.relative_to(ROOT))]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    return done.returncode, done.stdout + done.stderr


def main() -> int:
    python = installed_python()
    failed = False
    status, output = mypy(python, TYPING / "good_usage.py")
    if status != 0:
        print(f"tests/typing/good_usage.py must type-check against the installed package:\n{output}", file=sys.stderr)
        failed = True
    bad = TYPING / "bad_usage.py"
    expected = {
        (number, match.group(1))
        for number, line in enumerate(bad.read_text().splitlines(), 1)
        if (match := MARK.search(line))
    }
    status, output = mypy(python, bad)
    found = {
        (int(m.group(1)), m.group(2))
        for m in re.finditer(r"bad_usage\.py:(\d+): error: .*\[([a-z-]+)\]$", output, re.M)
    }
    if status == 0 or found != expected:
        print(
            "tests/typing/bad_usage.py must fail mypy on exactly its marked lines; "
            f"missing {sorted(expected - found)}, unexpected {sorted(found - expected)}:\n{output}",
            file=sys.stderr,
        )
        failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
