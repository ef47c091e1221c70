# syntax=docker/dockerfile:1
# One image for every strata role: `docker run IMAGE coordinator|datanode|mount|csi ...`.
# Build: docker build -t strata:dev .

# --- build: compilers and headers for the native addons, dev dependencies for tsc ---
FROM node:20-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends g++ make python3 pkg-config libfuse3-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# npm ci runs the package's install script (native/build.mjs: the libfuse 3 addon) and prepare (tsc),
# so the sources come before it. STRATA_NATIVE_REQUIRED makes a failed addon build fail the image.
ENV STRATA_NATIVE_REQUIRED=1
COPY package.json package-lock.json tsconfig.json binding.gyp ./
COPY native ./native
COPY proto ./proto
COPY bin ./bin
COPY common ./common
COPY coordinator ./coordinator
COPY datanode ./datanode
COPY client ./client
COPY cli ./cli
COPY csi ./csi
COPY fuse ./fuse
COPY console ./console
RUN npm ci \
 && npm run build \
 && test -f build/Release/strata_fuse3.node \
 && npm prune --omit=dev --ignore-scripts

# --- runtime: node, the shared libraries the addons link, tini as PID 1 ---
FROM node:20-bookworm-slim AS runtime
# libfuse3-3: build/Release/strata_fuse3.node (the default mount binding) links libfuse3.so.3.
# libfuse2: fuse-native's prebuilt addon (mount --binding fuse2) links libfuse.so.2.
# fuse3: fusermount3, which a mount needs to unmount (and to mount when not root).
# classic-level, lz4-napi and @node-rs/crc32 ship prebuilt addons needing only libc6, libgcc-s1
# and libstdc++6, which the slim image has for node itself.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini libfuse3-3 libfuse2 fuse3 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 strata \
 && useradd --system --uid 10001 --gid strata --home-dir /var/lib/strata --create-home --shell /usr/sbin/nologin strata
WORKDIR /app
ENV NODE_ENV=production
COPY --from=build /app/package.json /app/package-lock.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/build/Release/strata_fuse3.node ./build/Release/strata_fuse3.node
COPY --from=build /app/proto ./proto
COPY --from=build /app/bin ./bin
# Coordinators and data nodes run as this user (uid 10001). A mount (and the CSI node plugin)
# needs /dev/fuse and CAP_SYS_ADMIN: run it with --user 0 --device /dev/fuse --cap-add SYS_ADMIN
# (Kubernetes: runAsUser 0 and privileged, see k8s/README.md).
USER 10001:10001
# Data nodes keep chunks here unless told otherwise (--data-dir); mount a volume on it.
WORKDIR /var/lib/strata
ENTRYPOINT ["/usr/bin/tini", "--", "node", "/app/dist/cli/main.js"]
CMD ["--help"]
