"""Errors for bad user input, raised before any compute starts."""

from __future__ import annotations

from os import PathLike


class InputError(ValueError):
    """A user-supplied file or value is unusable.

    The message always names the file, the field, what was expected and what was found,
    so that a user can fix the input without reading a traceback.

    Parameters
    ----------
    source
        The file (or configuration key) that holds the bad value.
    field
        The column, header field or key inside ``source``.
    expected
        What the program needs.
    found
        What it found instead.
    hint
        Optional advice on how to fix it.
    """

    def __init__(
        self,
        source: str | PathLike[str],
        field: str,
        expected: str,
        found: str,
        hint: str | None = None,
    ) -> None:
        self.source = str(source)
        self.field = field
        self.expected = expected
        self.found = found
        self.hint = hint
        message = f"{self.source}: {field}: expected {expected}, found {found}"
        if hint:
            message += f". {hint}"
        super().__init__(message)


class NonFiniteResultError(RuntimeError):
    """A computed result holds NaN or infinite values; it is not written.

    Parameters
    ----------
    destination
        The output that would have held the result.
    what
        What was computed (e.g. ``"map"``).
    count
        How many values are not finite.
    """

    def __init__(self, destination: str | PathLike[str], what: str, count: int) -> None:
        self.destination = str(destination)
        super().__init__(
            f"{self.destination}: the computed {what} has {count} NaN or infinite values and "
            "was not written. Check the optics and CTF values of the input and the learning "
            "rates in the configuration"
        )


class CheckpointInUseError(InputError):
    """Another running process holds a stage's checkpoint folder.

    Two copies of one stage would write the same checkpoint and outputs; the second
    stops at once instead (exit code 2), naming the holder.

    Parameters
    ----------
    folder
        The checkpoint folder.
    holder
        Who holds it, as recorded in its lock file (host, PID, start time).
    """

    def __init__(self, folder: str | PathLike[str], holder: str) -> None:
        super().__init__(
            folder,
            "lock",
            "no other running copy of this stage",
            f"one running as {holder}",
            "End that process first (kill the PID on that host, or scancel its SLURM job), "
            "then re-run; it keeps its checkpoint, so the re-run resumes from it",
        )


class TrainingDivergedError(RuntimeError):
    """A training loss or parameter became NaN or infinite; nothing is written.

    Parameters
    ----------
    stage
        The stage whose optimisation diverged (e.g. ``"train-vae"``).
    where
        When it happened (e.g. ``"epoch 3, step 7"``).
    what
        What became non-finite (e.g. ``"training loss"``).
    value
        The offending value (NaN or ±inf).
    advice
        What to change, usually which learning rates to lower.
    """

    def __init__(self, stage: str, where: str, what: str, value: float, advice: str) -> None:
        self.stage = stage
        self.where = where
        super().__init__(
            f"{stage}: the {what} became {value} at {where}; the optimisation diverged and "
            f"no output was written. {advice}"
        )


class MemoryPlanError(InputError):
    """Even the smallest allowed batch of a step would not fit in the memory available.

    Raised before any compute, naming the settings that lower the need.

    Parameters
    ----------
    step
        What would run out of memory (e.g. ``"train-vae step"``).
    batch_key
        The configuration key of the batch size (e.g. ``"vae.batch_size"``).
    minimum
        The smallest batch that was tried.
    needed_bytes
        The estimated peak of a step at that batch.
    usable_bytes
        The memory the step may use (the capacity times the safety factor).
    settings
        The configuration keys that lower the need, most effective first.
    """

    def __init__(
        self,
        step: str,
        batch_key: str,
        minimum: int,
        needed_bytes: float,
        usable_bytes: float,
        settings: tuple[str, ...],
    ) -> None:
        self.needed_bytes = needed_bytes
        self.usable_bytes = usable_bytes
        self.settings = settings
        super().__init__(
            batch_key,
            step,
            f"a batch whose step fits in the usable memory ({usable_bytes / 1e9:.2f} GB)",
            f"{needed_bytes / 1e9:.2f} GB needed at batch {minimum}",
            "Lower one of " + ", ".join(settings) + " (or run on a device with more memory)",
        )
