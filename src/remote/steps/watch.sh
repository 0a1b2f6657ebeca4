# Step (watch > 0): after the switch the old color keeps running, warm, and the new one is watched
# for `watch` seconds: its health path every health_interval, and the answers nginx gives for the
# app, from an access log that is on for this deploy only. The log opens before the new color
# starts, so the old color's answers in the seconds before the switch are the baseline. A breach
# (the new version's share of 5xx answers above the old one's by more than watch_max_error_rate
# points, or watch_max_health_failures health checks failing in a row) switches back to the warm
# old color at once. Before anything changes, watch_check makes sure nginx will log those answers
# (lib/nginx-log.sh reads `nginx -T`) or refuses. Globals: WATCH_*.

WATCH_FROM=0     # epoch second the access log window opens (0: no window)
WATCH_UNTIL=0    # epoch second it closes by itself
WATCH_SWITCHED=0 # epoch ms of the switch: answers logged before it are the old color's
WATCH_BASE_END=0 # epoch ms the canary's first step began (0: none): the baseline ends there
WATCH_REASON=''  # why the watch switched back
WATCH_FIGURES='' # what it saw
WATCH_OFFSET=0   # watch_count: the access log read up to here (bytes)
WATCH_TOTAL=0    # watch_count: nginx's answers for the new color counted
WATCH_BAD=0      # watch_count: of them 5xx
WATCH_BASE_TOTAL=0 # watch_count: the old color's answers before the switch
WATCH_BASE_BAD=0   # watch_count: of them 5xx
WATCH_INCLUDES=''  # files of ours that server or location blocks include to carry the log line

# nginx's names for the app's watch: the log format and the variable that turns the log on.
watch_name() { printf 'bgd_%s' "$(printf '%s' "${P[app]}" | tr -c 'A-Za-z0-9_' '_')"; }

# The file bg-deploy owns for a server block with access_log directives of its own to include:
# beside the upstream file, with a name nginx's usual `*.conf` include does not pick up.
watch_include_file() { printf '%s.watch.inc' "${P[upstream_file]%.conf}"; }

# The integers FROM..TO as a regular expression alternation (whole tens, hundreds... where they fit).
watch_range() { # watch_range FROM TO
  local s="$1" out='' k step stars i
  while ((s <= $2)); do
    k=0; step=1
    while ((s % (step * 10) == 0 && s + step * 10 - 1 <= $2)); do k=$((k + 1)); step=$((step * 10)); done
    if ((k == 0)); then out+="$s|"
    else stars=''; for ((i = 0; i < k; i++)); do stars+='[0-9]'; done; out+="${s:0:${#s}-k}$stars|"; fi
    s=$((s + step))
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
    "${P[upstream_name]}" "$WATCH_FROM" "$WATCH_UNTIL"
  # shellcheck disable=SC2016 # nginx variables
  printf 'log_format %s "$msec $status";\n' "$n"
  # shellcheck disable=SC2016 # nginx variables
  printf 'map "$proxy_host $msec" $%s {\n    "~^%s (%s)[.]" 1;\n    default 0;\n}\n' "$n" "${P[upstream_name]}" \
    "$(watch_range "$WATCH_FROM" "$WATCH_UNTIL")"
  canary_log_map
  watch_log_line http
}

# The access_log line itself: at the http level (the upstream file), in the format it declares
# there; in a server or location block that has logs of its own (through a file of ours it
# includes), in nginx's predefined `combined` format, because that block may come before the
# upstream file in nginx's reading order, and a log_format must be declared before a line names
# it. Nothing without a window.
watch_log_line() { # watch_log_line [block]
  ((WATCH_FROM > 0)) || return 0
  local n f; n="$(watch_name)"; f="$n"
  if [[ "${1:-}" == block ]]; then f=combined; fi
  printf 'access_log %s %s if=$%s;\n' "$STATE_DIR/access.log" "$f" "$n"
  # during the canary, the new color's answers a second time (nginx writes them in this order)
  if [[ -n "$CANARY_TO" ]]; then printf 'access_log %s %s if=$%s_canary;\n' "$STATE_DIR/canary.log" "$f" "$n"; fi
}

