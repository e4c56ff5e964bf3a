#!/usr/bin/env bash
# The test files, in two groups run side by side (`npm test` runs this after setup, typecheck and lint):
# - the WebGPU files: on a machine without a GPU they run on Mesa's lavapipe, where compiling each WGSL program takes
#   2–5 s of one core (measured: 180 s for webgpu.test.ts with a cold shader cache, 37 s with a warm one) and no test
#   depends on wall-clock time;
# - every other file, one at a time (their redis-server, s3rver and workers are their own, on free ports): first the
#   fault-injection files, which spend most of their time waiting out outages, kills and backoffs — so the shader
#   compiles have a core — then the rest (node sorts the files of one run by name, hence two runs).
# The WebGPU group's report is printed after the others'. Exits non-zero if either group failed.
set -uo pipefail
cd "$(dirname "$0")/.."
node_test=(node --import tsx --test --test-concurrency=1 --test-timeout=600000)
gpu=(test/unit/webgpu.test.ts test/integration/webgpu-serving.test.ts)
waiting=(test/integration/faults.test.ts test/integration/nothing-lost.test.ts test/integration/sources.test.ts)
rest=()
for f in test/unit/*.test.ts test/integration/*.test.ts; do
  case " ${gpu[*]} ${waiting[*]} " in *" $f "*) ;; *) rest+=("$f") ;; esac
done
log=$(mktemp -t camflow-webgpu-tests.XXXXXX)
"${node_test[@]}" "${gpu[@]}" >"$log" 2>&1 &
gpu_pid=$!
trap 'kill "$gpu_pid" 2>/dev/null; rm -f "$log"' EXIT
trap 'exit 130' INT TERM
"${node_test[@]}" "${waiting[@]}"
waiting_rc=$?
"${node_test[@]}" "${rest[@]}"
rest_rc=$?
[ "$waiting_rc" -ne 0 ] && rest_rc=$waiting_rc
wait "$gpu_pid"
gpu_rc=$?
echo
echo "── the WebGPU tests (${gpu[*]}), run beside the others: exit ${gpu_rc} ──"
cat "$log"
if [ "$rest_rc" -ne 0 ] || [ "$gpu_rc" -ne 0 ]; then
  echo "camflow tests failed: the other files exited ${rest_rc}, the WebGPU files ${gpu_rc}" >&2
  exit 1
fi
