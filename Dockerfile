# syntax=docker/dockerfile:1
# The Keyward image: one image for `keyward operator` and `keyward engine` (and `serve`).
# Node 24 runs the TypeScript sources directly (native type stripping), so there is no compile
# step: the build stage only installs the production dependencies.
# NOTE: not built in the project's CI machines (no container engine there); see README.

ARG NODE_VERSION=24

FROM node:${NODE_VERSION} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# Production dependencies only, exactly as locked; no install scripts run.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm cache clean --force

FROM node:${NODE_VERSION}-slim AS runtime
ENV NODE_ENV=production \
    HOME=/tmp \
    KEYWARD_DATA_DIR=/tmp/keyward
WORKDIR /app
COPY --from=deps --chown=0:0 /app/node_modules ./node_modules
COPY --chown=0:0 package.json ./
COPY --chown=0:0 engine ./engine
COPY --chown=0:0 operator ./operator
COPY --chown=0:0 crds ./crds
# The files belong to root and are read-only for the runtime user; the process runs as the
# unprivileged 65532:65532 (the "nonroot" ids of distroless), as the chart's pods require.
USER 65532:65532
EXPOSE 8443 8080
ENTRYPOINT ["node", "engine/cli/main.ts"]
CMD ["--help"]
