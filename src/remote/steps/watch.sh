# Step (watch > 0): after the switch the old color keeps running, warm, and the new one is watched
# for `watch` seconds: its health path every health_interval, and the answers nginx gives for the
# app (from an access log the upstream file turns on for the window only). A breach (more than
# watch_max_error_rate % of nginx's answers are 5xx, or watch_max_health_failures health checks
# fail in a row) switches back to the warm old color at once. Globals: WATCH_*.

WATCH_FROM=0    # epoch second the access log window opens (0: no window)
WATCH_REASON='' # why the watch switched back
WATCH_FIGURES='' # what it saw
WATCH_OFFSET=0   # watch_count: the access log read up to here (bytes)
WATCH_TOTAL=0    # watch_count: nginx's answers counted
WATCH_BAD=0      # watch_count: of them 5xx

# nginx's names for the app's watch: the log format and the variable that turns the log on.
watch_name() { printf 'bgd_%s' "$(printf '%s' "${P[app]}" | tr -c 'A-Za-z0-9_' '_')"; }

# The integers FROM..TO as a regular expression alternation (tens where a whole ten fits).
watch_range() { # watch_range FROM TO
  local s="$1" out=''
  while ((s <= $2)); do
    if ((s % 10 == 0 && s + 9 <= $2)); then out+="${s%?}[0-9]|"; s=$((s + 10))
    else out+="$s|"; s=$((s + 1)); fi
  done
  printf '%s' "${out%|}"
}

# For the upstream file (http level): log nginx's answers for this app ($proxy_host is the
# upstream's name) while the window is open, and nothing after it, without another reload: the
# condition matches only the seconds of the window. Nothing when no window is open.
watch_log_directives() {
  ((WATCH_FROM > 0)) || return 0
  local n; n="$(watch_name)"
  printf '# the watch window of this deploy: nginx logs its answers for %s from %s to %s (epoch seconds)\n' \
    "${P[upstream_name]}" "$WATCH_FROM" "$((WATCH_FROM + P[watch] + 5))"
  # shellcheck disable=SC2016 # nginx variables
  printf 'log_format %s "$msec $status";\n' "$n"
  # shellcheck disable=SC2016 # nginx variables
  printf 'map "$proxy_host $msec" $%s {\n    "~^%s (%s)[.]" 1;\n    default 0;\n}\n' "$n" "${P[upstream_name]}" \
    "$(watch_range "$WATCH_FROM" "$((WATCH_FROM + P[watch] + 5))")"
  printf 'access_log %s %s if=$%s;\n' "$STATE_DIR/access.log" "$n" "$n"
}

# Open the window before the upstream file is written for the switch. In dnat mode the switch
# writes no upstream file, so the window's log is turned on here with one nginx reload, before
# the switch (the switch itself stays a rule swap).
watch_open() {
  [[ "${P[watch]}" != 0 ]] || return 0
  WATCH_FROM="$(date +%s)"
  UPSTREAM_EXTRA="$(watch_log_directives)"
  if [[ -f "$STATE_DIR/access.log" && -w "$STATE_DIR/access.log" ]] \
    && (($(stat -c %s "$STATE_DIR/access.log") > 10485760)); then
    : >"$STATE_DIR/access.log"
  fi
  if [[ "$SWITCH_MODE" == dnat ]] && upstream_points_to "127.0.0.1:${P[live_port]}"; then
    upstream_write "127.0.0.1:${P[live_port]}" "$(nat_color)" \
      || die "could not turn on the watch window's access log: $UPSTREAM_ERROR"
    rm -f "$STATE_DIR/upstream.bak" "$STATE_DIR/upstream.none"
    NGINX_BEFORE=''
  fi
}

