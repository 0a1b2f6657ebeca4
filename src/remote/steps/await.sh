# Step (a deploy that overlaps the runner's build, build_wait > 0; one server, or each app server
# of a run over several): the lock, the checks, the recovery, which color serves and the registry
# login have run while the runner builds and pushes the image. Now wait for its word: `pull` (the
# image is in the registry: go on) or `abort` (its build failed). Without a word within build_wait
# seconds (a runner that died or hangs), give up: nothing here changed, and the lock is free again
# as the script ends.

# Whether TO_COLOR has a container, found while waiting: start_color need not ask Docker again.
IDLE_EXISTS=''
# The runner's word that the image is pushed: `pull`, or to an app server `pull COLOR` (await_word).
AWAIT_WORD=''

await_image() { # await_image FROM_COLOR TO_COLOR
  registry_login
  if container_exists "$2"; then IDLE_EXISTS=yes; else IDLE_EXISTS=no; fi
  command_await locked "color=$2 previous_color=$1"
  await_word
}

# An app server behind a load balancer, started while the image builds and before the load balancer
# said which color to start (no color parameter): the lock and the checks have run; wait for
# `pull COLOR` (the image is pushed, start COLOR) or `abort`, as await_image does.
await_color() {
  registry_login
  await_word
  [[ "$AWAIT_WORD" == "pull "* ]] || die "the runner said pull without the color to start: nothing was changed here"
  P[color]="${AWAIT_WORD#pull }"
}

# Wait for the runner's word into AWAIT_WORD; `abort` (its build or release failed), or none within
# build_wait seconds, ends the script with nothing changed.
await_word() {
  local cmd
  cmd="$(command_next "${P[build_wait]}")"
  AWAIT_WORD="$cmd"
  case "$cmd" in
    pull) ;;
    "pull blue" | "pull green") ;;
    abort) die "the runner's build or release failed (it said abort): nothing was changed here" ;;
    *)
      marker error "no image from the runner within ${P[build_wait]}s of waiting (build_wait): nothing was changed here"
      exit "$EXIT_AWAIT_GAVE_UP" # the runner then starts the script anew ;;
  esac
}
