# Helpers shared by the deploy/ launchers; sourced by them, never run on its own.
# (startup.sh runs alone on the VM and does not use it.)

# require_vars SCRIPT NAME...: exits 2, naming every NAME that is unset or empty,
# so a launcher fails before it creates anything billable.
require_vars() {
    local script=$1 name
    shift
    local missing=()
    for name in "$@"; do
        [[ -n "${!name:-}" ]] || missing+=("$name")
    done
    if (( ${#missing[@]} )); then
        echo "error: set ${missing[*]} (see $script --help)" >&2
        exit 2
    fi
}
