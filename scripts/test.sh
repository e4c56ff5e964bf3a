#!/usr/bin/env bash
# The test files, in two groups run side by side (`npm test` runs this after setup, typecheck and lint):
# - the WebGPU files: on a machine without a GPU they run on Mesa's lavapipe, where compiling each WGSL program takes
#   2–5 s of one core (measured: 180 s for webgpu.test.ts with a cold shader cache, 37 s with a warm one) and no test
#   depends on wall-clock time;
# - every other file, one at a time (their redis-server, s3rver and workers are their own, on free ports): first the
#   fault-injection files, which spend most of their time waiting out outages, kills and backoffs — so the shader
#   compiles have a core — then the rest (node sorts the files of one run by name, hence two runs).
# When the WebGPU files are done, the same background stream runs the unit files and the integration files that assert
# no timing (object store, bad input, pipeline, slides, fields, eval, training, dev, tracing) or only a generous one
# (sources: a refused listing ends within 30 s), so both cores stay busy to the end. Measured on the 2-core machine
# (2026-11-29): the files in front took 700–815 s and those beside them 510–610 s with sources in front; sources
# (100–130 s) moved beside to even them.
# The background stream's report is printed after the others'. Exits non-zero if either stream failed.
set -uo pipefail
cd "$(dirname "$0")/.."
node_test=(node --import tsx --test --test-concurrency=1 --test-timeout=600000)
gpu=(test/unit/webgpu.test.ts test/integration/webgpu-serving.test.ts)
waiting=(test/integration/faults.test.ts test/integration/nothing-lost.test.ts)
beside=(test/integration/object-store.test.ts test/integration/bad-input.test.ts test/integration/pipeline.test.ts test/integration/slides.test.ts test/integration/fields.test.ts test/integration/eval.test.ts test/integration/training.test.ts test/integration/dev.test.ts test/integration/tracing.test.ts test/integration/sources.test.ts)
for f in test/unit/*.test.ts; do
  case " ${gpu[*]} " in *" $f "*) ;; *) beside+=("$f") ;; esac
done
rest=()
for f in test/integration/*.test.ts; do
  case " ${gpu[*]} ${waiting[*]} ${beside[*]} " in *" $f "*) ;; *) rest+=("$f") ;; esac
done
log=$(mktemp -t camflow-webgpu-tests.XXXXXX)
(
  "${node_test[@]}" "${gpu[@]}"
  gpu_rc=$?
  "${node_test[@]}" "${beside[@]}"
  beside_rc=$?
  [ "$gpu_rc" -eq 0 ] && [ "$beside_rc" -eq 0 ]
) >"$log" 2>&1 &
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
echo "── run beside the others: the WebGPU files (${gpu[*]}), then ${beside[*]}: exit ${gpu_rc} ──"
cat "$log"
if [ "$rest_rc" -ne 0 ] || [ "$gpu_rc" -ne 0 ]; then
  echo "camflow tests failed: the files in front exited ${rest_rc}, those beside them ${gpu_rc}" >&2
  exit 1
fi
