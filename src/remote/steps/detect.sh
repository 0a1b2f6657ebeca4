# Step: which color serves now.

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
