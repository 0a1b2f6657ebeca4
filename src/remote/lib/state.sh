# The app's state directory: its state file (color, version, image, mode) and its append-only
# history. Globals: STATE_DIR; RUN_VERSION and RUN_IMAGE, what this run puts in place (a deploy's
# version and image; on a rollback, the version it goes back to and its image), set once by main.

STATE_DIR=''
RUN_VERSION=''
RUN_IMAGE=''

state_dir_pick() {
  if [[ -n "${P[state_dir]}" ]]; then STATE_DIR="${P[state_dir]}"
  elif [[ "$(id -u)" == 0 ]]; then STATE_DIR="/var/lib/bg-deploy/${P[app]}"
  else STATE_DIR="$HOME/.bg-deploy/${P[app]}"
  fi
}

state_init() {
  state_dir_pick
  mkdir -p "$STATE_DIR" || die "cannot create the state directory $STATE_DIR"
  chmod 700 "$STATE_DIR"
  # a full disk would stop the run half-way through writing its state: refuse before any change
  local free
  free="$(df -Pk "$STATE_DIR" 2>/dev/null | awk 'NR == 2 { print $4 }')"
  if [[ "$free" =~ ^[0-9]+$ ]] && ((free < 1024)); then
    die "the filesystem of the state directory $STATE_DIR has only ${free} KB free; bg-deploy needs 1 MB there for its state, history and lock. Free some space and run again. Nothing was changed."
  fi
}

state_get() { # state_get KEY -> value from the state file, empty when absent
  [[ -f "$STATE_DIR/state" ]] || return 0
  sed -n "s/^$1=//p" "$STATE_DIR/state" | tail -n 1
}

state_write() { # state_write color version image
  local tmp="$STATE_DIR/.state.tmp"
  if ! printf 'color=%s\nversion=%s\nimage=%s\nupdated=%s\nswitch_mode=%s\nport=%s\nlive_port=%s\nnat_chain=%s\n' \
    "$1" "$2" "$3" "$(date -u +%FT%TZ)" "$SWITCH_MODE" "$(color_port "$1")" "${P[live_port]}" "$(nat_chain)" >"$tmp" \
    || ! mv -f "$tmp" "$STATE_DIR/state"; then
    die "cannot write $STATE_DIR/state (disk full?)"
  fi
}

HISTORY_KEEP=1000 # rows the history keeps: trimmed to that once it holds 200 more

history_add() { # history_add RESULT [COLOR]: this run's action, version and image, and how it ended
  local f="$STATE_DIR/history"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "${P[actor]:--}" "${P[run_url]:--}" \
    "${P[action]}" "${RUN_VERSION:--}" "${RUN_IMAGE:--}" "${2:--}" "$1" >>"$f" 2>/dev/null \
    || log "warning: could not append to $f"
  if (($(wc -l <"$f" 2>/dev/null || echo 0) > HISTORY_KEEP + 200)); then
    if tail -n "$HISTORY_KEEP" "$f" >"$f.tmp" 2>/dev/null; then mv -f "$f.tmp" "$f"; else rm -f "$f.tmp"; fi
  fi
}

# Versions deployed successfully here, newest first, one per line: VERSION<TAB>IMAGE.
history_versions() {
  [[ -f "$STATE_DIR/history" ]] || return 0
  awk -F'\t' '$8 == "ok" && $5 != "-" { print $5 "\t" $6 }' "$STATE_DIR/history" | tac | awk -F'\t' '!seen[$1]++'
}

# shellcheck disable=SC2317 # called by the EXIT trap
serving_print() { # what serves as the script ends (success or not), from the state file
  [[ -f "$STATE_DIR/state" ]] || return 0
  marker serving "color=$(state_get color) version=$(state_get version)"
}

# shellcheck disable=SC2317 # called by the EXIT trap
history_print() { # history_print [N]: the last N (5) history lines
  [[ -f "$STATE_DIR/history" ]] || return 0
  local line
  while IFS= read -r line; do marker history "$line"; done < <(tail -n "${1:-5}" "$STATE_DIR/history")
}

# action status: what serves and the last 10 history lines; reads, takes no lock, changes nothing
status_print() {
  state_dir_pick
  if [[ ! -d "$STATE_DIR" ]]; then log "nothing was deployed here for ${P[app]} (no $STATE_DIR)"; return 0; fi
  history_print 10
  serving_print
}
