"""Write the eight-model report and take the README screenshot with headless Chromium.

Usage::

    python scripts/report_screenshot.py [--weights auto] [--out docs/images/report.png]

The report itself is written to a temporary folder (``--report PATH`` keeps it).
The screenshot shows the top of the page (header, comparison table, cross-model charts)
and the first model section; it fails if the page logged errors or the image is blank.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from napari_kernelspec.report import write_report
from napari_kernelspec.report.chromium import HeadlessChromium
from napari_kernelspec.report.images import decode_png

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="auto", choices=("auto", "pretrained", "random"))
    parser.add_argument("--report", help="where to keep the report (default: a temporary folder)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "images" / "report.png"))
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=2700, help="CSS pixels of page shown")
    parser.add_argument("--max-kb", type=int, default=600)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        report = args.report or Path(tmp) / "kernelspec-report.html"
        return _shoot(args, write_report(weights=args.weights, out=report).html)


def _shoot(args: argparse.Namespace, html: Path) -> int:
    with HeadlessChromium(width=args.width, height=1000) as browser:
        log = browser.open(html)
        if log.errors or log.dialogs:
            print(f"page errors: {log.errors + log.dialogs}", file=sys.stderr)
            return 1
        png = browser.screenshot(clip=(0, 0, args.width, args.height))
    pixels = decode_png(png)
    if float(pixels[..., :3].std()) < 5:
        print("the screenshot is blank", file=sys.stderr)
        return 1
    if len(png) > args.max_kb * 1024:
        print(f"screenshot is {len(png) // 1024} KB > {args.max_kb} KB", file=sys.stderr)
        return 1
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(png)
    print(f"{out} ({pixels.shape[1]}x{pixels.shape[0]}, {len(png) // 1024} KB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
