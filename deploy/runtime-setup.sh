#!/bin/sh
# Prepares a Debian-family runtime image: CA certificates, OpenMP (libtorch needs libgomp),
# and the non-root user 10001 every service runs as.
set -eu
apt-get update
apt-get install -y --no-install-recommends ca-certificates libgomp1
rm -rf /var/lib/apt/lists/*
groupadd --system --gid 10001 memgpt
useradd --system --uid 10001 --gid memgpt --home-dir /var/lib/memgpt --create-home memgpt
