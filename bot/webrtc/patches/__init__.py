"""One module per reach into aiortc/aioice, each with ``probe`` and ``install`` (see compat)."""
