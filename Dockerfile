# syntax=docker/dockerfile:1
# The Keyward image for users who build with Docker: one image for `keyward operator`,
# `keyward engine` and `keyward serve`. It has the same content as `npm run image`
# (scripts/image/keyward-image.ts), which builds it here without Docker or a registry:
#   - the node binary of the pinned version and the C/C++ runtime it links (distroless/cc);
#   - the production dependencies, installed exactly as locked, without install scripts,
#     launchers (.bin), type declarations or source maps;
#   - the runtime files: the whole build context, which .dockerignore (the one file list of
#     both builds) narrows down. Add runtime files there, never as another COPY here.
# No shell, no npm; uid 65532; nothing is written outside /tmp (a read-only root works).
# Node 24 runs the TypeScript sources directly (type stripping): there is no compile step; the
# types are stripped once, at build, into .keyward-cache (the `stripped` stage).
# NOTE: no container engine runs in this project's CI; test/image/files.test.ts checks this
# file's shape and NODE_VERSION against package.json instead.

ARG NODE_VERSION=24.21.0

FROM node:${NODE_VERSION}-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && find node_modules -name .bin -prune -exec rm -rf {} + \
 && find node_modules -type f \( -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' -o -name '*.map' \) -delete

# The stripped-sources cache (engine/boot/stripped-sources.mjs), made by the image's own node, so
# the image never loads Node's TypeScript stripper (about 16 MiB resident per process).
FROM deps AS stripped
COPY engine ./engine
COPY operator ./operator
RUN node engine/boot/strip-sources.mjs

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
ENV NODE_ENV=production \
    HOME=/tmp
COPY --from=deps /usr/local/bin/node /usr/local/bin/node
WORKDIR /app
COPY --from=deps --chown=0:0 /app/node_modules ./node_modules
COPY --chown=0:0 . ./
COPY --from=stripped --chown=0:0 /app/.keyward-cache ./.keyward-cache
USER 65532:65532
EXPOSE 8443 8080
ENTRYPOINT ["/usr/local/bin/node", "/app/engine/cli/keyward.mjs"]
CMD ["--help"]
