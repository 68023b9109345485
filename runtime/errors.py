"""The error type of user-caused failures, as the packages above the driver name it.

`UserError` is defined once, at the bottom layer (tpu_driver/errors.py, dependency-free so it
imports on the board); this module re-exports it under the name the CLI and the packages at or
above `runtime` use (`runtime.errors.UserError`).
"""
from tpu_driver.errors import UserError

__all__ = ["UserError"]
