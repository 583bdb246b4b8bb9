"""`python -m modelforge` without paying TensorFlow's import each time: a fork server for the tests.

Importing TensorFlow and Keras costs 4-7 s of CPU per process here, more than a test's one-epoch run itself, and
the suite starts a few hundred commands. A server process imports them once (per pytest worker); each command is
then a fork of it that runs `python -m modelforge ARGS` (or a script) as the interpreter would (`runpy`,
`sys.argv`, the caller's folder, environment and stdin/stdout/stderr, fresh signal handlers) and ends with the
command's own exit.
It is a real process with its own pid: a test kills it, signals it and waits for it as it would a cold one.

What a warm command cannot show is what happens before and during the import: TensorFlow's start-up lines, how
long the import takes, which modules a command imports, and anything read from the environment at import time.
Tests of those start the interpreter cold (`run_module(..., cold=True)` or `subprocess` directly), and a request
whose environment differs from the server's in a variable read at import time (`IMPORT_TIME`) runs cold by
itself. TensorFlow is fork-safe only before its runtime starts, so the server imports and never computes.

Standard library only at module level: the docs test's `python` shim runs this file with `-S -E` as the client.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Set (to 1) by `make test-cold`: every command runs cold, as a user's does, so nothing the server does is relied on.
COLD_SUITE = "MODELFORGE_TESTS_COLD"
# Read when TensorFlow, Keras or modelforge is imported: a command that sets one differently runs cold.
IMPORT_TIME = ("KERAS_BACKEND", "MODELFORGE_TF_LOGS", "TF_CPP_MIN_LOG_LEVEL", "TF_CPP_MAX_VLOG_LEVEL",
               "TF_ENABLE_ONEDNN_OPTS", "CUDA_VISIBLE_DEVICES", "PYTHONPATH", "PYTHONHASHSEED", "PYTHONWARNINGS")
# What the server imports: everything a training command imports that takes long.
# MLflow, Optuna and matplotlib stay out: they set logging or read the environment when imported.
PRELOAD = ("tensorflow", "keras", "sklearn.datasets", "hydra", "modelforge.cli.main", "modelforge.cli.app")
_REPO = Path(__file__).resolve().parents[1]
_LENGTH = struct.Struct("!I")


# ---------------------------------------------------------------------------------------------------- the server


def serve(path: str) -> None:
    """Imports the heavy modules, then forks one child per request on the Unix socket at `path` until stdin
    closes (the pytest process that started the server has ended)."""
    import importlib

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # as modelforge sets it before its own import
    for name in PRELOAD:
        importlib.import_module(name)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path + ".new")
    listener.listen(64)
    os.rename(path + ".new", path)  # the client waits for the name: once it is there, the server accepts
    children: dict[int, socket.socket] = {}
    tied: dict[socket.socket, int] = {}  # a shim's connection: its end (kill -9 of the shim) kills the command
    while True:
        ready, _, _ = select.select([listener, sys.stdin, *tied], [], [], 0.02 if children else 1.0)
        if sys.stdin in ready and not os.read(sys.stdin.fileno(), 1024):
            return
        for conn in [c for c in ready if c in tied]:
            if not conn.recv(1):  # before accepting anything new: the next command may need its folder
                pid = tied.pop(conn)
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                children.pop(pid).close()
        if listener in ready:
            _accept(listener, children, tied)
        _reap(children, tied)


def _accept(listener: socket.socket, children: dict[int, socket.socket], tied: dict[socket.socket, int]) -> None:
    """Takes one request: forks its command, or declines it (`cold`) when its environment needs a fresh import."""
    conn, _ = listener.accept()
    request, fds = _receive(conn)
    differ = [name for name in IMPORT_TIME if request["env"].get(name) != os.environ.get(name)]
    if differ:
        conn.sendall(json.dumps({"cold": differ}).encode() + b"\n")
        for fd in fds:
            os.close(fd)
        conn.close()
        return
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        _child(request, fds, [listener.fileno(), sys.stdin.fileno(), *(c.fileno() for c in children.values()),
                              conn.fileno()])
    for fd in fds:
        os.close(fd)
    conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
    children[pid] = conn
    if request.get("tied"):
        tied[conn] = pid


def _reap(children: dict[int, socket.socket], tied: dict[socket.socket, int]) -> None:
    """Tells each ended command's caller its exit status."""
    while children:
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            return
        conn = children.pop(pid)
        tied.pop(conn, None)
        try:
            conn.sendall(json.dumps({"code": os.waitstatus_to_exitcode(status)}).encode() + b"\n")
        except OSError:  # the caller gave up on it
            pass
        conn.close()