# The include file of ours (watch_include_file): the log line when a block needs it and a window
# is open, else a comment only. Written whenever the upstream file is (nginx tests both at once);
# OFF (after a restore) leaves the line out.
watch_include_write() { # watch_include_write [off]
  local f text tmp
  f="$(watch_include_file)"
  [[ "${P[watch]}" != 0 || -f "$f" ]] || return 0
  text="# Managed by bg-deploy (app ${P[app]}): the watch window's access log, for a server block with access_log directives of its own. Include it in that block."
  if [[ "${1:-}" != off && " $WATCH_INCLUDES " == *" $f "* ]]; then text+=$'\n'"$(watch_log_line block)"; fi
  [[ -f "$f" && "$(cat "$f")" == "$text" ]] && return 0
  tmp="$(mktemp "$(dirname "$f")/.$(basename "$f").bg-deploy.XXXXXX")" || return 0
  TMP_PATHS+=("$tmp")
  chmod 644 "$tmp" && printf '%s\n' "$text" >"$tmp" && mv -f "$tmp" "$f"
}

# Before anything changes: will nginx log the app's answers where the watch reads them? It reads
# nginx's effective config (nginx-test-command with -T for -t) and refuses, with the line to add,
# where a block with logs of its own would not; a health-only watch only when asked for by name.
watch_check() {
  [[ "${P[watch]}" != 0 ]] || return 0
  if [[ "${P[watch_health_only]}" == true ]]; then
    log "watch-health-only: the watch checks ${P[health_path]} only, not nginx's answers to users"
    return 0
  fi
  local cmd=" ${P[nginx_test]} " dump out kind a b at srv problems='' own
  if [[ "$cmd" != *" -t "* ]]; then
    die "the watch reads nginx's effective config with nginx -T, which it makes from nginx-test-command by writing -T for -t, but '${P[nginx_test]}' has no -t word. Set nginx-test-command to a command with -t (such as nginx -t), or watch-health-only: true to watch the health path only. Nothing was changed."
  fi
  cmd="${cmd/ -t / -T }"; cmd="${cmd# }"; cmd="${cmd% }"
  own="$(watch_include_file)"
  if [[ ! -f "$own" ]]; then watch_include_write || true; fi
  dump="$(mktemp)"; TMP_PATHS+=("$dump")
  if ! out="$(nginx_run "$cmd" 2>&1 >"$dump")"; then
    die "the watch could not read nginx's effective config with '$cmd': ${out:-no message}. It needs it to know that nginx will log the app's answers (a non-root user needs a sudo rule for nginx -T as for nginx -t). Set watch-health-only: true to watch the health path only. Nothing was changed."
  fi
  # nginx names a file by the path it was included by, maybe another way to one of ours (a link)
  local -A ours=() ; local p o
  while IFS= read -r p; do
    for o in "$own" ${P[preview_file]:+"${P[preview_file]}"}; do
      if [[ "$p" -ef "$o" ]]; then ours[$p]="$o"; fi
    done
  done < <(sed -n 's/^# configuration file \(.*\):$/\1/p' "$dump")
  WATCH_INCLUDES=''
  while IFS=$'\t' read -r kind a b at srv || [[ -n "$kind" ]]; do
    case "$kind" in
      http) ;;
      ours)
        a="${ours[$a]:-$a}"
        if [[ " $WATCH_INCLUDES " != *" $a "* ]]; then WATCH_INCLUDES+="${WATCH_INCLUDES:+ }$a"; fi ;;
      need)
        if [[ "$a" == location ]]; then problems+=" The location block at $b has access_log directives of its own, so it does not inherit the watch's log: add 'include $own;' in it."
        else problems+=" The server block at $b has access_log directives of its own, so it does not inherit the watch's log: add 'include $own;' in it."; fi ;;
      off)
        if [[ "$a" == http ]]; then problems+=" 'access_log off' at the http level ($b) turns off the watch's log too for the server block at $srv: add 'include $own;' in that server block."
        else problems+=" 'access_log off' in the $a block at $b turns off every log there, the watch's too (it proxies to ${P[upstream_name]} at $at): remove it there, or log to a file instead."; fi ;;
      none) problems+=" No block in nginx's config proxies to http://${P[upstream_name]}, so nginx's answers for the app cannot be told apart: proxy_pass to the upstream by its name." ;;
    esac
  done < <(nginx_log_verdicts "${P[upstream_name]}" "$STATE_DIR/access.log" "${!ours[@]}" <"$dump")
  if [[ -n "$problems" ]]; then
    die "the watch would not see nginx's answers for ${P[upstream_name]}, so it refuses before changing anything:$problems Or set watch-health-only: true to watch the health path only. Nothing was changed."
  fi
  log "the watch will see nginx's answers for ${P[upstream_name]}${WATCH_INCLUDES:+ (through $WATCH_INCLUDES, in blocks with logs of their own)}"
}

