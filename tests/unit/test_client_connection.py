"""The client's API key: found where the server wrote it, and refused before any
call when it is not shaped like one, saying where it came from, never what it holds."""

from __future__ import annotations

from pathlib import Path

import pytest

from hookline.client import Client, find_api_key

GOOD = "hl_0a1b2c3d4e5f_Zm9vYmFyLWJhel9xdXV4"
FORM = "(a key looks like hl_<key id>_<secret>)"


@pytest.mark.parametrize(
    "key",
    [
        "hl_secretpart\nsecondline",  # a header cannot hold a line break: gRPC failed INTERNAL
        "hl_secretpart",
        "Bearer hl_0a1b2c3d4e5f_secretpart",
        "secretpart",
        "hl_0a1b2c3d4e5f_secretpart\x00",
        "hl_0a1b2c3d4e5f_sécretpart",
        "hl_0a1b2c3d4e5f_" + "s" * 2000,
    ],
)
def test_a_malformed_key_is_a_value_error_at_construction(key: str) -> None:
    with pytest.raises(ValueError) as refused:
        Client("127.0.0.1:1", key)
    assert str(refused.value) == f"the API key is malformed {FORM}"
    assert "secretpart" not in str(refused.value)


def test_a_well_formed_key_is_taken_without_its_surrounding_whitespace() -> None:
    with Client("127.0.0.1:1", f"  {GOOD}\n"):
        pass


def test_find_api_key_names_where_a_malformed_key_came_from(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("HOOKLINE_DATA_DIR", raising=False)
    monkeypatch.setenv("HOOKLINE_API_KEY", "not a key")
    with pytest.raises(ValueError, match=r"^the API key in HOOKLINE_API_KEY is malformed"):
        find_api_key()
    with pytest.raises(ValueError, match=r"^the API key in HOOKLINE_API_KEY is malformed"):
        Client("127.0.0.1:1")

    monkeypatch.delenv("HOOKLINE_API_KEY")
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".hookline").mkdir()
    (tmp_path / ".hookline" / "admin.key").write_bytes(b"\xff\xfe binary \n second line")
    with pytest.raises(ValueError, match=r"^the API key in \.hookline/admin\.key is malformed"):
        find_api_key()
    (tmp_path / ".hookline" / "admin.key").write_text(GOOD + "\n")
    assert find_api_key() == GOOD


def test_an_explicit_key_file_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOOKLINE_API_KEY", "hl_000000000000_fromtheenvironment")
    key_file = tmp_path / "key"
    key_file.write_text(GOOD)
    assert find_api_key(key_file) == GOOD
    with pytest.raises(RuntimeError, match=r"^no API key: the key file .*nowhere does not exist$"):
        find_api_key(tmp_path / "nowhere")
    with pytest.raises(RuntimeError, match=r"^cannot read the key file .*: Is a directory$"):
        find_api_key(tmp_path)


def test_no_key_anywhere_says_where_to_put_one(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("HOOKLINE_API_KEY", raising=False)
    monkeypatch.delenv("HOOKLINE_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RuntimeError, match=r"^no API key: set HOOKLINE_API_KEY, or run where the server wrote"):
        find_api_key()
    monkeypatch.setenv("HOOKLINE_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(RuntimeError, match=r"HOOKLINE_DATA_DIR to the server's data dir \(no .*data/admin\.key\)"):
        find_api_key()
