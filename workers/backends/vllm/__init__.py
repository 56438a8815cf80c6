"""The vLLM backend: dots.ocr in vLLM's OpenAI-compatible server.

- client.py: the HTTP client (streamed chat completions, cancel by closing, errors in words);
- launcher.py: the server ocrdash runs itself in a Docker container (launch, adopt, watch, stop);
- backend.py: the backend the worker holds (external or managed server; one page per call).
"""
