"""What each Live model accepts: one profile per model the docs name, and a conservative one for the rest.

The setup (:func:`edged.live.wire.connect_config`), the tool declarations and responses, the config
checks and the emulator's rules are all read from here, so a model change is made in one place.

Sources (read November 2026):

- [M38] ai.google.dev/gemini-api/docs/models/gemini-3.8-live, "Migrating from Gemini 3.1 Flash Live":
  stable since September 2026; ``thinking_level`` / ``thinking_config`` not supported; async function
  calling (``behavior: NON_BLOCKING``) is the default, ``BLOCKING`` still declarable; response
  scheduling SILENT / WHEN_IDLE / INTERRUPT; proactive audio always on (``proactive_audio: false`` is
  an error); affective dialog removed from the API; search grounding supported.
- [X38] livekit/agents#7302: ``gemini-3.8-live-extended-thinking`` accepts only ``NON_BLOCKING``;
  ``additionalProperties`` inside ``parameters`` is refused with 1007 on 3.1 and 3.8.
  AgoraIO/agora-agents-python v2.9.0 release notes: Extended Thinking takes ``thinking_level``
  low, medium or high.
- [G31] ai.google.dev/gemini-api/docs/live-api/capabilities (model comparison) and
  .../live-api/tools: ``gemini-3.1-flash-live-preview`` uses ``thinkingLevel`` (minimal, low, medium,
  high); its function calling is synchronous only.  It is the "legacy preview" (DESIGN.md 4).
- [G25] ai.google.dev/gemini-api/docs/live-api/tools and the Vertex "2.5 Flash Live API native audio"
  page: 2.5 native audio has proactive audio and affective dialog, ``thinkingBudget`` (not levels),
  synchronous and asynchronous function calling.
- [JS] googleapis/python-genai#1147, livekit/agents#2940, #3135, #5560: 2.5 native-audio models do not
  honour ``parameters_json_schema``: the calls arrive with empty ``args``.
- [DEP] ai.google.dev/gemini-api/docs/deprecations: ``gemini-2.0-flash-live-001`` and
  ``gemini-live-2.5-flash-preview`` were shut down on December 9, 2025; the issue (#10) and DESIGN.md 4:
  the 2.5 native-audio previews belong to a retired generation (09-2025 retired, 12-2025 legacy).
- [VX] livekit/agents#3801: the SDK refuses ``behavior`` for Vertex AI; livekit/agents#3853: a
  ``scheduling`` field the service does not know is refused with 1007.  The Vertex model
  ``gemini-live-2.5-flash-native-audio`` is GA (Vertex "2.5 Flash Live API native audio" page).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

log = logging.getLogger(__name__)

DEFAULT_MODEL = "gemini-3.8-live"

Stage = Literal["stable", "preview", "legacy", "retired"]


@dataclass(frozen=True)
class Profile:
    name: str
    api: Literal["gemini", "vertex"] = "gemini"
    stage: Stage = "stable"
    replacement: str = ""  # for legacy / retired models: what to use instead
    known: bool = True  # False: the conservative profile for a model string edged does not know
    # thinking: "level" takes thinking_level (values in thinking_levels); "budget" takes only
    # thinking_budget (edged sets none); "none" refuses thinking_config altogether
    thinking: Literal["level", "budget", "none"] = "none"
    thinking_levels: tuple[str, ...] = ()
    # proactive audio: "settable" (proactivity.proactive_audio), "always" (always on; the field must not
    # be sent as false), "no" (not accepted)
    proactive_audio: Literal["settable", "always", "no"] = "no"
    affective_dialog: bool = False  # enable_affective_dialog accepted
    affective_removed: bool = False  # the field no longer exists: sending it is an unknown-field error
    behaviors: tuple[str, ...] = ()  # accepted FunctionDeclaration.behavior values; () = never send it
    default_behavior: Literal["BLOCKING", "NON_BLOCKING"] = "BLOCKING"  # what the service does unasked
    scheduling: bool = False  # FunctionResponse.scheduling accepted
    json_schema_args_empty: bool = False  # parameters_json_schema ignored: calls arrive with args={}
    additional_properties_refused: bool = False  # additionalProperties in parameters -> 1007
    google_search: bool = True
    media_resolution: bool = True
    sources: tuple[str, ...] = field(default=())

    @property
    def declared_behavior(self) -> str | None:
        """The behavior edged writes into every declaration, or None when the field must not be sent.

        Explicit, so the model's default cannot change under edged: the service's default where the
        model accepts the field (NON_BLOCKING on 3.8: the speaker keeps talking while a light switches).
        """
        return self.default_behavior if self.default_behavior in self.behaviors else None

    @property
    def usable(self) -> bool:
        return self.stage != "retired" and self.api == "gemini"


_LEVELS_31 = ("minimal", "low", "medium", "high")

PROFILES: dict[str, Profile] = {p.name: p for p in (
    Profile("gemini-3.8-live", stage="stable", thinking="none", proactive_audio="always",
            affective_removed=True, behaviors=("BLOCKING", "NON_BLOCKING"), default_behavior="NON_BLOCKING",
            scheduling=True, additional_properties_refused=True, sources=("M38", "X38")),
    Profile("gemini-3.8-live-extended-thinking", stage="stable", thinking="level",
            thinking_levels=("low", "medium", "high"), proactive_audio="always", affective_removed=True,
            behaviors=("NON_BLOCKING",), default_behavior="NON_BLOCKING", scheduling=True,
            additional_properties_refused=True, sources=("M38", "X38")),
    Profile("gemini-3.1-flash-live-preview", stage="legacy", replacement=DEFAULT_MODEL, thinking="level",
            thinking_levels=_LEVELS_31, proactive_audio="no", behaviors=(), default_behavior="BLOCKING",
            scheduling=False, additional_properties_refused=True, sources=("G31", "X38")),
    Profile("gemini-2.5-flash-native-audio-preview-12-2025", stage="legacy", replacement=DEFAULT_MODEL,
            thinking="budget", proactive_audio="settable", affective_dialog=True,
            behaviors=("BLOCKING", "NON_BLOCKING"), default_behavior="BLOCKING", scheduling=True,
            json_schema_args_empty=True, sources=("G25", "JS", "DEP")),
    Profile("gemini-2.5-flash-native-audio-preview-09-2025", stage="retired", replacement=DEFAULT_MODEL,
            thinking="budget", proactive_audio="settable", affective_dialog=True,
            behaviors=("BLOCKING", "NON_BLOCKING"), scheduling=True, json_schema_args_empty=True,
            sources=("G25", "JS", "DEP")),
    Profile("gemini-live-2.5-flash-preview", stage="retired", replacement=DEFAULT_MODEL, thinking="budget",
            sources=("DEP",)),
    Profile("gemini-2.0-flash-live-001", stage="retired", replacement=DEFAULT_MODEL, sources=("DEP",)),
    Profile("gemini-live-2.5-flash-native-audio", api="vertex", stage="stable", thinking="budget",
            proactive_audio="settable", affective_dialog=True, behaviors=(), scheduling=False,
            json_schema_args_empty=True, sources=("G25", "JS", "VX")),
)}

# A model string edged does not know: send only what every Live model accepts.  No thinking, no
# proactivity or affective dialog, no behavior or scheduling (a field the service does not know is a
# 1007, livekit/agents#3853), declarations as `parameters` without additionalProperties.
CONSERVATIVE = Profile("", known=False, stage="preview", thinking="none", proactive_audio="no",
                       behaviors=(), scheduling=False, json_schema_args_empty=True,
                       additional_properties_refused=True)


def bare(model: str) -> str:
    """``models/gemini-3.8-live`` -> ``gemini-3.8-live``."""
    return model.strip().removeprefix("models/")


def lookup(model: str) -> Profile:
    """The profile of a model string (the conservative one, named after it, when unknown)."""
    name = bare(model)
    p = PROFILES.get(name)
    if p is not None:
        return p
    return Profile(**{**CONSERVATIVE.__dict__, "name": name})


def live_models(include_retired: bool = False) -> list[Profile]:
    return [p for p in PROFILES.values() if include_retired or p.stage != "retired"]


def problems(live: object) -> list[tuple[str, str]]:
    """Config keys of the ``[live]`` section the model refuses: ``(key, reason)`` pairs."""
    model = str(getattr(live, "model", ""))
    p = lookup(model)
    out: list[tuple[str, str]] = []
    if p.stage == "retired":
        out.append(("live.model", f"{p.name} is retired (Google shut it down; every connection would fail): "
                                  f"use {p.replacement or DEFAULT_MODEL}"))
        return out
    if p.api == "vertex":
        out.append(("live.model", f"{p.name} is a Vertex AI model; edged talks to the Gemini API "
                                  f"(generativelanguage.googleapis.com): use {DEFAULT_MODEL}"))
        return out
    who = p.name if p.known else f"{p.name} (a model edged does not know)"
    level = getattr(live, "thinking_level", "")
    if level:
        if p.thinking != "level":
            hint = " (it takes a thinking budget, which edged does not set)" if p.thinking == "budget" else ""
            out.append(("live.thinking_level", f"{who} does not take thinking_level{hint}; remove the key"
                        + (f" or use {DEFAULT_MODEL}-extended-thinking" if p.name == DEFAULT_MODEL else "")))
        elif level not in p.thinking_levels:
            out.append(("live.thinking_level", f"{who} takes {', '.join(p.thinking_levels)} (got {level!r})"))
    if getattr(live, "proactive_audio", None) is not None and p.proactive_audio != "settable":
        out.append(("live.proactive_audio",
                    f"proactive audio is always on for {who} (setting it is an error); remove the key"
                    if p.proactive_audio == "always" else
                    f"{who} does not take proactive_audio (only 2.5 native-audio models do); remove the key"))
    if getattr(live, "affective_dialog", None) is not None and not p.affective_dialog:
        out.append(("live.affective_dialog",
                    f"affective dialog was removed from the API for {who}; remove the key" if p.affective_removed
                    else f"{who} does not take affective_dialog (only 2.5 native-audio models do); remove the key"))
    if getattr(live, "google_search", False) and not p.google_search:
        out.append(("live.google_search", f"{who} has no Google Search tool"))
    return out


def notes(model: str) -> list[str]:
    """Warnings worth logging at load: an unknown or legacy model."""
    p = lookup(model)
    if not p.known:
        return [f"live.model {p.name!r} is not a Live model edged knows: using the conservative setup "
                f"(no thinking, proactivity, affective dialog, behavior or scheduling); "
                f"`edgectl doctor` asks the service whether it exists (known: {', '.join(sorted(n for n, q in PROFILES.items() if q.usable))})"]
    if p.stage == "legacy":
        return [f"live.model {p.name} is a legacy model Google is retiring: move to {p.replacement or DEFAULT_MODEL}"]
    return []
