"""Dagster -> alerts (dolphin_assets/sensors/alerts.py) against a loopback webhook: a failed run, a failed asset
check and the daily_pnl_blue floors results (SYNTHETIC stand-in assets with the real floor check names, run in an
test instance), and no channel configured."""

import dagster as dg
import pytest

from dolphin_assets.checks import floor_check_name
from dolphin_assets.definitions import defs
from dolphin_assets.sensors.alerts import alert_on_asset_checks, alert_on_run_failure
from dolphin.metrics.floors import FLOORS
from tests.support.webhook import Loopback


@pytest.fixture
def hook(monkeypatch):
    srv = Loopback()
    for k in ("DOLPHIN_ALERT_TELEGRAM_TOKEN", "DOLPHIN_ALERT_TELEGRAM_CHAT_ID"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("DOLPHIN_ALERT_WEBHOOK_URL", srv.url + "/hook")
    yield srv
    srv.close()


def test_sensors_are_registered_running_by_default():
    for name in ("alert_on_run_failure", "alert_on_asset_checks"):
        assert defs.get_sensor_def(name).default_status == dg.DefaultSensorStatus.RUNNING


def test_failed_run_sends_a_critical_alert(hook):
    @dg.op
    def boom():
        raise RuntimeError("exchange archive unreachable")

    @dg.job
    def synthetic_failing_job():
        boom()

    with dg.instance_for_test() as instance:
        res = synthetic_failing_job.execute_in_process(instance=instance, raise_on_error=False)
        assert not res.success
        run = instance.get_run_by_id(res.run_id)
        ev = next(e for e in res.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE)
        ctx = dg.build_run_status_sensor_context(sensor_name="alert_on_run_failure", dagster_event=ev,
                                                 dagster_instance=instance, dagster_run=run).for_run_failure()
        alert_on_run_failure(ctx)
    [b] = hook.bodies
    assert b["kind"] == "run_failure" and b["severity"] == "critical"
    assert b["title"] == "Dagster run FAILED: synthetic_failing_job" and res.run_id in b["text"]
    assert "boom" in b["text"] or "exchange archive unreachable" in b["text"]


def _synthetic_checked_assets():
    names = [floor_check_name(s) for s in FLOORS]

    @dg.asset(name="daily_pnl_blue", partitions_def=dg.StaticPartitionsDefinition(["2024-03-01"]))
    def synthetic_daily_pnl_blue():
        return 1

    @dg.multi_asset_check(specs=[dg.AssetCheckSpec(n, asset="daily_pnl_blue") for n in names])
    def synthetic_floors():
        for i, n in enumerate(names):
            st = "FAIL" if i == 0 else "PASS"
            yield dg.AssetCheckResult(check_name=n, asset_key="daily_pnl_blue", passed=st == "PASS",
                                      metadata={"status": st, "value": 0.5 + i})

    @dg.asset
    def synthetic_exf():
        return 1

    @dg.asset_check(asset=synthetic_exf)
    def synthetic_exf_min(synthetic_exf):
        return dg.AssetCheckResult(passed=False, description="3 of 8 indicators")

    return [synthetic_daily_pnl_blue, synthetic_exf], [synthetic_floors, synthetic_exf_min], names


def _after_run(sensor, res, instance, status=dg.DagsterEventType.RUN_SUCCESS):
    run = instance.get_run_by_id(res.run_id)
    ev = next(e for e in res.all_events if e.event_type == status)
    ctx = dg.build_run_status_sensor_context(sensor_name=sensor.name, dagster_event=ev, dagster_instance=instance,
                                             dagster_run=run)
    return sensor(ctx)


def test_failed_checks_and_floors_results_alert_after_each_run(hook):
    assets, checks, names = _synthetic_checked_assets()
    with dg.instance_for_test() as instance:
        r1 = _after_run(alert_on_asset_checks, dg.materialize([assets[0], checks[0]], instance=instance,
                                                              partition_key="2024-03-01"), instance)
        r2 = _after_run(alert_on_asset_checks, dg.materialize([assets[1], checks[1]], instance=instance), instance)
        r3 = _after_run(alert_on_asset_checks, dg.materialize([assets[1]], instance=instance), instance)
    assert r1 is None and r2 is None and "no failed check" in r3.skip_message
    kinds = [b["kind"] for b in hook.bodies]
    assert kinds == ["floors", "asset_check"], hook.bodies
    fl = hook.bodies[0]
    assert fl["title"] == f"floors daily_pnl_blue [2024-03-01]: 1 FAILED ({names[0]})" and fl["severity"] == "warning"
    assert all(n in fl["text"] for n in names) and f"{names[0]}: FAIL (0.5)" in fl["text"]
    ck = hook.bodies[1]
    assert ck["title"] == "asset check FAILED: synthetic_exf.synthetic_exf_min" and "3 of 8" in ck["text"]


def test_without_a_channel_nothing_is_sent(monkeypatch):
    for k in ("DOLPHIN_ALERT_WEBHOOK_URL", "DOLPHIN_ALERT_TELEGRAM_TOKEN", "DOLPHIN_ALERT_TELEGRAM_CHAT_ID"):
        monkeypatch.delenv(k, raising=False)
    assets, checks, _ = _synthetic_checked_assets()
    with dg.instance_for_test() as instance:
        r = _after_run(alert_on_asset_checks, dg.materialize([assets[1], checks[1]], instance=instance), instance)
    assert "not sent: no alert channel configured" in r.skip_message
