#!/usr/bin/env bash
# The images the deployment starts from, made from Debian's packages where no image registry is
# reachable: Python 3.11 (the Dockerfile's PYTHON_IMAGE), and redis and postgres under the names
# and major versions docker-compose.yml uses. Each is made once and kept in Docker's image store,
# labelled with a hash of what it is made from; a later run with the same inputs reuses it.
#
#   .ci/deploy/base-images.sh PYTHON_TAG   # prints one line per image
#
# An image of those names that this script did not make (a real redis:7 pulled on a machine that
# has a registry) is used as it is.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
python_tag="$1"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# The machine's CA bundle: pip in the image build reaches PyPI through the same TLS as here.
ca_bundle="${CI_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"

compose_image() {  # the image a service of docker-compose.yml names, e.g. redis:7
    sed -n "/^  $1:/,/^  [a-z]/s/^    image: *//p" "$root/docker-compose.yml" | head -n1
}
redis_image="$(compose_image redis)"
postgres_image="$(compose_image postgres)"

# Debian's suite for each major version (PGDG's packages are not reachable here).
redis_suite() {
    case "$1" in
        7) echo bookworm ;;   # redis-server 7.0
        *) return 1 ;;
    esac
}
postgres_suite() {
    case "$1" in
        15) echo bookworm ;;  # postgresql-15
        17) echo trixie ;;    # postgresql-17
        *) return 1 ;;
    esac
}
redis_major="${redis_image#redis:}"; redis_major="${redis_major%%[.-]*}"
postgres_major="${postgres_image#postgres:}"; postgres_major="${postgres_major%%[.-]*}"
if ! redis_suite "$redis_major" >/dev/null; then
    echo "base images: docker-compose.yml names $redis_image; Debian's packages give redis 7 only" >&2
    exit 2
fi
if ! postgres_suite "$postgres_major" >/dev/null; then
    echo "base images: docker-compose.yml names $postgres_image; Debian's packages give PostgreSQL 15 (bookworm) and 17 (trixie)" >&2
    exit 2
fi

uid_of() {  # a user's uid and gid in a rootfs, as "uid:gid"
    awk -F: -v user="$2" '$1 == user { print $3 ":" $4 }' "$1/etc/passwd"
}

