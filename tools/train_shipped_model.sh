#!/usr/bin/env bash
# Reproduces models/tandem-tiny from nothing: corpus, tokenizer, base model, exit
# heads, calibration, fp16 export and the model card. The shipped model was
# trained in fp32 (--precision fp32 keeps that on CPUs where auto would pick
# bf16); docs/training.md has the longer bf16 run of 2026-12-07 and why it was
# not shipped. Takes ~2 hours on 2 cores
# (the base model's 80-minute budget dominates). Run from the repository root
# after `make build`. Not run in CI.
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
  --steps 3000 --batch 8 --seq-len 256 --lr 1.5e-3 --warmup 100 \
  --exit-layers 2,4 --exit-weight 0.5 --exit-stride 4 --max-minutes 80 --precision fp32 \
  --eval-every 100 --save-every 100 --log-every 20 2>&1 | tee data/runs/train.log

# Exit heads at 2 and 4 (= the split), backbone frozen: KL to the final layer + CE.
"$T" train-exits --model "$RUN" --exits 2,4 --train data/corpus/train.bin \
  --adapter-rank 16 --steps 400 --batch 8 --seq-len 256 --lr 2e-3 --max-minutes 8 --precision fp32 \
  --log-every 20 2>&1 | tee data/runs/train_exits.log

# Thresholds on the validation split for 99% overall agreement, split at 4.
"$T" calibrate --model "$RUN" --data data/corpus/valid.bin --target-agreement 0.99 --split 4 \
  | tee data/runs/calibrate.log

"$T" export --model "$RUN" --out "$OUT" --dtype float16
tools/make_model_card.py --model "$OUT"
