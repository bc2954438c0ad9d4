"""The asset graph on a distributed engine: dagster-dask (a dask.distributed scheduler and workers).

Why dask rather than celery: a dask scheduler and its workers are two plain Python commands from the same
venv (``dask scheduler``, ``dask worker``) -- no broker to run, secure and back up (celery needs Redis or
RabbitMQ plus a result backend); a worker's *resources* (``--resources SINGLE_HOST=1``) give the pinning
below for free, and the scheduler's task stream says which worker ran which step (the test checks it).

Chosen by configuration (``dolphin_assets.execution.executor_from_env``): ``DOLPHIN_EXECUTOR=dask`` with ``DOLPHIN_DASK_SCHEDULER=
tcp://host:8786`` runs every step of every run on that cluster; unset / ``multiprocess`` keeps the
multiprocess executor (forkserver, one process per core) of ``dolphin_assets.definitions``.

What fans out, what stays in order, what is pinned (decided here, tested in tests/integration/dagster/test_distributed.py):

- fan-out: a backfill (``backfill``) first runs the *scans* selection (market_bars, eigen_scans, vol_regime and
  the scan checks) of every day at once -- days are independent thanks to the day-anchored scan segments --
  then the *capital chain* (daily_pnl_blue, trades_blue, capital_ledger_blue, floors) one day after the other,
  each day reading the day before's closing state: the chain can never fan out. Monte Carlo paths and
  validation folds are independent in the same way (their assets are unpartitioned: one run, steps spread).
- pinned: a step that touches a single-host file -- the DuckDB warehouse (io manager ``warehouse``), the
  SQLite capital ledger (``ledger``), the embedded SQLite feature store (``feature_store`` when it is not
  Hazelcast) -- gets the dask resource ``SINGLE_HOST``; exactly one worker, on the machine that holds the data
  home, is started with ``--resources SINGLE_HOST=1``, so those files are only ever written there. Hazelcast
  (a shared service) releases ``feature_store`` from the pin (``pinned_keys``). Everything else (loading bars,
  pickled io-manager values on a volume every worker mounts) runs on any worker. eigen_scans is two steps for
  this: ``eigen_scans.scan_day`` (the scanner and the day's Parquet file: any worker, so the days' scans spread
  over the machines) and ``eigen_scans.write_scans`` (DuckDB rows and scan_latest: pinned, milliseconds).
  ``pinned_steps`` gives the decision for a job without a cluster (tests/integration/dagster/test_distributed.py).
- shared services for several machines: Dagster's run/event/schedule storage on PostgreSQL (dagster-postgres;
  ``docker/dagster.yaml`` picks it when DAGSTER_POSTGRES_HOST is set), Hazelcast for the features, the
  data home (scans, io-manager pickles) on a shared volume.
"""

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor

import cloudpickle
import dagster as dg
from dagster import Field, Noneable, StringSource, executor, raise_execution_interrupts
from dagster_dask.executor import DaskExecutor

PIN = "SINGLE_HOST"
DEFAULT_PINNED = ("warehouse", "ledger", "feature_store")


def pinned_keys() -> tuple:
    """Resource keys whose steps are pinned: the feature store only while it is the embedded SQLite file."""
    from dolphin.adapters.store_factory import store_config_from_env

    keys = list(DEFAULT_PINNED)
    try:
        if store_config_from_env().get("kind") == "hazelcast":
            keys.remove("feature_store")
    except Exception:  # noqa: BLE001 - a broken store config pins (the safe side); the step reports it
        pass
    return tuple(keys)


def node_resource_keys(job_def, handle) -> set:
    """Resource keys an op (``handle``: its node handle in ``job_def``) touches: its own, its outputs' io
    managers, and the io managers that load its inputs (an asset input is loaded by the upstream asset's io
    manager, e.g. the DuckDB warehouse)."""
    op = job_def.get_node(handle).definition
    keys = set(op.required_resource_keys)
    keys.update(o.io_manager_key for o in op.output_defs)
    al = job_def.asset_layer
    for inp in op.input_defs:
        if inp.input_manager_key:
            keys.add(inp.input_manager_key)
            continue
        try:
            ak = al.get_asset_key_for_node_input(handle, inp.name)
        except Exception:  # noqa: BLE001 - not an asset input: loaded from the upstream step's output
            ak = None
        if ak is not None and al.has(ak):
            keys.add(al.get(ak).io_manager_key)
    return keys


def dask_requirements(job_def, handle, tags, pinned) -> dict:
    """The dask resources a step needs: its op's own dask tags, else ``SINGLE_HOST`` when it touches a pinned
    resource key, else none (any worker)."""
    from dagster_dask.executor import get_dask_resource_requirements

    req = dict(get_dask_resource_requirements(tags))
    if not req and node_resource_keys(job_def, handle) & set(pinned):
        req = {PIN: 1}
    return req


