"""The work of modelforge's process launcher (`hydra/launcher=parallel`): `n_jobs` worker processes.

Each worker is a process of its own that runs one job at a time and then the next, with a fresh Keras session
and its own seeds per job. Workers are forked from one server process (the `forkserver` start method) that
imported TensorFlow once and ran nothing, so a sweep pays TensorFlow's import once, not once per worker.
A worker that dies takes only the job it was running with it: that job is recorded in its folder as `failed`
with the cause (e.g. "worker process died: signal 9") and returns NaN to the sweeper, a new worker takes its
place, and the other jobs run on (joblib's loky pool instead fails the whole batch). SIGTERM or Ctrl-C stops
the sweep: the running jobs get the signal, checkpoint and stop, no new job starts, and the summaries are
written before the launcher exits with the signal's status.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import signal
import sys
from collections.abc import Sequence
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from modelforge.core.names import Status
from modelforge.run.folder import RunFolder

log = logging.getLogger("modelforge")
# What the fork server imports before it forks the first worker (see its docstring).
PRELOAD = "modelforge.sweep.preload"


def _context() -> Any:
    """The fork server's context, with TensorFlow preloaded; `spawn` where there is no fork server (Windows)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([PRELOAD])
    return context


def _work(conn: Connection, threads: int, cwd: str) -> None:
    """A worker's body: run the jobs it is sent, one after another, as Hydra's own launchers run a job.

    `threads`: the worker's share of the machine's cores. TensorFlow and oneDNN would each take every core,
    and workers side by side would fight over them (as loky limits its workers, for the same reason). TensorFlow
    reads them when it makes its thread pools, at the first op, so the preloaded import does not fix them.
    `cwd`: the launcher's folder now; the fork server's is the one it started in, a sweep ago in a long-lived
    process that changed folder since.
    """
    os.chdir(cwd)
    for name in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(name, str(threads))
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
    import cloudpickle
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.singleton import Singleton
    from hydra.core.utils import run_job, setup_globals
    from omegaconf import open_dict

    # Ctrl-C reaches every process of the terminal: a job takes it while it fits (it checkpoints and stops),
    # and the launcher stops the sweep; an idle worker just waits to be closed.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            payload = conn.recv_bytes()
        except EOFError:  # the launcher is gone
            return
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
    """Runs the jobs on `n_jobs` worker processes; returns their JobReturns in the jobs' order."""
    import cloudpickle
    from hydra.core.singleton import Singleton
    from hydra.core.utils import configure_log, filter_overrides, setup_globals

    setup_globals()
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    sweep_dir = Path(str(config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    log.info("launching %d jobs on %d worker processes; sweep folder %s",
             len(job_overrides), n_jobs, sweep_dir)
    for i, overrides in enumerate(job_overrides):
        log.info("\t#%d : %s", initial_job_idx + i, " ".join(filter_overrides(overrides)))
    context = _context()
    threads = max(1, (os.cpu_count() or 1) // max(1, min(n_jobs, len(job_overrides))))
    singleton_state = Singleton.get_state()
    pending = list(enumerate(job_overrides))
    workers: dict[Any, tuple[Connection, int | None]] = {}  # process -> (its pipe, the job it runs)
    results: dict[int, Any] = {}
    stop: list[int] = []

    def forward(signum: int, frame: Any) -> None:
        stop.append(signum)
        for proc in workers:
            if proc.is_alive():
                proc.terminate() if signum == signal.SIGTERM else proc.send_signal(signum)  # type: ignore[attr-defined]

    def spawn() -> None:
        ours, theirs = context.Pipe(duplex=True)
        proc = context.Process(target=_work, args=(theirs, threads, os.getcwd()),
                               name=f"modelforge-worker-{len(workers)}")
        proc.start()
        theirs.close()
        workers[proc] = (ours, None)

    saved = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for _ in range(min(max(1, n_jobs), len(pending))):
            spawn()
        while pending or any(job is not None for _, job in workers.values()):
            for proc, (conn, job) in list(workers.items()):
                if job is None and pending and not stop:
                    i, overrides = pending.pop(0)
                    conn.send_bytes(cloudpickle.dumps((initial_job_idx + i, overrides, hydra_context, config,
                                                       task_function, singleton_state)))
                    workers[proc] = (conn, i)
            busy = {proc: (conn, job) for proc, (conn, job) in workers.items() if job is not None}
            if not busy:
                break
            wait([conn for conn, _ in busy.values()] + [proc.sentinel for proc in busy], 1.0)
            for proc, (conn, job) in busy.items():
                assert job is not None
                if conn.poll():
                    try:
                        results[job] = cloudpickle.loads(conn.recv_bytes())
                        workers[proc] = (conn, None)
                        continue
                    except EOFError:
                        pass
                if proc.is_alive():
                    continue
                proc.join()
                conn.close()
                del workers[proc]
                if proc.exitcode in (128 + signal.SIGTERM, 128 + signal.SIGINT):
                    stop.append(proc.exitcode - 128)  # the job was stopped by a signal: so is the sweep
                    continue
                job_dir, sweep_config = _job_dir(hydra_context, config, job_overrides[job], initial_job_idx + job)
                results[job] = _died(job_dir, job_overrides[job], proc.exitcode, sweep_config)
                if pending and not stop:
                    spawn()  # a new worker takes the dead one's place
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
        for proc, (conn, _) in workers.items():
            conn.close()  # idle workers read EOF and end
            proc.join(timeout=10)
    if stop:
        from modelforge.sweep.callback import write_summaries

        write_summaries(sweep_dir, interrupted=True)
        print(f"modelforge: sweep stopped by {signal.Signals(stop[0]).name}; continue it with: "
              f"python -m modelforge resume {sweep_dir}", file=sys.stderr)
        sys.exit(128 + stop[0])
    return [results[i] for i in range(len(job_overrides))]
