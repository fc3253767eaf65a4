"""Domain helpers for the notifier tests: flows, runs, state changes, policies."""

from __future__ import annotations

import uuid

from db import database as dbmod
from db import notifications as notes
from db import runs


def policy(block_id: str, states=("Failed",), tags=(), template=None) -> dict:
    with dbmod.write_tx():
        return notes.create_policy({"block_document_id": block_id, "state_names": list(states), "tags": list(tags),
                                    "message_template": template, "is_active": True})


def failing_run(flow_name="etl", run_name="lucky-cat", tags=("prod",), state="FAILED", message="boom") -> dict:
    with dbmod.write_tx():
        flow, _ = runs.get_or_create_flow(flow_name, [], None)
        run, _ = runs.create_flow_run({"flow_id": flow["id"], "name": run_name, "tags": list(tags)})
    with dbmod.write_tx():
        runs.set_flow_run_state(run["id"], {"type": "RUNNING"})
    with dbmod.write_tx():
        runs.set_flow_run_state(run["id"], {"type": state, "message": message})
    return run


def new_block(blocks: dict, slug: str, data: dict) -> str:
    block_id = str(uuid.uuid4())
    blocks[block_id] = (slug, data)
    return block_id
