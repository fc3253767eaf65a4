"""Blocks with the real SDK, for tests/e2e/test_blocks_sdk.py. Prints one JSON line."""

from __future__ import annotations

import json

import httpx
from prefect.blocks.core import Block
from prefect.blocks.notifications import SlackWebhook
from prefect.blocks.system import Secret
from pydantic import SecretStr

SENT: list[tuple[str, str]] = []
_async_send, _sync_send = httpx.AsyncClient.send, httpx.Client.send


async def recording_async_send(self, request, *args, **kwargs):
    SENT.append((request.method, request.url.path))
    return await _async_send(self, request, *args, **kwargs)


def recording_sync_send(self, request, *args, **kwargs):
    SENT.append((request.method, request.url.path))
    return _sync_send(self, request, *args, **kwargs)


# Record what the SDK sends (the block-save sequence), whichever client it uses.
httpx.AsyncClient.send, httpx.Client.send = recording_async_send, recording_sync_send


class WarehouseCreds(Block):
    username: str
    password: SecretStr
    port: int = 5432


def main() -> dict:
    out: dict = {}
    Secret(value="s3cr3t").save("db-password")
    out["secret"] = Secret.load("db-password").get()
    Secret(value="rotated").save("db-password", overwrite=True)
    out["secret_after_overwrite"] = Secret.load("db-password").get()
    try:
        Secret(value="x").save("db-password")
        out["refused_without_overwrite"] = False
    except ValueError:
        out["refused_without_overwrite"] = True

    SENT.clear()
    SlackWebhook(url="https://hooks.slack.com/services/T000/B000/XXXX").save("alerts")
    out["slack_calls"] = SENT[:]
    out["slack_url"] = SlackWebhook.load("alerts").url.get_secret_value()

    WarehouseCreds(username="u", password="p").save("warehouse")
    loaded = WarehouseCreds.load("warehouse")
    out["custom"] = [loaded.username, loaded.password.get_secret_value(), loaded.port]
    WarehouseCreds(username="u2", password="p2", port=6543).save("warehouse", overwrite=True)
    again = WarehouseCreds.load("warehouse")
    out["custom_after_overwrite"] = [again.username, again.password.get_secret_value(), again.port]
    return out


if __name__ == "__main__":
    print(json.dumps(main()))