# nginx's answers for the app logged since START (epoch ms), read on from where the last call
# stopped (WATCH_OFFSET, bytes; nginx writes a line in one write, so a size read is a line end):
# adds to WATCH_TOTAL and WATCH_BAD (5xx).
watch_count() { # watch_count START_MS
  local f="$STATE_DIR/access.log" size n b
  [[ -f "$f" ]] || return 0
  size="$(stat -c %s "$f" 2>/dev/null || echo 0)"
  if ((size < WATCH_OFFSET)); then WATCH_OFFSET=0; fi
  ((size > WATCH_OFFSET)) || return 0
  read -r n b < <(head -c "$size" "$f" | tail -c "+$((WATCH_OFFSET + 1))" \
    | awk -v since="$1" '$1 * 1000 >= since { n++; if ($2 >= 500) b++ } END { print n + 0, b + 0 }')
  WATCH_OFFSET="$size"; WATCH_TOTAL=$((WATCH_TOTAL + n)); WATCH_BAD=$((WATCH_BAD + b))
}

watch_breached() { # watch_breached TOTAL BAD: more than the allowed share is 5xx
  awk -v n="$1" -v b="$2" -v r="${P[watch_max_error_rate]}" 'BEGIN { exit !(n > 0 && b * 100 > r * n) }'
}

# Watch TO for `watch` seconds; false on a breach, with WATCH_REASON and WATCH_FIGURES set.
watch_window() { # watch_window TO_COLOR
  local to="$1" name port start end now code fails=0 total=0 bad=0 checked=0 t
  name="$(container_name "$to")"; port="$(color_port "$to")"
  phase "watch $name for ${P[watch]}s"
  start="$(now_ms)"; end=$((start + P[watch] * 1000))
  WATCH_OFFSET=0; WATCH_TOTAL=0; WATCH_BAD=0
  log "watching $name for ${P[watch]}s: ${P[health_path]} every ${P[health_interval]}s (${P[watch_max_health_failures]} failures in a row switch back), and nginx's answers for ${P[upstream_name]} (more than ${P[watch_max_error_rate]} % 5xx switch back); the old color stays warm meanwhile"
  while :; do
    now="$(now_ms)"
    code="$(health_probe "$port" "${P[health_path]}" 2)"
    if [[ "$code" == 2?? ]]; then fails=0; else fails=$((fails + 1)); fi
    if ((now - checked >= 200)); then
      checked="$now"
      watch_count "$start"
      total="$WATCH_TOTAL"; bad="$WATCH_BAD"
    fi
    t="$(( (now - start) / 100 ))"
    WATCH_FIGURES="in $((t / 10)).$((t % 10)) s after the switch nginx answered $total request(s) for it, $bad of them 5xx (limit ${P[watch_max_error_rate]} %)"
    if ((fails >= P[watch_max_health_failures])); then
      WATCH_REASON="its health check failed $fails times in a row (last: ${code:-no HTTP answer})"
      return 1
    fi
    if ((total >= 20 || now >= end)) && watch_breached "$total" "$bad"; then
      WATCH_REASON="$bad of its $total answers were 5xx, more than ${P[watch_max_error_rate]} %"
      return 1
    fi
    ((now < end)) || break
    sleep "${P[health_interval]}"
  done
  if ((total == 0)); then
    warn "the watch saw no answer of nginx for ${P[upstream_name]} in $STATE_DIR/access.log: only the health checks were watched. A server block with its own access_log directive (or access_log off at the http level) does not inherit the one bg-deploy declares; see README, Watch window."
  fi
  log "the watch passed: $WATCH_FIGURES"
  event watched
}

# After a breach: back to the warm old color (no start-up), the new one drained and stopped
# (kept, for its logs); the state and history say so.
watch_revert() { # watch_revert FROM TO PREVIOUS_VERSION PREVIOUS_IMAGE
  local from="$1" to="$2"
  phase "switch back to $(container_name "$from")"
  switch_point "$from" \
    || die "the watch found $RUN_VERSION bad ($WATCH_REASON), but could not switch back: $SWITCH_ERROR. $(container_name "$from") is running: run the workflow with rollback: previous."
  rm -f "$STATE_DIR/upstream.bak" "$STATE_DIR/upstream.none"
  log "switched back: nginx sends ${P[upstream_name]} to $(container_name "$from") again"
  event reverted
  state_write "$from" "$3" "$4"
  drain_color "$to" "$from" "$NGINX_BEFORE"
  docker_call stop -t 10 "$(container_name "$to")" >/dev/null 2>&1 || true
  history_add rolled-back-after-watch "$to"
}
