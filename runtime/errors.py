"""Errors shared by every package (dependency-free so it imports on the board)."""


class UserError(Exception):
    """An error caused by input or environment (bad file, missing toolchain, wrong chip).

    The CLI prints it as one line naming what is wrong and what to do, exit code 2; never a
    traceback. Library code raises subclasses with the same contract.
    """
