# syntax=docker/dockerfile:1.7
# Federa site agent with GPU training (training.backend: tensorflow-gpu or auto), on an NVIDIA CUDA runtime.
# NOT BUILT OR TESTED in the Federa repository's CI: building needs a registry for the CUDA base image and the
# TensorFlow binaries (see TFJS_NODE_CDN_STORAGE below); running needs an NVIDIA GPU with a driver on the host
# and the NVIDIA Container Toolkit (docker run --gpus all; compose `deploy.resources.reservations.devices`;
# Kubernetes with the NVIDIA device plugin, `nvidia.com/gpu: 1`).
#   docker build -f deploy/docker/site-agent-gpu.Dockerfile -t federa-site-gpu:0.1.0 .
#   docker run --gpus all --read-only --tmpfs /tmp ... federa-site-gpu:0.1.0     (mounts as site-agent.Dockerfile)
#   docker run --gpus all --rm --entrypoint federa-site federa-site-gpu:0.1.0 doctor --config ...   # "backend"
#
# CUDA version: @tensorflow/tfjs-node-gpu 4.x loads libtensorflow 2.9.1, which is built against CUDA 11.2 and
# cuDNN 8.1 (it dlopens libcudart.so.11.0 and libcudnn.so.8). CUDA 12 images do not have those libraries, so
# the default base is CUDA 11.8 + cuDNN 8 (11.x minor-version compatible), on Ubuntu 22.04. The host driver
# must support CUDA 11.8 (R520 or newer). Change CUDA_IMAGE only together with a tfjs-node-gpu release built
# for that CUDA.
ARG CUDA_IMAGE=nvidia/cuda:11.8.0-cudnn8-runtime-ubuntu22.04
ARG NODE_IMAGE=node:24-bookworm-slim

# npm and a Node.js for the build, taken from the official image (Ubuntu 22.04's own nodejs is v12).
FROM ${NODE_IMAGE} AS node

# The build runs on the same Ubuntu as the runtime, so a tfjs-node-gpu addon compiled from source (when no
# prebuilt binary is downloadable) links against the glibc it will run on.
FROM ${CUDA_IMAGE} AS build
ARG TFJS_NODE_GPU_VERSION=4.22.0
# A hospital mirror of the libtensorflow and addon archives (the install script downloads them from
# storage.googleapis.com by default); empty leaves the default.
ARG TFJS_NODE_CDN_STORAGE=
RUN apt-get update \
  && apt-get install -y --no-install-recommends ca-certificates python3 make g++ \
  && rm -rf /var/lib/apt/lists/*
COPY --from=node /usr/local/bin/node /usr/local/bin/node
COPY --from=node /usr/local/lib/node_modules /usr/local/lib/node_modules
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm && npm --version
WORKDIR /opt/federa
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
COPY demo demo
RUN npm run build && npm prune --omit=dev --no-audit --no-fund
# Not in package-lock.json on purpose (a 400 MB native download most sites do not want): added here, at the
# version of the @tensorflow/tfjs-* packages the agent pins. Its install script fetches libtensorflow (GPU).
RUN --mount=type=secret,id=npm-ca if [ -s /run/secrets/npm-ca ]; then export NPM_CONFIG_CAFILE=/run/secrets/npm-ca; fi \
  && if [ -n "$TFJS_NODE_CDN_STORAGE" ]; then export TFJS_NODE_CDN_STORAGE; fi \
  && npm install --no-save --omit=dev --no-audit --no-fund "@tensorflow/tfjs-node-gpu@${TFJS_NODE_GPU_VERSION}" \
  && test -e node_modules/.bin/federa-site && node_modules/.bin/federa-site --version

FROM ${CUDA_IMAGE} AS runtime
RUN apt-get update \
  && apt-get install -y --no-install-recommends tini \
  && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 federa \
  && useradd --system --uid 10001 --gid federa --home-dir /var/lib/federa-site --no-create-home \
     --shell /usr/sbin/nologin federa \
  && install -d -o federa -g federa -m 0700 /var/lib/federa-site \
  && install -d -m 0755 /etc/federa
COPY --from=build /opt/federa /opt/federa
COPY deploy/docker/healthcheck.mjs /opt/federa/deploy/docker/healthcheck.mjs
# The bundled Node.js 24 (node_modules/.bin/node) runs on Ubuntu 22.04's glibc 2.35.
ENV PATH=/opt/federa/node_modules/.bin:/usr/local/nvidia/bin:/usr/local/cuda/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/var/lib/federa-site \
    FEDERA_HEALTHCHECK_URL=http://127.0.0.1:9464/health \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
WORKDIR /var/lib/federa-site
VOLUME ["/var/lib/federa-site"]
USER 10001:10001
EXPOSE 9464
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
  CMD ["/opt/federa/node_modules/.bin/node", "/opt/federa/deploy/docker/healthcheck.mjs"]
ENTRYPOINT ["/usr/bin/tini", "--", "/opt/federa/node_modules/.bin/federa-site"]
STOPSIGNAL SIGTERM
CMD ["start", "--config", "/etc/federa/site.yaml"]
