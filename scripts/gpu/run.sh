#!/usr/bin/env bash
# On a lent GPU machine, over the .gpu/ that scripts/gpu/pack.py made: unpack Node, Dawn and the
# Vulkan loader, make each build's weights from its seed, then run what is asked:
#   bench  benchmarks/bench_gpu.py on each sd15 build (WebGPU over Dawn beside PyTorch eager);
#          bench:NAME on the build packed as NAME only
#   gate   the conformance gate on sd15-tiny with the dawn backend (references: PyTorch there);
#          gate:NAME on the build packed as NAME (an sd15-tiny variant)
#   probe  scripts/gpu/probe_subgroup_matrix.mjs: Dawn's subgroup matrices (tensor cores) on fp16
#          GEMMs at the UNet's shapes, beside a plain fp16 tiled kernel
#   tiles  scripts/gpu/probe_gemm_tiles.mjs: subgroup-matrix GEMM layouts (several subgroups, staged
#          tiles, split K, f32 accumulation) at the UNet's GEMMs as the build emits them
#   perf   the perf gate over Dawn on sd15-tiny (perf:NAME another build): a baseline from two clean
#          runs, a third clean run judged against it, then the slow-kernel fault (must fail, named);
#          WSD_PERF_K sets the gate's -k (default "clip or unet or vae")
#   pipelines:NAME  scripts/gpu/probe_pipelines.mjs: every pipeline of a build created several ways
#          (all async at once, serial, N in flight), the driver's disk cache off, then on
#   pipeline:NAME  benchmarks/bench_pipeline_gpu.py on the build packed as NAME (any family, SDXL too):
#          a whole generation over WebGPU beside diffusers' pipeline in PyTorch, and the images' PSNR
# WSD_BENCH_ARGS adds bench_gpu.py options (e.g. --flush-sweep= to time only the default pacing);
# WSD_GATE_ARGS adds gate options (e.g. --gemm-path tiled: a --subgroup-matrix build without tensor cores).
# Results go to $OUT (the device tool brings them back) and to benchmarks/results/.
set -euo pipefail
cd "$(dirname "$0")/../.."
G=.gpu
T=/tmp/wsd-gpu
OUT=${OUT:-$PWD/reports/gpu}
mkdir -p "$OUT" $T/bin $T/node_modules/webgpu/dist/linux-x64 $T/site
for f in $G/debs/*.deb; do dpkg -x "$f" /; done
ldconfig
if [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
xz -dc $G/node.xz > $T/bin/node && chmod +x $T/bin/node
xz -dc $G/dawn/dawn.node.xz > $T/node_modules/webgpu/dist/linux-x64/dawn.node
cp $G/dawn/package.json $T/node_modules/webgpu/
python3 -m pip install -q --no-index --no-deps --no-compile --target $T/site $G/wheels/*.whl
export PATH=$T/bin:$PATH PYTHONPATH=$T/site:$PWD PYTHONUNBUFFERED=1
export WSD_DAWN_MODULES=$T/node_modules WSD_TVMJS_BUNDLE=$PWD/$G/tvmjs.bundle.js
[ ! -d $G/dists ] || find $G/dists -name "*.xz" -exec xz -d {} +
# one refill call for all: builds with the same tensor cache share the first one's shards
refill() {
  local todo=()
  for d in "$@"; do [ -n "$(ls "$d"/*.bin 2>/dev/null)" ] || todo+=("$d"); done
  [ ${#todo[@]} -eq 0 ] || python3 -m wsd.refill "${todo[@]}"
}
# the preset a packed build was made from (the gate's --model; the references are made from its seed)
model_of() { python3 -c "import json,sys; print(json.load(open(sys.argv[1] + '/manifest.json'))['model'])" "$1"; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
for what in "$@"; do
  case "$what" in
    bench|bench:*)
      picked=()
      for d in $G/dists/sd15*/; do
        case "$d" in *tiny*) continue ;; esac
        if [ "$what" != bench ] && [ "$(basename "$d")" != "${what#bench:}" ]; then continue; fi
        picked+=("$d")
      done
      refill "${picked[@]}"
      for d in "${picked[@]}"; do
        python3 benchmarks/bench_gpu.py --dist "$d" --label "$(basename "$d")" --out "$OUT" ${WSD_BENCH_ARGS:-} 2>&1 | grep -v "it/s]" | tee -a "$OUT/bench.log"
      done ;;
    gate|gate:*)
      name=sd15-tiny; [ "$what" = gate ] || name=${what#gate:}
      refill $G/dists/$name
      python3 -m pytest -p conformance.plugin -m conformance conformance/gate -p no:cacheprovider -p no:xdist --backend dawn \
        --model "$(model_of $G/dists/$name)" --built "dawn=$G/dists/$name" --accept-drift --report-dir $T/gate-$name ${WSD_GATE_ARGS:-} 2>&1 | tail -40 | tee "$OUT/gate-$name.log" || true
      # the device tool brings back few files: the summary, not the image report
      cp $T/gate-$name/summary.json "$OUT/gate-$name-summary.json" || true ;;
    perf|perf:*)
      # the perf gate on the GPU: two clean runs record the baseline, a third clean run must pass
      # against it, the slow-kernel fault must fail naming its kernel
      name=sd15-tiny; [ "$what" = perf ] || name=${what#perf:}
      refill $G/dists/$name
      gate=(python3 -m pytest -p conformance.plugin -m conformance conformance/gate -p no:cacheprovider -p no:xdist
        --backend dawn --model "$(model_of $G/dists/$name)" --built "dawn=$G/dists/$name" --accept-drift --perf -k "${WSD_PERF_K:-clip or unet or vae}")
      # the baseline from two processes (their spread is noise one process cannot see)
      "${gate[@]}" --report-dir $T/perf-clean1 2>&1 | tail -3 | tee "$OUT/perf-$name.log" || true
      "${gate[@]}" --report-dir $T/perf-clean2 2>&1 | tail -3 | tee -a "$OUT/perf-$name.log" || true
      python3 -m conformance.cli perf-baseline $T/perf-clean1/summary.json $T/perf-clean2/summary.json --out "$OUT/perf-baseline-$name.json" | tee -a "$OUT/perf-$name.log"
      "${gate[@]}" --perf-baseline "$OUT/perf-baseline-$name.json" --report-dir $T/perf-clean3 2>&1 | grep -E "perf:|passed|failed" | tail -6 | tee -a "$OUT/perf-$name.log" || true
      "${gate[@]}" --perf-baseline "$OUT/perf-baseline-$name.json" --inject slow-kernel --report-dir $T/perf-slow 2>&1 | grep -E "perf:|passed|failed" | tail -6 | tee -a "$OUT/perf-$name.log" || true
      cp $T/perf-clean3/summary.json "$OUT/perf-clean3-$name-summary.json" || true
      cp $T/perf-slow/summary.json "$OUT/perf-slow-$name-summary.json" || true ;;
    probe)
      node scripts/gpu/probe_subgroup_matrix.mjs "$OUT/probe-subgroup-matrix.json" > "$OUT/probe.log" 2>&1 || tail -20 "$OUT/probe.log" ;;
    pipelines:*)
      # every pipeline of a build created several ways, the driver's disk cache off; then the page's
      # way twice with the cache on (cold, then warm)
      d=$G/dists/${what#pipelines:}
      __GL_SHADER_DISK_CACHE=0 node scripts/gpu/probe_pipelines.mjs "$d" "$OUT/probe-pipelines-nocache.json" 2>&1 | grep -v -i "warning" | tail -12
      WSD_PROBE_WAYS=async-all,async-all node scripts/gpu/probe_pipelines.mjs "$d" "$OUT/probe-pipelines-cache.json" 2>&1 | grep -v -i "warning" | tail -4 ;;
    tiles)
      node scripts/gpu/probe_gemm_tiles.mjs "$OUT/probe-gemm-tiles.json" 2>&1 | grep -v -i "warning\|^ *at \|^$" | tail -30 ;;
    pipeline:*)
      refill "$G/dists/${what#pipeline:}"
      python3 benchmarks/bench_pipeline_gpu.py --dist "$G/dists/${what#pipeline:}" --out "$OUT" 2>&1 | grep -v "it/s]" | tee -a "$OUT/pipeline.log" ;;
    *) echo "unknown step $what (bench, bench:NAME, gate, gate:NAME, perf, perf:NAME, probe, tiles, pipelines:NAME, pipeline:NAME)"; exit 2 ;;
  esac
done
