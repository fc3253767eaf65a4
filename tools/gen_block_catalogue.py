#!/usr/bin/env python3
"""Write db/data/block_catalogue.json: the block types and schemas that Prefect 3.8.8's own
server registers at start-up, read from the real thing.

It runs Prefect's server in-process (the SDK's ephemeral mode, a throw-away SQLite in a
temporary PREFECT_HOME), lets it register its blocks exactly as it does for users, and
reads them back through its API, so slugs, names, schemas, capabilities and checksums are
Prefect's own rather than typed by hand. Types from Prefect's client registry (core,
system, filesystems, notifications) are marked protected; types from the collections'
data file (prefect-aws, …) are not, as their packages may register newer schemas.

    python tools/gen_block_catalogue.py [--out db/data/block_catalogue.json]

tests/db/test_block_catalogue.py regenerates it and fails on drift.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "db" / "data" / "block_catalogue.json"
TYPE_KEYS = ("name", "slug", "logo_url", "documentation_url", "description", "code_example")


async def read_registered() -> tuple[list[dict], list[dict], str]:
    import prefect
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        types = (await client._client.post("/block_types/filter", json={"limit": 200})).json()
        schemas = []
        while True:
            page = (await client._client.post("/block_schemas/filter", json={"limit": 200, "offset": len(schemas)})).json()
            schemas.extend(page)
            if len(page) < 200:
                break
    return types, schemas, prefect.__version__


def collection_slugs() -> set[str]:
    import prefect.server

    data = json.loads((Path(prefect.server.__file__).parent / "collection_blocks_data.json").read_text())
    return {slug for c in data["collections"].values() for slug in c["block_types"]}


def build() -> dict:
    with tempfile.TemporaryDirectory(prefix="gen-block-catalogue-") as home:
        for key in list(os.environ):
            if key.startswith("PREFECT_"):
                del os.environ[key]
        os.environ.update(
            PREFECT_HOME=home,
            PREFECT_SERVER_ALLOW_EPHEMERAL_MODE="true",
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_LOGGING_LEVEL="WARNING",
        )
        types, schemas, version = asyncio.run(read_registered())
    from_collections = collection_slugs()
    slug_of = {t["id"]: t["slug"] for t in types}
    return {
        "generated_from": f"prefect {version} (tools/gen_block_catalogue.py)",
        "block_types": sorted(
            ({**{k: t[k] for k in TYPE_KEYS}, "is_protected": t["slug"] not in from_collections} for t in types),
            key=lambda t: t["slug"],
        ),
        "block_schemas": sorted(
            (
                {
                    "block_type_slug": slug_of[s["block_type_id"]],
                    "checksum": s["checksum"],
                    "version": s["version"],
                    "capabilities": sorted(s["capabilities"]),
                    "fields": s["fields"],
                }
                for s in schemas
            ),
            key=lambda s: (s["block_type_slug"], s["version"], s["checksum"]),
        ),
    }


def render(catalogue: dict) -> str:
    return json.dumps(catalogue, indent=1, sort_keys=True) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    catalogue = build()
    args.out.write_text(render(catalogue))
    print(f"{args.out}: {len(catalogue['block_types'])} block types, {len(catalogue['block_schemas'])} schemas "
          f"from {catalogue['generated_from']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
