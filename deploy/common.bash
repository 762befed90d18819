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

# parse_dry_run_args ARG...: the launchers' common command line. -h/--help prints the
# calling script's `usage` and exits 0; --dry-run sets dry_run=1 (print, don't run);
# anything else is refused with exit 2.
# shellcheck disable=SC2034  # dry_run is read by the calling script.
parse_dry_run_args() {
    dry_run=0
    local arg
    for arg in "$@"; do
        case "$arg" in
            -h|--help) usage; exit 0 ;;
            --dry-run) dry_run=1 ;;
            *) echo "error: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
        esac
    done
}
