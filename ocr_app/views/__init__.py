"""The app's views, grouped by what they serve: pages.py (what people look at), files.py (files and
downloads), actions.py (what the buttons and forms do), profile.py (API tokens), monitoring.py
(/metrics and /healthz). The REST API's views are ocr_app/api/; every address is ocr_app/urls.py."""