def pinned_steps(job_def, pinned) -> dict:
    """Step key -> dask resources for every op of ``job_def`` (the executor's decision, without a cluster)."""
    out = {}
    for handle in job_def.graph.iterate_node_handles():
        node = job_def.get_node(handle)
        if isinstance(node.definition, dg.OpDefinition):
            out[str(handle)] = dask_requirements(job_def, handle, node.tags, pinned)
    return out


def _interruptible(iterator):
    """``iterator``'s items, each waited for under ``raise_execution_interrupts``: a run termination (SIGINT,
    which Dagster otherwise holds back while it orchestrates) stops the wait for the dask futures at once."""
    while True:
        with raise_execution_interrupts():
            try:
                item = next(iterator)
            except StopIteration:
                return
        yield item


def _step_on_worker(dependencies, payload: bytes):
    """Runs on a dask worker: one step of a run (``dependencies``: the upstream steps' futures, resolved by dask
    before this starts, so the steps run in the plan's order)."""
    from dagster_dask.executor import query_on_dask_worker

    recon_job, run, run_config, step_keys, instance_ref, known_state = cloudpickle.loads(payload)
    return query_on_dask_worker(dependencies, recon_job, run, run_config, step_keys, instance_ref, known_state)


class PinnedDaskExecutor(DaskExecutor):
    """The dagster-dask executor with the ``SINGLE_HOST`` pin derived from each step's resource keys (the
    assets themselves carry no dask tags: where a step may run is deployment, not asset, knowledge)."""

    def __init__(self, cluster_type, cluster_configuration, pinned):
        super().__init__(cluster_type, cluster_configuration)
        self.pinned = tuple(pinned)

    def execute(self, plan_context, execution_plan):
        # dagster-dask's DaskExecutor.execute (existing / local clusters), with the dask resources of each
        # step from ``_requirements`` instead of the op's tags only
        import dask.distributed

        if not plan_context.instance.is_persistent:
            raise dg.DagsterInvariantViolationError("dask execution needs a persistent Dagster instance")
        job_def = plan_context.job.get_definition()
        if self.cluster_type == "existing":
            cluster = self.cluster_configuration["address"]
        elif self.cluster_type == "local":
            from dask.distributed import LocalCluster

            cluster = LocalCluster(**self.build_dict(plan_context.job_name))
        else:
            raise ValueError(f"dask_pinned runs on an existing scheduler or a LocalCluster, not {self.cluster_type}")
        with dask.distributed.Client(cluster) as client:
            futures, by_key = [], {}
            for level in execution_plan.get_steps_to_execute_by_level():
                for step in level:
                    deps = [by_key[k] for inp in step.step_inputs for k in inp.dependency_keys]
                    req = dask_requirements(job_def, step.node_handle, step.tags, self.pinned)
                    # the step's arguments travel as one pickle: dask >= 2025 walks tuple arguments, and Dagster's
                    # records (NamedTuples) refuse iteration
                    payload = cloudpickle.dumps((plan_context.reconstructable_job, plan_context.dagster_run,
                                                 plan_context.run_config, [step.key], plan_context.instance.get_ref(),
                                                 execution_plan.known_state))
                    fut = client.submit(_step_on_worker, deps, payload,
                                        key=f"{plan_context.job_name}.{plan_context.dagster_run.run_id}.{step.key}",
                                        resources=req)
                    futures.append(fut)
                    by_key[step.key] = fut
            done = dask.distributed.as_completed(futures, with_results=True)
            for _fut, result in _interruptible(done):
                yield from result
        if self.cluster_type == "local":
            cluster.close()


@executor(
    name="dask_pinned",
    requirements=dg.multiple_process_executor_requirements(),
    config_schema={
        "scheduler": Field(Noneable(StringSource), default_value=None,
                           description="tcp://host:port of a running dask scheduler (None: a LocalCluster of "
                                       "2 worker processes, the first holding SINGLE_HOST)"),
        "pinned": Field(Noneable([str]), default_value=None,
                        description="resource keys pinned to the SINGLE_HOST worker (None: pinned_keys())"),
    },
)
def dask_pinned_executor(init_context):
    cfg = init_context.executor_config
    pinned = cfg["pinned"] if cfg["pinned"] is not None else pinned_keys()
    if cfg["scheduler"]:
        return PinnedDaskExecutor("existing", {"address": cfg["scheduler"]}, pinned)
    return PinnedDaskExecutor("local", {"n_workers": 2, "processes": True, "resources": {PIN: 1}}, pinned)


# ---------------------------------------------------------------- backfill: scans fan out, the chain in day order

SCANS = ("market_bars", "eigen_scans", "vol_regime")
CHAIN = ("daily_pnl_blue", "trades_blue", "capital_ledger_blue")


def _jobs(executor_def):
    from dolphin_assets.checks import daily_pnl_blue_floors, eigen_scans_checks
    from dolphin_assets.definitions import ASSET_CHECKS, ASSETS, resources

    scans = dg.define_asset_job("blue_scans_day", executor_def=executor_def,
                                selection=dg.AssetSelection.assets(*SCANS).without_checks()
                                | dg.AssetSelection.checks(eigen_scans_checks))
    chain = dg.define_asset_job("blue_chain_day", executor_def=executor_def,
                                selection=dg.AssetSelection.assets(*CHAIN).without_checks()
                                | dg.AssetSelection.checks(daily_pnl_blue_floors))
    return dg.Definitions(assets=ASSETS, asset_checks=ASSET_CHECKS, jobs=[scans, chain], resources=resources())


