"""Fixtures shared by the web and API tests (the data itself is in web_data.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from parley.faces.api.app import create_app
from parley.services.context import Context
from tests.integration.web_data import World, build_world, client, fast_passwords


@pytest.fixture
def world(ctx: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    fast_passwords(monkeypatch)
    return build_world(ctx, tmp_path)


@pytest.fixture
def web(world: World):  # type: ignore[no-untyped-def]
    return client(create_app(world.ctx, otp_sender=world.send))
