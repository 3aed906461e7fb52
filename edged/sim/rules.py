"""The documented rules the emulator enforces per model, each refusal with Google's close code and text.

The model's profile is :mod:`edged.live.profiles` (whose docstring cites the model pages); this module
says how the service answers when a client breaks a rule.  Rule -> source:

R1  An unknown model, a retired one, or one not enabled for the key: close 1008
    ``models/NAME is not found for API version VERSION, or is not supported for bidiGenerateContent.
    Call ListModels to see the list of available models and their supported methods.``
    (text: google/adk-python#3964, google/adk-samples#23; shut-down models stop answering:
    ai.google.dev/gemini-api/docs/deprecations).
R2  A setup field the model does not have (``enableAffectiveDialog`` on 3.8, "removed from the API",
    ai.google.dev/gemini-api/docs/models/gemini-3.8-live): close 1007 ``Invalid JSON payload received.
    Unknown name "FIELD" at 'PATH': Cannot find field.`` (that form: livekit/agents#3853).
R3  A known field with a value the model refuses: ``thinkingConfig`` on 3.8 ("not supported", same page),
    ``proactive_audio: false`` on 3.8 ("returns an error", same page), proactivity / affective dialog on
    3.1 (2.5 native-audio features: ai.google.dev/gemini-api/docs/live-api/capabilities), a thinking
    level the model lacks, ``thinking_level`` on 2.5 (budget only, same page), a ``behavior`` the model
    lacks (3.1 "synchronous only": .../live-api/tools; 3.8 extended thinking "only NON_BLOCKING":
    livekit/agents#7302): close 1007 ``Request contains an invalid argument.``
    (the text of Google's generic 1007: rudyll/stackchan-ai-server#7).
R4  ``additionalProperties`` inside a declaration's ``parameters`` on 3.x: close 1007 (livekit/agents#7302)
    with the R2 text at ``setup.tools[i].function_declarations[j].parameters...``.
R5  ``scheduling`` in a tool response for a model without scheduling: close 1007 with the R2 text at
    ``tool_response.function_responses[i]`` (livekit/agents#3853).
R6  ``parameters_json_schema`` on 2.5 native audio is accepted, but its calls arrive with empty ``args``
    (googleapis/python-genai#1147; livekit/agents#2940, #3135, #5560).
"""

from __future__ import annotations

from typing import Any

from ..live.profiles import Profile

INVALID_ARGUMENT = "Request contains an invalid argument."


def not_found(model: str, version: str) -> str:
    """R1's close reason (1008)."""
    name = model if model.startswith("models/") else f"models/{model}"
    return (f"{name} is not found for API version {version}, or is not supported for bidiGenerateContent. "
            "Call ListModels to see the list of available models and their supported methods.")


def unknown_name(field: str, path: str) -> str:
    """R2's close reason (1007)."""
    return f"Invalid JSON payload received. Unknown name \"{field}\" at '{path}': Cannot find field."


def field_of(d: Any, *names: str) -> Any:
    """The first of ``names`` (a field's camelCase and snake_case spellings) present in ``d``, if a dict."""
    if not isinstance(d, dict):
        return None
    for n in names:
        if n in d:
            return d[n]
    return None


def declarations(setup: dict[str, Any]) -> list[tuple[int, int, dict[str, Any]]]:
    """(tool index, declaration index, declaration) for every function declaration of a setup."""
    out = []
    for i, tool in enumerate(field_of(setup, "tools") or []):
        for j, d in enumerate(field_of(tool, "functionDeclarations", "function_declarations") or []):
            if isinstance(d, dict):
                out.append((i, j, d))
    return out


def _additional(node: Any, path: str) -> str | None:
    """The path of the first additionalProperties inside a Schema (either spelling), or None."""
    if isinstance(node, dict):
        if "additionalProperties" in node or "additional_properties" in node:
            return path
        for k, v in node.items():
            found = _additional(v, f"{path}.{k}")
            if found:
                return found
    if isinstance(node, list):
        for n, v in enumerate(node):
            found = _additional(v, f"{path}[{n}]")
            if found:
                return found
    return None


def check_setup(setup: dict[str, Any], p: Profile) -> tuple[int, str] | None:
    """The (close code, reason) with which the service refuses this setup for this model, or None."""
    gen = field_of(setup, "generationConfig", "generation_config") or {}
    # R2: affective dialog was removed from the API on 3.8
    if field_of(gen, "enableAffectiveDialog", "enable_affective_dialog") is not None:
        if p.affective_removed:
            return 1007, unknown_name("enableAffectiveDialog", "setup.generation_config")
        if not p.affective_dialog:
            return 1007, INVALID_ARGUMENT  # R3
    # R3: thinking
    thinking = field_of(gen, "thinkingConfig", "thinking_config")
    if thinking is not None:
        level = field_of(thinking, "thinkingLevel", "thinking_level")
        if p.thinking == "none":
            return 1007, INVALID_ARGUMENT
        if level is not None and (p.thinking != "level" or str(level).lower() not in p.thinking_levels):
            return 1007, INVALID_ARGUMENT
    # R3: proactivity
    pro = field_of(setup, "proactivity")
    if pro is not None:
        value = field_of(pro, "proactiveAudio", "proactive_audio")
        if p.proactive_audio == "no" or (p.proactive_audio == "always" and value is False):
            return 1007, INVALID_ARGUMENT
    for i, j, d in declarations(setup):
        # R3: behavior
        behavior = field_of(d, "behavior")
        if behavior is not None and str(behavior) not in p.behaviors:
            return 1007, INVALID_ARGUMENT
        # R4: additionalProperties inside parameters on 3.x
        params = field_of(d, "parameters")
        if p.additional_properties_refused and params is not None:
            where = _additional(params, f"setup.tools[{i}].function_declarations[{j}].parameters")
            if where:
                return 1007, unknown_name("additionalProperties", where)
    return None


def check_tool_response(tr: dict[str, Any], p: Profile) -> tuple[int, str] | None:
    """R5: a ``scheduling`` the model does not know."""
    if p.scheduling:
        return None
    for i, r in enumerate(field_of(tr, "function_responses", "functionResponses") or []):
        if isinstance(r, dict) and field_of(r, "scheduling") is not None:
            return 1007, unknown_name("scheduling", f"tool_response.function_responses[{i}]")
    return None


def json_schema_functions(setup: dict[str, Any], p: Profile) -> set[str]:
    """R6: names of functions whose calls arrive with empty args on this model."""
    if not p.json_schema_args_empty:
        return set()
    return {str(field_of(d, "name")) for _, _, d in declarations(setup)
            if field_of(d, "parameters_json_schema", "parametersJsonSchema") is not None}


def declared_behavior(setup: dict[str, Any], name: str, p: Profile) -> str | None:
    """How the service runs a call of ``name``: its declared behavior, else the model's default;
    None when the function is not declared (the scenario decides)."""
    for _, _, d in declarations(setup):
        if field_of(d, "name") == name:
            b = field_of(d, "behavior")
            return str(b) if b is not None else p.default_behavior
    return None
