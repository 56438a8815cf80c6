#!/usr/bin/env bash
# The deployment, end to end: builds the image from the Dockerfile and runs docker-compose.yml's
# stack on this machine, then uses it as a team would (.ci/deploy/stack_check.py) and takes it
# down again. `.ci/run` runs it after the test suite; by hand: `bash .ci/deploy/stage.sh`.
#
# On a machine without a Docker engine (or what else it needs) it is skipped with the reason;
# with CI=true it installs what is missing from Debian's packages instead, and a skip fails.
# It starts the Docker engine when none runs, and stops it again at the end.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
here="$root/.ci/deploy"
cd "$root"

ci=false
[ "$(printf '%s' "${CI:-}" | tr '[:upper:]' '[:lower:]')" = true ] && ci=true
cache="${OCRDASH_CI_CACHE:-/var/cache/ocrdash-ci}"
python_tag="ocrdash-ci/python:3.11-bookworm"
image="ocrdash:ci"
export COMPOSE_PROJECT_NAME=ocrdashci

stage_started=$(date +%s)
say() { echo "deploy: $*"; }
skip() {
    if $ci; then
        say "FAILED: $* (CI=true: the deployment stage may not be skipped)"
        exit 1
    fi
    say "SKIPPED: $*"
    exit 0
}
apt_install() {  # CI only: Debian's packages for what is missing
    say "installing $* (Debian's packages) …"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# -- what the stage needs ---------------------------------------------------------------------------
if ! command -v dockerd >/dev/null 2>&1 && ! docker info >/dev/null 2>&1; then
    $ci && [ "$(id -u)" = 0 ] && apt_install docker.io
    command -v dockerd >/dev/null 2>&1 || skip "no Docker engine here (Debian: apt-get install docker.io)"
fi
if docker compose version >/dev/null 2>&1; then
    compose="docker compose"
elif command -v docker-compose >/dev/null 2>&1; then
    compose="docker-compose"
else
    $ci && apt_install docker-compose
    command -v docker-compose >/dev/null 2>&1 || skip "no compose client (docker compose or docker-compose)"
    compose="docker-compose"
fi
if ! command -v debootstrap >/dev/null 2>&1; then
    $ci && apt_install debootstrap
    command -v debootstrap >/dev/null 2>&1 || skip "debootstrap is missing (it makes the base images from Debian's packages)"
fi
venv_python="$root/.venv/bin/python"
if ! "$venv_python" -c "import playwright, requests, yaml, PIL" >/dev/null 2>&1; then
    skip "the test tools are not installed in .venv (python3 ocrdash.py test installs them)"
fi
[ -x /usr/bin/chromium ] || skip "Chromium is not installed (apt-get install chromium)"

# One stage at a time on a machine: they share the engine, the image names and the project name.
mkdir -p "$cache"
exec 9>"$cache/stage.lock"
flock -w 1200 9 || skip "another deployment stage held $cache/stage.lock for 20 minutes"

# -- the Docker engine -------------------------------------------------------------------------------
dockerd_pid=""
index_pid=""
work=""
cleanup() {
    local rc=$?
    set +e
    if [ -n "$index_pid" ]; then
        kill "$index_pid" 2>/dev/null
        wait "$index_pid" 2>/dev/null
    fi
    if [ -n "$dockerd_pid" ]; then
        kill "$dockerd_pid" 2>/dev/null
        for _ in $(seq 120); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.5; done
        if kill -0 "$dockerd_pid" 2>/dev/null; then
            say "the Docker engine this stage started (pid $dockerd_pid) has not stopped within 60 s"
        else
            say "stopped the Docker engine this stage started"
        fi
    fi
    [ -n "$work" ] && rm -rf "$work"
    say "the stage took $(( $(date +%s) - stage_started )) s"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! docker info >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || skip "the Docker engine is not running, and only root may start it"
    # No bridge and no firewall rules: every container of the stage uses the host's network.
    dockerd --iptables=false --ip6tables=false --bridge=none >"$cache/dockerd.log" 2>&1 &
    dockerd_pid=$!
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
    docker info >/dev/null 2>&1 || { tail -n 20 "$cache/dockerd.log"; say "FAILED: the Docker engine did not start"; exit 1; }
    say "started the Docker engine ($(docker version -f '{{.Server.Version}}'), log: $cache/dockerd.log)"
fi

# -- the images it starts from -----------------------------------------------------------------------
say "base images:"
started=$(date +%s)
bash "$here/base-images.sh" "$python_tag"
say "base images ready in $(( $(date +%s) - started )) s"
docker image prune -f --filter "label=ocrdash.ci.made-from=debian-packages" >/dev/null

# The CPU torch: from PyTorch's CPU index where it answers, else from a package index on
# 127.0.0.1 serving the CPU wheel pip finds on this machine (with torch's own requirements).
torch="$(python3 ocrdash.py requirements --extras dots --only torch)"
build_args=(--build-arg VARIANT=cpu --build-arg "PYTHON_IMAGE=$python_tag")
if ! curl -sf -m 10 -o /dev/null https://download.pytorch.org/whl/cpu/torch/; then
    wheels="$cache/torch-cpu-wheels/${torch//=/-}"
    if [ ! -e "$wheels/.complete" ]; then
        mkdir -p "$wheels"
        python3 -m pip download -q --no-index --no-deps --only-binary :all: -d "$wheels" "$torch" 2>/dev/null || true
        ls "$wheels"/torch-*+cpu-*.whl >/dev/null 2>&1 ||
            { say "FAILED: PyTorch's CPU index is unreachable and pip's find-links hold no CPU build of $torch"; exit 1; }
        python3 -m pip download -q --only-binary :all: --find-links "$wheels" -d "$wheels" "$torch" 2>/dev/null
        touch "$wheels/.complete"
    fi
    port_file="$(mktemp)"
    python3 "$here/wheel_index.py" "$wheels" "$port_file" 28471 &
    index_pid=$!
    for _ in $(seq 50); do [ -s "$port_file" ] && break; sleep 0.1; done
    build_args+=(--build-arg "TORCH_CPU_INDEX=http://127.0.0.1:$(cat "$port_file")/simple")
    rm -f "$port_file"
    say "torch: $(basename "$wheels"/torch-*.whl), from a package index on 127.0.0.1"
fi

# -- the project, as a new user has it: a copy of this tree, .env from .env.example, secrets ---------
work="$(mktemp -d "${TMPDIR:-/var/tmp}/ocrdash-deploy.XXXXXX")"
git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -xf - -C "$work"
cp "$work/.env.example" "$work/.env"
sh "$work/docker/make-secrets.sh" >/dev/null
cat >>"$work/.env" <<EOF
IMAGE_NAME=$image
IMAGE_VARIANT=cpu
OCRDASH_METRICS_TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
OCRDASH_METRICS_ALLOW_FROM=none
EOF

# -- the image ---------------------------------------------------------------------------------------
# BuildKit, as Docker builds by default today: buildx where it is installed, else a client from
# before BuildKit moved to buildx (Debian's docker.io); else the legacy builder.
build=()
if docker buildx version >/dev/null 2>&1; then
    build=(docker buildx build --load --progress plain)
    builder="BuildKit (buildx)"
else
    for client in $(type -ap docker); do
        case "$("$client" version -f '{{.Client.Version}}' 2>/dev/null)" in
            19.* | 2[0-2].*)
                build=(env DOCKER_BUILDKIT=1 "$client" build --progress plain)
                builder="BuildKit ($client)"
                break
                ;;
        esac
    done
fi
if [ ${#build[@]} = 0 ]; then
    build=(docker build --force-rm)
    builder="the legacy builder"
fi
say "building $image from the Dockerfile with $builder (log: $cache/build.log) …"
started=$(date +%s%N)
if ! "${build[@]}" --network host "${build_args[@]}" -t "$image" "$work" >"$cache/build.log" 2>&1; then
    tail -n 30 "$cache/build.log"
    say "FAILED: docker build"
    exit 1
fi
build_seconds=$(( ($(date +%s%N) - started) / 1000000 ))e-3
if [ "$builder" = "the legacy builder" ]; then
    # Its layer cache of the build stage lasts only while an image names it.
    "${build[@]}" -q --network host "${build_args[@]}" --target build -t "$image-build" "$work" >/dev/null 2>&1
fi
# What the new image replaced (only images made from this stage's base images).
docker image prune -f --filter "label=ocrdash.ci.made-from=debian-packages" >/dev/null

export CI_BUILD_SECONDS="$build_seconds" CI_IMAGE="$image" CI_COMPOSE="$compose"
"$venv_python" "$here/stack_check.py" "$work"
