"""edgectl doctor's questions to the service, against the emulator over TLS with the real SDK:
the models API check and `--live`'s round trip, pass and fail."""

from __future__ import annotations

from pathlib import Path

import pytest

from edged import config
from edged.service import doctor, doctor_live
from edged.sim import LiveEmulatorThread, Scenario

KEY = "AIzaSyDOCTORLIVE-never-print-000000000"

GOOD = Scenario([[{"tone": {"ms": 200}}],
                 [{"tool_call": {"name": "doctor_clock", "args": {}, "then": [{"tone": {"ms": 120}}]}}]])


@pytest.fixture
def sim(cert_dir):
    with LiveEmulatorThread(scenario=GOOD, cert_dir=cert_dir, speed=20, api_key=KEY) as t:
        yield t


def _cfg(tmp_path: Path, sim, model: str = "gemini-3.8-live", monkeypatch=None) -> config.Config:
    p = tmp_path / "edged.toml"
    p.write_text(f'[live]\nmodel = "{model}"\nbase_url = "{sim.base_url}"\nca_file = "{sim.ca_file}"\n'
                 f'[state]\ndir = "{tmp_path / "state"}"\n')
    return config.load(p)


@pytest.fixture(autouse=True)
def key_env(monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", KEY)


def by_name(steps) -> dict:
    return {s.name: s for s in steps}


def test_models_check_ok_and_lists_live_models(tmp_path, sim):
    s = by_name(doctor_live.check_models(_cfg(tmp_path, sim)))
    assert s["live model"].status == "ok" and "gemini-3.8-live supports bidiGenerateContent" in s["live model"].detail
    assert s["live models"].status == "ok"
    assert "gemini-3.8-live" in s["live models"].detail and "gemini-3.8-flash" not in s["live models"].detail


def test_models_check_fails_for_a_model_the_key_cannot_use(tmp_path, sim):
    sim.emu.models = ["gemini-3.1-flash-live-preview"]
    s = by_name(doctor_live.check_models(_cfg(tmp_path, sim)))
    assert s["live model"].status == "fail" and "404" in s["live model"].detail
    assert s["live model"].fix == "set live.model to one of: gemini-3.1-flash-live-preview"
    s = by_name(doctor_live.check_models(_cfg(tmp_path, sim, model="gemini-3.1-flash-live-preview")))
    assert s["live model"].status == "warn" and "legacy" in s["live model"].detail  # still served, retiring


def test_round_trip_passes_every_step(tmp_path, sim):
    steps = doctor_live.round_trip(_cfg(tmp_path, sim), timeout=15)
    s = by_name(steps)
    assert [x.name for x in steps] == ["live set-up", "live text turn", "live first audio", "live tool call",
                                       "live resumption"]
    assert all(x.status == "ok" for x in steps), steps
    assert "setupComplete in" in s["live set-up"].detail and "first reply audio after" in s["live first audio"].detail
    conn = sim.emu.connections[-1]
    names = [d["name"] for t in conn.setup["tools"] for d in t.get("functionDeclarations", [])]
    assert names == ["doctor_clock"]  # the one read-only tool: no device can be switched
    (resp,) = conn.tool_responses
    assert resp["id"] == conn.tool_calls[0]["id"] and resp["scheduling"] == "INTERRUPT"
    assert KEY not in repr(steps)


def test_round_trip_reports_each_failure(tmp_path, sim):
    sim.emu.scenario = Scenario([[{"no_answer": True}], [{"tone": {"ms": 40}}]])
    s = by_name(doctor_live.round_trip(_cfg(tmp_path, sim), timeout=3))
    assert s["live set-up"].status == "ok" and s["live text turn"].status == "ok"
    assert s["live first audio"].status == "fail" and "without audio" in s["live first audio"].detail
    assert s["live tool call"].status == "fail" and "did not call the tool" in s["live tool call"].detail
    sim.emu.models = ["gemini-3.1-flash-live-preview"]
    (only,) = doctor_live.round_trip(_cfg(tmp_path, sim), timeout=5)
    assert only.name == "live set-up" and only.status == "fail" and "1008" in only.detail
    assert "set live.model" in only.fix


def test_doctor_hook_runs_the_live_steps(tmp_path, sim, capsys):
    cfg = _cfg(tmp_path, sim)
    names = [c.name for c in doctor.run(cfg.path, str(tmp_path / "no.sock"), live=False)]
    assert "live model" in names and "live set-up" not in names
    rc = doctor.main(cfg.path, str(tmp_path / "no.sock"), live=True)
    out = capsys.readouterr().out
    for step in ("live model", "live set-up", "live text turn", "live tool call", "live resumption"):
        assert f"[ ok ] {step}:" in out, out
    assert KEY not in out and rc in (0, 1)  # other checks (ALSA, unit) fail on this machine
