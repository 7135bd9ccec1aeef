# Sourced by scripts/test.sh and scripts/partition.sh: stop background jobs and all under them.
#
# A background job of a non-interactive shell ignores Ctrl-C (SIGINT), and so do the
# pytests it starts: a trap has to stop them by hand. SIGTERM goes to each job's shell
# first (so that it starts nothing more), then to every process under it, except the
# partition suite's janitors (`python -m testbed.netns janitor`): they must outlive their
# pytest, to remove its test hosts and containers once it is gone.

descendants() {  # PID: every process under it, janitors (and what is under them) left out
  local child
  for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do
    case "$(ps -o args= -p "$child" 2>/dev/null)" in
      *"testbed.netns janitor"*) continue ;;
    esac
    echo "$child"
    descendants "$child"
  done
}

stop_tree() {  # PID...: SIGTERM to each and to everything under it; then wait for them
  local pid under
  for pid in "$@"; do
    under=$(descendants "$pid")
    # shellcheck disable=SC2086  # one pid a word
    kill -TERM "$pid" $under 2>/dev/null || true
  done
  for pid in "$@"; do
    wait "$pid" 2>/dev/null || true
  done
}
