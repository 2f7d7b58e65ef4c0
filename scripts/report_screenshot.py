"""Write the eight-model report and take the README screenshot with headless Chromium.

Usage::

    python scripts/report_screenshot.py [--weights auto] [--out docs/images/report.png]

Chromium is driven by Playwright for Python (the ``testing`` extra) with the system's browser
(``--chromium``, default ``/usr/bin/chromium``): no browser download. The report itself is
written to a temporary folder (``--report PATH`` keeps it). The screenshot shows the top of
the page (header, comparison table, cross-model charts) and the first model section; it fails
if the page logged errors or the image is blank.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from playwright.sync_api import sync_playwright

from napari_kernelspec.report import write_report

ROOT = Path(__file__).resolve().parents[1]
ARGS = ("--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--hide-scrollbars")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="auto", choices=("auto", "pretrained", "random"))
    parser.add_argument("--report", help="where to keep the report (default: a temporary folder)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "images" / "report.png"))
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="the browser binary")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=2700, help="CSS pixels of page shown")
    parser.add_argument("--max-kb", type=int, default=600)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        report = args.report or Path(tmp) / "kernelspec-report.html"
        return _shoot(args, write_report(weights=args.weights, out=report, progress=True).html)


def _shoot(args: argparse.Namespace, html: Path) -> int:
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": args.width, "height": 1000})
            page.on("console", lambda m: m.type == "error" and errors.append(m.text))
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("dialog", lambda d: (errors.append(f"dialog: {d.message}"), d.dismiss()))
            page.goto(html.resolve().as_uri(), wait_until="load")
            png = page.screenshot(
                clip={"x": 0, "y": 0, "width": args.width, "height": args.height},
                full_page=True,
            )
        finally:
            browser.close()
    if errors:
        print(f"page errors: {errors}", file=sys.stderr)
        return 1
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    if float(pixels.std()) < 5:
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
