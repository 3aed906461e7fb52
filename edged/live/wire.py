"""What goes on the wire when edged connects: the client, the setup, and how failures read.

Kept apart from the session's supervisor (:mod:`edged.live.supervisor`), which decides when to
connect; this module only says how.
"""

from __future__ import annotations

import ssl
from typing import Any

from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from websockets.exceptions import ConnectionClosed, InvalidStatus

from ..config import LiveConfig
from ..secrets import Secret, register
from .profiles import Profile, lookup
from .wslog import ws_logger

PLACEHOLDER_KEY = "edged-emulator-no-key"
AUDIO_MIME = "audio/pcm;rate=16000"
REPLAY_CHUNK = 32000  # bytes of 16 kHz audio per message when replaying (1 s)
MAX_SIZE = 16 * 1024 * 1024  # replies can carry large audio chunks; the SDK's default is 1 MiB


class TrustError(Exception):
    """``live.ca_file`` cannot be read as TLS trust (missing, unreadable, not PEM certificates)."""


def trust(cfg: LiveConfig) -> ssl.SSLContext | None:
    """The TLS context for ``live.ca_file`` (None: the system's trust).  Raises :class:`TrustError`
    naming the key, the file and the reason."""
    if not cfg.ca_file:
        return None
    try:
        return ssl.create_default_context(cafile=cfg.ca_file)
    except OSError as exc:  # ssl.SSLError (not PEM, no certificate) is an OSError too
        reason = (exc.reason if isinstance(exc, ssl.SSLError) else None) or exc.strerror or str(exc)
        raise TrustError(f"live.ca_file {cfg.ca_file}: cannot be used as TLS trust: {reason}") from None


def build_client(cfg: LiveConfig, api_key: Secret | None) -> genai.Client:
    """The SDK client: TLS trust from ``live.ca_file``, keep-alive pings, a large message limit.
    Raises :class:`TrustError` when that file cannot be used."""
    args: dict[str, Any] = {"max_size": MAX_SIZE, "ping_timeout": cfg.ping_timeout_s,
                            "ping_interval": cfg.ping_interval_s or None,
                            "logger": ws_logger("edged.live.websockets")}
    context = trust(cfg)
    if context is not None:
        args["ssl"] = context
    if api_key is not None:
        register(api_key)  # the log filters scrub it wherever it might appear
    key = api_key.reveal() if api_key is not None else PLACEHOLDER_KEY
    return genai.Client(api_key=key, http_options=types.HttpOptions(
        base_url=cfg.base_url or None, api_version=cfg.api_version, async_client_args=args))


def connect_config(cfg: LiveConfig, handle: str | None, tools: list[types.Tool],
                   profile: Profile | None = None) -> types.LiveConnectConfig:
    """The setup, built from the model's profile so it carries no field that model refuses.

    Always: audio replies, our own activity detection, resumption, compression, transcripts.
    Per profile (edged/live/profiles.py): thinking_level, proactivity, affective dialog, each tool's
    ``behavior``, the declaration form; media_resolution and the search tool where accepted.
    """
    p = profile or lookup(cfg.model)
    transcription = types.AudioTranscriptionConfig() if cfg.transcription else None
    extra: dict[str, Any] = {}
    if cfg.thinking_level and p.thinking == "level" and cfg.thinking_level in p.thinking_levels:
        extra["thinking_config"] = types.ThinkingConfig(thinking_level=cfg.thinking_level.upper())
    if cfg.proactive_audio is not None and p.proactive_audio == "settable":
        extra["proactivity"] = types.ProactivityConfig(proactive_audio=cfg.proactive_audio)
    if cfg.affective_dialog is not None and p.affective_dialog:
        extra["enable_affective_dialog"] = cfg.affective_dialog
    if p.media_resolution:
        extra["media_resolution"] = f"MEDIA_RESOLUTION_{cfg.media_resolution.upper()}"
    all_tools = adapt_tools(tools, p)
    if cfg.google_search and p.google_search:
        all_tools.append(types.Tool(google_search=types.GoogleSearch()))
    return types.LiveConnectConfig(
        response_modalities=[types.Modality.AUDIO],
        realtime_input_config=types.RealtimeInputConfig(
            automatic_activity_detection=types.AutomaticActivityDetection(disabled=True)),
        session_resumption=types.SessionResumptionConfig(handle=handle),
        context_window_compression=types.ContextWindowCompressionConfig(
            trigger_tokens=cfg.compression_trigger_tokens,
            sliding_window=types.SlidingWindow(target_tokens=cfg.compression_target_tokens)),
        input_audio_transcription=transcription,
        output_audio_transcription=transcription,
        speech_config=types.SpeechConfig(
            voice_config=types.VoiceConfig(prebuilt_voice_config=types.PrebuiltVoiceConfig(voice_name=cfg.voice)),
            language_code=cfg.language or None),
        system_instruction=types.Content(parts=[types.Part(text=cfg.system_instruction)])
        if cfg.system_instruction else None,
        tools=all_tools or None,
        **extra,
    )


