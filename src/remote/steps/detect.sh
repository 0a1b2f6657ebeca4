# Step: which color serves now.

# Which color does the upstream file send traffic to (through the NAT rule when it names the live
# port)? Empty when none/unknown.
detect_upstream_color() {
  local c
  if [[ -z "${P[network]}" ]] && upstream_points_to "127.0.0.1:${P[live_port]}"; then nat_color; return 0; fi
  for c in blue green; do
    if upstream_points_to "$(upstream_target "$c")"; then echo "$c"; return 0; fi
  done
}

# The color serving now: what the upstream file says, else the state file, else the one running
# container (a server set up by hand or by a seed script is adopted, not broken).
detect_active() {
  local c
  c="$(detect_upstream_color)"
  if [[ -z "$c" ]]; then c="$(state_get color)"; fi
  if [[ -z "$c" ]]; then
    if container_running blue && ! container_running green; then c=blue
    elif container_running green && ! container_running blue; then c=green
    fi
  fi
  echo "$c"
}
