# Step: one deploy or rollback of an app at a time. Globals: LOCK_FD.

LOCK_FD=9

lock_acquire() {
  local holder
  exec 9>>"$STATE_DIR/lock"
  if ! flock -n "$LOCK_FD"; then
    holder="$(cat "$STATE_DIR/lock.holder" 2>/dev/null || echo 'unknown')"
    log "another deploy of ${P[app]} holds the lock ($holder); waiting up to ${P[lock_timeout]}s"
    flock -w "${P[lock_timeout]}" "$LOCK_FD" \
      || die "timed out after ${P[lock_timeout]}s waiting for the deploy lock of ${P[app]}, held by: $holder"
  fi
  printf '%s since %s\n' "${P[run_url]:-a run without URL}" "$(date -u +%FT%TZ)" >"$STATE_DIR/lock.holder"
}
