"""An offline page template for ``dvc plots diff`` / ``dvc plots show``: vega inlined, no CDN.

    python -m llmqfl.dvc_plots        # writes .dvc/plots.html (make setup and the Snakefile's onstart do)

DVC's own page loads vega, vega-lite and vega-embed from cdn.jsdelivr.net, so on a machine without
internet the plots page is blank. ``.dvc/config`` names ``plots.html_template = plots.html``; this
writes that template with the three libraries inlined from the copies the Snakemake package ships
(vega 5, vega-lite 5, vega-embed 6: what DVC's specs need). The template has no ``{scripts}``
placeholder, so DVC adds none of its CDN tags. It is generated, not committed (about 2 MB).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ".dvc/plots.html"  # .dvc/config: plots.html_template = plots.html (relative to .dvc/)
LIBRARIES = ("vega/vega.js", "vega-lite/vega-lite.js", "vega-embed/vega-embed.js")

PAGE = """<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">
    <title>DVC Plot</title>
    {inline}
    <style>
        table {{
            border-spacing: 15px;
        }}
    </style>
</head>
<body>
    {{plot_divs}}
</body>
</html>
"""


def assets_dir() -> Path:
    """Where the installed Snakemake keeps its vega libraries (its own report uses them)."""
    import snakemake

    return Path(snakemake.__file__).parent / "assets" / "data"


def template(assets: Path | None = None) -> str:
    """The page with every library in its own inline ``<script>``."""
    assets = assets or assets_dir()
    scripts = []
    for name in LIBRARIES:
        code = (assets / name).read_text(encoding="utf8").replace("</script", "<\\/script")
        scripts.append(f"<script>/* {name} */\n{code}\n</script>")
    return PAGE.format(inline="\n".join(scripts))


def write_template(root: Path = ROOT) -> Path:
    target = root / TEMPLATE
    target.write_text(template(), encoding="utf8")
    return target


def ensure_template(root: Path) -> Path | None:
    """Write the template if this is a DVC project without one (the Snakefile's onstart calls it).

    So a clone that ran its pipeline (``dvc repro`` starts snakemake) has the page ``dvc plots diff``
    needs even without ``make setup``; a run never fails over it (one warning instead).
    """
    target = root / TEMPLATE
    if not (root / ".dvc").is_dir() or target.is_file():
        return None
    try:
        return write_template(root)
    except (ImportError, OSError) as exc:
        import logging

        logging.getLogger(__name__).warning("offline plots template not written (%s): dvc plots diff needs "
                                            "`python -m llmqfl.dvc_plots`", exc)
        return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llmqfl.dvc_plots", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=str(ROOT), help="project folder (default: this checkout)")
    args = parser.parse_args(argv)
    try:
        print(write_template(Path(args.root)))
    except (ImportError, OSError) as exc:
        print(f"llmqfl: cannot write the offline plots template: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
