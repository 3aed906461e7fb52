"""Model profiles: config checks at load, the setup built per profile, and the emulator accepting it
for every usable profile while refusing what each model refuses."""

from __future__ import annotations

import logging
import ssl

import pytest
from google import genai
from google.genai import types

from edged import config
from edged.errors import ConfigErrors
from edged.live import profiles
from edged.live.wire import connect_config
from edged.sim import LiveEmulator
from edged.sim.rules import INVALID_ARGUMENT

from .conftest import live_cfg


def _load(tmp_path, live: str):
    p = tmp_path / "edged.toml"
    p.write_text("[live]\n" + live)
    return config.load(p), str(p)


def _errors(tmp_path, live: str) -> list[str]:
    with pytest.raises(ConfigErrors) as ei:
        _load(tmp_path, live)
    return [str(e) for e in ei.value.errors]


def test_default_model_is_gemini_38_live():
    assert config.LiveConfig().model == "gemini-3.8-live" == profiles.DEFAULT_MODEL
    p = profiles.lookup("models/gemini-3.8-live")
    assert p.known and p.stage == "stable" and p.declared_behavior == "NON_BLOCKING" and p.scheduling


def test_retired_model_refused_with_replacement(tmp_path):
    errs = _errors(tmp_path, 'model = "gemini-2.5-flash-native-audio-preview-09-2025"\n')
    assert len(errs) == 1
    assert errs[0].startswith(f"{tmp_path / 'edged.toml'}: live.model: ")
    assert "retired" in errs[0] and "use gemini-3.8-live" in errs[0]


def test_vertex_model_refused(tmp_path):
    (err,) = _errors(tmp_path, 'model = "gemini-live-2.5-flash-native-audio"\n')
    assert "live.model: " in err and "Vertex AI" in err


@pytest.mark.parametrize("live,key,needle", [
    ('thinking_level = "low"\n', "live.thinking_level", "does not take thinking_level"),
    ('proactive_audio = false\n', "live.proactive_audio", "always on"),
    ('affective_dialog = true\n', "live.affective_dialog", "removed"),
    ('model = "gemini-3.8-live-extended-thinking"\nthinking_level = "minimal"\n', "live.thinking_level",
     "low, medium, high"),
    ('model = "gemini-3.1-flash-live-preview"\nproactive_audio = true\n', "live.proactive_audio", "2.5"),
    ('model = "gemini-2.5-flash-native-audio-preview-12-2025"\nthinking_level = "low"\n', "live.thinking_level",
     "budget"),
    ('model = "my-own-model"\nthinking_level = "low"\n', "live.thinking_level", "does not know"),
])
def test_keys_checked_against_the_profile(tmp_path, live, key, needle):
    errs = _errors(tmp_path, live)
    assert any(f": {key}: " in e and needle in e for e in errs), errs


def test_accepted_keys_and_warnings(tmp_path, caplog):
    cfg, _ = _load(tmp_path, 'model = "gemini-3.8-live-extended-thinking"\nthinking_level = "high"\n'
                             'google_search = true\nmedia_resolution = "medium"\n')
    assert cfg.live.thinking_level == "high" and cfg.live.google_search
    cfg, _ = _load(tmp_path, 'model = "gemini-2.5-flash-native-audio-preview-12-2025"\n'
                             'proactive_audio = true\naffective_dialog = true\n')
    assert cfg.live.proactive_audio is True
    with caplog.at_level(logging.WARNING, logger="edged.config"):
        cfg, path = _load(tmp_path, 'model = "gemini-9-live-future"\n')
    assert cfg.live.model == "gemini-9-live-future"
    assert any(path in r.getMessage() and "conservative" in r.getMessage() for r in caplog.records)


def _setup_dict(cfg, tools=()):
    from google.genai import _common
    from google.genai import _live_converters as conv

    class _C:
        vertexai = False

    c = connect_config(cfg, None, list(tools))
    return _common.convert_to_dict(conv._LiveConnectParameters_to_mldev(
        api_client=_C(), from_object=types.LiveConnectParameters(model=f"models/{cfg.model}", config=c)
        .model_dump(exclude_none=True)))["setup"]


