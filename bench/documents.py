"""Born-digital PDF pages read from their text layer against OCR, and the memory a searchable PDF
of a large document takes while it is written.

    .venv/bin/python bench/documents.py [--pages 200] [--runs 5]

1. A born-digital A4 page (fpdf2, DejaVu Sans, 30 lines) is rendered at 200 dpi and read (a) from
   its text layer (core/textlayer.py) and (b) by rapidocr, the CPU engine; the medians of --runs
   and their ratio are printed, with the classification time per page at upload.
2. A --pages page PDF, each page with text and a 2.7 MiB scan, gets its searchable copy
   (core/searchable.py, every page with 30 text boxes) written to a temporary file, in a process of
   its own; the growth of that process's peak memory (ru_maxrss) is printed next to the sizes of the
   input and the output: qpdf copies the pages from the file as it writes, so the growth stays a
   small fraction of the document.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FONT = ROOT / "tests" / "data" / "DejaVuSans.ttf"
LINES = [f"Line {n:02d}: the quick brown fox jumps over the lazy dog, invoice 2041-{n}" for n in range(30)]


def born_digital(pages: int) -> bytes:
    from fpdf import FPDF

    pdf = FPDF(unit="pt", format=(595, 842))
    pdf.add_font("dejavu", fname=str(FONT))
    pdf.set_font("dejavu", size=11)
    for _ in range(pages):
        pdf.add_page()
        for row, line in enumerate(LINES):
            pdf.text(56, 80 + 24 * row, line)
    return bytes(pdf.output())


def median_seconds(fn, runs: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def text_layer_against_ocr(runs: int) -> None:
    from core import pdf, textlayer
    from workers.backends.rapidocr_backend import RapidOcrBackend

    data = born_digital(1)
    image, _dpi = pdf.render_page(data, 0)
    classify = median_seconds(lambda: textlayer.classify_pages(data), runs)
    layer = median_seconds(lambda: textlayer.read_lines(data, 0, image.size), runs)
    engine = RapidOcrBackend()
    engine.load({"language": "multi", "allow_download": False})
    ocr = median_seconds(lambda: engine.ocr(image, "text", lambda: False), runs)
    print(f"classify one page at upload: {classify * 1000:.1f} ms (median of {runs})")
    print(f"read from the text layer:    {layer * 1000:.1f} ms per page")
    print(f"read by rapidocr (CPU):      {ocr * 1000:.0f} ms per page")
    print(f"text layer / OCR:            1 : {ocr / layer:.0f}")


def born_digital_with_scans(pages: int, folder: Path) -> Path:
    """--pages pages of text, each with a 1200 × 800 scan of noise (~2.7 MiB, incompressible)."""
    import os

    from fpdf import FPDF
    from PIL import Image

    pdf = FPDF(unit="pt", format=(595, 842))
    pdf.add_font("dejavu", fname=str(FONT))
    pdf.set_font("dejavu", size=11)
    for _ in range(pages):
        pdf.add_page()
        for row, line in enumerate(LINES[:10]):
            pdf.text(56, 80 + 24 * row, line)
        scan = Image.frombytes("RGB", (1200, 800), os.urandom(1200 * 800 * 3))
        pdf.image(scan, x=56, y=400, w=480, h=320)
    path = folder / "input.pdf"
    pdf.output(str(path))
    return path


CHILD = """
import io, resource, sys, tempfile, time
sys.path.insert(0, {root!r})
from core import searchable
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if {write}:
    boxes = [searchable.TextBox(f"Line {{n}} of the page", (150, 200 + 66 * n, 1500, 250 + 66 * n)) for n in range(30)]
    texts = (searchable.PageText((1654, 2339), boxes) for _ in range({pages}))
    with open({path!r}, "rb") as source, tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        searchable.searchable_from_pdf(source, texts, out)
        print(time.perf_counter() - start, out.tell())
else:
    print(0, 0)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((peak - before) * 1024, peak * 1024)
"""


def searchable_memory(pages: int) -> None:
    import subprocess

    with tempfile.TemporaryDirectory() as folder:
        path = born_digital_with_scans(pages, Path(folder))
        size_in = path.stat().st_size
        runs = {}
        for write in (False, True):
            code = CHILD.format(root=str(ROOT), write=write, pages=pages, path=str(path))
            lines = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
            first, second = lines.stdout.split("\n")[:2]
            seconds, size_out = (float(v) for v in first.split())
            grown, peak = (int(v) for v in second.split())
            runs[write] = (seconds, size_out, grown, peak)
    seconds, size_out, grown, peak = runs[True]
    print(f"searchable PDF of {pages} pages: {seconds:.1f} s, {seconds / pages * 1000:.0f} ms per page")
    print(
        f"input {size_in / 2**20:.0f} MiB, output {size_out / 2**20:.0f} MiB; peak memory while writing grew "
        f"{grown / 2**20:.0f} MiB ({grown / size_in:.2f} × the input); its peak {peak / 2**20:.0f} MiB in all, "
        f"{runs[False][3] / 2**20:.0f} MiB for the same process that writes nothing"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    searchable_memory(args.pages)
    text_layer_against_ocr(args.runs)


if __name__ == "__main__":
    main()
