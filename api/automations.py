"""/automations: what deployments need for now (issue 8 extends this module).

After creating/updating a deployment the SDK deletes the automations it owns, and
``prefect deployment inspect`` lists the related ones; with no automations stored, those
answer 202/null and [] as the real server does.
"""

from __future__ import annotations

from api.http import send


class OwnedBy:
    async def on_delete(self, req, resp, resource_id):
        send(resp, None, 202)


class RelatedTo:
    async def on_get(self, req, resp, resource_id):
        send(resp, [])


def register(app, prefix: str) -> None:
    app.add_route(f"{prefix}/automations/owned-by/{{resource_id}}", OwnedBy())
    app.add_route(f"{prefix}/automations/related-to/{{resource_id}}", RelatedTo())
