#!/bin/bash
# on the device: two trainings at once on the one GPU (dropout 0.1 and 0.2), same seed and corpus
cd "$(dirname "$0")" || exit 1
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
ls -la . corpus src | head -20
python3 -c "import lzma,gzip,shutil
with lzma.open('corpus/train.txt.xz') as src, gzip.open('corpus/train.txt.gz','wb',compresslevel=1) as dst: shutil.copyfileobj(src, dst)" || exit 1
ls -la corpus
python3 -c "import model_export.train, torch; print('import ok', torch.__version__, torch.cuda.is_available())" || exit 1
nvidia-smi --query-gpu=name --format=csv,noheader > $OUT/summary.txt
for d in 01 02; do
  mkdir -p /tmp/m$d
  python3 src/train_entry.py --device cuda --minutes ${MINUTES:-5.5} --alibi-max-bias 4 --dropout 0.${d#0} \
    --processes 7 --seed 1234 --corpus corpus -o /tmp/m$d --json > /tmp/m$d/summary.json 2> /tmp/m$d/train.log &
done
sleep 45; tail -n 2 /tmp/m01/train.log; tail -n 2 /tmp/m02/train.log
wait
for d in 01 02; do
  tail -4 /tmp/m$d/train.log; cat /tmp/m$d/summary.json
  cat /tmp/m$d/summary.json >> $OUT/summary.txt
  sha256sum /tmp/m$d/weights.npz >> $OUT/summary.txt
  (cd /tmp && tar czf - m$d | split -b 15m - $OUT/m$d.tgz.)
done
ls -la $OUT
