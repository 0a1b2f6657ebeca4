# Step (canary: percentages): before the full switch, a share of the clients goes to the new
# color, step by step, each step canary_step_time seconds. The upstream hashes canary_key over
# both colors with weights (new: the step's percent, old: the rest; nginx's hash walks the servers
# in order), so a client stays on its version within a step, and one on the new version stays on
# it as the share grows. nginx's answers of each color in the same seconds are told apart by the
# upstream's address (steps/watch.sh writes the canary's log) and compared as the watch compares
# them; a breach sends every client back to the old color in one write and fails the run. After
# the last step come the full switch and the watch. Globals: CANARY_*.

CANARY_TO=''    # the new color while the canary runs (the watch's log tells its answers apart)
CANARY_SHARE=0  # the percent of clients the upstream file sends to CANARY_TO (0: no split)
CANARY_REASON='' # why a step failed
CANARY_FIGURES='' # what the last step saw

# Seconds all the steps take (0 without canary).
canary_seconds() {
  local n=0 p
  for p in ${P[canary]//,/ }; do n=$((n + 1)); done
  echo $((n * ${P[canary_step_time]%.*}))
}

# The upstream's lines while the canary splits (upstream_render): the hash, then each server's new
# color and old color with their weights. No backup line: nginx's hash does not take one.
canary_upstream_lines() {
  local -a new old
  local i
  read -ra new <<<"$(upstream_target "$CANARY_TO")"
  read -ra old <<<"$(upstream_target "$(color_other "$CANARY_TO")")"
  printf '    # canary: %s %% of clients (told apart by %s) to %s, the others to %s\n' \
    "$CANARY_SHARE" "${P[canary_key]}" "$CANARY_TO" "$(color_other "$CANARY_TO")"
  printf '    hash %s;\n' "${P[canary_key]}"
  for i in "${!new[@]}"; do
    printf '    server %s weight=%d;\n    server %s weight=%d;\n' "${new[i]}" "$CANARY_SHARE" "${old[i]}" $((100 - CANARY_SHARE))
  done
}

# For the watch's log directives (http level): the map that tells the new color's answers by the
# upstream's address (its port: the colors' ports differ), only inside the watch's window.
canary_log_map() {
  [[ -n "$CANARY_TO" ]] || return 0
  local n; n="$(watch_name)"
  # shellcheck disable=SC2016 # nginx variables
  printf 'map "$%s $upstream_addr" $%s_canary {\n    "~^1 (.*[ ,] )?[^ ,]*:%s$" 1;\n    default 0;\n}\n' \
    "$n" "$n" "$(color_port "$CANARY_TO")"
}

# The lines and 5xx among them in FILE's bytes FROM..TO (access log lines of either format).
canary_tally() { # canary_tally FILE FROM TO
  if [[ ! -f "$1" ]] || (($3 <= $2)); then echo 0 0; return 0; fi
  head -c "$3" "$1" | tail -c "+$(($2 + 1))" | awk '
    {
      if (NF == 2 && $1 ~ /^[0-9]+[.][0-9]+$/) st = $2
      else { i = index($0, "\" "); if (!i) next; st = substr($0, i + 2, 3) + 0 }
      n++; if (st >= 500) b++
    }
    END { print n + 0, b + 0 }'
}

# Every step in turn; a breach switches every client back to FROM and ends the run. Nothing on a
# first deploy (no old version to compare with) or a rollback (it switches at once).
canary_run() { # canary_run FROM TO
  local from="$1" to="$2" pct
  [[ -n "${P[canary]}" && -n "$from" ]] || return 0
  if [[ "${P[action]}" == rollback ]]; then log "a rollback switches at once: no canary steps"; return 0; fi
  ((WATCH_FROM > 0)) || return 0
  WATCH_BASE_END="$(now_ms)"
  CANARY_TO="$to"
  watch_narrow "$(canary_seconds)"
  event canary
  for pct in ${P[canary]//,/ }; do
    if ! canary_step "$to" "$pct"; then canary_back "$from" "$to"; fi
  done
  CANARY_SHARE=0; CANARY_TO=''
}

# One step: PERCENT of clients to TO for canary_step_time seconds, judged every 0.1 s (the new
# version gets a small share of the answers: the evidence comes slower than in the watch, and
# each 0.1 s sooner saves the clients of the step an answer or two).
canary_step() { # canary_step TO PERCENT
  local to="$1" name port start end now code fails=0 cs as co ao nn nb on ob checked=0
  name="$(container_name "$to")"; port="$(color_port "$to")"
  if [[ "${P[role]}" == lb ]]; then name="${P[app]}-$to on every app server"; fi
  phase "canary: $2 % of clients to $name for ${P[canary_step_time]}s"
  CANARY_SHARE="$2"
  if ! upstream_write "" "$to, canary $2 %"; then
    CANARY_REASON="nginx did not take the canary's upstream file: $UPSTREAM_ERROR"
    return 1
  fi
  co="$(stat -c %s "$STATE_DIR/canary.log" 2>/dev/null || echo 0)"
  ao="$(stat -c %s "$STATE_DIR/access.log" 2>/dev/null || echo 0)"
  log "nginx sends $2 % of clients (by ${P[canary_key]}) to $name, the others to the old version"
  start="$(now_ms)"; end=$((start + ${P[canary_step_time]%.*} * 1000))
  nn=0; nb=0; on=0; ob=0
  while :; do
    now="$(now_ms)"
    if [[ "${P[role]}" != lb ]]; then
      code="$(health_probe "$port" "${P[health_path]}" 2)"
      if [[ "$code" == 2?? ]]; then fails=0; else fails=$((fails + 1)); fi
      if ((fails >= P[watch_max_health_failures])); then
        CANARY_REASON="its health check failed $fails times in a row (last: ${code:-no HTTP answer})"
        return 1
      fi
    fi
    if ((now - checked >= 100)); then
      checked="$now"
      # the canary's log first: nginx writes a request's line there after its line in the other
      cs="$(stat -c %s "$STATE_DIR/canary.log" 2>/dev/null || echo 0)"
      as="$(stat -c %s "$STATE_DIR/access.log" 2>/dev/null || echo 0)"
      read -r nn nb < <(canary_tally "$STATE_DIR/canary.log" "$co" "$cs")
      read -r on ob < <(canary_tally "$STATE_DIR/access.log" "$ao" "$as")
      on=$((on - nn)); ob=$((ob - nb))
      ((on >= 0)) || on=0
      ((ob >= 0)) || ob=0
      WATCH_BASE_TOTAL="$on"; WATCH_BASE_BAD="$ob"
      CANARY_FIGURES="at $2 % of clients, in $(( (now - start) / 1000 )).$(( (now - start) % 1000 / 100 )) s the new version answered $(watch_share "$nn" "$nb"), the old one in the same seconds $(watch_share "$on" "$ob")"
      if watch_breached "$nn" "$nb"; then
        CANARY_REASON="$nb of its $nn answers were 5xx, more than the old version's $(watch_base_rate) % + ${P[watch_max_error_rate]} beyond chance"
        return 1
      fi
    fi
    ((now < end)) || break
    sleep "${P[health_interval]}"
  done
  log "canary step passed: $CANARY_FIGURES"
}

# A failed step: every client back to the old color in one write, the new one drained and
# stopped (kept, for its logs); the run fails. Behind a load balancer the app servers stop theirs
# when the runner hears of it (abort).
canary_back() { # canary_back FROM TO
  local from="$1" to="$2"
  CANARY_SHARE=0
  phase "switch every client back to $(container_name "$from")"
  switch_point "$from" \
    || die "the canary found $RUN_VERSION bad ($CANARY_REASON), but could not switch back: $SWITCH_ERROR. $(container_name "$from") is running: run the workflow with rollback: previous."
  rm -f "$STATE_DIR/upstream.bak" "$STATE_DIR/upstream.none"
  CANARY_TO=''
  log "switched back: nginx sends every client of ${P[upstream_name]} to $(container_name "$from") again"
  event reverted
  if [[ "${P[role]}" != lb ]]; then
    drain_color "$to" "$from" "$NGINX_BEFORE"
    docker_call stop -t 10 "$(container_name "$to")" >/dev/null 2>&1 || true
    workers_undo "$to" "$from" stop
    journal_clear
  fi
  history_add rolled-back-after-canary "$to"
  local after
  after="the new version is stopped and kept for its logs (docker logs $(container_name "$to"))"
  if [[ "${P[role]}" == lb ]]; then after="the app servers remove the new version"; fi
  die "the canary switched back from $RUN_VERSION: $CANARY_REASON; ${CANARY_FIGURES:-no answer counted yet}. $(container_name "$from") ($(state_get version)) serves every client again; $after."
}
