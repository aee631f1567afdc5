#!/usr/bin/env bash
# Reproduces models/tandem-tiny from nothing: corpus, tokenizer, base model, exit
# heads, calibration, fp16 export and the model card. Run from the repository
# root after `make build`. Not run in CI.
#
# Time: the base model's budget dominates (--max-minutes 72). On a CPU with
# AVX512_BF16/AMX-BF16, --precision auto trains with bf16 autocast at ~3,400
# tokens/s on 2 cores, so the 6,000 steps (12.3M tokens, ~5.5 epochs) take ~60
# minutes; on an AVX2-only CPU it runs in fp32 at ~450 tokens/s and stops at the
# time budget after ~1,000 steps (the card records which path a run took).
set -euo pipefail
T=${TANDEM:-build/examples/tandem}
RUN=${RUN:-data/runs/tandem-tiny}
OUT=models/tandem-tiny

tools/install_training_deps.sh
tools/prepare_corpus.py
tools/train_tokenizer.py
tools/tokenize_corpus.py
# Out-of-domain evaluation text (never trained on): The Devil's Dictionary.
tools/prepare_ood.py
tools/tokenize_corpus.py --corpus data/ood --splits devil

# Base model: 8 layers, d=256, GQA 8/4, SwiGLU 688, early-exit loss at 2 and 4.
"$T" train --train data/corpus/train.bin --valid data/corpus/valid.bin \
  --tokenizer "$OUT/tokenizer.json" --out "$RUN" \
  --layers 8 --hidden 256 --heads 8 --kv-heads 4 --intermediate 688 --context 512 \
  --steps 6000 --batch 8 --seq-len 256 --lr 1.5e-3 --warmup 100 \
  --exit-layers 2,4 --exit-weight 0.5 --exit-stride 4 --max-minutes 72 --precision auto \
  --eval-every 200 --save-every 200 --log-every 20 2>&1 | tee data/runs/train.log

# Exit heads at 2 and 4 (= the split), backbone frozen: KL to the final layer + CE.
"$T" train-exits --model "$RUN" --exits 2,4 --train data/corpus/train.bin \
  --adapter-rank 16 --steps 1500 --batch 8 --seq-len 256 --lr 2e-3 --max-minutes 12 \
  --precision auto --log-every 20 2>&1 | tee data/runs/train_exits.log

# Thresholds on the validation split for 99% overall agreement, split at 4.
"$T" calibrate --model "$RUN" --data data/corpus/valid.bin --target-agreement 0.99 --split 4 \
  | tee data/runs/calibrate.log

"$T" export --model "$RUN" --out "$OUT" --dtype float16
tools/make_model_card.py --model "$OUT"
