#!/usr/bin/env python3
"""lease_bench.py - global concurrency limit lease cycles per second, for any server of the
Prefect 3 REST API (the appliance or the real Prefect server, side by side).

C clients (asyncio, one keep-alive connection each) share one global concurrency limit of
L slots and repeat, until N cycles are done in all, what the SDK's `concurrency()` context
manager does: ``POST /v2/concurrency_limits/increment-with-lease`` (a 423 is waited out for
its ``Retry-After``, as the SDK's acquisition service does), then
``POST /v2/concurrency_limits/decrement-with-lease``. 408/429/502/503 and transport errors
are retried as the SDK client retries them (5 times, 2 s doubling, +-20 % jitter) and
counted; an acquisition still refused after that is counted as never granted.

Over-admission is watched from the clients: a client counts itself as a holder from the
moment its grant arrives until it sends the release, so the largest number of holders seen
at once can only under-state what the server admitted; it must never exceed L.

  python bench/lease_bench.py --url http://127.0.0.1:4200/api -c 50 --cycles 200

Prints exactly ONE JSON line (progress on stderr); exits 1 when a request failed or more
than L holders were seen at once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
import uuid
from collections import Counter

import httpx

HEADERS = {"user-agent": "prefect/3.8.8 (API 0.8.4)", "x-prefect-api-version": "0.8.4"}
RETRIED = {408, 429, 502, 503}


def log(*args):
    print(*args, file=sys.stderr, flush=True)


class Bench:
    def __init__(self, args):
        self.args = args
        self.name = f"bench-lease-{uuid.uuid4().hex[:8]}"
        self.remaining = args.cycles
        self.holders = 0
        self.max_holders = 0
        self.retries: Counter[str] = Counter()
        self.locked = 0  # 423 answers waited out
        self.never_granted = 0
        self.errors: list[str] = []
        self.cycle_ms: list[float] = []

    async def call(self, client: httpx.AsyncClient, path: str, body: dict) -> httpx.Response | None:
        """POST with the SDK client's retry policy; None once the retries are spent."""
        for attempt in range(self.args.max_retries + 1):
            try:
                resp = await client.post(path, json=body)
            except httpx.TransportError as exc:
                key = type(exc).__name__
            else:
                if resp.status_code not in RETRIED:
                    return resp
                key = str(resp.status_code)
            if attempt == self.args.max_retries:
                return None
            self.retries[key] += 1
            await asyncio.sleep(self.args.retry_base * 2**attempt * random.uniform(0.8, 1.2))
        return None

    async def client(self, index: int) -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(base_url=self.args.url, headers=HEADERS, limits=limits,
                                     timeout=httpx.Timeout(60.0)) as client:
            while self.remaining > 0:
                self.remaining -= 1
                started = time.perf_counter()
                lease_id = await self.acquire(client)
                if lease_id is None:
                    continue
                self.holders += 1
                self.max_holders = max(self.max_holders, self.holders)
                if self.args.hold:
                    await asyncio.sleep(self.args.hold)
                self.holders -= 1
                resp = await self.call(client, "/v2/concurrency_limits/decrement-with-lease", {"lease_id": lease_id})
                if resp is None or resp.status_code not in (200, 204):
                    self.errors.append(f"release -> {resp.status_code if resp is not None else 'retries spent'}")
                    continue
                self.cycle_ms.append((time.perf_counter() - started) * 1000)

    async def acquire(self, client: httpx.AsyncClient) -> str | None:
        body = {"names": [self.name], "slots": 1, "mode": "concurrency", "lease_duration": 60}
        while True:
            resp = await self.call(client, "/v2/concurrency_limits/increment-with-lease", body)
            if resp is None:
                self.never_granted += 1
                return None
            if resp.status_code == 423:
                self.locked += 1
                await asyncio.sleep(float(resp.headers.get("Retry-After", "1")))
                continue
            if resp.status_code != 200:
                self.errors.append(f"acquire -> {resp.status_code}: {resp.text[:200]}")
                return None
            return resp.json()["lease_id"]

    async def run(self) -> dict:
        async with httpx.AsyncClient(base_url=self.args.url, headers=HEADERS, timeout=30) as admin:
            made = await admin.post("/v2/concurrency_limits/", json={"name": self.name, "limit": self.args.limit})
            if made.status_code != 201:
                raise RuntimeError(f"create limit -> {made.status_code}: {made.text[:200]}")
            started = time.perf_counter()
            await asyncio.gather(*(self.client(i) for i in range(self.args.clients)))
            wall = time.perf_counter() - started
            after = (await admin.get(f"/v2/concurrency_limits/{self.name}")).json()
        done = len(self.cycle_ms)
        quantiles = statistics.quantiles(self.cycle_ms, n=100) if done > 1 else [0.0] * 99
        return {
            "cycles": done,
            "wall_s": round(wall, 3),
            "cycles_per_s": round(done / wall, 2) if wall else None,
            "cycle_ms": {"p50": round(quantiles[49], 1), "p99": round(quantiles[98], 1)},
            "answers_423": self.locked,
            "retries": dict(self.retries),
            "never_granted": self.never_granted,
            "max_holders_seen": self.max_holders,
            "active_slots_after": after.get("active_slots"),
        }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="API base URL, ending in /api")
    parser.add_argument("--label", default="")
    parser.add_argument("-c", "--clients", type=int, default=16)
    parser.add_argument("--cycles", type=int, default=200, help="acquire+release cycles in all")
    parser.add_argument("--limit", type=int, default=5, help="slots of the one limit")
    parser.add_argument("--hold", type=float, default=0.0, help="seconds each holder keeps its slot")
    parser.add_argument("--max-retries", type=int, default=5)
    parser.add_argument("--retry-base", type=float, default=2.0)
    args = parser.parse_args(argv)
    bench = Bench(args)
    out = {"bench": "lease", "label": args.label, "url": args.url,
           "params": {"clients": args.clients, "cycles": args.cycles, "limit": args.limit, "hold": args.hold}}
    try:
        results = asyncio.run(bench.run())
    except (RuntimeError, httpx.HTTPError) as exc:
        out.update(ok=False, errors=[str(exc)[:300]])
    else:
        over = results["max_holders_seen"] > args.limit
        leaked = results["active_slots_after"] != 0
        ok = not bench.errors and not over and not leaked
        out.update(ok=ok, errors=bench.errors[:5], results=results)
        if over:
            out["errors"].append(f"{results['max_holders_seen']} holders seen at once over a limit of {args.limit}")
        if leaked:
            out["errors"].append(f"{results['active_slots_after']} slots still held after every release")
    print(json.dumps(out), flush=True)
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
