"""``python -m llmqfl.stages.check CONFIG.yaml...``: the Snakefile's parse-time check, without Snakemake.

Later files win, as with ``snakemake --configfile``; a problem is one ``llmqfl:`` line and exit 1.
The schema is checked before the data modules (pandas) are imported, so a bad value answers fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from llmqfl.config import read_settings
from llmqfl.errors import LlmqflError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llmqfl-check", description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="+", help="config files, merged in order")
    args = parser.parse_args(argv)
    try:
        settings = read_settings(args.configs)
        from llmqfl.data.preflight import preflight

        preflight(settings)
    except LlmqflError as exc:
        print(f"llmqfl: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
