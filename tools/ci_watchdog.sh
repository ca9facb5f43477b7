#!/usr/bin/env bash
# Fresh-clone CI under a stall watchdog: clones REPO into DIR/main (with DIR/shared -> SHARED, as CI has it), runs
# .ci/run there, and when the log stops growing for STALL seconds while pytest runs, dumps the Python and native
# stacks of every process of that clone (pytest and its DataLoader workers) into DIR/stall.txt with py-spy
# (pip install py-spy). Made to catch a rare hang in torch's fd passing between loader workers and the test
# process (main process in multiprocessing's resource_sharer recvfds), whose workers' stacks were never seen.
#
#   tools/ci_watchdog.sh [REPO] [DIR]      # defaults: this checkout, /tmp/fresh; SHARED defaults to REPO/../shared
set -u
REPO=$(cd "${1:-$(dirname "$0")/..}" && pwd)
DIR=${2:-/tmp/fresh}
SHARED=${SHARED:-$REPO/../shared}
STALL=${STALL:-150}
PYSPY=${PYSPY:-$(command -v py-spy || echo "$REPO/.venv/bin/py-spy")}
rm -rf "$DIR" && mkdir -p "$DIR" && git clone -q "$REPO" "$DIR/main" && ln -s "$(cd "$SHARED" && pwd)" "$DIR/shared"
log=$DIR/ci.log
(cd "$DIR/main" && CI=true bash .ci/run > "$log" 2>&1; echo "CI rc=$?" >> "$log") &
last=0
same=0
while sleep 15; do
  grep -q "^CI rc=" "$log" && break
  size=$(stat -c %s "$log")
  if [ "$size" = "$last" ]; then same=$((same + 15)); else same=0; last=$size; fi
  if [ "$same" -ge "$STALL" ] && pgrep -f "$DIR/main/.venv/bin/python -m pytest" > /dev/null; then
    for p in $(pgrep -f "$DIR/main/.venv/bin/python"); do
      echo "=== pid $p ppid $(ps -o ppid= -p "$p"): $(tr '\0' ' ' < "/proc/$p/cmdline" | head -c 150)" >> "$DIR/stall.txt"
      "$PYSPY" dump --native --pid "$p" >> "$DIR/stall.txt" 2>&1
    done
    echo "STALL: stacks in $DIR/stall.txt" >> "$log"
    same=-100000  # dump once
  fi
done
tail -n 3 "$log"
