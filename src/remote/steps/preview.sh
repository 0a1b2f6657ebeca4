# Step (nginx-preview-file set): the preview routes /blue/ and /green/, each to its color whether
# it serves or not, so the idle color can be tried before the switch. The upstream file then holds
# one upstream per color beside the live one; the first time, it is written and nginx reloaded
# before anything else (ACTIVE, the color serving now, stays the live upstream's target).

preview_ensure() { # preview_ensure ACTIVE_COLOR
  local targets=''
  if [[ -f "${P[upstream_file]}" ]] && grep -q "^upstream ${P[upstream_name]}-blue " "${P[upstream_file]}" \
    && ! preview_write; then
    return 0
  fi
  phase "preview routes"
  if [[ -n "$1" ]]; then targets="$(upstream_target "$1")"; fi
  upstream_write "$targets" "${1:-nothing} serving, previews" || return 1
  rm -f "$STATE_DIR/upstream.bak" "$STATE_DIR/upstream.none"
  UPSTREAM_WROTE=0
  log "preview routes in ${P[preview_file]}: /blue/ and /green/ reach each color"
}
