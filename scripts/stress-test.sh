#!/usr/bin/env bash
# Runs the whole suite three times in a row on a fresh clone of this repository's HEAD while
# one busy process per core keeps every core at 100%: a test that depends on an idle machine
# (a sleep, a tight time bound) fails here. Usage: scripts/stress-test.sh [RUNS]
# The log of each run is kept in the clone (stress-N.log); the exit status is 1 if any run failed.
set -u
runs=${1:-3}
repo=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
clone=$(mktemp -d /tmp/sandbox-stress.XXXXXX)
git clone -q "$repo" "$clone"
echo "fresh clone of $(git -C "$clone" rev-parse --short HEAD) in $clone"

burners=()
stop_burners() { kill "${burners[@]}" 2>/dev/null; }
trap stop_burners EXIT
for _ in $(seq "$(nproc)"); do
    python3 -c "while True: pass" &
    burners+=($!)
done
echo "${#burners[@]} busy processes keep the cores busy"

failed=0
for run in $(seq "$runs"); do
    start=$(date +%s)
    if (cd "$clone" && make test >"stress-$run.log" 2>&1); then verdict=passed; else
        verdict=FAILED
        failed=1
    fi
    summary=$(grep -E "^[0-9]+ (passed|failed)|[0-9]+ passed|[0-9]+ failed" "$clone/stress-$run.log" | tail -1)
    echo "run $run/$runs: $verdict in $(($(date +%s) - start)) s: $summary"
    [ "$verdict" = FAILED ] && grep -E "^(FAILED|ERROR) " "$clone/stress-$run.log"
done
exit $failed