def _fd(setup: dict) -> dict:
    return next(t for t in setup["tools"] if "functionDeclarations" in t)["functionDeclarations"][0]


TOOL = types.Tool(function_declarations=[types.FunctionDeclaration(
    name="read_thing", description="d", parameters_json_schema={
        "type": "object", "properties": {"which": {"type": "string", "enum": ["a", "b"]}},
        "additionalProperties": False})])


def test_setup_per_profile_sends_only_accepted_fields():
    s = _setup_dict(config.LiveConfig(google_search=True), [TOOL])
    gen = s["generationConfig"]
    assert "thinkingConfig" not in gen and "enableAffectiveDialog" not in gen and "proactivity" not in s
    assert gen["mediaResolution"] == "MEDIA_RESOLUTION_LOW"
    fd = _fd(s)
    assert fd["behavior"] == "NON_BLOCKING" and "parameters_json_schema" not in fd
    assert fd["parameters"]["properties"]["which"]["enum"] == ["a", "b"]
    assert "additionalProperties" not in str(fd) and "additional_properties" not in str(fd)
    assert {"googleSearch": {}} in s["tools"]
    s = _setup_dict(config.LiveConfig(model="gemini-3.8-live-extended-thinking", thinking_level="medium"), [TOOL])
    assert s["generationConfig"]["thinkingConfig"] == {"thinking_level": "MEDIUM"}
    s = _setup_dict(config.LiveConfig(model="gemini-3.1-flash-live-preview", thinking_level="minimal"), [TOOL])
    assert "behavior" not in _fd(s)  # synchronous only: never sent
    s = _setup_dict(config.LiveConfig(model="gemini-2.5-flash-native-audio-preview-12-2025", proactive_audio=True,
                                      affective_dialog=True), [TOOL])
    assert s["proactivity"] == {"proactive_audio": True} and s["generationConfig"]["enableAffectiveDialog"] is True
    assert _fd(s)["behavior"] == "BLOCKING"  # explicit
    s = _setup_dict(config.LiveConfig(model="some-new-live-model"), [TOOL])
    assert "behavior" not in _fd(s)


USABLE = [p.name for p in profiles.live_models() if p.usable]


@pytest.mark.parametrize("model", USABLE)
async def test_edged_setup_passes_the_emulator_for_every_profile(emu, runner, model, tmp_path):
    """The real SDK, edged's setup with every optional key the model takes and a real tool: accepted."""
    extra = {}
    p = profiles.lookup(model)
    if p.thinking == "level":
        extra["thinking_level"] = p.thinking_levels[-1]
    if p.proactive_audio == "settable":
        extra["proactive_audio"] = True
    if p.affective_dialog:
        extra["affective_dialog"] = True
    s, h = runner.start(live_cfg(emu, model=model, google_search=True, **extra), tools=lambda: [TOOL])
    assert await s.wait_connected(15), h.events
    (conn,) = await emu.wait_connections(1)
    assert conn.model == model and conn.refused is None and conn.setup_complete_sent


def _client(emu) -> genai.Client:
    return genai.Client(api_key="k", http_options=types.HttpOptions(
        base_url=emu.base_url, api_version="v1beta",
        async_client_args={"ssl": ssl.create_default_context(cafile=str(emu.ca_file))}))


async def _refusal(emu, model: str, cfg: types.LiveConnectConfig) -> tuple[int, str]:
    with pytest.raises(genai.errors.APIError) as ei:
        async with _client(emu).aio.live.connect(model=model, config=cfg):
            pass
    conn = emu.connections[-1]
    assert conn.refused is not None and conn.refused[0] == ei.value.code
    return ei.value.code, str(ei.value)


