"""Wire formats of the nine notification channels (notifications.md §2).

``build(slug, data, subject, body, key, endpoints)`` turns a block document's data and a
rendered message into the HTTP requests to make; all must succeed for the message to be
sent. ``endpoints`` (APPLIANCE_NOTIFIER_ENDPOINTS) overrides the fixed API hosts.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from appliance import __version__ as VERSION

USER_AGENT = f"appliance-notifier/{VERSION}"
CUSTOM_WEBHOOK_UA = "Prefect Notifications"
MAX_CUSTOM_BODY = 256 * 1024
ELLIPSIS = "…"


@dataclass
class Request:
    method: str
    url: str
    headers: dict = field(default_factory=dict)
    json: object = None
    data: object = None
    params: dict | None = None
    auth: tuple | None = None
    timeout: float | None = None
    secrets: list = field(default_factory=list)  # values to redact from errors


class ChannelError(ValueError):
    """The block's data cannot make a valid request (permanent)."""


def truncate(text: str, limit: int) -> str:
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1] + ELLIPSIS


def _title_body(subject, body, sep="\n") -> str:
    return f"{subject}{sep}{body}" if subject else body


def _base(endpoints: dict, slug: str, default: str) -> str:
    return (endpoints.get(slug) or default).rstrip("/")


def _secret(value):
    if isinstance(value, dict) and "value" in value:  # tolerate a wrapped SecretStr
        return value["value"]
    return value


def slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def custom_webhook(data, subject, body, key, endpoints):
    secrets = {k: str(_secret(v)) for k, v in (_secret(data.get("secrets")) or {}).items()}
    values = {"subject": subject if subject is not None else "null", "body": body, "name": data.get("name") or "", **secrets}

    def sub(obj):
        if isinstance(obj, str):
            return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: str(values.get(m.group(1), m.group(0))), obj)
        if isinstance(obj, dict):
            return {sub(k): sub(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [sub(v) for v in obj]
        return obj

    if data.get("json_data") and data.get("form_data"):
        raise ChannelError("json_data and form_data cannot be used together")
    headers = {"User-Agent": CUSTOM_WEBHOOK_UA, **{k: str(v) for k, v in sub(data.get("headers") or {}).items()}}
    req = Request(
        (data.get("method") or "POST").upper(),
        sub(_secret(data["url"])),
        headers,
        params=sub(data.get("params")) or None,
        timeout=float(data.get("timeout") or 10),
        secrets=list(secrets.values()),
    )
    if data.get("cookies"):
        req.headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in sub(data["cookies"]).items())
    if data.get("json_data") is not None:
        req.json = sub(data["json_data"])
        if len(json.dumps(req.json)) > MAX_CUSTOM_BODY:
            raise ChannelError("rendered json_data exceeds 256 KB")
    elif data.get("form_data") is not None:
        form = sub(data["form_data"])
        req.data = truncate(form, MAX_CUSTOM_BODY) if isinstance(form, str) else form
    return [req]


def slack(data, subject, body, key, endpoints):
    text = truncate(_title_body(f"*{slack_escape(subject)}*" if subject else None, slack_escape(body)), 35000)
    url = str(_secret(data["url"]))
    return [Request("POST", url, {"Content-Type": "application/json"}, json={"text": text}, secrets=[url])]


def discord(data, subject, body, key, endpoints):
    wid, token = str(_secret(data["webhook_id"])), str(_secret(data["webhook_token"]))
    payload = {"content": truncate(_title_body(subject, body, "\r\n"), 2000), "allowed_mentions": {"parse": []}}
    if data.get("botname"):
        payload["username"] = data["botname"]
    if data.get("tts"):
        payload["tts"] = True
    if data.get("avatar_url"):
        payload["avatar_url"] = data["avatar_url"]
    base = _base(endpoints, "discord-webhook", "https://discord.com")
    return [Request("POST", f"{base}/api/webhooks/{wid}/{token}", {"Content-Type": "application/json"},
                    json=payload, params={"wait": "true"}, secrets=[token])]


def mattermost(data, subject, body, key, endpoints):
    token = str(_secret(data["token"]))
    if data.get("url"):
        base = str(data["url"]).rstrip("/")
    else:
        secure = data.get("secure", True)
        port = data.get("port") or (443 if secure else 8065)
        scheme = "https" if secure else "http"
        default_port = (secure and port == 443) or (not secure and port == 80)
        base = f"{scheme}://{data['hostname']}{'' if default_port else f':{port}'}{(data.get('path') or '').rstrip('/')}"
    text = truncate(_title_body(subject, body), 4000)
    reqs = []
    for channel in data.get("channels") or [None]:
        payload = {"text": text}
        if data.get("botname"):
            payload["username"] = data["botname"]
        if channel:
            payload["channel"] = channel
        reqs.append(Request("POST", f"{base}/hooks/{token}", {"Content-Type": "application/json"}, json=payload, secrets=[token]))
    return reqs


def teams(data, subject, body, key, endpoints):
    url = str(_secret(data["url"]))
    if ".webhook.office.com" in url or "outlook.office.com/webhook" in url:
        raise ChannelError("legacy Office 365 connector URLs are retired: use a Teams Workflows URL")
    card_body = []
    if subject:
        card_body.append({"type": "TextBlock", "text": truncate(subject, 1000), "weight": "Bolder", "size": "Large", "style": "heading"})
    card_body.append({"type": "TextBlock", "text": truncate(body, 20000), "wrap": bool(data.get("wrap", True))})
    payload = {
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": None,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": card_body,
                "msteams": {"width": "full"},
            },
        }],
    }
    return [Request("POST", url, {"Content-Type": "application/json"}, json=payload, secrets=[url])]


