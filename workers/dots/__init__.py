"""Everything specific to the dots.ocr model that is not a backend: prompts, image sizes,
and (later) output parsing and rendering. Pure: no Django, no torch."""
