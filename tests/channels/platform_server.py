"""A local HTTP server that plays Meta's Graph API and the Google Ads API as their public documentation describes.

It checks each request's shape the way the platform would refuse it (a 400 in the platform's own error format
naming what is wrong), keeps the state the requests change (the members of each audience, the messages sent) so a
test reads the far side's truth, and answers a queued failure instead when a test asks (``fail_next``): a 429
with ``Retry-After``, a Graph rate-limit code, Google's ``RESOURCE_EXHAUSTED``.

Paths: ``/graph/v21.0/...`` (Custom Audiences ``/<audience_id>/users``, WhatsApp ``/<phone_number_id>/messages``,
Messenger ``/<page_id>/messages``) and ``/google/v19/...`` (``offlineUserDataJobs:create``, ``:addOperations``,
``:run``).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .http_server import Recorded, Reply

TOKEN = "EAAG-s3cret-token"
DEVELOPER_TOKEN = "dev-s3cret"
HEX64 = re.compile(r"[0-9a-f]{64}")
WHATSAPP_PARAMETER_TYPES = {"text", "currency", "date_time", "image", "document", "video", "payload"}
MESSENGER_TYPES = {"RESPONSE", "UPDATE", "MESSAGE_TAG"}
MESSENGER_TAGS = {"CONFIRMED_EVENT_UPDATE", "POST_PURCHASE_UPDATE", "ACCOUNT_UPDATE", "HUMAN_AGENT"}


class Refused(Exception):
    """A request the platform refuses: answered 400 (or ``status``) with its error format."""

    def __init__(self, message: str, status: int = 400, code: int = 100) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def graph_error(message: str, code: int, status: int = 400, subcode: int | None = None) -> Reply:
    error: dict[str, Any] = {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "AbC123"}
    if subcode is not None:
        error["error_subcode"] = subcode
    return Reply(status, json.dumps({"error": error}).encode(), {"Content-Type": "application/json"})


def google_error(status: int, rpc: str, message: str, error_code: dict[str, str] | None = None,
                 retry_delay: str | None = None) -> Reply:
    failure: dict[str, Any] = {"errorCode": error_code or {}, "message": message}
    if retry_delay is not None:
        failure["details"] = {"quotaErrorDetails": {"rateScope": "DEVELOPER", "retryDelay": retry_delay}}
    body = {"error": {"code": status, "message": message, "status": rpc, "details": [
        {"@type": "type.googleapis.com/google.ads.googleads.v19.errors.GoogleAdsFailure", "errors": [failure]}
    ]}}  # fmt: skip
    return Reply(status, json.dumps(body).encode(), {"Content-Type": "application/json"})


class Handler(BaseHTTPRequestHandler):
    server: Platform

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        headers = {name.lower(): value for name, value in self.headers.items()}
        server = self.server
        with server.lock:
            server.requests.append(Recorded(self.command, self.path, headers, body))
            reply = server.fail_next.pop(0) if server.fail_next else None
            for index, (prefix, failure) in enumerate(server.fail_path):
                if reply is None and self.path.startswith(prefix):
                    reply = failure
                    del server.fail_path[index]
                    break
        if reply is None:
            google = self.path.startswith("/google/")
            try:
                if headers.get("authorization") != f"Bearer {TOKEN}":
                    raise Refused("Invalid OAuth access token.", 401, 190)
                decoded = json.loads(body) if body else None
                with server.lock:
                    answer = server.route(self.command, self.path, headers, decoded)
                reply = Reply(200, json.dumps(answer).encode(), {"Content-Type": "application/json"})
            except (Refused, ValueError, KeyError, TypeError, AttributeError) as exc:
                status = exc.status if isinstance(exc, Refused) else 400
                if google:
                    reply = google_error(status, "UNAUTHENTICATED" if status == 401 else "INVALID_ARGUMENT", str(exc))
                else:
                    reply = graph_error(f"(#100) {exc}", exc.code if isinstance(exc, Refused) else 100, status)
                with server.lock:
                    server.refused.append(str(exc))
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    do_POST = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Platform(ThreadingHTTPServer):
    """The fake platforms' state; see the module docstring."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.lock = threading.Lock()
        self.requests: list[Recorded] = []
        self.refused: list[str] = []
        self.fail_next: list[Reply] = []
        #: (path prefix, reply): the next request whose path starts with the prefix gets the reply instead.
        self.fail_path: list[tuple[str, Reply]] = []
        #: Meta audience id -> members, each (email hash, phone hash) with "" for a missing one.
        self.meta: dict[str, set[tuple[str, str]]] = {}
        #: Google user list resource name -> members, each a frozenset of (kind, hash).
        self.google: dict[str, set[frozenset[tuple[str, str]]]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.whatsapp: list[dict[str, Any]] = []
        self.messenger: list[dict[str, Any]] = []

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def where(self) -> str:
        return self.base_url.removeprefix("http://")

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass

    # -- routing -------------------------------------------------------------------------------------------------

    def route(self, method: str, path: str, headers: dict[str, str], body: Any) -> Any:
        if path.startswith("/graph/v21.0/"):
            node, _, edge = path.removeprefix("/graph/v21.0/").partition("/")
            if not node.isdigit():
                raise Refused(f"Unknown path components: /{node}")
            if edge == "users" and method in ("POST", "DELETE"):
                return self._meta_users(method, node, body)
            if edge == "messages" and method == "POST" and isinstance(body, dict) and "messaging_product" in body:
                return self._whatsapp(body)
            if edge == "messages" and method == "POST":
                return self._messenger(body)
            raise Refused(f"Unsupported {method} request to /{node}/{edge}")
        if path.startswith("/google/v19/"):
            if headers.get("developer-token") != DEVELOPER_TOKEN:
                raise Refused("The developer token is not valid.", 401)
            return self._google(path.removeprefix("/google/v19/"), body)
        raise Refused(f"no such path {path}", 404)

    def _meta_users(self, method: str, audience: str, body: Any) -> Any:
        payload = body["payload"]
        if payload["schema"] != ["EMAIL", "PHONE"]:
            raise Refused(f"schema {payload['schema']!r} is not the one the data has")
        data = payload["data"]
        if not isinstance(data, list) or not 1 <= len(data) <= 10_000:
            raise Refused("data must hold 1 to 10000 rows")
        members = self.meta.setdefault(audience, set())
        for row in data:
            if len(row) != 2 or not all(v == "" or HEX64.fullmatch(v) for v in row) or row == ["", ""]:
                raise Refused("each row must be a pair of SHA-256 hex digests (or '' for a missing key)")
            (members.add if method == "POST" else members.discard)((row[0], row[1]))
        return {"audience_id": audience, "session_id": "1", "num_received": len(data), "num_invalid_entries": 0,
                "invalid_entry_samples": {}}

    def _whatsapp(self, body: dict[str, Any]) -> Any:
        if body["messaging_product"] != "whatsapp" or body.get("recipient_type", "individual") != "individual":
            raise Refused("messaging_product must be 'whatsapp'")
        if not re.fullmatch(r"[1-9]\d{7,14}", body["to"]):
            raise Refused("to must be a phone number in E.164 digits")
        if body["type"] != "template":
            raise Refused("only template messages are allowed outside the customer service window", code=131047)
        template = body["template"]
        if not template["name"] or not re.fullmatch(r"[a-z]{2,3}(_[A-Z]{2})?", template["language"]["code"]):
            raise Refused("template name and language.code are required")
        for component in template.get("components", []):
            if component["type"] not in ("header", "body", "button"):
                raise Refused(f"component type {component['type']!r}")
            for parameter in component["parameters"]:
                if parameter["type"] not in WHATSAPP_PARAMETER_TYPES or not parameter.get(parameter["type"]):
                    raise Refused("each parameter needs its type and a value of that type")
        self.whatsapp.append(body)
        return {"messaging_product": "whatsapp", "contacts": [{"input": body["to"], "wa_id": body["to"]}],
                "messages": [{"id": f"wamid.{len(self.whatsapp)}"}]}

    def _messenger(self, body: Any) -> Any:
        if not str(body["recipient"]["id"]).isdigit():
            raise Refused("recipient.id must be a page-scoped id")
        kind = body["messaging_type"]
        if kind not in MESSENGER_TYPES or (kind == "MESSAGE_TAG") != ("tag" in body):
            raise Refused("messaging_type must be RESPONSE, UPDATE or MESSAGE_TAG (with a tag)")
        if "tag" in body and body["tag"] not in MESSENGER_TAGS:
            raise Refused(f"tag {body['tag']!r} is not a supported message tag")
        text = body["message"]["text"]
        if not isinstance(text, str) or not 0 < len(text) <= 2000:
            raise Refused("message.text must be 1 to 2000 characters")
        self.messenger.append(body)
        return {"recipient_id": body["recipient"]["id"], "message_id": f"m_{len(self.messenger)}"}

    def _google(self, path: str, body: Any) -> Any:
        created = re.fullmatch(r"customers/(\d{10})/offlineUserDataJobs:create", path)
        if created:
            job = body["job"]
            metadata = job["customerMatchUserListMetadata"]
            if job["type"] != "CUSTOMER_MATCH_USER_LIST" or not metadata["userList"].startswith(
                f"customers/{created.group(1)}/userLists/"
            ):
                raise Refused("job must be CUSTOMER_MATCH_USER_LIST for a list of this customer")
            if metadata["consent"] != {"adUserData": "GRANTED", "adPersonalization": "GRANTED"}:
                raise Refused("consent for EEA users must be given")
            name = f"customers/{created.group(1)}/offlineUserDataJobs/{len(self.jobs) + 1}"
            self.jobs[name] = {"list": metadata["userList"], "operations": [], "ran": False}
            return {"resourceName": name}
        job_call = re.fullmatch(r"(customers/\d{10}/offlineUserDataJobs/\d+):(addOperations|run)", path)
        if not job_call or job_call.group(1) not in self.jobs:
            raise Refused(f"no such job call {path}", 404)
        job = self.jobs[job_call.group(1)]
        if job["ran"]:
            raise Refused("the job has already run")
        if job_call.group(2) == "run":
            job["ran"] = True
            members = self.google.setdefault(job["list"], set())
            for kind, member in job["operations"]:
                (members.add if kind == "create" else members.discard)(member)
            return {"name": f"{job_call.group(1)}/operations/1"}
        for operation in body["operations"]:
            (kind, user), = operation.items()
            if kind not in ("create", "remove"):
                raise Refused(f"operation {kind!r}")
            if job["operations"] and job["operations"][0][0] != kind:
                raise Refused("a job cannot mix create and remove operations")
            member = set()
            for identifier in user["userIdentifiers"]:
                (field, value), = identifier.items()
                if field not in ("hashedEmail", "hashedPhoneNumber") or not HEX64.fullmatch(value):
                    raise Refused("userIdentifiers take hashedEmail or hashedPhoneNumber, SHA-256 hex")
                member.add((field, value))
            job["operations"].append((kind, frozenset(member)))
        return {}


@contextmanager
def platform() -> Iterator[Platform]:
    """The fake platforms on a free local port, in a thread, for the length of the block."""
    server = Platform()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
