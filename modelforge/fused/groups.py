"""A sweep's jobs in fused groups: which jobs train together, in chunks of how many arms, with which checkpoint.

Jobs whose configs are equal but for their per-arm keys (`core.config.keys`: the initializer, the seed, the
optimizer's per-arm scalars, the objective, and keys that cannot change results) form a group; a group trains
as one model (`modelforge.fused.trainer`), in chunks of at most `max_arms` arms (null: as many as half the
machine's free memory holds, by the plan's estimate). Each chunk's arms are attached to their jobs (`Job.arm`) for the
launcher to hand to each job's run. Composing the jobs (Hydra) is the sweep layer's; nothing here imports
Hydra.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from modelforge.core.config.keys import dotted
from modelforge.core.config.schema import STRUCTURAL_RULES
from modelforge.core.names import counted
from modelforge.errors import SweepStopped
from modelforge.fused.handoff import Arm
from modelforge.system.signals import handled

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from modelforge.core.config.schema import RunConfig
    from modelforge.core.init.plan import Plan

# The sweep folder's subfolder for the fused groups' checkpoints (removed once every job is written).
FUSED_DIR = ".fused"
# Without max_arms, a chunk may take this share of the memory free when the sweep starts.
MEMORY_SHARE = 0.5


@dataclass
class Job:
    """One job of the sweep: its index, overrides, Hydra config, and (if it is modelforge's) its run config."""

    idx: int
    overrides: list[str]
    sweep_config: DictConfig
    run: RunConfig | None = None
    alone: str | None = None  # why it trains on its own
    # It completed before this resumed sweep: it keeps its place in its chunk (so the chunk's checkpoint is
    # found under its name) but gets no arm; its run reports its result untouched.
    done: bool = False
    key: str = ""
    folder: Path = field(default_factory=Path)
    arm: Arm | None = None  # its epochs, once its group trained: handed to its run by the launcher

    @property
    def config(self) -> RunConfig:
        """Its run config: only modelforge's jobs are grouped, so only theirs is asked for."""
        if self.run is None:
            raise ValueError(f"job {self.idx} ({' '.join(self.overrides)}) is not modelforge's")
        return self.run


def group_key(resolved: Mapping[str, object]) -> str:
    """The config without the keys arms may differ in (`core.config.keys`): jobs with equal keys train as one model.

    Example:
        >>> a = group_key({"seed": 0, "optimizer": {"name": "adam", "learning_rate": 0.1}, "model": {"units": 8}})
        >>> b = group_key({"seed": 1, "optimizer": {"name": "adam", "learning_rate": 0.2}, "model": {"units": 8}})
        >>> a == b, a == group_key({"seed": 0, "optimizer": {"name": "sgd"}, "model": {"units": 8}})
        (True, False)
    """
    shared = dotted(resolved, lambda meaning: not meaning.per_arm)
    # A key arms may differ in only while the structure stays: its values that change the structure join the key.
    structural = {k: v for k, v in dotted(resolved, lambda meaning: meaning.structure).items()
                  if v in STRUCTURAL_RULES}
    return json.dumps({**shared, **structural}, sort_keys=True)


def chunk_size(max_arms: int | None, plan: Plan, run: RunConfig) -> int:
    """How many arms one chunk trains: `max_arms`, else as many as MEMORY_SHARE of the free memory holds."""
    if max_arms:
        return max(1, int(max_arms))
    from modelforge.core.init.memory import available_memory, estimate

    per_arm = estimate(plan, run.trainer.batch_size, run.optimizer.name).total
    free = available_memory()
    return max(1, int(MEMORY_SHARE * free // max(per_arm, 1))) if free else 64


def chunk_checkpoint(sweep_dir: Path, members: Sequence[Job]) -> Path:
    """Where a chunk's checkpoint lives: named by its config and its jobs, so a resumed sweep finds it."""
    name = hashlib.sha1(f"{members[0].key}|{[m.idx for m in members]}".encode()).hexdigest()[:16]
    return sweep_dir / FUSED_DIR / f"{name}.npz"


def chunk_digest(members: Sequence[Job]) -> str:
    """What a chunk's checkpoint belongs to: every arm's result-affecting config, in order (another sweep's
    chunk of the same name, or an edited one, is not restored)."""
    from modelforge.core.config.digest import record

    return hashlib.sha256(json.dumps([record(m.config.resolved)["digest"] for m in members]).encode()).hexdigest()


@contextlib.contextmanager
def training_alone(checkpoint: Path, label: str) -> Iterator[None]:
    """Holds the chunk's lock (`<checkpoint>.lock`, flock) while it trains: a chunk left running by a driver that
    was killed, and a `resume` of its sweep, never train one group at once.

    Raises:
        ConfigError: another process trains the chunk now, naming its pid.
    """
    from modelforge.errors import ConfigError

    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(checkpoint.with_suffix(".lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            raise ConfigError(f"{label} is being trained by another process now (pid {holder}: a chunk of this "
                              "sweep still running after its driver was killed); wait for it to end, or stop it, "
                              f"then resume the sweep ({checkpoint.parent.parent})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing drops the lock


def _progress(label: str, epochs: int) -> Callable[[int], None]:
    """One line per group on a terminal, rewritten after each epoch (nothing extra in a log file)."""

    def show(epoch: int) -> None:
        if sys.stdout.isatty():
            print(f"\r{label}: epoch {epoch}/{epochs}", end="\n" if epoch == epochs else "", flush=True)

    return show


def _groups(jobs: Sequence[Job]) -> list[list[Job]]:
    """The jobs that may fuse, by group; a job alone in its group is marked to train on its own."""
    found: dict[str, list[Job]] = {}
    for job in jobs:
        if job.run is not None and job.alone is None:
            found.setdefault(job.key, []).append(job)
    for members in found.values():
        if len(members) == 1:
            members[0].alone = "no other job shares its config but for what fuses"
    rules = sorted({j.config.residual.name for j in jobs if j.run is not None})
    adding = [r for r in rules if r in STRUCTURAL_RULES]
    if adding and len(rules) > 1:
        verb = "adds" if len(adding) == 1 else "add"
        print(f"fused: residual={' and '.join(adding)} {verb} a layer at each residual branch's end, so its jobs "
              "fuse apart from the others", flush=True)
    return [members for members in found.values() if len(members) > 1]


def _train_chunk(chunk: list[Job], label: str, sweep_dir: Path, stop: Callable[[], int | None]) -> Path | None:
    """Sets up and trains one chunk, attaching each arm to its job; returns its checkpoint (None: it cannot
    fuse, and each of its jobs says why)."""
    from modelforge.fused.eligibility import run_refused
    from modelforge.fused.trainer import train_group
    from modelforge.run.setup import prepare

    with contextlib.redirect_stdout(io.StringIO()):  # each arm's set-up would print its device line
        sessions = [prepare(job.config) for job in chunk]
    reason = run_refused(sessions[0])
    if reason is not None:
        for job in chunk:
            job.alone = reason
        return None
    epochs = chunk[0].config.trainer.epochs
    print(f"{label}: {counted(len(chunk), 'arm')} as one model ({counted(epochs, 'epoch')})", flush=True)
    tick = time.perf_counter()
    checkpoint = chunk_checkpoint(sweep_dir, chunk)
    with training_alone(checkpoint, label):
        arms = train_group(sessions, on_epoch=_progress(label, epochs), checkpoint=checkpoint, stop=stop,
                           belongs={"config": chunk_digest(chunk), "token": None},
                           on_restore=lambda done: print(f"{label}: continues from its checkpoint after "
                                                         f"{counted(done, 'epoch')}", flush=True))
    for job, arm, session in zip(chunk, arms, sessions, strict=True):
        arm.fused["group"] = label
        arm.session = session
        job.arm = None if job.done else arm
    print(f"{label}: trained in {time.perf_counter() - tick:.1f} s; writing each job's folder", flush=True)
    return checkpoint


# A chunk: its label (`fused group 2, chunk 1`) and its jobs, trained as one model.
Chunk = tuple[str, list[Job]]


def plan_chunks(jobs: list[Job], max_arms: int | None) -> list[Chunk]:
    """The chunks the jobs that may fuse train in (no TensorFlow: the chunk size comes from the plan's memory
    estimate); a job alone in its group is marked to train on its own, and a resumed sweep's chunk whose jobs
    were all written is left out."""
    from modelforge.run.setup import plan_for

    chunks: list[Chunk] = []
    for number, members in enumerate(_groups(jobs), start=1):
        size = chunk_size(max_arms, plan_for(members[0].config), members[0].config)
        for start in range(0, len(members), size):
            chunk = members[start:start + size]
            if not all(job.done for job in chunk):
                label = f"fused group {number}" + (f", chunk {start // size + 1}" if len(members) > size else "")
                chunks.append((label, chunk))
    return chunks


def train_chunks(chunks: list[Chunk], sweep_dir: Path, stop: Callable[[], int | None]) -> list[Path]:
    """Trains each chunk as one model, attaching each arm to its job; returns the chunks' checkpoints."""
    checkpoints: list[Path] = []
    for label, chunk in chunks:
        found = _train_chunk(chunk, label, sweep_dir, stop)
        if found is not None:
            checkpoints.append(found)
    return checkpoints


def train_fused(chunks: list[Chunk], sweep_dir: Path) -> list[Path]:
    """The fused groups' training, stopped cleanly by SIGTERM or Ctrl-C: the checkpoint of the last complete
    epoch stays and `SweepStopped` carries the signal up to the sweep (`modelforge.sweep.stops`). A group
    checkpoint this modelforge cannot read is a `ConfigError`, before anything is trained or written."""
    from modelforge.fused.trainer import GroupStopped

    received: list[int] = []
    with handled(lambda signum, frame: received.append(signum)) as saved:
        if saved is None:  # a worker's thread: its host handles signals
            return train_chunks(chunks, sweep_dir, stop=lambda: None)
        try:
            checkpoints = train_chunks(chunks, sweep_dir, stop=lambda: received[0] if received else None)
            if received:
                raise GroupStopped(received[0], -1)
        except GroupStopped as err:
            raise SweepStopped(err.signum, " while a fused group trained", "its checkpoint continues it") from None
    return checkpoints
