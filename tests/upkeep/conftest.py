"""Upkeep test helpers: an inventory per test (its own SQLite file, or the PostgreSQL pass's
shared store), cluster blocks saved under fresh names, Prefect events read back."""

from __future__ import annotations

import os
import uuid

import pytest
from fixtures_pipeline import server_events

_PG = os.environ.get("ANSFLOW_TEST_DATABASE_URL")


@pytest.fixture
def inventory_url(tmp_path) -> str:
    return _PG or f"sqlite:///{tmp_path}/inventory.db"


@pytest.fixture
def inventory(inventory_url):
    from ansflow.upkeep.inventory import Inventory

    inv = Inventory(inventory_url)
    yield inv
    inv.close()


@pytest.fixture
def alias(dev_cluster):
    """``alias()``: the dev cluster's admin block saved under a fresh name (its own
    inventory record), returned as (name, block)."""

    def make(prefix: str = "c"):
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        block = dev_cluster.block()
        block.save(name, overwrite=True)
        return name, block

    return make


@pytest.fixture
def events(prefect_server):
    """``events(name, resource_id, count=1)``: those events on the suite's server, oldest
    first (waits up to 30 s for ``count`` of them)."""
    return server_events
