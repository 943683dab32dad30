"""What this machine has: the bound a request is checked against before memory is spent on it."""

from __future__ import annotations

import os

__all__ = ["physical_memory"]


def physical_memory() -> int | None:
    """This machine's physical memory in bytes, or None where the operating system does not say.

    A request larger than this can never be met, whatever else runs; one
    that fits may still fail, so this bounds requests and promises nothing.
    """
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows) or no such name
        return None
    return pages * page_size if pages > 0 and page_size > 0 else None
