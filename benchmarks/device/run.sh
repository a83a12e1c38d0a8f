#!/bin/bash
# Kept for the record: the script that ran issue #8's GPU study and issue #11's GPU figures on the lent H200
# (docs/benchmarks.md, "GPU runs"). It expects, in .devrun/ (git-ignored): site312.tar.xz (the wheels
# the GPU image lacks, for its Python 3.12) and data.tar.xz (the swiss-south train/val stores without
# their motion, which motion.py recomputes there on 16 cores).
# One device run (issue #8 study + shipped TMU to 2000 it; issue #11 item 3 GPU figures).
# Env: PY (python), DEV (cuda|cpu), ITS (study iterations), LIMIT (s for the whole script), OUT.
set -u
T0=$(date +%s)
PY=${PY:-python3}; DEV=${DEV:-cuda}; ITS=${ITS:-1000}; LIMIT=${LIMIT:-560}; FIG=${FIG:-1}
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
el() { echo $(( $(date +%s) - T0 )); }
if [ -f .devrun/site312.tar.xz ] && [ "$PY" = python3 ]; then
  mkdir -p /tmp/site && tar -xJf .devrun/site312.tar.xz -C /tmp/site || exit 3
  export PYTHONPATH=/tmp/site:$PWD
  # packages the image lacks, as cp312 wheels and pure or Cython sdists in .whl/ (git-ignored; pip download here)
  if ls .whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 3
  fi
  for sd in .whl/*.tar.gz; do [ -f "$sd" ] || continue
    $PY -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir --target /tmp/site "$sd" > $OUT/build.log 2>&1 || { tail -20 $OUT/build.log; exit 3; }
  done
  echo "packages at $(el) s"
else
  export PYTHONPATH=$PWD
fi
DATA=${DATA:-.devrun/data.tar.xz}
mkdir -p data/sim && if [ -d "$DATA" ]; then cp -r "$DATA"/. data/sim/; else tar -xf "$DATA" -C data/sim; fi || exit 4
echo "unpacked at $(el) s"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null; nproc --all; } | tee $OUT/env.txt
$PY -c "import torch,numpy,xarray,zarr,pysteps,cv2,pydantic,dask;import nowcast.training, benchmarks.radar_transfer;print('torch',torch.__version__,'numpy',numpy.__version__,'xarray',xarray.__version__,'zarr',zarr.__version__,'cv2',cv2.__version__, torch.cuda.is_available() and torch.cuda.get_device_name())" 2>&1 | grep -v Pysteps | tee -a $OUT/env.txt
[ ${PIPESTATUS[0]} -eq 0 ] || { echo "import check failed"; exit 5; }
$PY benchmarks/device/motion.py ${MOTION:-swiss-south-train swiss-south-val} 2>&1 | grep -v 'Pysteps\|consolidated' | tail -5 | tee $OUT/motion.log
echo "motion at $(el) s"
if [ "$FIG" = 1 ]; then
  $PY benchmarks/model_speed.py --device $DEV --sizes 2x32 4x64 --iterations 5 --variants fp32 bf16 --frames 16 --inputs 4 --sources 4 2>&1 | grep -v Pysteps | tee $OUT/speed64.txt
  $PY benchmarks/model_speed.py --device $DEV --sizes 2x32 --iterations 3 --variants fp32 bf16 --frame-size 512 --frames 16 --inputs 4 --batch 1 --sources 4 2>&1 | grep -v Pysteps | tee $OUT/speed512.txt
  echo "figures at $(el) s"
fi
REM=$(( LIMIT - $(el) - 40 ))
echo "training for at most $REM s"
mkdir -p $OUT/logs
# RUNS: "method:seed ..." (default: the 3-seed study; "none" for no study)
RUNS=${RUNS:-"tmu:0 tmu:1 tmu:2 scratch:0 scratch:1 scratch:2 finetune-nexrad-kbmx:0 finetune-nexrad-kbmx:1 finetune-nexrad-kbmx:2"}
[ "$RUNS" = none ] && RUNS=""
for r in $RUNS; do m=${r%%:*}; s=${r##*:}
  timeout -s INT -k 20 $REM $PY benchmarks/radar_transfer.py --train-only --methods $m --seeds $s --iterations $ITS ${STUDY_ARGS:-} --device $DEV --precision fp32 --threads 1 --data-workers ${STUDY_WORKERS:-0} > $OUT/logs/$m-s$s.log 2>&1 &
done
# BIAS_RUNS: "weight:seed ..." candidates of benchmarks/bias_selection.py (the shipped recipe with area_bias_weight)
for r in ${BIAS_RUNS:-}; do w=${r%%:*}; s=${r##*:}
  timeout -s INT -k 20 $REM $PY benchmarks/bias_selection.py --train-only --weights $w --seeds $s --device $DEV --precision fp32 --threads 1 --data-workers ${BIAS_WORKERS:-1} > $OUT/logs/bias$w-s$s.log 2>&1 &
done
# the shipped target, from scratch, with batch-making workers (SHIP=0: not this time)
if [ "${SHIP:-1}" = 1 ]; then
  timeout -s INT -k 20 $REM $PY -m nowcast train --config swiss-south-tmu --iterations ${SHIP_ITS:-2000} --no-resume --device $DEV --precision fp32 --threads 1 --data-workers ${SHIP_WORKERS:-4} --no-progress > $OUT/logs/shipped.log 2>&1 &
fi
if [ "${PYTEST:-0}" = 1 ]; then
  $PY -m pytest -q -p no:cacheprovider tests/test_training.py tests/test_precision.py -k "gpu" > $OUT/logs/pytest.txt 2>&1 &
  $PY -c "from nowcast.precision import bf16_speedup, resolve_precision as r; print('bf16 speed-up on cuda', round(bf16_speedup('cuda'), 3), '-> auto =', r('auto', 'cuda'))" > $OUT/logs/precision.txt 2>&1 &
fi
wait
echo "trained at $(el) s"
grep -h "it [0-9]*000/\|Error\|error\|passed\|failed\|speed-up" $OUT/logs/*.log $OUT/logs/*.txt | tail -60
tar -czf $OUT/logs.tgz -C $OUT logs && rm -rf $OUT/logs
# the seed-0 runs of scratch and finetune at the config's own budget write to the configs' own paths
# (radar_transfer.study_config), not under study/; a finished run needs no optimiser state back
CKPTS=$(ls models/runs/study/*.pt models/runs/bias/*.pt models/runs/swiss-south-*.pt 2>/dev/null)
DONE=$($PY -c "
import sys
from nowcast.models.zoo import load_checkpoint
for p in sys.argv[1:]:
    if not p.endswith('.state.pt') and int(load_checkpoint(p).metadata.get('iterations', 0)) >= $ITS:
        print(p[:-3] + '.state.pt')
" $CKPTS 2>/dev/null)
for d in $DONE; do CKPTS=$(echo "$CKPTS" | grep -vxF "$d"); done
[ "${SHIP:-1}" = 1 ] && CKPTS="$CKPTS models/zoo/swiss-south-tmu.pt models/zoo/swiss-south-tmu.state.pt"
[ -n "$CKPTS" ] && tar -cf - $CKPTS | split -b 15m - $OUT/ckpt.tar.
ls -la $OUT
echo "done at $(el) s"
