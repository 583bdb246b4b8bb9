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
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from modelforge.core.names import Status
from modelforge.errors import SweepStopped
from modelforge.run.folder import RunFolder
from modelforge.sweep.stops import end

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


class _Pool:
    """The worker processes, the job each is running (None: idle), the results by job position, and the signal
    that stopped the sweep, if one did."""

    def __init__(self, context: Any, threads: int) -> None:
        self.context = context
        self.threads = threads
        self.workers: dict[Any, tuple[Connection, int | None]] = {}  # process -> (its pipe, the job it runs)
        self.results: dict[int, Any] = {}
        self.stop: list[int] = []

    def forward(self, signum: int, frame: Any) -> None:
        """The launcher's SIGTERM and SIGINT handler: the sweep stops, and the running jobs get the signal."""
        self.stop.append(signum)
        for proc in self.workers:
            if proc.is_alive():
                proc.terminate() if signum == signal.SIGTERM else proc.send_signal(signum)  # type: ignore[attr-defined]

    def spawn(self) -> None:
        ours, theirs = self.context.Pipe(duplex=True)
        proc = self.context.Process(target=_work, args=(theirs, self.threads, os.getcwd()),
                                    name=f"modelforge-worker-{len(self.workers)}")
        proc.start()
        theirs.close()
        self.workers[proc] = (ours, None)

    def run(self, pending: list[int], n_jobs: int, payload: Callable[[int], bytes],
            died: Callable[[int, int | None], Any]) -> None:
        """Runs the `pending` jobs (positions) until each has a result or the sweep is stopped. `payload`: what a
        worker is sent for a job; `died`: the result of a job whose worker died (given its exit code)."""
        for _ in range(min(max(1, n_jobs), len(pending))):
            self.spawn()
        while pending or any(job is not None for _, job in self.workers.values()):
            for proc, (conn, job) in list(self.workers.items()):
                if job is None and pending and not self.stop:
                    i = pending.pop(0)
                    conn.send_bytes(payload(i))
                    self.workers[proc] = (conn, i)
            busy = {proc: (conn, job) for proc, (conn, job) in self.workers.items() if job is not None}
            if not busy:
                break
            wait([conn for conn, _ in busy.values()] + [proc.sentinel for proc in busy], 1.0)
            for proc, (conn, job) in busy.items():
                assert job is not None
                if not self._returned(proc, conn, job) and not proc.is_alive():
                    self._bury(proc, conn, job, died)
                    if pending and not self.stop:
                        self.spawn()  # a new worker takes the dead one's place

    def _returned(self, proc: Any, conn: Connection, job: int) -> bool:
        import cloudpickle

        if conn.poll():
            try:
                self.results[job] = cloudpickle.loads(conn.recv_bytes())
                self.workers[proc] = (conn, None)
                return True
            except EOFError:
                pass
        return False

    def _bury(self, proc: Any, conn: Connection, job: int, died: Callable[[int, int | None], Any]) -> None:
        """A worker that ended without returning its job: a signal's status stops the sweep (the job was stopped,
        and checkpointed), anything else fails that job only."""
        proc.join()
        conn.close()
        del self.workers[proc]
        if proc.exitcode in (128 + signal.SIGTERM, 128 + signal.SIGINT):
            self.stop.append(proc.exitcode - 128)
        else:
            self.results[job] = died(job, proc.exitcode)

    def close(self) -> None:
        for proc, (conn, _) in self.workers.items():
            conn.close()  # idle workers read EOF and end
            proc.join(timeout=10)


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
    singleton_state = Singleton.get_state()

    def payload(i: int) -> bytes:
        return cloudpickle.dumps((initial_job_idx + i, job_overrides[i], hydra_context, config, task_function,
                                  singleton_state))

    def died(i: int, exitcode: int | None) -> Any:
        job_dir, sweep_config = _job_dir(hydra_context, config, job_overrides[i], initial_job_idx + i)
        return _died(job_dir, job_overrides[i], exitcode, sweep_config)

    pool = _Pool(_context(), max(1, (os.cpu_count() or 1) // max(1, min(n_jobs, len(job_overrides)))))
    saved = {s: signal.signal(s, pool.forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        pool.run(list(range(len(job_overrides))), n_jobs, payload, died)
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
        pool.close()
    if pool.stop:
        end(sweep_dir, SweepStopped(pool.stop[0]))
    return [pool.results[i] for i in range(len(job_overrides))]
