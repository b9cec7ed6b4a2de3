#!/usr/bin/env bash
# Makes the Docker engine available and builds the environment images: installs docker.io, debootstrap and
# docker-compose from Debian when missing (needs root), starts dockerd when it is not running, then runs
# `gymbox images build` (which reuses images whose sources have not changed).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v docker-compose >/dev/null || missing+=(docker-compose)
if [ ${#missing[@]} -gt 0 ]; then
    echo "docker: installing ${missing[*]} from Debian"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
    echo "docker: starting dockerd (log: /var/log/gymbox-dockerd.log)"
    nohup dockerd --storage-driver=overlay2 >/var/log/gymbox-dockerd.log 2>&1 &
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && break
        sleep 1
    done
    docker info >/dev/null 2>&1 || { echo "dockerd did not start; see /var/log/gymbox-dockerd.log" >&2; exit 1; }
fi

.venv/bin/gymbox images build