FN_AP = types.FunctionDeclaration(name="f", parameters=types.Schema(
    type="OBJECT", properties={"x": types.Schema(type="STRING")}, additional_properties=False))


@pytest.mark.parametrize("model,cfg,code,needle", [
    ("gemini-3.8-live", types.LiveConnectConfig(thinking_config=types.ThinkingConfig(thinking_level="LOW")),
     1007, INVALID_ARGUMENT),
    ("gemini-3.8-live", types.LiveConnectConfig(enable_affective_dialog=True), 1007,
     'Unknown name "enableAffectiveDialog"'),
    ("gemini-3.8-live", types.LiveConnectConfig(proactivity=types.ProactivityConfig(proactive_audio=False)),
     1007, INVALID_ARGUMENT),
    ("gemini-3.8-live", types.LiveConnectConfig(tools=[types.Tool(function_declarations=[FN_AP])]), 1007,
     'Unknown name "additionalProperties"'),
    ("gemini-3.1-flash-live-preview", types.LiveConnectConfig(tools=[types.Tool(function_declarations=[FN_AP])]),
     1007, 'Unknown name "additionalProperties"'),
    ("gemini-3.1-flash-live-preview", types.LiveConnectConfig(tools=[types.Tool(function_declarations=[
        types.FunctionDeclaration(name="g", behavior="NON_BLOCKING")])]), 1007, INVALID_ARGUMENT),
    ("gemini-3.8-live-extended-thinking", types.LiveConnectConfig(tools=[types.Tool(function_declarations=[
        types.FunctionDeclaration(name="g", behavior="BLOCKING")])]), 1007, INVALID_ARGUMENT),
    ("gemini-3.1-flash-live-preview", types.LiveConnectConfig(proactivity=types.ProactivityConfig(
        proactive_audio=True)), 1007, INVALID_ARGUMENT),
    ("no-such-model", types.LiveConnectConfig(), 1008,
     "models/no-such-model is not found for API version v1beta, or is not supported for bidiGenerateContent"),
    ("gemini-2.5-flash-native-audio-preview-09-2025", types.LiveConnectConfig(), 1008, "is not found"),
])
async def test_emulator_refuses_what_the_model_refuses(emu, model, cfg, code, needle):
    got_code, text = await _refusal(emu, model, cfg)
    assert got_code == code and needle in text


async def test_not_enabled_for_the_key(cert_dir):
    async with LiveEmulator(cert_dir=cert_dir, speed=50, models=["gemini-3.1-flash-live-preview"]) as e:
        code, text = await _refusal(e, "gemini-3.8-live", types.LiveConnectConfig())
        assert code == 1008 and "models/gemini-3.8-live is not found" in text


async def test_scheduling_refused_where_unknown_and_json_schema_args_empty_on_25(emu):
    from edged.sim import Scenario

    emu.scenario = Scenario([[{"tool_call": {"name": "js", "args": {"which": "a"}, "timeout": 5}}, {"tone": {"ms": 40}}]])
    model = "gemini-2.5-flash-native-audio-preview-12-2025"
    decl = types.FunctionDeclaration(name="js", parameters_json_schema={
        "type": "object", "properties": {"which": {"type": "string"}}})
    cfg = types.LiveConnectConfig(tools=[types.Tool(function_declarations=[decl])])
    async with _client(emu).aio.live.connect(model=model, config=cfg) as s:
        await s.send_client_content(turns=types.Content(role="user", parts=[types.Part(text="x")]), turn_complete=True)
        async for m in s.receive():
            if m.tool_call:
                (call,) = m.tool_call.function_calls
                assert call.name == "js" and call.args == {}  # python-genai#1147: the args are lost
                await s.send_tool_response(function_responses=[types.FunctionResponse(
                    id=call.id, name="js", response={"ok": True}, scheduling="WHEN_IDLE")])
            if m.server_content and m.server_content.turn_complete:
                break
    # 3.1 has no scheduling: a response carrying it closes 1007 (livekit/agents#3853)
    emu.scenario = Scenario([[{"tool_call": {"name": "g", "args": {}, "timeout": 5}}, {"tone": {"ms": 40}}]])
    with pytest.raises(genai.errors.APIError) as ei:
        async with _client(emu).aio.live.connect(model="gemini-3.1-flash-live-preview") as s:
            await s.send_client_content(turns=types.Content(role="user", parts=[types.Part(text="x")]),
                                        turn_complete=True)
            async for m in s.receive():
                if m.tool_call:
                    await s.send_tool_response(function_responses=[types.FunctionResponse(
                        id=m.tool_call.function_calls[0].id, name="g", response={}, scheduling="SILENT")])
            async for _ in s.receive():
                pass
    assert ei.value.code == 1007 and 'Unknown name "scheduling"' in str(ei.value)