# Open the window as the script begins (one nginx reload, pointing where nginx points now), so
# the old color's answers while the image is built, pulled and started are the baseline. It
# closes by itself after 10 minutes, or when the deploy can no longer be in it: called again
# before the new color starts, it reopens only when the rest of the deploy (health-timeout +
# watch + a minute) would outlast it. The switch's upstream file (reload mode) narrows it to the
# watch (watch_narrow).
watch_open() { # watch_open ACTIVE_COLOR
  [[ "${P[watch]}" != 0 && -n "$1" ]] || return 0
  local now need
  now="$(date +%s)"; need=$((now + ${P[health_timeout]%.*} + $(canary_seconds) + P[watch] + 60))
  if ((WATCH_FROM > 0 && WATCH_UNTIL >= need)); then return 0; fi
  local fresh=0
  if ((WATCH_FROM == 0)); then WATCH_FROM="$now"; fresh=1; fi
  WATCH_UNTIL=$((now + 600 > need ? now + 600 : need))
  UPSTREAM_EXTRA="$(watch_log_directives)"
  # the log is this user's own file, which nginx (root) appends to: a file nginx created would be
  # root's, and a non-root deploy user could not read it
  local f
  for f in "$STATE_DIR/access.log" "$STATE_DIR/canary.log"; do
    if [[ -e "$f" && ! (-f "$f" && -r "$f" && -w "$f") ]]; then rm -f "$f"; fi
    # a new window starts the file anew: the last run's lines are read (the watch reads from
    # the window's opening on), so the file holds one run's answers, never more (the soak's bound)
    if ((fresh)) && [[ -f "$f" ]]; then : >"$f"; fi
    [[ -f "$f" ]] || (umask 077 && : >"$f")
  done
  local ok=0
  if [[ -z "${P[network]}" ]] && upstream_points_to "127.0.0.1:${P[live_port]}"; then
    upstream_write "127.0.0.1:${P[live_port]}" "$(nat_color)" && ok=1
  else
    upstream_write "$(upstream_target "$1")" "$1" "$(upstream_backup "$1")" && ok=1
  fi
  ((ok)) || die "could not turn on the watch window's access log: $UPSTREAM_ERROR"
  rm -f "$STATE_DIR/upstream.bak" "$STATE_DIR/upstream.none"
  UPSTREAM_WROTE=0; NGINX_BEFORE=''
}

# Just before the switch (or the canary's steps, which take SECONDS more): the next upstream file
# (reload mode) keeps the window open for the watch only (dnat mode writes no file there: the
# window closes when watch_open said).
watch_narrow() { # watch_narrow [SECONDS]
  ((WATCH_FROM > 0)) || return 0
  WATCH_UNTIL=$(($(date +%s) + ${1:-0} + P[watch] + 5))
  UPSTREAM_EXTRA="$(watch_log_directives)"
}

