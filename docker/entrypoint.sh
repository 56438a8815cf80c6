#!/bin/sh
# The image's entrypoint: one image, one role per container.
#
#   web          uvicorn (HTTP and websockets) on OCRDASH_HOST:OCRDASH_PORT (0.0.0.0:8000 in the image)
#   worker       the Celery worker: queue gpu, concurrency 1, task events on (Flower can watch it)
#   gpumonitor   the NVML sampler (python manage.py gpumonitor)
#   migrate      a one-shot: database migrations, the first admin account, queued jobs the broker lost
#   manage ...   any manage.py command, e.g. `docker compose run --rm web manage fetch_model --revision …`
#   anything else is run as given (sh, python, celery …)
set -eu

truthy() {
    case "$(printf '%s' "${1:-}" | tr '[:upper:]' '[:lower:]')" in
        1 | true | yes | on) return 0 ;;
        *) return 1 ;;
    esac
}

role="${1:-web}"
[ "$#" -gt 0 ] && shift

case "$role" in
    web)
        # As dashboard/webserver.py: uvicorn hands bodies to the application as they arrive, so
        # dashboard/bodylimit.py refuses one over its limit before it is read.
        # Client addresses from X-Forwarded-For only behind a proxy: otherwise any client could name
        # itself 127.0.0.1 (the metrics allow-list and the GPU action log read that address).
        if truthy "${OCRDASH_BEHIND_PROXY:-}"; then
            set -- --proxy-headers --forwarded-allow-ips '*' "$@"
        else
            set -- --no-proxy-headers "$@"
        fi
        exec python -m uvicorn dashboard.asgi:application --host "${OCRDASH_HOST:-0.0.0.0}" \
            --port "${OCRDASH_PORT:-8000}" --http h11 --ws websockets-sansio --lifespan off \
            --timeout-graceful-shutdown 5 --no-server-header "$@"
        ;;
    worker)
        # With JSON logs, no start-up banner: every line on stdout is then one JSON object.
        quiet=""
        if [ "${OCRDASH_LOG_FORMAT:-plain}" = json ]; then
            quiet=yes
        fi
        # A stable name (WORKER_NAME) lets a restarted worker find the job it left running.
        exec celery -A dashboard ${quiet:+--quiet} worker --queues gpu --concurrency 1 --events \
            --hostname "gpu@${WORKER_NAME:-%h}" --loglevel "${OCRDASH_LOG_LEVEL:-INFO}" "$@"
        ;;
    gpumonitor)
        exec python manage.py gpumonitor "$@"
        ;;
    migrate)
        python manage.py migrate --noinput
        python manage.py ensure_admin
        exec python manage.py requeue_waiting_jobs
        ;;
    manage)
        exec python manage.py "$@"
        ;;
    *)
        exec "$role" "$@"
        ;;
esac
