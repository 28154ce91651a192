"""Checkouts, keys and a webhook receiver for the SumUp sandbox tests."""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sumup import AsyncSumup
from sumup.types import Checkout

from sandbox.sumup_sandbox import SandboxControl

COOP_KEY = "sup_sk_sandbox_coop"
FARM_KEY = "sup_sk_sandbox_farm"
COOP = "MCOOP0001"
FARM = "MFARM0001"


class WebhookReceiver:
    """An HTTP server in a thread that records the content type and body of each POST."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/sumup/webhook"

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.record(self.headers.get("Content-Type", ""), body)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                """Stay quiet."""

        return Handler

    def record(self, content_type: str, body: bytes) -> None:
        """Remember one delivery."""
        with self._lock:
            self.posts.append((content_type, body))

    def bodies(self) -> list[Any]:
        """The JSON bodies received so far."""
        with self._lock:
            return [json.loads(body) for _, body in self.posts]

    def __enter__(self) -> WebhookReceiver:
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()


async def create_checkout(client: AsyncSumup, **fields: Any) -> Checkout:
    """A checkout for the co-op with a fresh reference; `fields` override the defaults."""
    values: dict[str, Any] = {
        "checkout_reference": f"order-{uuid.uuid4().hex[:12]}",
        "amount": 12.50,
        "currency": "GBP",
        "merchant_code": COOP,
    }
    return await client.checkouts.create(**(values | fields))


async def create_checkout_id(client: AsyncSumup, **fields: Any) -> str:
    """The id of a new co-op checkout (see create_checkout)."""
    checkout = await create_checkout(client, **fields)
    assert checkout.id is not None
    return checkout.id


def webhook_for(checkout_id: str) -> dict[str, Any]:
    """The body SumUp posts to return_url when a checkout moves."""
    return {"event_type": "CHECKOUT_STATUS_CHANGED", "id": checkout_id}


async def paid_transaction_id(client: AsyncSumup, control: SandboxControl, **fields: Any) -> str:
    """The id of the SUCCESSFUL transaction of a new co-op checkout, paid at once."""
    checkout_id = await create_checkout_id(client, **fields)
    paid = await control.pay(checkout_id)
    return str(paid["transaction_id"])
