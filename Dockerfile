# camflow services image: ingest CLI, trainer and cam-worker share it; the command picks the role.
# GPU images: build with --build-arg TFJS_GPU=1 on a CUDA base to add @tensorflow/tfjs-node-gpu.
FROM node:20-bookworm-slim
ARG TFJS_GPU=0
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json .npmrc ./
COPY packages/common/package.json packages/common/
COPY packages/ingest/package.json packages/ingest/
COPY packages/trainer/package.json packages/trainer/
COPY packages/cam-worker/package.json packages/cam-worker/
COPY packages/cli/package.json packages/cli/
RUN npm ci --include=dev --no-audit --no-fund \
 && if [ "$TFJS_GPU" = "1" ]; then npm install --no-save @tensorflow/tfjs-node-gpu; fi
COPY tsconfig.json ./
COPY packages packages
USER node
ENTRYPOINT ["node", "--import", "tsx", "packages/cli/src/main.ts"]
CMD ["worker", "all"]
