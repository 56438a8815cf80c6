"""The web container's health check: GET /healthz on this container, 0 when it says ok.

Standard library only (it runs every 30 s: no Django start-up). It sends the first name of
OCRDASH_ALLOWED_HOSTS as the Host header, since Django answers 400 to any other name.
"""

import json
import os
import sys
import urllib.error
import urllib.request


def host_header() -> str:
    names = [n.strip() for n in os.environ.get("OCRDASH_ALLOWED_HOSTS", "").split(",") if n.strip()]
    name = names[0] if names else "localhost"
    if name == "*":
        return "localhost"
    return name.lstrip(".")  # ".example.com" allows example.com too


def main() -> int:
    url = f"http://127.0.0.1:{os.environ.get('OCRDASH_PORT') or '8000'}/healthz"
    request = urllib.request.Request(url, headers={"Host": host_header(), "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=8) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        print(f"{url}: HTTP {exc.code} {exc.read()[:200]!r}")
        return 1
    except (OSError, ValueError) as exc:
        print(f"{url}: {exc}")
        return 1
    print(body)
    return 0 if body.get("ok") is True else 1


if __name__ == "__main__":
    sys.exit(main())
