# One image for every role; the command picks it:
#   node dist/cli/main.js serve          all-in-one (gateway + every stage, embedded stores)
#   node dist/cli/main.js gateway        the EC2 API gateway
#   node dist/functions/host/main.js     one pipeline stage, chosen by IMAGING_STAGE
#                                        (manifest|decrypt|convert|validate|boot-check|register|export)
#                                        and run as IMAGING_HOST_MODE=jetstream (pull consumer) or http
#                                        (CloudEvents)
# Disk images are parsed by the toolkit itself, so the runtime needs no qemu-utils. The boot-check
# stage (dynamic validation, only for imports that ask) boots disks with qemu-system-x86_64, which
# the default image does not carry: build `--target boot-check` for that stage (the default image
# plus qemu-system-x86 and its SeaBIOS), and run it on nodes with /dev/kvm where possible.

ARG NODE_IMAGE=node:20-slim

# Native code is compiled in the stages that run npm, so they carry a compiler and the runtime
# stage does not: better-sqlite3 when no prebuilt binary matches, and our sparse-file addon.
FROM ${NODE_IMAGE} AS toolchain
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./

# Production dependencies only. Lifecycle scripts are skipped because `prepare` would compile
# sources that are not copied yet; the one native module is then built explicitly.
FROM toolchain AS prod-deps
RUN npm ci --omit=dev --ignore-scripts \
 && npm rebuild better-sqlite3 \
 && npm cache clean --force

# Compile with the dev dependencies (typescript, type packages).
FROM toolchain AS build
RUN npm ci --ignore-scripts
COPY . .
# The sparse-file addon (toolkit/native): lseek SEEK_DATA/SEEK_HOLE for local raw disks. Built
# against the image's own Node headers.
RUN npm_config_nodedir=/usr/local npm run build:native \
 && npx tsc -p tsconfig.json

FROM ${NODE_IMAGE} AS runtime
# IMAGING_HOST: `serve` and `gateway` default to 127.0.0.1, unreachable from outside the container.
ENV NODE_ENV=production \
    IMAGING_HTTP_PORT=8080 \
    IMAGING_HOST=0.0.0.0
WORKDIR /app
COPY --from=prod-deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/build/Release/sparse_ranges.node ./build/Release/sparse_ranges.node
COPY package.json ./
COPY bin ./bin
# `imaging serve` keeps its embedded SQLite store and objects here unless told otherwise.
RUN mkdir -p /app/data && chown node:node /app/data
USER node
# 8080: a stage's HTTP port; 8773/8774: the EC2 and embedded S3 endpoints of `serve` (IMAGING_PORT,
# IMAGING_S3_PORT; the gateway listens on IMAGING_PORT too).
EXPOSE 8080 8773 8774
# Platforms that cannot set a command (OpenFaaS) pick the role through IMAGING_STAGE: unset runs
# everything in one process, `gateway` the EC2 API, a stage name the function host.
CMD ["/bin/sh", "-c", "case \"${IMAGING_STAGE:-}\" in '') exec node dist/cli/main.js serve ;; gateway) exec node dist/cli/main.js gateway ;; *) exec node dist/functions/host/main.js ;; esac"]

# The boot-check stage's image: the runtime plus qemu-system-x86 (SeaBIOS comes with it).
# `docker build --target boot-check -t imaging-boot-check .`
FROM runtime AS boot-check
USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends qemu-system-x86 \
 && rm -rf /var/lib/apt/lists/*
USER node

# The default target (a plain `docker build`) is the runtime image without qemu.
FROM runtime
