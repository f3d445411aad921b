"""The checked-in generated code matches protos/: regenerating changes nothing."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ROOT / "client" / "hookline" / "v1"


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    subprocess.run(["bash", str(ROOT / "scripts" / "gen-protos"), "--out", str(tmp_path)], check=True, cwd=ROOT)
    fresh = {p.name: p.read_bytes() for p in (tmp_path / "hookline" / "v1").iterdir() if "_pb2" in p.name}
    checked_in = {p.name: p.read_bytes() for p in GENERATED.iterdir() if "_pb2" in p.name}
    assert sorted(fresh) == sorted(checked_in), "run scripts/gen-protos and commit the result"
    stale = [name for name in fresh if fresh[name] != checked_in[name]]
    assert not stale, f"stale generated code: {stale}; run scripts/gen-protos and commit the result"