# JSON-schema keywords types.Schema has, by their JSON spelling; everything else is dropped
# (additionalProperties above all: refused with 1007 on 3.x, livekit/agents#7302).
_SCHEMA_KEYS = {"type": "type", "description": "description", "enum": "enum", "format": "format",
                "minimum": "minimum", "maximum": "maximum", "minItems": "min_items", "maxItems": "max_items",
                "minLength": "min_length", "maxLength": "max_length", "pattern": "pattern",
                "required": "required", "nullable": "nullable", "title": "title", "default": "default"}


def schema_from_json(js: dict[str, Any]) -> types.Schema:
    """A JSON schema as the SDK's ``Schema`` (what every Live model honours), without additionalProperties."""
    kw: dict[str, Any] = {}
    for key, attr in _SCHEMA_KEYS.items():
        if key in js:
            kw[attr] = js[key].upper() if key == "type" and isinstance(js[key], str) else js[key]
    if isinstance(js.get("properties"), dict):
        kw["properties"] = {k: schema_from_json(v) for k, v in js["properties"].items()}
    if isinstance(js.get("items"), dict):
        kw["items"] = schema_from_json(js["items"])
    if isinstance(js.get("anyOf"), list):
        kw["any_of"] = [schema_from_json(v) for v in js["anyOf"]]
    return types.Schema(**kw)


def _strip_additional(s: types.Schema) -> types.Schema:
    upd: dict[str, Any] = {"additional_properties": None}
    if s.properties:
        upd["properties"] = {k: _strip_additional(v) for k, v in s.properties.items()}
    if s.items is not None:
        upd["items"] = _strip_additional(s.items)
    if s.any_of:
        upd["any_of"] = [_strip_additional(v) for v in s.any_of]
    return s.model_copy(update=upd)


def adapt_declaration(d: types.FunctionDeclaration, p: Profile) -> types.FunctionDeclaration:
    """One declaration in the form the model honours, with its behavior stated (or left out) per profile.

    - ``parameters_json_schema`` becomes ``parameters``: 2.5 native audio ignores the former and sends
      empty args (googleapis/python-genai#1147); ``additionalProperties`` is removed everywhere (3.x
      refuses it with 1007, livekit/agents#7302).
    - ``behavior``: the declaration's own when the model accepts it, else the profile's explicit one;
      never sent where the model has none (3.1: synchronous only; Vertex: refused by the SDK).
    """
    upd: dict[str, Any] = {}
    if d.parameters_json_schema is not None:
        js = d.parameters_json_schema
        upd["parameters_json_schema"] = None
        upd["parameters"] = schema_from_json(js) if isinstance(js, dict) else None
    elif d.parameters is not None:
        upd["parameters"] = _strip_additional(d.parameters)
    own = d.behavior.value if d.behavior is not None else None
    behavior = own if own in p.behaviors else p.declared_behavior
    upd["behavior"] = types.Behavior(behavior) if behavior else None
    return d.model_copy(update=upd)


def adapt_tools(tools: list[types.Tool], p: Profile) -> list[types.Tool]:
    out = []
    for t in tools:
        if t.function_declarations:
            t = t.model_copy(update={"function_declarations": [adapt_declaration(d, p)
                                                               for d in t.function_declarations]})
        out.append(t)
    return out


def adapt_responses(responses: list[types.FunctionResponse], p: Profile) -> list[types.FunctionResponse]:
    """Drop ``scheduling`` where the model does not know it (a 1007, livekit/agents#3853)."""
    if p.scheduling:
        return responses
    return [r.model_copy(update={"scheduling": None}) if r.scheduling is not None else r for r in responses]


class Failure(Exception):
    def __init__(self, kind: str, detail: str, code: int | None = None) -> None:
        super().__init__(detail)
        self.kind, self.detail, self.code = kind, detail, code


def describe(exc: BaseException) -> tuple[int | None, str]:
    if isinstance(exc, genai_errors.APIError):
        return exc.code, str(exc.details if isinstance(exc.details, str) else exc.message or exc.details)
    if isinstance(exc, ConnectionClosed):
        rc = exc.rcvd
        return (rc.code, rc.reason) if rc else (1006, "connection lost")
    if isinstance(exc, InvalidStatus):
        return exc.response.status_code, f"HTTP {exc.response.status_code} at the handshake"
    return None, f"{type(exc).__name__}: {exc}"


def about_model(reason: str) -> bool:
    """A close reason saying the model is unknown, retired or not enabled for the key.

    Google's text (google/adk-python#3964, google/adk-samples#23): close 1008 "models/NAME is not found
    for API version v1beta, or is not supported for bidiGenerateContent. Call ListModels ..."
    """
    r = reason.lower()
    return ("not found for api version" in r or "not supported for bidigeneratecontent" in r
            or ("models/" in r and "not found" in r))


def about_setup(reason: str) -> bool:
    """A close reason saying the setup itself is invalid (1007 "Invalid JSON payload received. Unknown
    name ..." as in livekit/agents#3853, or "Request contains an invalid argument.")."""
    r = reason.lower()
    return "invalid json payload" in r or "unknown name" in r or "invalid argument" in r


def about_handle(reason: str) -> bool:
    r = reason.lower()
    return "handle" in r or "resum" in r or "session" in r