OPSGENIE_PRIORITY = {1: "P1", 2: "P2", 3: "P3", 4: "P4", 5: "P5"}


def opsgenie(data, subject, body, key, endpoints):
    apikey = str(_secret(data["apikey"]))
    region = "https://api.eu.opsgenie.com" if data.get("region_name") == "eu" else "https://api.opsgenie.com"
    base = _base(endpoints, "opsgenie-webhook", region)
    responders = []
    for kind, field_name in (("user", "target_user"), ("team", "target_team"), ("schedule", "target_schedule"), ("escalation", "target_escalation")):
        for target in data.get(field_name) or []:
            ident = "id" if re.fullmatch(r"[0-9a-fA-F-]{36}", str(target)) else ("username" if kind == "user" else "name")
            responders.append({"type": kind, ident: target})
    payload = {
        "message": truncate(subject or body, 130),
        "description": truncate(body, 15000),
        "alias": data.get("alias") or key,
        "priority": OPSGENIE_PRIORITY.get(int(data.get("priority") or 3), "P3"),
        "source": "appliance",
        "details": {**(data.get("details") or {}), "type": data.get("notify_type") or "info"},
    }
    for opt in ("tags", "entity"):
        if data.get(opt):
            payload[opt] = data[opt]
    headers = {"Content-Type": "application/json", "Authorization": f"GenieKey {apikey}"}
    groups = [responders] if data.get("batch") else [[r] for r in responders] or [[]]
    if data.get("batch"):
        groups = [responders[i:i + 50] for i in range(0, len(responders), 50)] or [[]]
    reqs = []
    for group in groups:
        p = dict(payload)
        if group:
            p["responders"] = group
        reqs.append(Request("POST", f"{base}/v2/alerts", headers, json=p, secrets=[apikey]))
    return reqs


PD_SEVERITY = {"info": "info", "success": "info", "warning": "warning", "failure": "critical"}


