"""The emulator's models endpoint: ``GET /{version}/models`` and ``GET /{version}/models/NAME``.

As the SDK's ``client.aio.models.list()`` / ``.get()`` call it (google-genai 3.4: ``{models_url}`` and
``{name}`` paths, ``pageSize`` / ``pageToken`` query, the key in ``x-goog-api-key``).  The shape is the
Gemini API's Model resource (ai.google.dev/api/models): ``name`` ("models/..."), ``displayName``,
``inputTokenLimit``, ``outputTokenLimit``, ``supportedGenerationMethods`` (the SDK's ``supported_actions``;
Live models list ``bidiGenerateContent``), and ``nextPageToken`` for paging.  A model the key cannot
use answers 404 NOT_FOUND with the R1 text of :mod:`edged.sim.rules` (google/adk-python#3964).
Two ordinary (non-Live) models are listed too, as the real list is mostly such models.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

from ..live.profiles import PROFILES, Profile
from .rules import not_found

# Non-Live models the real list also returns (ai.google.dev/gemini-api/docs/models): they must not be
# mistaken for Live models by a client filtering on bidiGenerateContent.
OTHER_MODELS = (
    {"name": "models/gemini-3.8-flash", "displayName": "Gemini 3.8 Flash", "inputTokenLimit": 1048576,
     "outputTokenLimit": 65536, "supportedGenerationMethods": ["generateContent", "countTokens"]},
    {"name": "models/gemini-embedding-001", "displayName": "Gemini Embedding 001", "inputTokenLimit": 2048,
     "outputTokenLimit": 1, "supportedGenerationMethods": ["embedContent", "countTokens"]},
)
PAGE_SIZE = 50


def model_json(p: Profile) -> dict[str, Any]:
    return {"name": f"models/{p.name}", "version": "001", "displayName": p.name.replace("-", " ").title(),
            "description": f"Live model ({p.stage})", "inputTokenLimit": 131072, "outputTokenLimit": 65536,
            "supportedGenerationMethods": ["bidiGenerateContent", "countTokens"]}


def catalogue(enabled: list[str]) -> list[dict[str, Any]]:
    live = [model_json(PROFILES[n]) for n in enabled if n in PROFILES]
    return live + [dict(m) for m in OTHER_MODELS]


def answer(rest: str, query: str, version: str, enabled: list[str]) -> tuple[int, dict[str, Any]]:
    """``rest`` is the path after ``/{version}/``: ``models`` or ``models/NAME``."""
    models = catalogue(enabled)
    if rest == "models":
        q = parse_qs(query)
        size = max(1, min(int((q.get("pageSize") or [PAGE_SIZE])[0] or PAGE_SIZE), 1000))
        start = int((q.get("pageToken") or ["0"])[0] or 0)
        page: dict[str, Any] = {"models": models[start:start + size]}
        if start + size < len(models):
            page["nextPageToken"] = str(start + size)
        return 200, page
    name = rest
    for m in models:
        if m["name"] == name:
            return 200, m
    return 404, {"error": {"code": 404, "message": not_found(name, version), "status": "NOT_FOUND"}}


def body(status: int, obj: dict[str, Any]) -> tuple[HTTPStatus, bytes]:
    return HTTPStatus(status), json.dumps(obj).encode()
