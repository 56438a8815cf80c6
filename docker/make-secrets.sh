#!/bin/sh
# Creates the two secrets docker-compose.yml reads, once: secrets/django_secret_key and
# secrets/postgres_password (random; an existing file is kept). The folder is readable by you
# alone; the files themselves are world-readable so that the containers' own users (ocrdash's
# uid 10001, PostgreSQL's) can read them where compose mounts them, under /run/secrets/.
set -eu
cd "$(dirname "$0")/.."
umask 077
mkdir -p secrets
chmod 700 secrets
for name in django_secret_key postgres_password; do
    file="secrets/$name"
    if [ -s "$file" ]; then
        echo "kept    $file"
    else
        LC_ALL=C tr -dc 'A-Za-z0-9' < /dev/urandom | head -c 64 > "$file"
        echo "created $file"
    fi
    chmod 644 "$file"
done