def pagerduty(data, subject, body, key, endpoints):
    routing = str(_secret(data["integration_key"]))
    region = "https://events.eu.pagerduty.com" if data.get("region_name") == "eu" else "https://events.pagerduty.com"
    base = _base(endpoints, "pager-duty-webhook", region)
    details = dict(data.get("custom_details") or {})
    if subject:
        summary = subject
        details["Prefect Notification Body"] = body
    else:
        summary = body
    payload = {
        "routing_key": routing,
        "event_action": "trigger",
        "dedup_key": key,
        "payload": {
            "summary": truncate(summary, 1024),
            "source": data.get("source") or "Prefect",
            "severity": PD_SEVERITY.get(data.get("notify_type") or "info", "info"),
            "component": data.get("component") or "Notification",
        },
    }
    for src, dst in (("group", "group"), ("class_id", "class")):
        if data.get(src):
            payload["payload"][dst] = data[src]
    if details:
        payload["payload"]["custom_details"] = details
    if data.get("clickable_url"):
        payload["links"] = [{"href": data["clickable_url"], "text": "Prefect"}]
    return [Request("POST", f"{base}/v2/enqueue", {"Content-Type": "application/json"}, json=payload, secrets=[routing])]


def sendgrid(data, subject, body, key, endpoints):
    api_key = str(_secret(data["api_key"]))
    base = _base(endpoints, "sendgrid-email", "https://api.sendgrid.com")
    payload = {
        "personalizations": [{"to": [{"email": addr}]} for addr in dict.fromkeys(data["to_emails"])][:1000],
        "from": {"email": data["sender_email"]},
        "subject": subject or "<no subject>",
        "content": [{"type": "text/plain", "value": body}],
    }
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {api_key}"}
    return [Request("POST", f"{base}/v3/mail/send", headers, json=payload, secrets=[api_key])]


def twilio(data, subject, body, key, endpoints):
    sid, token = str(data["account_sid"]), str(_secret(data["auth_token"]))
    base = _base(endpoints, "twilio-sms", "https://api.twilio.com")
    sender = str(data["from_phone_number"])
    sender = sender if sender.startswith("+") else f"+{sender}"
    text = truncate(_title_body(subject, body), 1600)
    reqs = []
    for to in data["to_phone_numbers"]:
        to = str(to) if str(to).startswith("+") else f"+{to}"
        reqs.append(Request("POST", f"{base}/2010-04-01/Accounts/{sid}/Messages.json",
                            {"Accept": "application/json"}, data={"To": to, "From": sender, "Body": text},
                            auth=(sid, token), secrets=[token]))
    return reqs


BUILDERS = {
    "custom-webhook": custom_webhook,
    "slack-webhook": slack,
    "discord-webhook": discord,
    "mattermost-webhook": mattermost,
    "ms-teams-webhook": teams,
    "opsgenie-webhook": opsgenie,
    "pager-duty-webhook": pagerduty,
    "sendgrid-email": sendgrid,
    "twilio-sms": twilio,
}


# Channels whose host the user controls: Prefect's `allow_private_urls` switch applies.
USER_HOSTS = {"custom-webhook", "slack-webhook", "ms-teams-webhook", "mattermost-webhook"}


def check_private(url: str) -> None:
    """ChannelError when ``url``'s host resolves to a private, loopback or link-local address.

    (No IP pinning at connect time: a DNS answer that changes between this check and the
    request is not caught.)"""
    import ipaddress
    import socket
    from urllib.parse import urlparse

    host = urlparse(url).hostname
    if not host:
        raise ChannelError("URL has no host")
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return  # unresolvable: the request itself fails (and is retried) as a DNS error
    for info in infos:
        ip = ipaddress.ip_address(info[4][0])
        if ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved or ip.is_multicast:
            raise ChannelError(f"private address {ip} refused (allow_private_urls is false)")


def build(slug: str, data: dict, subject, body, key: str, endpoints: dict) -> list[Request]:
    builder = BUILDERS.get(slug)
    if builder is None:
        raise ChannelError(f"block type {slug!r} is not a notification channel")
    try:
        reqs = builder(data, subject, body, key, endpoints or {})
    except KeyError as exc:
        raise ChannelError(f"block field {exc} is required") from None
    for req in reqs:
        req.headers.setdefault("User-Agent", USER_AGENT)
        if slug in USER_HOSTS and data.get("allow_private_urls") is False:
            check_private(req.url)
    return reqs
