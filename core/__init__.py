"""The pure core: what both the web app (ocr_app/) and the worker (workers/) stand on.

It imports no Django, Celery, Channels, ocr_app, dashboard or workers; only the standard library
and light libraries (Pillow, pypdfium2, pynvml, docker, requests, PyYAML). The web app imports the
core and nothing else of the worker side; the worker reaches the web app only from
workers/tasks.py. pyproject.toml's import contracts hold this (tests/unit/test_import_rules.py).
"""
