"""A short soak: ~25 wake-word turns through the real daemon, every fault kind at least once in a fixed
order (Live closes 1006/1011/1008/1007, GoAway, a refused handle, malformed frames, each between and
during turns; a slow reply; the microphone vanishing and coming back; the camera failing under look)."""

from edged.dev import soak


async def test_soak_every_fault_recovers(tmp_path, models_dir):
    plan = soak.every_fault_plan()
    lines: list[str] = []
    r = await soak.run_soak(len(plan), 20240611, tmp_path / "rig", models_dir, plan=plan, warmup=1,
                            log=lines.append)
    summary = soak.markdown(r) + "\n".join(lines)
    assert "aborted" not in r, summary
    assert r["daemon_exited"] is None, summary
    # every turn completed: with a fault before it, without one, and (the session replays the open
    # turn on the new connection) with one during it
    assert r["attempted"] == len(plan), summary
    assert r["lost_without_excuse"] == {}, summary
    assert r["lost_with_fault_during"] == {}, summary
    # a turn open during an auth failure is given up with the "can't reach" cue (offline manners)
    assert set(r["told_offline"]) <= set(soak.OFFLINE_FAULTS), summary
    assert r["completed"] + sum(r["told_offline"].values()) == len(plan), summary
    # every fault was injected and recovered from (back to idle, connected, no problem, in bounded time)
    assert set(r["faults_injected"]) == set(soak.FAULTS), summary
    assert r["unrecovered"] == [] and r["failures"] == [], summary  # failures: look must answer an error
    assert all(r["faults_recovered"].get(f, 0) >= 1 for f in soak.FAULTS if f != "slow"), summary
    rec = r["recoveries"]
    assert rec["resume_fallbacks"] >= 2 and rec["turns_replayed"] >= 1 and rec["auth_failures"] >= 2, summary
    assert rec["fresh_starts"] >= 2 and rec["resumes"] >= 6, summary
    # the microphone: reported (problem + error state), then reopened
    assert r["capture_vanish_shown"] == 1 and rec["capture_reopens"] >= 1, summary
    assert r["violations"] == [], summary
    # no leaks worth the name in a short run (the script reports the real figures)
    assert r["fds_end"] <= r["fds_start"] + 3, summary
    assert r["rss_kb_end"] - r["rss_kb_start"] < 30 * 1024, summary
