"""What goes on the wire when edged connects: the client, the setup, and how failures read.

Kept apart from the session's supervisor (:mod:`edged.live.session`), which decides when to
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
from .wslog import ws_logger

PLACEHOLDER_KEY = "edged-emulator-no-key"
AUDIO_MIME = "audio/pcm;rate=16000"
REPLAY_CHUNK = 32000  # bytes of 16 kHz audio per message when replaying (1 s)
MAX_SIZE = 16 * 1024 * 1024  # replies can carry large audio chunks; the SDK's default is 1 MiB


def build_client(cfg: LiveConfig, api_key: Secret | None) -> genai.Client:
    """The SDK client: TLS trust from ``live.ca_file``, keep-alive pings, a large message limit."""
    args: dict[str, Any] = {"max_size": MAX_SIZE, "ping_timeout": cfg.ping_timeout_s,
                            "ping_interval": cfg.ping_interval_s or None,
                            "logger": ws_logger("edged.live.websockets")}
    if cfg.ca_file:
        args["ssl"] = ssl.create_default_context(cafile=cfg.ca_file)
    if api_key is not None:
        register(api_key)  # the log filters scrub it wherever it might appear
    key = api_key.reveal() if api_key is not None else PLACEHOLDER_KEY
    return genai.Client(api_key=key, http_options=types.HttpOptions(
        base_url=cfg.base_url or None, api_version=cfg.api_version, async_client_args=args))


def connect_config(cfg: LiveConfig, handle: str | None, tools: list[types.Tool]) -> types.LiveConnectConfig:
    """The setup: audio replies, our own activity detection, resumption, compression, transcripts."""
    transcription = types.AudioTranscriptionConfig() if cfg.transcription else None
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
        tools=tools or None,
    )


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


def about_handle(reason: str) -> bool:
    r = reason.lower()
    return "handle" in r or "resum" in r or "session" in r
