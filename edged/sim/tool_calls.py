"""The emulator's tool calls: a scenario's ``tool_call`` step sent as the model would, and the client's
toolResponse matched to it (rules R5 and R6 of :mod:`edged.sim.rules`).

Tool calls follow the declared ``behavior`` (else the model's default; undeclared functions: the step's
``behavior``, default BLOCKING).  BLOCKING: the reply waits for the response.  NON_BLOCKING: the reply
goes on at once; when the response comes, its ``scheduling`` (default WHEN_IDLE) decides what happens
to the step's ``then`` steps (a follow-up reply): SILENT none, WHEN_IDLE after the current reply,
INTERRUPT at once, interrupting it (the FunctionResponseScheduling definitions in google-genai's
types.py; ai.google.dev/gemini-api/docs/models/gemini-3.8-live: async by default).

:class:`ToolCalls` is a part of :class:`edged.sim.live_server.LiveEmulator`, which makes the state below.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

from . import rules
from .records import FOLLOW_UPS_MAX, Conn
from .rules import field_of
from .scenario import Step


class ToolCalls:
    _calls: Iterator[int]

    def _new_call(self, c: Conn, name: str, args: dict[str, Any], behavior: str | None) -> dict[str, Any]:
        """One functionCall as the model would make it, recorded: its args as this model sends them (R6)
        and how the service runs it (the declared behavior, else the model's default, else ``behavior``)."""
        call = {"id": f"call-{next(self._calls)}", "name": name, "args": {} if name in c.empty_args else args,
                "behavior": rules.declared_behavior(c.setup, name, c.profile) or behavior or "BLOCKING"}
        c.rec.tool_calls.append(call)
        return call

    async def _send_call(self, c: Conn, call: dict[str, Any]) -> None:
        await self._send(c, {"toolCall": {"functionCalls": [{k: call[k] for k in ("id", "name", "args")}]}})

    async def _call_tool(self, c: Conn, a: dict[str, Any]) -> None:
        """A scenario's tool_call step: send the call, and await its response as its behavior says."""
        call = self._new_call(c, a["name"], a["args"], a.get("behavior"))
        call_id, behavior = call["id"], call["behavior"]
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        c.tool_waits[call_id] = fut
        if behavior == "NON_BLOCKING":
            c.follow_ups[call_id] = tuple(a.get("then", ()))
            while len(c.follow_ups) > FOLLOW_UPS_MAX:
                c.follow_ups.pop(next(iter(c.follow_ups)))
        await self._send_call(c, call)
        if behavior == "NON_BLOCKING":  # the reply goes on; the response is awaited on the side
            c.spawn(self._await_response(c, call_id, a["name"], fut, a["timeout"]))
        else:
            await self._await_response(c, call_id, a["name"], fut, a["timeout"])

    async def _await_response(self, c: Conn, call_id: str, name: str, fut: asyncio.Future[dict[str, Any]],
                              timeout: float) -> None:  # noqa: ASYNC109
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            c.tool_waits.pop(call_id, None)
            c.rec.violations.append(f"no toolResponse for {call_id} ({name})")

    async def _on_tool_response(self, c: Conn, tr: dict[str, Any]) -> None:
        responses = field_of(tr, "function_responses", "functionResponses") or []
        self._record(c.rec.n, "tool_response", tr)
        refusal = rules.check_tool_response(tr, c.profile)  # R5
        if refusal is not None:
            c.rec.refused = refusal
            self._notify()
            return await self._server_close(c, *refusal)
        for r in responses if isinstance(responses, list) else []:
            c.rec.tool_responses.append(r)
            cid = str(field_of(r, "id"))
            fut = c.tool_waits.pop(cid, None)
            if fut is not None and not fut.done():
                fut.set_result(r)
            if cid in c.follow_ups:
                await self._scheduled(c, c.follow_ups.pop(cid), str(field_of(r, "scheduling") or "WHEN_IDLE"))

    async def _scheduled(self, c: Conn, then: tuple[Step, ...], scheduling: str) -> None:
        """A NON_BLOCKING call's response arrived: its follow-up reply per FunctionResponseScheduling."""
        if scheduling == "SILENT" or not then:
            return  # only added to the context
        busy = c.reply is not None and not c.reply.done()
        if scheduling == "INTERRUPT" and busy:
            await self._interrupt(c)
            busy = False
        if busy:
            c.when_idle.append(then)
        else:
            c.reply = c.spawn(self._reply(c, then))
