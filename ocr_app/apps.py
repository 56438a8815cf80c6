from django.apps import AppConfig


class OcrAppConfig(AppConfig):
    name = "ocr_app"
    verbose_name = "OCR jobs"

    def ready(self) -> None:
        from django.conf import settings
        from PIL import Image

        # Pillow's own bomb guard, set to our limit in every process (web and worker).
        Image.MAX_IMAGE_PIXELS = settings.MAX_IMAGE_PIXELS

        from ocr_app import files, signals

        signals.connect()
        files.connect()  # a deleted job's files go with it