def _receive(conn: socket.socket) -> tuple[dict, list[int]]:
    data, fds, _, _ = socket.recv_fds(conn, 1 << 16, 3)
    while len(data) < _LENGTH.size or len(data) < _LENGTH.size + _LENGTH.unpack(data[:_LENGTH.size])[0]:
        more = conn.recv(1 << 16)
        if not more:
            raise EOFError("the client hung up mid-request")
        data += more
    return json.loads(data[_LENGTH.size:]), list(fds)


def _child(request: dict, fds: list[int], inherited: list[int]) -> None:
    """The forked command: becomes `python -m modelforge ARGS` in the caller's folder and environment."""
    code = 1
    try:
        for fd in inherited:
            os.close(fd)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        sys.stdin = open(0, closefd=False)  # noqa: SIM115 - fd 0 lives as long as the process
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        # A fresh interpreter's handlers; SIGINT ignored as `cmd &` in a script starts it.
        signal.signal(signal.SIGINT, signal.SIG_IGN if request["ignore_ctrl_c"] else signal.default_int_handler)
        for name in ("SIGTERM", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGCHLD", "SIGPIPE"):
            signal.signal(getattr(signal, name), signal.SIG_IGN if name == "SIGPIPE" else signal.SIG_DFL)
        import runpy

        if request.get("script"):  # `python SCRIPT ARGS`: the script's folder first on the path
            sys.argv = [request["script"], *request["args"]]
            sys.path[0] = os.path.dirname(os.path.realpath(request["script"]))
            runpy.run_path(request["script"], run_name="__main__")
        else:
            sys.argv = ["-m", *request["args"]]
            sys.path[0] = request["cwd"]  # as `python -m` puts the working folder first
            runpy.run_module("modelforge", run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        if not isinstance(done.code, int) and done.code is not None:
            print(done.code, file=sys.stderr)
    except KeyboardInterrupt:  # an interpreter ends by the signal itself (exit -2)
        import traceback

        traceback.print_exc()
        code = -signal.SIGINT
    except BaseException:  # noqa: BLE001 - printed as the interpreter would, then the exit status says it
        import traceback

        traceback.print_exc()
    finally:
        _end(code)


def _end(code: int) -> None:
    """What an interpreter does at its end, short of freeing every module: waits for its threads, runs the
    atexit functions (a worker pool's shutdown, the stderr filter's), flushes, and exits with `code`."""
    import atexit
    import threading

    try:
        threading._shutdown()  # type: ignore[attr-defined]  # the interpreter's own step, non-daemon threads
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        if code == -signal.SIGINT:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        os._exit(code)


# ---------------------------------------------------------------------------------------------------- the client


class _Server:
    """This process's server: started on first use, ended with the process (its stdin closes)."""

    proc: subprocess.Popen[bytes] | None = None
    path = ""

    @classmethod
    def address(cls) -> str:
        if cls.proc is None or cls.proc.poll() is not None:
            folder = tempfile.mkdtemp(prefix="mf-warm-")
            cls.path = os.path.join(folder, "socket")
            log = open(os.path.join(folder, "server.log"), "wb")  # noqa: SIM115 - the server's for its life
            cls.proc = subprocess.Popen([sys.executable, "-m", "tests.warm", cls.path], cwd=_REPO,
                                        stdin=subprocess.PIPE, stdout=log, stderr=log)
            atexit.register(cls.stop, cls.proc, folder)
        end = time.monotonic() + 300
        while not os.path.exists(cls.path):
            if cls.proc.poll() is not None or time.monotonic() > end:
                log_text = Path(cls.path).with_name("server.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"the warm server did not start:\n{log_text}")
            time.sleep(0.05)
        return cls.path

    @staticmethod
    def stop(proc: subprocess.Popen[bytes], folder: str) -> None:
        """Ends the server (its stdin closes) and removes its folder."""
        import shutil

        proc.stdin.close()  # type: ignore[union-attr]
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(folder, ignore_errors=True)


class Cold(Exception):
    """The server declines a command: its environment sets an import-time variable differently."""


class WarmProcess:
    """A forked `python -m modelforge ARGS` (or `python SCRIPT ARGS`), with the parts of `subprocess.Popen` the
    tests use."""

    def __init__(self, cwd: str | Path, args: list[str], env: dict[str, str], stdout: int | None = None,
                 stderr: int | None = None, text: bool = True, ignore_ctrl_c: bool = False,
                 address: str | None = None, inherit_stdin: bool = False, tied: bool = False,
                 script: str | None = None) -> None:
        if os.environ.get(COLD_SUITE) == "1":
            raise Cold(COLD_SUITE)
        self.args = [sys.executable, *([script] if script else ["-m", "modelforge"]), *args]
        self.returncode: int | None = None
        mine, theirs = self._streams(stdout, stderr, text, inherit_stdin)
        self._conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._conn.connect(address or _Server.address())
        body = json.dumps({"cwd": str(Path(cwd).resolve()), "env": env, "args": list(args),
                           "ignore_ctrl_c": ignore_ctrl_c, "tied": tied, "script": script}).encode()
        socket.send_fds(self._conn, [_LENGTH.pack(len(body)) + body], theirs)
        for fd in theirs[1:]:
            os.close(fd)
        os.close(theirs[0])
        self._lines = self._conn.makefile("rb")
        answer = json.loads(self._lines.readline())
        if "cold" in answer:
            self._conn.close()
            raise Cold(", ".join(answer["cold"]))
        self.pid: int = answer["pid"]
        self.stdout, self.stderr = mine

    @staticmethod
    def _streams(stdout: int | None, stderr: int | None, text: bool, inherit_stdin: bool) -> tuple[list, list[int]]:
        """The caller's ends (file objects or None) and the child's fds 0, 1, 2."""
        mine, theirs = [], [os.dup(0) if inherit_stdin else os.open(os.devnull, os.O_RDONLY)]
        for wanted, own in ((stdout, 1), (stderr, 2)):
            if wanted == subprocess.PIPE:
                read, write = os.pipe()
                mine.append(open(read, "r" if text else "rb"))  # noqa: SIM115 - the caller's, as Popen's
                theirs.append(write)
            else:
                mine.append(None)
                theirs.append(os.open(os.devnull, os.O_WRONLY) if wanted == subprocess.DEVNULL else os.dup(own))
        return mine, theirs

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            if timeout is not None and not select.select([self._conn], [], [], timeout)[0]:
                raise subprocess.TimeoutExpired(self.args, timeout)
            line = self._lines.readline()
            self.returncode = json.loads(line)["code"] if line else -signal.SIGKILL
            self._lines.close()
            self._conn.close()
        return self.returncode

    def communicate(self, timeout: float | None = None) -> tuple:
        end = None if timeout is None else time.monotonic() + timeout
        chunks: dict = {f: [] for f in (self.stdout, self.stderr) if f is not None}
        while open_ := [f for f in chunks if not f.closed]:
            left = None if end is None else max(0.0, end - time.monotonic())
            ready = select.select(open_, [], [], left)[0]
            if not ready:
                raise subprocess.TimeoutExpired(self.args, timeout)
            for f in ready:
                data = os.read(f.fileno(), 1 << 16)
                if data:
                    chunks[f].append(data)
                else:
                    f.close()
        self.wait(None if end is None else max(0.0, end - time.monotonic()))
        joined = {f: b"".join(parts) for f, parts in chunks.items()}
        text = {f: data.decode(errors="replace") if "b" not in f.mode else data for f, data in joined.items()}
        return text.get(self.stdout) if self.stdout else None, text.get(self.stderr) if self.stderr else None

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def run(cwd: str | Path, args: list[str], env: dict[str, str], timeout: float | None = None
        ) -> subprocess.CompletedProcess[str]:
    """`subprocess.run([python, -m, modelforge, *args], capture_output=True, text=True)`, warm (`Cold` when the
    server declines it)."""
    proc = WarmProcess(cwd, args, env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def shim_folder() -> Path:
    """A folder holding a `python` that runs `python -m modelforge ...` and `python SCRIPT.py ...` warm through
    this process's server, and anything else as the venv's python: put first on a script's PATH (under
    `make test-cold`, the venv's own folder: every command cold)."""
    if os.environ.get(COLD_SUITE) == "1":
        return Path(sys.executable).parent
    address = _Server.address()
    folder = Path(address).with_name("bin")
    if not folder.exists():
        folder.mkdir()
        python = folder / "python"
        python.write_text(f"""#!/bin/sh
warm=no
case "$1" in
  -m) [ "$2" = "modelforge" ] && warm=yes ;;
  *.py) [ -f "$1" ] && warm=yes ;;
esac
[ $warm = yes ] && exec "{sys.executable}" -S -E "{__file__}" --shim "{address}" "{sys.executable}" "$@"
exec "{sys.executable}" "$@"
""")
        python.chmod(0o755)
    return folder


def shim(address: str, python: str, argv: list[str]) -> int:
    """The docs test's `python -m modelforge ARGS` or `python SCRIPT ARGS`: warm, in this process's folder,
    environment and streams; the exit status is the command's, and SIGINT/SIGTERM reach the command. Cold
    (`python`) when the server declines."""
    script, args = (None, argv[2:]) if argv[0] == "-m" else (argv[0], argv[1:])
    try:
        proc = WarmProcess(os.getcwd(), args, dict(os.environ), address=address, inherit_stdin=True, tied=True,
                           script=script)
    except Cold:
        os.execv(python, [python, *argv])
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda number, _frame: proc.send_signal(number))
    code = proc.wait()
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    if sys.argv[1] == "--shim":  # python -S -E warm.py --shim SOCKET PYTHON (-m modelforge | SCRIPT.py) ARGS
        raise SystemExit(shim(sys.argv[2], sys.argv[3], sys.argv[4:]))
    serve(sys.argv[1])