# nginx's answers for the app logged since the window opened, read on from where the last call
# stopped (WATCH_OFFSET, bytes; nginx writes a line in one write, so a size read is a line end):
# those before the switch (the old color) add to WATCH_BASE_*, those after to WATCH_TOTAL and
# WATCH_BAD (5xx); with a canary the baseline ends as its first step begins (WATCH_BASE_END), and
# the steps' answers count for neither. Lines are "$msec $status" (http level) or nginx's combined
# format (a block with logs of its own): its time has whole seconds, so the switch's own second
# counts for neither color.
watch_count() {
  local f="$STATE_DIR/access.log" size n b bn bb
  [[ -f "$f" ]] || return 0
  size="$(stat -c %s "$f" 2>/dev/null || echo 0)"
  if ((size < WATCH_OFFSET)); then WATCH_OFFSET=0; fi
  ((size > WATCH_OFFSET)) || return 0
  read -r n b bn bb < <(head -c "$size" "$f" | tail -c "+$((WATCH_OFFSET + 1))" \
    | awk -v from="$((WATCH_FROM * 1000))" -v sw="$WATCH_SWITCHED" -v be="$WATCH_BASE_END" '
        # "06/Dec/2026:10:21:29 +0000" -> epoch seconds (days from the civil date)
        function epoch(t,    d, m, y, era, yoe, doy, days, off) {
          d = substr(t, 1, 2) + 0; m = (index("JanFebMarAprMayJunJulAugSepOctNovDec", substr(t, 4, 3)) + 2) / 3
          y = substr(t, 8, 4) - (m <= 2); era = int(y / 400); yoe = y - era * 400
          doy = int((153 * (m > 2 ? m - 3 : m + 9) + 2) / 5) + d - 1
          days = era * 146097 + yoe * 365 + int(yoe / 4) - int(yoe / 100) + doy - 719468
          off = (substr(t, 23, 2) * 3600 + substr(t, 25, 2) * 60) * (substr(t, 22, 1) == "-" ? -1 : 1)
          return days * 86400 + substr(t, 13, 2) * 3600 + substr(t, 16, 2) * 60 + substr(t, 19, 2) - off
        }
        {
          if (NF == 2 && $1 ~ /^[0-9]+[.][0-9]+$/) { ms = $1 * 1000; st = $2 }
          else {
            i = index($0, " ["); if (!i) next
            rest = substr($0, i + 31); j = index(rest, "\" "); if (!j) next
            st = substr(rest, j + 2, 3) + 0; ms = epoch(substr($0, i + 2, 26)) * 1000
            if (sw > 0 && ms <= sw && sw < ms + 1000) next
            if (be > 0 && ms <= be && be < ms + 1000) next
          }
          if (ms < from) next
          if (ms < (be > 0 ? be : sw)) { bn++; if (st >= 500) bb++; next }
          if (ms < sw) next
          n++; if (st >= 500) b++
        }
        END { print n + 0, b + 0, bn + 0, bb + 0 }')
  WATCH_OFFSET="$size"; WATCH_TOTAL=$((WATCH_TOTAL + n)); WATCH_BAD=$((WATCH_BAD + b))
  WATCH_BASE_TOTAL=$((WATCH_BASE_TOTAL + bn)); WATCH_BASE_BAD=$((WATCH_BASE_BAD + bb))
}

# The baseline: the old color's share of 5xx (percent) when it answered at least 20 times before
# the switch, else 0 (the limit is then absolute).
watch_base_rate() {
  if ((WATCH_BASE_TOTAL >= 20)); then awk -v n="$WATCH_BASE_TOTAL" -v b="$WATCH_BASE_BAD" 'BEGIN { printf "%.1f", b * 100 / n }'
  else printf 0; fi
}

# A breach: the new share of 5xx above the baseline by more than the margin; before the window's
# end (FINAL empty) only when that excess is beyond chance: a version whose share were the limit
# (baseline + margin) would give that many 5xx or more with a chance under 1 in 1,000 (the
# binomial tail), so that the first answers of a flaky app do not switch it back by luck, and a
# version that fails everything is switched back after a handful. src/fleet-watch.ts judges the
# runner's sum over several servers the same way.
watch_breached() { # watch_breached TOTAL BAD [final]
  awk -v n="$1" -v b="$2" -v base="$(watch_base_rate)" -v r="${P[watch_max_error_rate]}" -v final="${3:-}" '
    # P(X >= b) for X ~ Binomial(n, q): the first term by its logarithm, then term by term
    function tail(n, b, q,    lc, i, t, s, k) {
      if (b <= n * q) return 1
      if (q <= 0) return 0
      if (q >= 1) return 1
      lc = 0; for (i = 1; i <= b; i++) lc += log((n - b + i) / i)
      t = exp(lc + b * log(q) + (n - b) * log(1 - q)); s = 0
      for (k = b; k <= n && t > 0; k++) { s += t; if (t < s * 1e-12) break; t *= (n - k) / (k + 1) * q / (1 - q) }
      return s
    }
    BEGIN {
      if (n == 0 || b * 100 <= (base + r) * n) exit 1
      if (final != "") exit 0
      exit !(tail(n, b, (base + r) / 100) < 0.001)
    }'
}

# "N request(s)[ WHOSE], B of them 5xx (R %)"
watch_share() { # watch_share TOTAL BAD [WHOSE]
  awk -v n="$1" -v b="$2" -v w="${3:+ $3}" 'BEGIN { printf "%d request(s)%s, %d of them 5xx (%.1f %%)", n, w, b, (n > 0 ? b * 100 / n : 0) }'
}

# What the old color did before the switch, for the figures.
watch_base_said() {
  if ((WATCH_BASE_TOTAL >= 20)); then printf 'before the switch the previous version answered %s' "$(watch_share "$WATCH_BASE_TOTAL" "$WATCH_BASE_BAD")"
  else printf 'before the switch the previous version answered %d request(s), too few to compare with (the limit is absolute)' "$WATCH_BASE_TOTAL"; fi
}

# Watch TO for `watch` seconds; false on a breach, with WATCH_REASON and WATCH_FIGURES set.
watch_window() { # watch_window TO_COLOR
  local to="$1" name port start end now code fails=0 total=0 bad=0 checked=0 t limit base alone=0
  name="$(container_name "$to")"; port="$(color_port "$to")"
  phase "watch $name for ${P[watch]}s"
  start="$(now_ms)"; end=$((start + P[watch] * 1000))
  WATCH_OFFSET=0; WATCH_TOTAL=0; WATCH_BAD=0; WATCH_BASE_TOTAL=0; WATCH_BASE_BAD=0
  watch_count
  base="$(watch_base_rate)"
  limit="$(awk -v a="$base" -v r="${P[watch_max_error_rate]}" 'BEGIN { printf "%g", a + r }')"
  if [[ "${P[role]}" == lb ]]; then
    name="${P[app]}-$to on every app server"
    log "watching $name for ${P[watch]}s: this nginx's answers for ${P[upstream_name]} (more than $limit % 5xx switch back: $(watch_base_said), plus ${P[watch_max_error_rate]}); the old color stays warm on every app server meanwhile"
  elif [[ "${P[watch_health_only]}" == true ]]; then
    log "watching $name for ${P[watch]}s: ${P[health_path]} every ${P[health_interval]}s (${P[watch_max_health_failures]} failures in a row switch back; watch-health-only: nginx's answers are counted where they are logged, but may not be); the old color stays warm meanwhile"
  else
    log "watching $name for ${P[watch]}s: ${P[health_path]} every ${P[health_interval]}s (${P[watch_max_health_failures]} failures in a row switch back), and nginx's answers for ${P[upstream_name]} (more than $limit % 5xx switch back: $(watch_base_said), plus ${P[watch_max_error_rate]}); the old color stays warm meanwhile"
  fi
  while :; do
    now="$(now_ms)"
    # the load balancer has no container to probe: its nginx's answers are for every app server
    if [[ "${P[role]}" != lb ]]; then
      code="$(health_probe "$port" "${P[health_path]}" 2)"
      if [[ "$code" == 2?? ]]; then fails=0; else fails=$((fails + 1)); fi
    fi
    if ((now - checked >= 200)); then
      checked="$now"
      watch_count
      total="$WATCH_TOTAL"; bad="$WATCH_BAD"
    fi
    t="$(( (now - start) / 100 ))"
    WATCH_FIGURES="in $((t / 10)).$((t % 10)) s after the switch nginx answered $(watch_share "$total" "$bad" 'for it'); $(watch_base_said); limit $limit %"
    if [[ "${P[role]}" == host ]] && ((alone == 0)); then
      # one of several servers, each with its own nginx: the runner sums what every one sees and
      # decides for all of them (revert or pass); its silence is the pause between two checks
      command_await watching "total=$WATCH_TOTAL bad=$WATCH_BAD base_total=$WATCH_BASE_TOTAL base_bad=$WATCH_BASE_BAD fails=$fails"
      local c='' rc=0
      read -r -t "${P[health_interval]}" -u 6 c || rc=$?
      case "$c" in
        revert) WATCH_REASON="the runner's sum over every server breached (see the run's log)"; return 1 ;;
        pass) break ;;
      esac
      if ((rc > 0 && rc <= 128)) || ((now >= end + 30000)); then
        alone=1
        log "the runner went away during the watch (or decided nothing 30 s after its end): this server judges alone"
      fi
      continue
    fi
    if ((fails >= P[watch_max_health_failures])); then
      WATCH_REASON="its health check failed $fails times in a row (last: ${code:-no HTTP answer})"
      return 1
    fi
    if ((total >= 20 || now >= end)) && watch_breached "$total" "$bad" "$( ((now >= end)) && echo final)"; then
      WATCH_REASON="$bad of its $total answers were 5xx, more than $limit %"
      if [[ "$base" != 0 && "$base" != 0.0 ]]; then WATCH_REASON+=" (the previous version's $base % + ${P[watch_max_error_rate]})"; fi
      return 1
    fi
    ((now < end)) || break
    sleep "${P[health_interval]}"
  done
  if ((total == 0)) && [[ "${P[watch_health_only]}" != true ]]; then
    warn "nginx logged no answer for ${P[upstream_name]} in the ${P[watch]} s after the switch (no traffic?): only the health checks were watched."
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
