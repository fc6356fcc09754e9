"""Execution through openfabric_pysdk's own Proxy (0.2.9), for comparison with our socket.io client; it cannot
send a token."""
from __future__ import annotations

import asyncio
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from tools.backends.base import ProgressFn

from ..answers import ray_progress
from ..errors import ClientError, SocketDropped, SocketUnavailable
from .base import Transport


class SdkTransport(Transport):
    name = "sdk"

    async def execute(self, body: Any, progress: ProgressFn) -> Any:
        """One execution through openfabric_pysdk's Proxy (0.2.9), in a worker thread (its API blocks).

        The Proxy starts two non-daemon threads and reconnects forever while it lives, so one Proxy is made per
        execution and always disconnected here; a stop flag ends the wait when our deadline cancels us."""
        s = self.client.settings
        started = time.monotonic()
        self.client.step = "execution (sdk)"
        if s.token.strip():
            raise ClientError("sdk transport: openfabric_pysdk's Proxy cannot send a token (it has no header or auth option); "
                              "use ATELIER_OPENFABRIC_TRANSPORT=socket or rest for a locked app", 0)
        try:
            from openfabric_pysdk.helper.proxy import Proxy
        except ImportError as exc:
            raise ClientError(f"sdk transport: openfabric_pysdk is not importable ({exc})", 0) from None
        loop = asyncio.get_running_loop()
        stop = threading.Event()
        holder: dict[str, Any] = {"rid": None, "early": []}
        lock = threading.Lock()
        parts = urlsplit(self.client.address.base_url)
        url = f"{parts.scheme}://{parts.netloc}"

        def report(data: dict) -> None:
            fraction, message = ray_progress(data)
            loop.call_soon_threadsafe(self.client.report, progress, fraction, f"{self.client.label}: {message}")

        def on_progress(data: Any) -> None:
            if not isinstance(data, dict):
                return
            with lock:
                if holder["rid"] is None:  # an event may beat request() returning our rid: keep it until then
                    holder["early"].append(data)
                    return
            if data.get("rid") == holder["rid"]:
                report(data)

        def work() -> dict:
            proxy = Proxy(url, f"atelier-{self.client.address.app_id}")  # blocks up to 3 s waiting for the connection
            try:
                if not proxy.is_connected():
                    raise SocketUnavailable(f"sdk transport: the Proxy could not connect to {url} within 3 s")
                proxy.register("progress", on_progress)
                proxy.register("submitted", on_progress)
                execution = proxy.request(body, s.uid)
                with lock:
                    holder["rid"] = execution.request_id()
                    early, holder["early"] = holder["early"], []
                for data in early:
                    if data.get("rid") == holder["rid"]:
                        report(data)
                while not stop.is_set():
                    if execution.wait(0.5):
                        break
                    if execution.status() == "CANCELLED":  # the Proxy's own 15 s no-update watchdog
                        break
                return {"ray": {"status": execution.status(), "messages": execution.messages(), "rid": holder["rid"]},
                        "output": execution.data(), "qid": execution.request_qid()}
            finally:
                proxy.disconnect()

        future = loop.run_in_executor(None, work)
        future.add_done_callback(lambda f: f.cancelled() or f.exception())  # read, also when we stopped waiting for it
        try:
            response = await asyncio.shield(future)
        except asyncio.CancelledError:
            stop.set()  # the worker sees it within 0.5 s and disconnects its Proxy
            raise
        status = str(response["ray"]["status"]).upper()
        if status == "CANCELLED" and response["output"] is None:
            raise SocketDropped("sdk transport: the Proxy cancelled the execution (no update from the app for 15 s)")
        output = self.parse_ray_response(response)
        self.client.log_step("execute", "sdk", started, f"qid={response.get('qid')}")
        return output

