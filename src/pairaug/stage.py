"""What every stage script shares: params loading and a clean exit on user errors."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from pairaug.errors import PairaugError

log = logging.getLogger("pairaug")


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main; a PairaugError prints one clear line and exits 2 (no traceback)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    quiet_libraries()
    try:
        main()
    except PairaugError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted: outputs written so far are kept; rerun to resume", file=sys.stderr)
        sys.exit(130)


def quiet_libraries() -> None:
    """HTTP client chatter stays out of stage logs (it could carry request details)."""
    for name in ("httpx", "openai", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)
