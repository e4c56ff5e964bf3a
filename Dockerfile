# camflow services image: the CLI, the API, the trainer and the cam-workers share it; the command picks the role.
#
#   docker build --target cpu -t camflow:cpu .          # CPU only (ONNX Runtime CPU, tfjs wasm)
#   docker build --target gpu -t camflow:gpu .          # + Vulkan loader and GLVND: WebGPU (Dawn) on the host's
#                                                       #   NVIDIA driver for training (tfjs-webgpu) and serving (ORT)
#   docker build --target gpu --build-arg ORT_CUDA=1 \
#     --build-arg GPU_BASE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 -t camflow:gpu-cuda .
#                                                       # + ONNX Runtime's CUDA / TensorRT providers (CUDA 12, cuDNN 9)
# Run GPU images with the NVIDIA container toolkit (docker-compose.yml's `gpu` profile does).
ARG NODE_IMAGE=node:20-bookworm-slim
ARG GPU_BASE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS deps
ARG ORT_CUDA=0
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
COPY packages/common/package.json packages/common/
COPY packages/ingest/package.json packages/ingest/
COPY packages/trainer/package.json packages/trainer/
COPY packages/cam-worker/package.json packages/cam-worker/
COPY packages/cli/package.json packages/cli/
# .npmrc skips ORT's provider download; ORT_CUDA=1 fetches its CUDA 12 providers (the build host has network).
RUN npm ci --include=dev --no-audit --no-fund \
 && if [ "$ORT_CUDA" = "1" ]; then npm_config_onnxruntime_node_install=cuda12 npm rebuild onnxruntime-node; fi
COPY tsconfig.json ./
COPY packages packages

FROM ${NODE_IMAGE} AS cpu
WORKDIR /app
ENV NODE_ENV=production
COPY --from=deps /app /app
# Where the CLI writes (download, eval reports): the compose file mounts ./out here.
RUN mkdir -p /out && chown node:node /out
USER node
ENTRYPOINT ["node", "--import", "/app/node_modules/tsx/dist/loader.mjs", "/app/packages/cli/src/main.ts"]
CMD ["worker", "all"]

FROM ${NODE_IMAGE} AS node-binary

FROM ${GPU_BASE} AS gpu
# Dawn needs the Vulkan loader and GLVND; the NVIDIA toolkit mounts the driver and its Vulkan ICD when the
# container asks for the graphics capability.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libvulkan1 libglvnd0 libegl1 libgl1 libglx0 libopengl0 libgles2 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=node-binary /usr/local/bin/node /usr/local/bin/node
WORKDIR /app
ENV NODE_ENV=production \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics
COPY --from=deps /app /app
RUN id -u node >/dev/null 2>&1 || useradd --create-home --uid 1000 node || useradd --create-home node
RUN mkdir -p /out && chown node:node /out
USER node
ENTRYPOINT ["node", "--import", "/app/node_modules/tsx/dist/loader.mjs", "/app/packages/cli/src/main.ts"]
CMD ["worker", "all"]
