# ocrdash: one image for every role (docker/entrypoint.sh: web, worker, gpumonitor, migrate, manage).
#
#   docker build -t ocrdash .                            # CPU torch: builds and runs without a GPU
#   docker build -t ocrdash --build-arg VARIANT=cuda .   # torch from PyPI, with its CUDA libraries
#
# docker-compose.yml builds the cuda variant (IMAGE_VARIANT in .env). No GPU is needed to build
# either: CUDA comes in the torch wheels, and the NVIDIA driver comes from the host at run time.
# No `# syntax=` line: BuildKit's own Dockerfile frontend reads this file, so a build fetches no
# image but PYTHON_IMAGE (the CI builds it where no registry is reachable: docs/deploy.md).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# -- build: the virtual environment, with the pins of pyproject.toml ---------------------------------
FROM ${PYTHON_IMAGE} AS build
ARG VARIANT=cpu
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml ocrdash.py ./
# torch first and alone, as ocrdash.py does: next to packages that depend on it, pip may pick
# another build. The CPU build comes from PyTorch's CPU index; the CUDA build is PyPI's default.
RUN set -eu; \
    torch="$(python ocrdash.py requirements --extras dots --only torch)"; \
    case "$VARIANT" in \
        cpu) pip install --index-url "$TORCH_CPU_INDEX" "$torch" ;; \
        cuda) pip install "$torch" ;; \
        *) echo "VARIANT must be cpu or cuda, not '$VARIANT'" >&2; exit 2 ;; \
    esac
# Then everything else pinned (torch is already there at its pinned version, so pip keeps it).
RUN python ocrdash.py requirements --extras dots > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && python -c "import torch, transformers, rapidocr, cv2, onnxruntime, pynvml, prometheus_client; \
print('torch', torch.__version__, 'cuda', torch.version.cuda)"

# -- runtime ---------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG VARIANT=cpu
LABEL org.opencontainers.image.title="ocrdash" \
      org.opencontainers.image.description="Team OCR dashboard for dots.ocr and rapidocr on a shared GPU" \
      ocrdash.variant="${VARIANT}"
# No Debian packages are needed: opencv-python-headless, onnxruntime and torch need only libc,
# libstdc++ and zlib, which the slim image has; fonts are not used at run time.
RUN groupadd --system --gid 10001 ocrdash \
    && useradd --system --uid 10001 --gid ocrdash --create-home --home-dir /home/ocrdash \
        --shell /usr/sbin/nologin ocrdash \
    && install -d -o ocrdash -g ocrdash -m 0750 /data /models
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DJANGO_SETTINGS_MODULE=dashboard.settings \
    CUDA_DEVICE_ORDER=PCI_BUS_ID \
    OCRDASH_HOST=0.0.0.0 \
    OCRDASH_PORT=8000 \
    OCRDASH_DATA_DIR=/data \
    OCRDASH_MODEL_DIR=/models \
    OCRDASH_STATIC_ROOT=/app/staticfiles
WORKDIR /app
COPY . .
# Static files are collected into the image; whitenoise serves them. The key is a throwaway:
# collectstatic needs settings, not a database, Redis or the real key.
RUN OCRDASH_SECRET_KEY=collectstatic-only-not-a-secret python manage.py collectstatic --noinput -v0 \
    && chmod 0755 docker/entrypoint.sh
USER ocrdash
# Mount volumes on /data (uploads, the first admin password, SQLite when no database is named)
# and /models (model files); docker-compose.yml does.
EXPOSE 8000
ENTRYPOINT ["/app/docker/entrypoint.sh"]
CMD ["web"]
