"""Error types shared by every layer.

`InputError` is raised for bad input or usage. Its message must name the file, line, column or
option at fault *and* say how to fix it. The CLI turns it into exit code 2.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input or usage: the message names what is wrong, where, and the fix."""


class IncompleteStoreError(InputError):
    """A store was opened that a killed or still-running writer has not finished."""


class DiskFullError(InputError):
    """The file system or quota of an output is full; the message names the path being written."""


class DamagedStoreError(InputError):
    """A stored chunk is missing, truncated or fails its checksum (names store, array, chunk, stage)."""
