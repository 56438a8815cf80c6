# ocrdash: one image for every role (docker/entrypoint.sh: web, worker, gpumonitor, migrate, manage).
#
#   docker build -t ocrdash .                            # CPU torch: builds and runs without a GPU
#   docker build -t ocrdash --build-arg VARIANT=cuda .   # torch from PyPI, with its CUDA libraries
#   … --build-arg GGUF=cuda (or cpu)                      # adds llama.cpp (the llamacpp backend)
#
# docker-compose.yml builds the cuda variant (IMAGE_VARIANT in .env). No GPU is needed to build
# either: CUDA comes in the torch wheels, and the NVIDIA driver comes from the host at run time.
# No `# syntax=` line: BuildKit's own Dockerfile frontend reads this file, so a build fetches no
# image but PYTHON_IMAGE (the CI builds it where no registry is reachable: docs/deploy.md).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# llama.cpp for the llamacpp backend: none (the default: no compiler, nothing more to fetch), cpu, or
# cuda (compiled against the CUDA toolkit of CUDA_DEVEL_IMAGE; takes long: CUDA kernels).
ARG GGUF=none
ARG CUDA_DEVEL_IMAGE=nvidia/cuda:12.6.3-devel-ubuntu22.04

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

# -- llama.cpp: llama-cpp-python compiled into the same venv, only when GGUF is cpu or cuda --------
# BuildKit builds only the stages the target needs, so GGUF=none fetches neither image nor compiler.
FROM ${CUDA_DEVEL_IMAGE} AS cuda-toolkit
FROM build AS gguf-none
FROM build AS gguf-cpu
RUN apt-get update && apt-get install -y --no-install-recommends g++ cmake make \
    && CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install $(python ocrdash.py requirements --extras gguf --only llama-cpp-python,sentencepiece)
FROM build AS gguf-cuda
COPY --from=cuda-toolkit /usr/local/cuda /usr/local/cuda
ENV PATH=/usr/local/cuda/bin:$PATH
# Portable CPU code; CUDA kernels for Turing to Hopper. The CUDA runtime and cuBLAS go next to
# llama.cpp's libraries (loaded from their own folder), so the runtime image needs no toolkit.
RUN apt-get update && apt-get install -y --no-install-recommends g++ cmake make \
    && CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=75;80;86;89;90" \
       pip install $(python ocrdash.py requirements --extras gguf --only llama-cpp-python,sentencepiece) \
    && cp -P /usr/local/cuda/lib64/libcudart.so.12* /usr/local/cuda/lib64/libcublas.so.12* \
       /usr/local/cuda/lib64/libcublasLt.so.12* /opt/venv/lib/python3.11/site-packages/llama_cpp/lib/
FROM gguf-${GGUF} AS venv

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
COPY --from=venv /opt/venv /opt/venv
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
