"""/webhook/ and /webhook/{id}/: Close's webhook subscriptions, per organization."""

from __future__ import annotations

from werkzeug.wrappers import Request, Response

from .auth import Principal
from .http_common import HandlerBase, Route, json_body, json_response


class WebhookHandlers(HandlerBase):
    """Webhook subscriptions: list, create, read, update and delete."""

    def routes(self) -> list[Route]:
        return [
            Route("/webhook/", "webhook_list", ("GET", "POST"), "webhook", self.webhook_list),
            Route(
                "/webhook/<subscription_id>/",
                "webhook_item",
                ("GET", "PUT", "DELETE"),
                "webhook",
                self.webhook_item,
            ),
        ]

    def webhook_list(
        self, request: Request, method: str, params: dict[str, str], principal: Principal
    ) -> Response:
        """GET the organization's subscriptions; POST creates one (201, with its key)."""
        org = principal.organization_id
        with self.emu.lock:
            if method == "POST":
                created = self.emu.webhooks.create(org, principal.user_id, json_body(request))
                return json_response(201, created)
            return json_response(200, {"data": self.emu.webhooks.listed(org), "has_more": False})

    def webhook_item(
        self,
        request: Request,
        method: str,
        params: dict[str, str],
        principal: Principal,
        subscription_id: str,
    ) -> Response:
        """GET, PUT or DELETE one subscription of the key's organization."""
        org = principal.organization_id
        hooks = self.emu.webhooks
        with self.emu.lock:
            if method == "GET":
                return json_response(200, hooks.get(org, subscription_id).render())
            if method == "PUT":
                payload = json_body(request)
                return json_response(
                    200, hooks.update(org, subscription_id, principal.user_id, payload)
                )
            hooks.delete(org, subscription_id)
            return json_response(200, {})
