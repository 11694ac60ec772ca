# Shared helpers of the scripts in this directory. Source it after setting `script` (the
# name prefixed to messages) and `log` (a scratch file the script removes on exit):
#
#   script=chart-check
#   log="$(mktemp)"; trap 'rm -f "$log"' EXIT
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# fail MESSAGE...: prints "<script>: MESSAGE" to stderr and exits 1.
fail() {
    echo "$script: $*" >&2
    exit 1
}

# run DESCRIPTION CMD...: runs CMD with its output captured; prints it only on failure.
run() {
    local what="$1"
    shift
    if ! "$@" >"$log" 2>&1; then
        echo "$script: $what failed: $*" >&2
        cat "$log" >&2
        exit 1
    fi
}

# as_root CMD...: runs CMD as root, through sudo when needed and available.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n "$@"
    else
        echo "$script: '$*' needs root: run this script as root or install sudo" >&2
        return 1
    fi
}
