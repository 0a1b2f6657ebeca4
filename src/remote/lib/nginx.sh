# nginx: the upstream file (rendered, backed up, tested, reloaded or restored) and its workers.

# Lines the upstream file carries at the http level besides the upstreams: the watch window's
# access log, set by watch_open (steps/watch.sh) before the new color starts.
UPSTREAM_EXTRA=''

# Why upstream_write failed: the history result and the message.
UPSTREAM_FAILED=''
UPSTREAM_ERROR=''

# This run wrote the upstream file (its backup is the file from before): an undo restores it.
UPSTREAM_WROTE=0

# The nginx workers ("PID PPID" lines) taken just before this run's reload, for the drain: empty
# until a reload, and without one (dnat mode).
NGINX_BEFORE=''

# nginx's second way to the same container: its own address on the docker bridge, used only when
# the published port refuses. The published port goes through docker's proxy, which is down while
# the Docker daemon restarts; the container (with live-restore) and its address are not. Empty
# with a network (nginx reaches the container by name there) or when the container has no address.
declare -A CIP=()

IPS_FORMAT='{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}' # docker inspect: a container's addresses

upstream_target() { # the address(es) nginx should use for a color, space-separated
  if [[ "${P[role]}" == lb ]]; then
    local h out=''
    for h in ${P[lb_servers]//,/ }; do out+="$h:$(color_port "$1") "; done
    echo "${out% }"
  elif [[ -n "${P[network]}" ]]; then echo "$(container_name "$1"):${P[container_port]}"
  else echo "$(bind_host):$(color_port "$1")"
  fi
}

# The container's docker address, for the upstream's backup line (see CIP above).
upstream_backup() { # upstream_backup COLOR
  # none with a network (nginx reaches the container by name), nor on the load balancer (the
  # containers are on the app servers)
  [[ -z "${P[network]}" && "${P[role]}" != lb ]] || return 0
  if [[ -z "${CIP[$1]:-}" ]]; then
    CIP[$1]="$(docker_call inspect -f "$IPS_FORMAT" "$(container_name "$1")" 2>/dev/null | awk '{ print $1 }')"
  fi
  if [[ "${CIP[$1]}" =~ ^[0-9.]+$ ]]; then echo "${CIP[$1]}:${P[container_port]}"; fi
}

# The upstream file: the live upstream (TARGETS, space-separated; none: every request answers 502,
# as before a first deploy) and, with previews on, one upstream per color for the preview routes.
upstream_render() { # upstream_render TARGETS LABEL FILE [BACKUP]
  local t c
  {
    printf '# Managed by bg-deploy (app %s, %s, version %s). Do not edit: the next deploy rewrites it.\nupstream %s {\n' \
      "${P[app]}" "$2" "${RUN_VERSION:-unknown}" "${P[upstream_name]}"
    if ((CANARY_SHARE > 0)); then canary_upstream_lines; fi
    for t in $1; do printf '    server %s;\n' "$t"; done
    if [[ -z "$1" ]] && ((CANARY_SHARE == 0)); then printf '    server 127.0.0.1:1 down; # nothing deployed yet\n'; fi
    if [[ -n "${4:-}" ]]; then
      printf '    # the same container by its docker address, while the port above refuses (a Docker daemon restart)\n    server %s backup;\n' "$4"
    fi
    printf '}\n'
    if [[ -n "${P[preview_file]}" ]]; then
      for c in blue green; do
        printf '# the %s color, whether it serves or not: the preview route /%s/ (%s)\nupstream %s-%s {\n' "$c" "$c" "${P[preview_file]}" "${P[upstream_name]}" "$c"
        for t in $(upstream_target "$c"); do printf '    server %s;\n' "$t"; done
        printf '}\n'
      done
      preview_http_directives
    fi
    if [[ -n "$UPSTREAM_EXTRA" ]]; then printf '%s\n' "$UPSTREAM_EXTRA"; fi
  } >"$3"
}

# For the upstream file (http level), with previews: who may reach them (preview_allow; everyone
# when empty), and the color a request names by the X-Bg-Preview header or, without one, the
# bg_preview cookie (empty for everyone else: the live version).
preview_http_directives() {
  local n a; n="$(watch_name)"
  printf '# who may reach the previews, and the color a request names by header or cookie\ngeo $%s_preview_ok {\n' "$n"
  if [[ -z "${P[preview_allow]}" ]]; then printf '    default 1;\n'
  else printf '    default 0;\n'; for a in ${P[preview_allow]}; do printf '    %s 1;\n' "$a"; done; fi
  # shellcheck disable=SC2016 # nginx variables
  printf '}\nmap "$%s_preview_ok $http_x_bg_preview $cookie_bg_preview" $%s_preview {\n' "$n" "$n"
  printf '    "~^1 blue " blue;\n    "~^1 green " green;\n    "~^1 \\S* blue$" blue;\n    "~^1 \\S* green$" green;\n    default "";\n}\n'
}

# The preview routes, for the user's server block to include: /blue/... and /green/... reach that
# color with the prefix stripped, and any path reaches the color the X-Bg-Preview header or the
# bg_preview cookie names (through an internal location), for the addresses preview_allow lets
# through. Written when it is missing or differs; true when it was written.
preview_write() {
  local f="${P[preview_file]}" text n c a allow=''
  [[ -n "$f" ]] || return 1
  n="$(watch_name)"
  if [[ -n "${P[preview_allow]}" ]]; then
    for a in ${P[preview_allow]}; do allow+="allow $a; "; done
    allow+='deny all; '
  fi
  text="$(printf '# Managed by bg-deploy (app %s): the preview routes. Include it in the server block.\n' "${P[app]}"
    for c in blue green; do
      printf 'location /%s/ { %sproxy_pass http://%s-%s/; }\n' "$c" "$allow" "${P[upstream_name]}" "$c"
      # shellcheck disable=SC2016 # nginx variables
      printf 'if ($%s_preview = %s) { rewrite ^ /__%s_%s$uri last; }\n' "$n" "$c" "$n" "$c"
      # shellcheck disable=SC2016 # nginx variables
      printf 'location ^~ /__%s_%s/ { internal; rewrite ^/__%s_%s(/.*)$ $1 break; proxy_pass http://%s-%s; }\n' \
        "$n" "$c" "$n" "$c" "${P[upstream_name]}" "$c"
    done
    # a server block with logs of its own: the watch's log line too (steps/watch.sh)
    if [[ " $WATCH_INCLUDES " == *" $f "* ]]; then watch_log_line block; fi)"
  [[ -f "$f" && "$(cat "$f")" == "$text" ]] && return 1
  # a new file of our own, as for the upstream file: never written through a link left in its place
  local tmp
  tmp="$(mktemp "$(dirname "$f")/.$(basename "$f").bg-deploy.XXXXXX")" || return 1
  TMP_PATHS+=("$tmp")
  chmod 644 "$tmp" && printf '%s\n' "$text" >"$tmp" && mv -f "$tmp" "$f"
}