key_of() {  # what an image is made from: this script, its entrypoints, and the extra inputs given
    cat "$0" "$here"/images/* "$@" | sha256sum | cut -c1-16
}

# 0: the image is there and current (or is not ours), 1: it has to be made.
have() {
    local name="$1" key="$2" label
    if ! label="$(docker image inspect -f '{{ index .Config.Labels "ocrdash.ci.key" }}' "$name" 2>/dev/null)"; then
        return 1
    fi
    if [ -z "$label" ] || [ "$label" = "<no value>" ]; then
        echo "  $name: using the image already here (not made from Debian's packages by this stage)"
        return 0
    fi
    [ "$label" = "$key" ] && echo "  $name: cached ($key)" && return 0
    return 1
}

# debootstrap, then what Debian's slim images leave out (docs, man pages, locales, apt's lists).
rootfs() {
    local dir="$1" suite="$2" packages="$3"
    mkdir -p "$dir/etc/dpkg/dpkg.cfg.d"
    printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
        'path-exclude /usr/share/man/*' 'path-exclude /usr/share/info/*' \
        'path-exclude /usr/share/locale/*' 'path-include /usr/share/locale/locale.alias' \
        > "$dir/etc/dpkg/dpkg.cfg.d/slim"
    debootstrap --variant=minbase --include="$packages" "$suite" "$dir" "$mirror"
    find "$dir/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete 2>/dev/null || true
    rm -rf "$dir"/usr/share/man/* "$dir"/usr/share/info/* "$dir"/var/lib/apt/lists/* \
        "$dir"/var/cache/apt/* "$dir"/var/cache/debconf/*-old "$dir"/var/log/*.log "$dir"/var/log/apt/*
    find "$dir/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} + 2>/dev/null || true
}

import() {  # rootfs dir, image name, key, then docker import --change lines
    local dir="$1" name="$2" key="$3"
    shift 3
    local changes=(--change "LABEL ocrdash.ci.key=$key" --change "LABEL ocrdash.ci.made-from=debian-packages")
    local change
    for change in "$@"; do changes+=(--change "$change"); done
    tar -C "$dir" --numeric-owner --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -c . \
        | docker import "${changes[@]}" - "$name" >/dev/null
}

make_python() {
    local dir="$1/python"
    rootfs "$dir" bookworm python3.11,python3-venv,python-is-python3
    cp "$ca_bundle" "$dir/etc/ssl/certs/ca-certificates.crt"
    import "$dir" "$python_tag" "$2" 'ENV LANG=C.UTF-8' \
        'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' 'CMD ["python3"]'
}

make_redis() {
    local dir="$1/redis"
    rootfs "$dir" "$(redis_suite "$redis_major")" redis-server
    local owner
    owner="$(uid_of "$dir" redis)"
    install -d -o "${owner%:*}" -g "${owner#*:}" -m 0755 "$dir/data"
    install -m 0755 "$here/images/redis-entrypoint.sh" "$dir/usr/local/bin/docker-entrypoint.sh"
    import "$dir" "$redis_image" "$2" 'USER redis' 'WORKDIR /data' 'VOLUME /data' 'EXPOSE 6379' \
        'ENTRYPOINT ["docker-entrypoint.sh"]' 'CMD ["redis-server"]'
}

make_postgres() {
    local dir="$1/postgres" bin="/usr/lib/postgresql/$postgres_major/bin"
    rootfs "$dir" "$(postgres_suite "$postgres_major")" "postgresql-$postgres_major"
    # The package's own cluster: the entrypoint makes one in PGDATA instead.
    rm -rf "$dir/var/lib/postgresql/$postgres_major" "$dir/etc/postgresql/$postgres_major"
    local owner
    owner="$(uid_of "$dir" postgres)"
    install -d -o "${owner%:*}" -g "${owner#*:}" -m 0700 "$dir/var/lib/postgresql/data"
    install -m 0755 "$here/images/postgres-entrypoint.sh" "$dir/usr/local/bin/docker-entrypoint.sh"
    import "$dir" "$postgres_image" "$2" "ENV PATH=$bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
        'ENV LANG=C.UTF-8' 'ENV PGDATA=/var/lib/postgresql/data' 'VOLUME /var/lib/postgresql/data' \
        'EXPOSE 5432' 'ENTRYPOINT ["docker-entrypoint.sh"]' 'CMD ["postgres"]'
    # As the official image: SIGINT, PostgreSQL's fast shutdown (docker import cannot set it).
    printf 'FROM %s\nSTOPSIGNAL SIGINT\n' "$postgres_image" | docker build -q -t "$postgres_image" - >/dev/null
}

python_key="$(key_of "$ca_bundle" <(echo "$python_tag"))"
redis_key="$(key_of <(echo "$redis_image"))"
postgres_key="$(key_of <(echo "$postgres_image"))"

work="$(mktemp -d "${TMPDIR:-/var/tmp}/ocrdash-base.XXXXXX")"
trap 'rm -rf "$work"' EXIT
pids=()
names=()
start() {  # make one image in the background; its log stays in $work
    local what="$1" name="$2" key="$3"
    if have "$name" "$key"; then return; fi
    echo "  $name: making it from Debian's packages …"
    "make_$what" "$work" "$key" > "$work/$what.log" 2>&1 &
    pids+=($!)
    names+=("$what")
}
start python "$python_tag" "$python_key"
start redis "$redis_image" "$redis_key"
start postgres "$postgres_image" "$postgres_key"

failed=0
for i in "${!pids[@]}"; do
    if ! wait "${pids[$i]}"; then
        echo "base images: making the ${names[$i]} image failed; the end of its log:" >&2
        tail -n 20 "$work/${names[$i]}.log" >&2
        failed=1
    fi
done
exit "$failed"
