# A run in two phases (roles host, app and lb): the script reports the stage it reached
# (`::bg-deploy-await:: STAGE key=value...`) and waits for the runner's next command, one word per
# line on the rest of stdin (fd 6): switch, finish, keep, undo, abort. The journal file says where
# an unfinished run stopped, for the next run and for a person looking at the server.

# The runner's next command, or `eof` when its SSH session ended or it sent nothing within
# TIMEOUT seconds (default commit_timeout). Once the runner is gone, this run's messages go to
# $STATE_DIR/runner-gone.log.
command_next() { # command_next [TIMEOUT]
  local cmd=''
  if read -r -t "${1:-${P[commit_timeout]}}" -u 6 cmd && [[ "$cmd" =~ ^[a-z]+(\ (blue|green))?$ ]]; then
    printf '%s' "$cmd"
  else
    printf eof
  fi
}

command_await() { # command_await STAGE [key=value...]: the stage reached, for the runner (with
  # the version that served when the run took the lock)
  [[ " ${PROTOCOL_STAGES[*]} " == *" $1 "* ]] || die "stage '$1' is not declared in src/remote/protocol.ts"
  marker await "$* previous_version=$PREVIOUS_VERSION"
}

# After `eof`: nobody reads the SSH session any more; what this run still says goes to a file.
runner_gone() {
  exec 2>>"$STATE_DIR/runner-gone.log" 7>&2 8>&2
  log "$(date -u +%FT%TZ) the runner of ${P[run_url]:-this run} went away (or sent nothing for ${P[commit_timeout]}s) at: $1"
}

journal_write() { # journal_write STAGE COLOR: where this run stands, for the next one
  if ! printf 'stage=%s\ncolor=%s\nversion=%s\nimage=%s\nrun=%s\nrole=%s\nupdated=%s\n' "$1" "$2" "$RUN_VERSION" \
    "$RUN_IMAGE" "${P[run_url]:--}" "${P[role]}" "$(date -u +%FT%TZ)" >"$STATE_DIR/journal.tmp" \
    || ! mv -f "$STATE_DIR/journal.tmp" "$STATE_DIR/journal"; then
    log "warning: could not write $STATE_DIR/journal"
  fi
}

journal_get() { # journal_get KEY
  [[ -f "$STATE_DIR/journal" ]] || return 0
  sed -n "s/^$1=//p" "$STATE_DIR/journal" | tail -n 1
}

journal_clear() { rm -f "$STATE_DIR/journal"; }

# What an unfinished run left, said once at the start: this run finishes or replaces it.
journal_report() {
  [[ -f "$STATE_DIR/journal" ]] || return 0
  log "the run $(journal_get run) stopped at stage $(journal_get stage) (color $(journal_get color), version $(journal_get version)); this run takes over from there"
}

# A color prepared and kept by a run with promote: false, running RUN_IMAGE as RUN_VERSION: a later
# run promotes that container instead of starting another.
journal_kept() { # journal_kept COLOR
  [[ "$(journal_get stage)" == kept && "$(journal_get color)" == "$1" && "$(journal_get version)" == "$RUN_VERSION" \
    && "$(journal_get image)" == "$RUN_IMAGE" ]] && container_running "$1"
}