def _rest(e, key: str) -> genai.Client:
    """REST calls go through httpx: the CA is given as `verify` (the websocket takes `ssl`)."""
    ctx = ssl.create_default_context(cafile=str(e.ca_file))
    return genai.Client(api_key=key, http_options=types.HttpOptions(
        base_url=e.base_url, api_version="v1beta", client_args={"verify": ctx}, async_client_args={"verify": ctx}))


async def test_models_endpoint_as_the_sdk_calls_it(cert_dir):
    async with LiveEmulator(cert_dir=cert_dir, speed=50, api_key="good") as e:
        c = _rest(e, "good")
        names = {m.name: m for m in [m async for m in await c.aio.models.list()]}
        live = {n for n, m in names.items() if "bidiGenerateContent" in (m.supported_actions or [])}
        assert live == {f"models/{n}" for n in USABLE}
        assert "models/gemini-3.8-flash" in names and "models/gemini-3.8-flash" not in live
        m = await c.aio.models.get(model="gemini-3.8-live")
        assert m.name == "models/gemini-3.8-live" and "bidiGenerateContent" in m.supported_actions
        with pytest.raises(genai.errors.ClientError) as ei:
            await c.aio.models.get(model="gemini-2.5-flash-native-audio-preview-09-2025")
        assert ei.value.code == 404 and "is not found" in str(ei.value)
        bad = _rest(e, "bad")
        with pytest.raises(genai.errors.ClientError) as ei:
            await bad.aio.models.get(model="gemini-3.8-live")
        assert ei.value.code == 403


async def test_a_tool_call_sent_by_the_control_is_made_and_recorded_as_a_scenario_call_is(emu):
    # the emulator's send_tool_call control (tests drive calls with it) follows R6 as a scenario's call does:
    # on the 2.5 native-audio model a function declared by JSON schema gets its call with empty args
    model = "gemini-2.5-flash-native-audio-preview-12-2025"
    decls = [types.FunctionDeclaration(name="js", parameters_json_schema={
        "type": "object", "properties": {"which": {"type": "string"}}}),
        types.FunctionDeclaration(name="typed", parameters=types.Schema(
            type="OBJECT", properties={"which": types.Schema(type="STRING")}))]
    cfg = types.LiveConnectConfig(tools=[types.Tool(function_declarations=decls)])
    async with _client(emu).aio.live.connect(model=model, config=cfg) as s:
        await emu.wait_for(lambda: emu.connections and emu.connections[-1].setup is not None)
        js = await emu.send_tool_call("js", {"which": "a"})
        typed = await emu.send_tool_call("typed", {"which": "b"})
        got = []
        async for m in s.receive():
            if m.tool_call:
                got += [(c.id, c.name, c.args) for c in m.tool_call.function_calls]
            if len(got) == 2:
                break
    assert got == [(js, "js", {}), (typed, "typed", {"which": "b"})]  # python-genai#1147: the args are lost
    assert [(c["id"], c["args"], c["behavior"]) for c in emu.connections[-1].tool_calls] == [
        (js, {}, "BLOCKING"), (typed, {"which": "b"}, "BLOCKING")]
