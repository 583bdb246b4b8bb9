"""The work of modelforge's process launcher (`hydra/launcher=parallel`): one fresh process per job.

Each job runs in a process of its own (the `spawn` start method: a clean interpreter, no state shared
with the launcher or with other jobs), at most `n_jobs` at a time. A job whose process dies is recorded in its
folder as `failed` with the cause (e.g. "worker process died: signal 9") and returns NaN to the sweeper, and
the other jobs run on. SIGTERM or Ctrl-C stops the sweep: the running jobs get the signal, checkpoint and
stop, no new job starts, and the summaries are written before the launcher exits with the signal's status.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import signal
import sys
from collections.abc import Sequence
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from modelforge.core.names import Status
from modelforge.run.folder import RunFolder

log = logging.getLogger("modelforge")


def _execute(payload: bytes, conn: Connection) -> None:
    """The child's body: run one Hydra job as Hydra's own launchers do, send back its JobReturn."""
    import cloudpickle
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.singleton import Singleton
    from hydra.core.utils import run_job, setup_globals
    from omegaconf import open_dict

    idx, overrides, hydra_context, config, task_function, singleton_state = cloudpickle.loads(payload)
    setup_globals()
    Singleton.set_state(singleton_state)
    sweep_config = hydra_context.config_loader.load_sweep_config(config, list(overrides))
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{idx}"
        sweep_config.hydra.job.num = idx
    HydraConfig.instance().set_config(sweep_config)
    ret = run_job(hydra_context=hydra_context, config=sweep_config, task_function=task_function,
                  job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
    conn.send_bytes(cloudpickle.dumps(ret))
    conn.close()


def _job_dir(hydra_context: Any, config: Any, overrides: Sequence[str], idx: int) -> tuple[Path, Any]:
    from omegaconf import open_dict

    sweep_config = hydra_context.config_loader.load_sweep_config(config, list(overrides))
    with open_dict(sweep_config):
        sweep_config.hydra.job.num = idx
    return Path(sweep_config.hydra.sweep.dir) / str(sweep_config.hydra.sweep.subdir), sweep_config


def _died(job_dir: Path, overrides: Sequence[str], exitcode: int | None, sweep_config: Any) -> Any:
    """Records a job whose process died in its folder, and the JobReturn the sweeper gets for it (NaN)."""
    from hydra.core.utils import JobReturn, JobStatus
    from omegaconf import OmegaConf

    cause = (f"worker process died: signal {-exitcode} ({signal.Signals(-exitcode).name})"
             if exitcode is not None and exitcode < 0 else f"worker process exited with status {exitcode}")
    folder = RunFolder(job_dir)
    record = folder.record()
    if record.get("status") in (None, Status.RUNNING):
        record.update(status=Status.FAILED, error=cause, worker_died=True, run_dir=str(job_dir.resolve()))
        folder.write_json("metrics.json", record)
        if not (job_dir / ".hydra" / "overrides.yaml").exists():  # died before it wrote its own record
            RunFolder(job_dir / ".hydra").write_text("overrides.yaml", OmegaConf.to_yaml(list(overrides)))
    log.error("job in %s: %s", job_dir, cause)
    ret = JobReturn(overrides=list(overrides), cfg=sweep_config, working_dir=str(job_dir))
    ret.status = JobStatus.COMPLETED  # a failed job never sinks the sweep: the summaries account for it
    ret.return_value = math.nan
    return ret


def launch(hydra_context: Any, config: Any, task_function: Any, job_overrides: Sequence[Sequence[str]],
           initial_job_idx: int, n_jobs: int) -> list[Any]:
    """Runs the jobs, at most `n_jobs` at a time, each in a fresh process; returns their JobReturns in order."""
    import cloudpickle
    from hydra.core.singleton import Singleton
    from hydra.core.utils import configure_log, filter_overrides, setup_globals

    setup_globals()
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    sweep_dir = Path(str(config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    log.info("launching %d jobs, at most %d at a time, one process each; sweep folder %s",
             len(job_overrides), n_jobs, sweep_dir)
    for i, overrides in enumerate(job_overrides):
        log.info("\t#%d : %s", initial_job_idx + i, " ".join(filter_overrides(overrides)))
    context = multiprocessing.get_context("spawn")
    singleton_state = Singleton.get_state()
    pending = list(enumerate(job_overrides))
    running: dict[int, tuple[Any, Connection]] = {}
    results: dict[int, Any] = {}
    stop: list[int] = []

    def forward(signum: int, frame: Any) -> None:
        stop.append(signum)
        for proc, _ in running.values():
            if proc.is_alive():
                proc.terminate() if signum == signal.SIGTERM else proc.send_signal(signum)  # type: ignore[attr-defined]

    saved = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        while pending or running:
            while pending and len(running) < max(1, n_jobs) and not stop:
                i, overrides = pending.pop(0)
                payload = cloudpickle.dumps((initial_job_idx + i, overrides, hydra_context, config, task_function,
                                             singleton_state))
                receive, send = context.Pipe(duplex=False)
                proc = context.Process(target=_execute, args=(payload, send), name=f"modelforge-job-{i}")
                proc.start()
                send.close()
                running[i] = (proc, receive)
            if not running:
                break
            wait([conn for _, conn in running.values()] + [proc.sentinel for proc, _ in running.values()], 1.0)
            for i, (proc, conn) in list(running.items()):
                if i not in results and conn.poll():
                    try:
                        results[i] = cloudpickle.loads(conn.recv_bytes())
                    except EOFError:
                        pass
                if not proc.is_alive():
                    proc.join()
                    conn.close()
                    del running[i]
                    if i not in results:
                        job_dir, sweep_config = _job_dir(hydra_context, config, job_overrides[i], initial_job_idx + i)
                        if proc.exitcode in (128 + signal.SIGTERM, 128 + signal.SIGINT):
                            stop.append(proc.exitcode - 128)  # the job was stopped by a signal: so is the sweep
                        else:
                            results[i] = _died(job_dir, job_overrides[i], proc.exitcode, sweep_config)
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
    if stop:
        from modelforge.sweep.callback import write_summaries

        write_summaries(sweep_dir, interrupted=True)
        print(f"modelforge: sweep stopped by {signal.Signals(stop[0]).name}; continue it with: "
              f"python -m modelforge resume {sweep_dir}", file=sys.stderr)
        sys.exit(128 + stop[0])
    return [results[i] for i in range(len(job_overrides))]
