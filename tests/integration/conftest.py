"""Fixtures of the integration suite, on top of tests/conftest.py.

Each module runs its own server and database (the shared fixtures are
module-scoped); tests inside a module share them, so they use unique aliases."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from hookline.client import Client
from hookline.server.storage import spaces

from .helpers import unique


@dataclass
class OtherSpace:
    space_id: str
    management_key: str
    solver_key: str
    client: Client  # management
    solver: Client


@pytest.fixture(scope="module")
def other_space(hookline_app, connect: Callable[[str], Client]) -> OtherSpace:  # type: ignore[no-untyped-def]
    """A second space on the same server, with its management and solver clients."""
    space_id, keys = spaces.create_space(unique("other"))
    management, solver = keys[0].token, keys[1].token
    return OtherSpace(space_id, management, solver, connect(management), connect(solver))


@pytest.fixture(scope="module")
def solver_client(hookline_app, connect: Callable[[str], Client]) -> Client:  # type: ignore[no-untyped-def]
    """A solver key of the default space (the one `client` manages)."""
    key = spaces.create_key(spaces.space_id_by_name(spaces.DEFAULT_SPACE), "solver")
    return connect(key.token)
