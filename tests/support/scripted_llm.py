"""A scripted OpenAI-compatible server on a free loopback port, for the decision-logic tests.

It answers POST /v1/chat/completions: requests that carry `tools` get the next scripted answer (tool calls
with the given arguments, or content); other requests (enhance_prompt's JSON-schema call, replies) get a
fixed JSON / text answer. Every request body is kept, so a test can check what the model was shown.
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import count

ADDITIONS = {"details": "fine engraved plates", "style": "studio product photo", "lighting": "soft daylight", "composition": "three-quarter view"}


class ScriptedLLMServer:
    def __init__(self, model_id: str = "scripted-8b"):
        self.model_id = model_id
        self.script: list[dict] = []
        self.requests: list[dict] = []
        self._ids = count(1)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, payload: dict, status: int = 200):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path.rstrip("/") == "/v1/models":
                    return self._send({"object": "list", "data": [{"id": server.model_id, "object": "model"}]})
                self._send({"error": "not found"}, 404)

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                if self.path.rstrip("/") != "/v1/chat/completions":
                    return self._send({"error": "not found"}, 404)
                server.requests.append(body)
                self._send(server.answer(body))

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def tool_requests(self) -> list[dict]:
        return [r for r in self.requests if r.get("tools")]

    def answer(self, body: dict) -> dict:
        if body.get("tools"):
            step = self.script.pop(0) if self.script else {"content": "All done."}
            message: dict = {"role": "assistant", "content": step.get("content")}
            if step.get("tool_calls"):
                message["tool_calls"] = [
                    {"id": f"call_s{next(self._ids)}", "type": "function",
                     "function": {"name": name, "arguments": args if isinstance(args, str) else json.dumps(args)}}
                    for name, args in step["tool_calls"]]
                message["content"] = step.get("content")
            finish = "tool_calls" if step.get("tool_calls") else "stop"
        elif body.get("response_format"):
            message, finish = {"role": "assistant", "content": json.dumps(ADDITIONS)}, "stop"
        else:
            message, finish = {"role": "assistant", "content": "Happy to help with ideas."}, "stop"
        return {"id": f"chatcmpl-{next(self._ids)}", "object": "chat.completion", "model": self.model_id,
                "choices": [{"index": 0, "message": message, "finish_reason": finish}]}


def call(name: str, **args) -> dict:
    return {"tool_calls": [(name, args)]}
