"""A model hub on loopback that answers the calls huggingface_hub makes for `model_info` and `snapshot_download`.

It serves whatever files a test gives it, records every request, and can cut downloads short, so the real
huggingface_hub client code (progress, resume with Range, local_dir layout) runs against it through HF_ENDPOINT.
"""
from __future__ import annotations

import hashlib
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"
LFS_MIN = 1024  # files at least this big are announced as LFS files, with their sha256, like the real hub


class FakeHub:
    def __init__(self, repos: dict[str, dict[str, bytes]]):
        self.repos = repos
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Range header)
        self.cuts: dict[str, int] = {}  # file name -> how many of its next GETs stop halfway
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def file_gets(self, name: str) -> list[str | None]:
        return [rng for method, path, rng in self.requests if method == "GET" and path.endswith("/" + name)]

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args):
                pass

            def do_HEAD(self):
                self._answer(send_body=False)

            def do_GET(self):
                self._answer(send_body=True)

            def _json(self, obj, send_body: bool):
                data = json.dumps(obj).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if send_body:
                    self.wfile.write(data)

            def _answer(self, send_body: bool):
                path = self.path.split("?")[0]
                hub.requests.append((self.command, path, self.headers.get("Range")))
                if path.startswith("/api/models/"):
                    rest = path[len("/api/models/"):]
                    repo = "/".join(rest.split("/")[:2])
                    files = hub.repos.get(repo)
                    if files is None:
                        return self._missing()
                    if "/tree/" in rest:
                        return self._json([_tree_entry(name, data) for name, data in files.items()], send_body)
                    return self._json({"id": repo, "sha": COMMIT,
                                       "siblings": [_sibling(name, data) for name, data in files.items()]}, send_body)
                if "/resolve/" in path:
                    repo, _, rest = path.lstrip("/").partition("/resolve/")
                    name = rest.split("/", 1)[1]
                    data = hub.repos.get(repo, {}).get(name)
                    if data is None:
                        return self._missing()
                    start = 0
                    if rng := self.headers.get("Range"):
                        start = int(rng.split("=")[1].split("-")[0])
                    body = data[start:]
                    self.send_response(206 if start else 200)
                    self.send_header("X-Repo-Commit", COMMIT)
                    self.send_header("ETag", f'"{_etag(data)}"')
                    self.send_header("Content-Length", str(len(body)))
                    if start:
                        self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                    self.end_headers()
                    if not send_body:
                        return
                    if hub.cuts.get(name):
                        hub.cuts[name] -= 1
                        self.wfile.write(body[: len(body) // 2])
                        self.wfile.flush()
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)  # the client sees a download stop halfway
                        return
                    self.wfile.write(body)
                    return
                self._missing()

            def _missing(self):
                self.send_response(404)
                self.send_header("X-Error-Code", "RepoNotFound")
                self.send_header("Content-Length", "0")
                self.end_headers()

        return Handler


def _etag(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest() if len(data) >= LFS_MIN else hashlib.sha1(data).hexdigest()


def _lfs(data: bytes) -> dict:
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}


def _sibling(name: str, data: bytes) -> dict:
    return {"rfilename": name, "size": len(data), **({"lfs": _lfs(data)} if len(data) >= LFS_MIN else {})}


def _tree_entry(name: str, data: bytes) -> dict:
    entry = {"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
    if len(data) >= LFS_MIN:
        entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
    return entry
