"""The error types users see, and the one way modelforge words "this value is not one of those"."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ConfigError(ValueError):
    """A config value modelforge cannot use.

    The message is one paragraph that names the bad value and what would be valid; the command line prints it
    without a traceback and exits with status 2.
    """


class RunFailed(RuntimeError):
    """Training ran but could not finish usefully (for example the loss became NaN)."""


class RunInterrupted(Exception):  # noqa: N818 (a way a run ends, recorded as `interrupted`)
    """A signal (SIGTERM from a scheduler, Ctrl-C's SIGINT) stopped the run; its checkpoint is kept.

    `exit_status` is the shell's convention for death by that signal: 143 for SIGTERM, 130 for SIGINT.
    """

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_status = 128 + signum


class SweepStopped(Exception):  # noqa: N818 (a way a sweep ends, not an error)
    """SIGTERM or Ctrl-C stopped a sweep; what it had done (written jobs, group checkpoints) stays for `resume`.

    Raised by whatever was under way (the fused trainer, the wait for chunks elsewhere, the process pool);
    `modelforge.sweep.stops` writes the summaries, says how to continue and exits with `exit_status`.

    Attributes:
        during: what was under way, as the line says it (" while a fused group trained"), or "".
        continues: what continues it ("its checkpoint continues it"), before the resume command.
    """

    def __init__(self, signum: int, during: str = "", continues: str = "continue it with") -> None:
        super().__init__(signum, during, continues)
        self.signum, self.during, self.continues = signum, during, continues
        self.exit_status = 128 + signum


def closest(value: object, valid: Iterable[object], cutoff: float = 0.6) -> str | None:
    """The valid name nearest to `value`, or None when nothing is close.

    Example:
        >>> closest("val_acc", ["val_accuracy", "val_loss"])
        'val_accuracy'
    """
    found = difflib.get_close_matches(str(value), [str(v) for v in valid], n=1, cutoff=cutoff)
    return found[0] if found else None


def invalid(what: str, value: object, valid: Iterable[object], hint: str = "") -> ConfigError:
    """Builds a `ConfigError` for a value outside a known set: the value, the nearest valid one, all of them.

    Example:
        >>> str(invalid("activation", "relu7", ["relu", "tanh"]))
        "unknown activation 'relu7' (did you mean 'relu'?); valid: relu, tanh"
    """
    names = sorted(str(v) for v in valid)
    message = f"unknown {what} {value!r}"
    near = closest(value, names)
    if near:
        message += f" (did you mean {near!r}?)"
    message += f"; valid: {', '.join(names)}"
    if hint:
        message += f". {hint}"
    return ConfigError(message)
