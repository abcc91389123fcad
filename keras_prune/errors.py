"""Errors a user can act on. The command line prints them as one line, no traceback."""

__all__ = ["PruneError", "TrainingDivergedError", "OutputDirError"]


class PruneError(ValueError):
    """A problem with the user's input or request, with what to do about it."""


class TrainingDivergedError(PruneError):
    """The loss became NaN or infinite."""


class OutputDirError(PruneError):
    """The output directory cannot be used for this run."""
