#!/bin/sh
# A federation of separate daitn processes on this machine (loopback only):
# an MPVU, N data nodes with MNIST shards and a client that trains the 2NN.
#   examples/mnist/run.sh [N] [job.toml]
# Needs `daitn` on PATH (go install ./cmd/daitn) or DAITN=path/to/daitn.
set -eu
N=${1:-3}
JOB=${2:-$(dirname "$0")/job.toml}
DAITN=${DAITN:-daitn}
DIR=$(mktemp -d /tmp/daitn-mnist-XXXXXX)
PIDS=""
cleanup() { for p in $PIDS; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT INT TERM

"$DAITN" up --local --data "$DIR/mpvu" --roles mpvu >"$DIR/mpvu.log" 2>&1 & PIDS="$PIDS $!"
i=0; until "$DAITN" id --data "$DIR/mpvu" --json >"$DIR/id.json" 2>/dev/null; do i=$((i+1)); [ $i -lt 100 ] || exit 1; sleep 0.2; done
BOOT=$(tr ',' '\n' <"$DIR/id.json" | grep -o '"/ip4/127.0.0.1/tcp/[^"]*' | head -1 | tr -d '"')
echo "MPVU up at $BOOT"

k=1; while [ $k -le "$N" ]; do
  "$DAITN" up --local --data "$DIR/d$k" --roles data --bootstrap "$BOOT" >"$DIR/d$k.log" 2>&1 & PIDS="$PIDS $!"
  k=$((k+1))
done
"$DAITN" up --local --data "$DIR/client" --bootstrap "$BOOT" >"$DIR/client.log" 2>&1 & PIDS="$PIDS $!"

k=1; while [ $k -le "$N" ]; do
  i=0; until "$DAITN" data add-mnist "$k/$N" --data "$DIR/d$k" 2>/dev/null; do i=$((i+1)); [ $i -lt 100 ] || exit 1; sleep 0.2; done
  k=$((k+1))
done

i=0; until ID=$("$DAITN" train submit "$JOB" --data "$DIR/client" 2>"$DIR/submit.err"); do
  i=$((i+1)); [ $i -lt 100 ] || { cat "$DIR/submit.err"; exit 1; }; sleep 0.5
done
echo "job $ID"
"$DAITN" train watch "$ID" --data "$DIR/client"
"$DAITN" train get "$ID" -o model.bin --data "$DIR/client"
