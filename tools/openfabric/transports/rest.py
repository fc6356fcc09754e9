"""REST execution: POST /execution, answered with the output (JSON, or its Python repr)."""
from __future__ import annotations

import time
from typing import Any

from tools.backends.base import ProgressFn

from ..answers import parse_execution_answer
from .base import Transport


class RestTransport(Transport):
    name = "rest"

    async def execute(self, body: Any, progress: ProgressFn) -> Any:
        started = time.monotonic()
        self.client.step = "execution (REST)"
        s = self.client.settings
        data, ctype = await self.client.request("POST", self.client.address.url("execution"), "execution", cap=s.max_output_bytes, json_body=body,
                                          read_timeout=s.execution_timeout, execution=True)
        output = parse_execution_answer(data, ctype, s.max_repr_bytes)
        self.client.log_step("execute", "rest", started, f"bytes={len(data)}")
        return output