# The user's nginx commands, through bash, without the script's extra descriptors: a command that
# starts a daemon must not keep the SSH session (fds 7, 8) or the deploy lock (fd 9) open.
nginx_run() { bash -c "$1" 6<&- 7>&- 8>&- 9>&-; }

upstream_points_to() { # upstream_points_to HOST:PORT
  [[ -f "${P[upstream_file]}" ]] && grep -qE "^[[:space:]]*server[[:space:]]+${1//./[.]}[[:space:];]" "${P[upstream_file]}"
}

# Which color does the upstream file send traffic to (through the NAT rule when it names the live
# port)? Empty when none/unknown.
detect_upstream_color() {
  local c
  if [[ -z "${P[network]}" ]] && upstream_points_to "127.0.0.1:${P[live_port]}"; then nat_color; return 0; fi
  for c in blue green; do
    if upstream_points_to "$(upstream_target "$c")"; then echo "$c"; return 0; fi
  done
}

# Point nginx's upstream at TARGETS for COLOR; on failure the new container is removed, UNDO (a
# command, if set) runs, and the run ends with a message.
upstream_switch() { # upstream_switch TARGETS COLOR [UNDO] [BACKUP]
  upstream_write "$1" "$2" "${4:-}" && return 0
  if [[ -n "${3:-}" ]]; then "$3" || true; fi
  container_remove "$2"
  if [[ -n "$UPSTREAM_FAILED" ]]; then history_add "$UPSTREAM_FAILED" "$2"; fi
  die "$UPSTREAM_ERROR"
}

