#!/usr/bin/env bash
# Builds, from Debian's packages alone, the base images that docker-compose.yml and
# deploy/Dockerfile otherwise pull from a registry, for machines that reach no image registry
# (this project's CI among them). `deploy/local-bases/compose.override.yml` substitutes them.
#
#   countersign-local/runtime:bookworm   stands in for debian:bookworm-slim
#   countersign-local/rust:bookworm      stands in for rust:<version>-bookworm (this machine's toolchain)
#   countersign-local/rabbitmq:4         stands in for rabbitmq:4.0-management (Debian 13: RabbitMQ 4.0)
#   countersign-local/postgres:17        stands in for postgres:17 (POSTGRES_* variables, PGDATA)
#
# Idempotent: an image whose label matches this directory's contents is kept. Needs root,
# debootstrap, a running Docker engine, and the Debian mirror (MIRROR, default deb.debian.org).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
mirror="${MIRROR:-http://deb.debian.org/debian}"
work="${LOCAL_BASES_WORK:-/var/tmp/countersign-local-bases}"
# A digest per image, of this script and the image's own folder: change one, and that image is
# built again.
digest_of() { (cd "$here" && find build.sh "$@" -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16); }

say() { printf 'local-bases: %s\n' "$*" >&2; }

fresh() { # image digest -> true when the image exists with this digest
  [ "$(docker image inspect -f '{{ index .Config.Labels "countersign.local-bases" }}' "$1" 2>/dev/null)" = "$2" ]
}

rootfs() { # suite dir packages... ; a minimal Debian root file system, made once per digest
  local suite="$1" dir="$2"; shift 2
  local packages; packages="$(IFS=,; echo "$*")"
  local marker; marker="$dir/.complete-$(echo "$suite $packages $mirror" | sha256sum | cut -c1-16)"
  if [ -f "$marker" ]; then return; fi
  rm -rf "$dir"
  say "debootstrap $suite ($packages) into $dir"
  debootstrap --variant=minbase --include="$packages" "$suite" "$dir" "$mirror" >"$dir.log" 2>&1 \
    || { tail -n 30 "$dir.log" >&2; exit 1; }
  # What a container image needs none of: package lists and caches.
  chroot "$dir" apt-get clean
  rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin
  touch "$marker"
}

import() { # dir image digest [change...] ; the root file system as an image, labelled with the digest
  local dir="$1" image="$2" digest="$3"; shift 3
  local changes=(--change "LABEL countersign.local-bases=$digest" --change 'CMD ["bash"]')
  for change in "$@"; do changes+=(--change "$change"); done
  say "import $image"
  tar --exclude="./.complete-*" -C "$dir" -c . | docker import "${changes[@]}" - "$image" >/dev/null
}

mkdir -p "$work"

digest="$(digest_of)"
if ! fresh countersign-local/runtime:bookworm "$digest"; then
  rootfs bookworm "$work/runtime" ca-certificates
  import "$work/runtime" countersign-local/runtime:bookworm "$digest"
fi

if ! fresh countersign-local/rust:bookworm "$digest"; then
  rootfs bookworm "$work/rust" ca-certificates gcc libc6-dev
  # This machine's Rust toolchain (no toolchain can be downloaded here): its binaries and
  # libraries, under /usr/local/rust as the official image keeps its own under /usr/local.
  toolchain="$(rustc --print sysroot)"
  say "copy the toolchain $toolchain"
  rm -rf "$work/rust/usr/local/rust"
  mkdir -p "$work/rust/usr/local/rust"
  cp -a "$toolchain/bin" "$toolchain/lib" "$work/rust/usr/local/rust/"
  rm -rf "$work/rust/usr/local/rust/lib/rustlib/src" "$work/rust/usr/local/rust/lib/rustlib/rustc-src"
  # This machine's own CA certificates (a TLS-inspecting egress proxy's, say), so that cargo in
  # the build reaches crates.io as it does on the host.
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$work/rust/usr/local/share/ca-certificates/"
  fi
  chroot "$work/rust" update-ca-certificates >/dev/null 2>&1
  import "$work/rust" countersign-local/rust:bookworm "$digest" \
    'ENV PATH=/usr/local/rust/bin:/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    'ENV CARGO_HOME=/usr/local/cargo'
fi

# One Debian 13 root file system for both servers: RabbitMQ 4.0 and PostgreSQL 17.
servers="$(digest_of)"
if ! fresh countersign-local/trixie-servers:latest "$servers"; then
  rootfs trixie "$work/trixie" ca-certificates rabbitmq-server postgresql-17
  import "$work/trixie" countersign-local/trixie-servers:latest "$servers"
fi
for image in rabbitmq:4 postgres:17; do
  folder="${image%%:*}"
  digest="$(digest_of "$folder")"
  if ! fresh "countersign-local/$image" "$digest"; then
    say "build countersign-local/$image"
    docker build -q --label "countersign.local-bases=$digest" -t "countersign-local/$image" "$here/$folder" >/dev/null
  fi
done
say "ready"
