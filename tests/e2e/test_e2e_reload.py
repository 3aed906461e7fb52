"""A reload goes through the composition root and restarts only the parts whose sections changed."""

import pytest

from edged import config
from edged.errors import ConfigError
from edged.state import State

from .conftest import speech
from .test_e2e_inproc import DIM_BLUE, silence, speaker


def _parts(sp):
    p = sp.d.app.running_parts()
    return {"gpio": p.gpio, "camera": p.camera, "tools": p.tools, "player": p.player, "capture": p.capture,
            "ear": p.ear, "live": p.live, "control": p.control}


async def test_a_turn_change_restarts_the_hearing_only_and_it_hears_again(tmp_path, models_dir, monkeypatch):
    async with speaker(tmp_path, models_dir, monkeypatch) as sp:
        before = _parts(sp)
        old_threads = [before["capture"].thread, before["ear"].thread]
        sub = sp.d.events.subscribe()
        await sp.d.reload(config.with_value(sp.d.cfg, "turn.silence_ms", 950))
        after = _parts(sp)
        changed = {name for name in before if before[name] is not after[name]}
        assert changed == {"capture", "ear"}
        assert not any(t.is_alive() for t in old_threads)  # the old threads were stopped, not leaked
        assert sp.d.conv.cfg.turn.silence_ms == 950
        while (ev := await sub.get())["event"] != "reloaded":
            pass
        assert ev["sections"] == ["turn"]
        # the new Ear hears: a wake turn reaches the model
        sp.feeder.feed(speech("hey jarvis") + speech("hello") + silence(1.0))
        await sp.emu.wait_frames("activity_end", timeout=30)
        assert sp.d.status()["wake"]["ear"]["turns"] == 1


async def test_a_gpio_change_restarts_devices_and_live_and_keeps_the_led(tmp_path, models_dir, monkeypatch):
    async with speaker(tmp_path, models_dir, monkeypatch) as sp:
        before = _parts(sp)
        conns = len(sp.emu.connections)
        new = config.with_value(sp.d.cfg, "gpio.devices", [
            {**d.model_dump(), "description": "the kitchen ceiling light"} if d.name == "kitchen_light"
            else d.model_dump() for d in sp.d.cfg.gpio.devices])
        await sp.d.reload(new)
        after = _parts(sp)
        changed = {name for name in before if before[name] is not after[name]}
        assert changed == {"gpio", "camera", "tools", "live"}
        # a new connection whose setup carries the new tool description (resuming: tests/e2e/test_e2e_service)
        conn = (await sp.emu.wait_connections(conns + 1, timeout=15))[-1]
        assert "the kitchen ceiling light" in str(conn.setup)
        assert sp.d.state == State.IDLE and sp.rgb() == DIM_BLUE  # the new bank's LED shows the state
        sp.d.gpio.set("kitchen_light", True)
        assert sp.pin(17).state == 1


async def test_refused_and_empty_changes_restart_nothing(tmp_path, models_dir, monkeypatch):
    async with speaker(tmp_path, models_dir, monkeypatch) as sp:
        before = _parts(sp)
        with pytest.raises(ConfigError, match="state"):
            await sp.d.reload(config.with_value(sp.d.cfg, "state.dir", str(tmp_path / "elsewhere")))
        assert "restart" in sp.d.status()["last_error"]
        await sp.d.reload(config.with_value(sp.d.cfg, "log.level", "debug"))
        await sp.d.reload(sp.d.cfg)
        after = _parts(sp)
        assert all(before[name] is after[name] for name in before)
        assert sp.d.cfg.log.level == "debug"
