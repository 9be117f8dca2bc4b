#!/usr/bin/env bash
# Rebuilds README.md and BENCHMARKS.md from their parts: each area keeps its
# user documentation in docs/readme/<area>.md and its measurements in
# docs/bench/<area>.md. Run from anywhere: bash docs/assemble.sh
set -euo pipefail
cd "$(dirname "$0")/.."
r=docs/readme
parts=("$r/00-head.md" "$r/node.md" "$r/train.md" "$r/infer.md" "$r/descriptors.md" "$r/overlay.md" "$r/transfer.md" "$r/taskpool.md" "$r/learn.md" "$r/node-config.md" "$r/99-layout.md" "$r/98-status.md")
{
  first=1
  for p in "${parts[@]}"; do
    [ $first -eq 1 ] || echo
    first=0
    cat "$p"
  done
} > README.md

b=docs/bench
{
  cat "$b/00-head.md"; echo
  cat <<'TOC'
Contents: [node core](#the-node-core-benchnode) ·
[descriptors](#descriptors-size-signing-discovery-latency) ·
[live map](#live-map-overlay) · [transfer](#transfer-throughput-against-a-plain-tcp-copy-and-a-tls-13-copy) ·
[task pools](#task-pools) · [training over real nodes](#federated-training-over-real-nodes-benchtrain) ·
[inference](#inference-over-the-network-benchinfer) ·
[FedAvg against the paper](#fedavg-on-real-mnist-against-mcmahan-et-al-2017)
TOC
  for p in node descriptors overlay transfer taskpool train infer; do echo; cat "$b/$p.md"; done
  echo; sed 's|](fedavg.png)|](docs/bench/fedavg.png)|' "$b/fedavg.md"
} > BENCHMARKS.md