def dask_defs():
    return _jobs(dask_pinned_executor)


def multiprocess_defs():
    return _jobs(dg.multiprocess_executor)


def dask_scans_job():
    return dask_defs().resolve_job_def("blue_scans_day")


def dask_chain_job():
    return dask_defs().resolve_job_def("blue_chain_day")


def mp_scans_job():
    return multiprocess_defs().resolve_job_def("blue_scans_day")


def mp_chain_job():
    return multiprocess_defs().resolve_job_def("blue_chain_day")


def backfill(days, *, engine: str = "dask", scheduler: str | None = None, fan_out: int = 4,
             risk_layer: str | None = None, log=print) -> dict:
    """Backfill ``days`` (partition keys, ascending): every day's scans at once (``fan_out`` runs in flight),
    then the capital chain day by day. ``engine``: dask (on ``scheduler``) or multiprocess. ``risk_layer``:
    daily_pnl_blue's (None: the asset's default). Returns timings
    and run ids; raises RuntimeError naming the first failed run. Every run is orchestrated in a spawned process
    that opens the instance of DAGSTER_HOME (``execute_job`` is not meant for several threads of one process)."""
    days = list(days)
    if days != sorted(days):
        raise ValueError("backfill: days must be in ascending order (the capital chain runs in day order)")
    if engine not in ("dask", "multiprocess"):
        raise ValueError(f"backfill engine {engine!r}: expected dask or multiprocess")
    if engine == "dask" and not scheduler:
        raise ValueError("backfill on dask needs the scheduler address (tcp://host:port)")
    out = {"scans_runs": {}, "chain_runs": {}}
    # create / migrate the instance's storage once, here, before several processes open it at the same time
    # (concurrent first opens of a fresh SQLite storage race on its alembic version stamp)
    with dg.DagsterInstance.get() as inst:
        inst.get_runs(limit=1)
        inst.event_log_storage.get_asset_records()
    t0 = time.perf_counter()
    # up to fan_out scans runs in flight; their steps run on the engine (dask workers or local processes)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=max(1, min(int(fan_out), len(days))), mp_context=ctx) as pool:
        res = list(pool.map(_scans_run, days, [engine] * len(days), [scheduler] * len(days)))
    errors = [f"scans of {d} failed (run {rid})" for d, rid, ok in res if not ok]
    out["scans_runs"] = {d: rid for d, rid, _ in res}
    out["scans_s"] = time.perf_counter() - t0
    log(f"scans of {len(days)} days ({engine}, {fan_out} in flight): {out['scans_s']:.1f} s")
    if errors:
        raise RuntimeError("; ".join(errors))
    t1 = time.perf_counter()
    # the chain: one run at a time, day after day (each day starts from the day before's closing state)
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        for day in days:
            d, rid, ok = pool.submit(_chain_run, day, engine, scheduler).result()
            out["chain_runs"][day] = rid
            if not ok:
                raise RuntimeError(f"capital chain of {day} failed (run {rid})")
    out["chain_s"] = time.perf_counter() - t1
    out["total_s"] = time.perf_counter() - t0
    log(f"capital chain of {len(days)} days in day order ({engine}): {out['chain_s']:.1f} s; "
        f"total {out['total_s']:.1f} s")
    return out


def _run_config(engine, scheduler):
    if engine == "dask":
        return {"execution": {"config": {"scheduler": scheduler}}}
    # as bench/backfill.py: forkserver with the code location preloaded (a step starts in milliseconds)
    return {"execution": {"config": {"max_concurrent": 2, "start_method": {
        "forkserver": {"preload_modules": ["dolphin_assets.preload"]}}}}}


def _chain_run(day, engine, scheduler, risk_layer=None):
    """One day's capital-chain run (in a pool process): (day, run id, success)."""
    job = dg.reconstructable(dask_chain_job if engine == "dask" else mp_chain_job)
    cfg = _run_config(engine, scheduler)
    if risk_layer is not None:
        cfg["ops"] = {"daily_pnl_blue": {"config": {"risk_layer": risk_layer}}}
    with dg.DagsterInstance.get() as instance:
        r = dg.execute_job(job, instance=instance, tags={"dagster/partition": day}, run_config=cfg,
                           raise_on_error=False)
        return day, r.run_id, r.success


def _scans_run(day, engine, scheduler):
    """One day's scans run (in a pool process): (day, run id, success)."""
    job = dg.reconstructable(dask_scans_job if engine == "dask" else mp_scans_job)
    with dg.DagsterInstance.get() as instance:
        r = dg.execute_job(job, instance=instance, tags={"dagster/partition": day},
                           run_config=_run_config(engine, scheduler), raise_on_error=False)
        return day, r.run_id, r.success

