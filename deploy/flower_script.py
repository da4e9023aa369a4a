"""``python -m deploy.flower_script NAME ARGS...``: run Flower's console script ``NAME``
(``flower-superlink``, ``flower-supernode``) with colour only on a terminal.

Flower's console handler colours every line whatever its stream, so a daemon logging to a file,
a pipe or the journal would write escape codes; the project's apps do the same in their own
processes (``client.app``, ``server.app``).
"""

from __future__ import annotations

import logging
import sys
from importlib.metadata import entry_points

from aclecg_core.fed.console import colour_only_on_terminals


def main(argv: list[str]) -> None:
    """Run console script ``argv[0]`` with arguments ``argv[1:]`` (as its own command would)."""
    if not argv:
        raise SystemExit("usage: python -m deploy.flower_script NAME [ARGS...]")
    name, *args = argv
    scripts = entry_points(group="console_scripts", name=name)
    if not scripts:
        raise SystemExit(f"{name}: no such console script installed")
    run = next(iter(scripts)).load()  # imports flwr, which installs its console handler
    colour_only_on_terminals(logging.getLogger("flwr"))
    sys.argv = [name, *args]
    sys.exit(run())


if __name__ == "__main__":
    main(sys.argv[1:])
