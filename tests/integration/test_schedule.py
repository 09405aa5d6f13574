"""Schedules (docs/SPEC.md "schedule"): fires counted from the stored fire times that
GET /v1/functions/{app}/{fn} shows (schedule.last_runs), never from sleeping; a kill -9
and restart of gustd in the middle doubles no tick."""
import time

from gustlib import fn_spec, sdk_module, wait_until

EVERY = 2
TICK = fn_spec("sch", "tick", ["sh", "-c", "cat >/dev/null; echo tick"], timeout=30,
               resources={"cpu": 100, "memory": 64}, scaling={"scaledown_window": 30},
               schedule={"every": EVERY})


def _runs(g, app="sch", fn="tick"):
    return g.function(app, fn)["schedule"]["last_runs"]


def _check_ticks(runs):
    """Each tick once: distinct fire times and calls, at least a period apart."""
    ats = [r["at"] for r in runs]
    ids = [r["call_id"] for r in runs]
    assert len(set(ats)) == len(ats) and len(set(ids)) == len(ids), runs
    gaps = [b - a for a, b in zip(ats, ats[1:])]
    assert all(gap >= EVERY - 1e-6 for gap in gaps), (gaps, runs)


def test_period_fires_once_per_tick_and_restart_doubles_nothing(gust_factory):
    g = gust_factory()
    g.deploy(TICK)
    sched = g.function("sch", "tick")["schedule"]
    ls = g.cli("ls")
    assert ls.rc == 0 and "NEXT RUN" in ls.out and "LAST RUN" in ls.out, ls
    assert sched["spec"] == {"every": EVERY} and sched["last_runs"] == [] and sched["next_run"] > 0, sched
    wait_until(lambda: len(_runs(g)) >= 3, 30, msg="three fires")
    before = _runs(g)
    _check_ticks(before)
    # gust ls shows the latest run (UTC, to the second): one of those stored.
    ls = g.cli("ls")
    shown = {time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(r["at"])) for r in _runs(g)}
    assert ls.rc == 0 and any(t in ls.out for t in shown), (ls, shown)
    # Each fire's call ran, with no input.
    for r in before:
        res = g.result(r["call_id"], wait=30)
        assert res.status == 200 and res.body == b"tick\n", (r, res)

    g.kill9()
    g.start()
    stored = g.function("sch", "tick")["schedule"]
    # What the killed daemon stored is what the new one shows: its fires, and the next.
    assert stored["last_runs"][:len(before)] == before[:len(stored["last_runs"])], (before, stored)
    wait_until(lambda: len(_runs(g)) >= len(stored["last_runs"]) + 3, 30, msg="three fires after the restart")
    after = _runs(g)
    _check_ticks(after)
    for r in after:
        assert g.result(r["call_id"], wait=30).status == 200, r
    # Every call of the function is one of the schedule's fires: none was submitted twice.
    ids = {r["call_id"] for r in after}
    assert len(ids) == len(after)


def test_missed_tick_runs_once_at_start(gust_factory):
    g = gust_factory()
    g.deploy(fn_spec("miss", "f", ["sh", "-c", "cat >/dev/null"], timeout=30, resources={"cpu": 100, "memory": 64},
                     schedule={"every": 3}))
    wait_until(lambda: len(_runs(g, "miss", "f")) >= 1, 30, msg="a first fire")
    g.kill9()
    # Down for more than two periods: two ticks or more are missed.
    time.sleep(7)
    t_start = time.time()
    g.start()
    wait_until(lambda: any(r["at"] > t_start for r in _runs(g, "miss", "f")), 30,
               msg="the missed ticks' fire and the next")
    s = g.function("miss", "f")["schedule"]
    runs = s["last_runs"]
    _check_ticks(runs)
    # The restarted daemon fired once for all the ticks it missed: one call made after
    # its start for a tick before it.
    catch_up = [r for r in runs if r["at"] < t_start and g.status(r["call_id"])["created_at"] >= t_start]
    assert len(catch_up) == 1, (runs, t_start)
    nxt = [r for r in runs if r["at"] > t_start][0]
    assert nxt["at"] - catch_up[0]["at"] >= 3, runs
    assert s["next_run"] >= runs[-1]["at"] + 3 - 1e-6, s


def test_cron_schedule_and_removal(gust_factory):
    g = gust_factory()
    spec = fn_spec("cr", "f", ["true"], schedule={"cron": "0 * * * *", "timezone": "Europe/Berlin"})
    g.deploy(spec)
    s = g.function("cr", "f")["schedule"]
    assert s["spec"] == {"cron": "0 * * * *", "timezone": "Europe/Berlin"}, s
    # Hourly: the next whole hour (Berlin's offsets are whole hours).
    assert s["next_run"] % 3600 == 0 and 0 < s["next_run"] - time.time() <= 3600, s
    # A redeploy without a schedule removes it, also across a restart.
    g.deploy(fn_spec("cr", "f", ["true"]))
    assert "schedule" not in g.function("cr", "f")
    g.deploy(spec)
    assert "schedule" in g.function("cr", "f")
    g.http("POST", "/v1/apps/cr/stop")
    assert "schedule" not in g.function("cr", "f")
    g.kill9()
    g.start()
    assert "schedule" not in g.function("cr", "f")


def test_schedule_errors_name_the_field(gust_factory):
    g = gust_factory()
    for sched, field, words in [
        ({"cron": "61 * * * *"}, "functions[0].schedule.cron", "minute field"),
        ({"cron": "0 * * * *", "timezone": "Mars/Base"}, "functions[0].schedule.timezone", "unknown time zone"),
        ({"every": 0}, "functions[0].schedule.every", "between 1 and"),
        ({}, "functions[0].schedule", "exactly one of"),
    ]:
        r = g.deploy(fn_spec("bad", "f", ["true"], schedule=sched), expect=400)
        err = r.json()["error"]
        assert err["field"] == field and words in err["message"], err


SDK_MODULE = '''
import gust

app = gust.App("schedpy")


@app.function(schedule=gust.Period(seconds=2))
def tick():
    return "ticked"


@app.function(schedule=gust.Cron("30 2 * * *", timezone="Europe/Berlin"))
def nightly():
    return "night"
'''


def test_python_sdk_schedules(shared_gust, tmp_path):
    """gust.Period / gust.Cron through the SDK; a fire calls the Python function with no
    arguments (an empty input)."""
    import pickle
    g = shared_gust
    mod = sdk_module(tmp_path, "schedmod", SDK_MODULE)
    mod.app.addr = g.addr
    mod.app.deploy(progress=None)
    assert g.function("schedpy", "tick")["schedule"]["spec"] == {"every": 2}
    assert g.function("schedpy", "nightly")["schedule"]["spec"] == {"cron": "30 2 * * *",
                                                                     "timezone": "Europe/Berlin"}
    wait_until(lambda: len(_runs(g, "schedpy", "tick")) >= 2, 120, msg="two fires of the Python function")
    runs = _runs(g, "schedpy", "tick")
    _check_ticks(runs)
    for r in runs:
        res = g.result(r["call_id"], wait=60)
        assert res.status == 200 and pickle.loads(res.body) == "ticked", (r, res)
    g.http("POST", "/v1/apps/schedpy/stop")
    assert "schedule" not in g.function("schedpy", "tick")