# Write the upstream file for TARGETS: temp file, backup, atomic move, nginx test (restore on
# failure), reload. False, with UPSTREAM_FAILED and UPSTREAM_ERROR set, when nginx did not take it.
upstream_write() { # upstream_write TARGETS LABEL [BACKUP]
  local f="${P[upstream_file]}" dir tmp out preview=0
  dir="$(dirname "$f")"
  failed() { UPSTREAM_FAILED="$1"; UPSTREAM_ERROR="$2"; return 1; }
  [[ -d "$dir" && -w "$dir" ]] || { failed failed-upstream-write "cannot write the upstream file: $dir is not a writable directory for user $(id -un). Make it writable, or set nginx-upstream-file to a file in a directory that user owns. Nothing was switched; the previous version is still serving."; return 1; }
  # a new file of our own (mktemp creates it exclusively: never through a link someone left), with
  # its final mode before its content
  tmp="$(mktemp "$dir/.$(basename "$f").bg-deploy.XXXXXX")" \
    || { failed failed-upstream-write "cannot create a temporary file in $dir (disk full?). Nothing was switched; the previous version is still serving."; return 1; }
  TMP_PATHS+=("$tmp")
  chmod 644 "$tmp"
  upstream_render "$1" "$2" "$tmp" "${3:-}" || { failed failed-upstream-write "cannot write $tmp (disk full?). Nothing was switched; the previous version is still serving."; return 1; }
  rm -f "$STATE_DIR/upstream.bak" "$STATE_DIR/upstream.none"
  # the backup is owner-only like everything in the state directory; upstream_restore gives the
  # file back nginx's usual 644
  if [[ -f "$f" ]]; then cp "$f" "$STATE_DIR/upstream.bak" && chmod 600 "$STATE_DIR/upstream.bak"; else touch "$STATE_DIR/upstream.none"; fi
  touch "$STATE_DIR/switch.pending"
  mv -f "$tmp" "$f"
  if preview_write; then preview=1; fi
  watch_include_write
  if ! out="$(nginx_run "${P[nginx_test]}" 2>&1)"; then
    upstream_restore
    if ((preview)); then rm -f "${P[preview_file]}"; fi
    failed failed-nginx-test "nginx rejected the new upstream, so the previous config was restored and nothing was switched. nginx said: $out"
    return 1
  fi
  NGINX_BEFORE="$(nginx_workers)"
  if ! out="$(nginx_run "${P[nginx_reload]}" 2>&1)"; then
    upstream_restore
    failed failed-nginx-reload "nginx reload failed, so the previous upstream file was restored and the new container removed. Is nginx running? It said: $out"
    return 1
  fi
  UPSTREAM_WROTE=1
  rm -f "$STATE_DIR/switch.pending"
}

upstream_restore() {
  if [[ -f "$STATE_DIR/upstream.bak" ]]; then mv -f "$STATE_DIR/upstream.bak" "${P[upstream_file]}" && chmod 644 "${P[upstream_file]}"
  elif [[ -f "$STATE_DIR/upstream.none" ]]; then rm -f "${P[upstream_file]}"
  fi
  rm -f "$STATE_DIR/upstream.none" "$STATE_DIR/switch.pending"
  # the file restored may have no window: the include of ours then carries no log line either
  watch_include_write off
}

# A previous run that died between moving the upstream file and reloading nginx left
# switch.pending: make nginx serve what the file says if that container runs, else restore.
upstream_recover() {
  [[ -f "$STATE_DIR/switch.pending" ]] || return 0
  local c; c="$(detect_upstream_color)"
  log "a previous run stopped in the middle of a switch; converging first"
  if [[ -n "$c" ]] && container_running "$c" && nginx_run "${P[nginx_test]}" >/dev/null 2>&1; then
    nginx_run "${P[nginx_reload]}" >&2 || die "nginx reload failed while recovering an interrupted switch"
    rm -f "$STATE_DIR/switch.pending" "$STATE_DIR/upstream.bak" "$STATE_DIR/upstream.none"
    log "nginx serves $c, as the interrupted run had switched it"
  else
    upstream_restore
    if nginx_run "${P[nginx_test]}" >/dev/null 2>&1; then nginx_run "${P[nginx_reload]}" >&2 || true; fi
    log "restored the upstream file from before the interrupted run"
  fi
}

# nginx worker processes ("PID PPID"), shutting-down ones excluded.
nginx_workers() {
  ps -eo pid=,ppid=,args= 2>/dev/null \
    | awk '$3 == "nginx:" && $4 == "worker" && $5 == "process" && NF == 5 { print $1, $2 }' || true
}

# The workers a reload replaced: those of BEFORE (the workers before it) whose master now has a
# worker that did not exist before. Empty until the reloaded master has started its new workers.
nginx_replaced_workers() { # nginx_replaced_workers BEFORE
  local before="$1" now pid ppid masters=' '
  now="$(nginx_workers)"
  while read -r pid ppid; do
    [[ -n "$pid" ]] || continue
    if ! grep -qx "$pid $ppid" <<<"$before"; then masters+="$ppid "; fi
  done <<<"$now"
  while read -r pid ppid; do
    if [[ -n "$pid" && "$masters" == *" $ppid "* ]]; then printf '%s ' "$pid"; fi
  done <<<"$before"
}
