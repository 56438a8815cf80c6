"""Everything specific to the dots.ocr model that is not a backend: its prompts (prompts.py),
image sizes (resize.py), boxes between the resized and the original image (boxes.py), parsing
what the model really answers (parse.py, lenient_json.py), and rendering pages as Markdown,
HTML, text and layout JSON (render.py, tables.py). Pure: no Django, no torch."""
