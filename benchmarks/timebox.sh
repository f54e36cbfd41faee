# Time-boxed parts for benchmarks/gpu_check.sh; expects $logs (a folder) and $timings (a file).
# ``part NAME SECONDS COMMAND...`` runs COMMAND for at most SECONDS, logging to $logs/NAME.log,
# appending "NAME: rc RC, S s" to $timings and returning COMMAND's exit status. The whole check
# ends by GPU_CHECK_SECONDS (default 470) after its start: a part is cut at that deadline (and
# killed 10 s after a SIGTERM it ignores), and one with under 10 s left is skipped, which
# $timings says; a skipped part returns 125.
deadline=${GPU_CHECK_SECONDS:-470}

part() {
    local name=$1 limit=$2 start=$SECONDS
    shift 2
    local left=$((deadline - SECONDS))
    if ((left < 10)); then
        echo "$name: skipped, the check is out of time" | tee -a "$timings"
        return 125
    fi
    timeout -k 10 "$((limit < left ? limit : left))" "$@" >"$logs/$name.log" 2>&1
    local rc=$?
    echo "$name: rc $rc, $((SECONDS - start)) s" | tee -a "$timings"
    return "$rc"
}
