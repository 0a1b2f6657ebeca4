# Step (action=check, `bg-deploy check`): is this server ready for a first deploy? Each check is
# one `::bg-deploy-check:: ok|warn|fail NAME TEXT` line, TEXT the exact fix when it is not ok. It
# reads and changes nothing (no lock, no state directory made, nginx only tested).

check_line() { marker check "$1 $2 $3"; } # check_line ok|warn|fail NAME TEXT

check_run() {
  local v dir user
  user="$(id -un)"
  # bash and the tools the script uses
  if ((BASH_VERSINFO[0] >= 4)); then check_line ok bash "bash $BASH_VERSION"
  else check_line fail bash "bash $BASH_VERSION is too old: bg-deploy needs bash 4 or later"; fi
  if command -v flock >/dev/null; then check_line ok flock "flock is installed"
  else check_line fail flock "flock is missing: install util-linux (apt-get install util-linux)"; fi
  # Docker: reachable for this user, live-restore, the proxy setting the switch mode needs
  if ! command -v docker >/dev/null; then
    check_line fail docker "docker is not installed (or not on PATH for $user): install Docker (apt-get install docker.io)"
  elif ! v="$(docker_call info -f '{{.ServerVersion}} {{.LiveRestoreEnabled}} {{.DockerRootDir}}' 2>&1)"; then
    check_line fail docker "docker info failed for $user: ${v%%$'\n'*}. Add the user to the docker group (usermod -aG docker $user, then log in again)"
  else
    check_line ok docker "Docker ${v%% *} answers for $user"
    if [[ "$v" == *' true '* ]]; then check_line ok live-restore "live-restore is on: a daemon restart leaves the containers running"
    else check_line warn live-restore "live-restore is off: a daemon restart stops every container, the serving one too. Add \"live-restore\": true to /etc/docker/daemon.json and run systemctl reload docker"; fi
    dir="${v##* }"
    check_disk "$dir"
    check_proxy
  fi
  check_nginx
  check_ports
  check_state_dir
}

# "userland-proxy": false in daemon.json or on dockerd's command line
check_userland_proxy_off() {
  local pid
  if grep -Eqs '"userland-proxy"[[:space:]]*:[[:space:]]*false' /etc/docker/daemon.json; then return 0; fi
  for pid in $(pgrep -x dockerd 2>/dev/null); do
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -Eq -- '--userland-proxy(=| )false' && return 0
  done
  return 1
}

check_proxy() {
  if [[ "${P[switch_mode]}" == dnat ]]; then
    if check_userland_proxy_off; then
      check_line fail userland-proxy "switch-mode dnat needs Docker's userland proxy, which is off (\"userland-proxy\": false): remove that setting and restart docker, or use switch-mode reload"
    else check_line ok userland-proxy "Docker's userland proxy is on, as switch-mode dnat needs"; fi
    if command -v iptables-restore >/dev/null; then check_line ok iptables "iptables-restore is installed"
    else check_line fail iptables "switch-mode dnat needs iptables: apt-get install iptables"; fi
  elif check_userland_proxy_off; then
    check_line ok userland-proxy "Docker's userland proxy is off: published ports stay served while the daemon restarts"
  else
    check_line warn userland-proxy "Docker's userland proxy is on: a daemon restart cuts the responses passing through docker-proxy. Add \"userland-proxy\": false to /etc/docker/daemon.json and restart docker (with live-restore on first)"
  fi
}

check_disk() { # check_disk DOCKER_ROOT
  local free
  free="$(df -Pk "$1" 2>/dev/null | awk 'NR == 2 { print $4 }')"
  if [[ -z "$free" ]]; then check_line warn disk "cannot read the free space of $1"; return 0; fi
  if ((free < 1048576)); then
    check_line fail disk "$((free / 1024)) MiB free under $1: an image pull needs room. Free space (docker system prune -a removes unused images)"
  elif ((free < 5242880)); then
    check_line warn disk "$((free / 1024)) MiB free under $1: less than 5 GiB; each version kept is an image"
  else check_line ok disk "$((free / 1048576)) GiB free under $1"; fi
}

check_nginx() {
  local out file="${P[upstream_file]}" dir pattern found='' conf
  local -a patterns=() files=()
  dir="$(dirname "$file")"
  if ! out="$(nginx_run "${P[nginx_test]}" 2>&1)"; then
    # before the first deploy, a site may name the upstream the first deploy writes
    if [[ ! -e "$file" && "$out" == *"host not found in upstream \"${P[upstream_name]}\""* ]]; then
      check_line ok nginx-test "'${P[nginx_test]}' fails only for the upstream ${P[upstream_name]}, which the first deploy writes to $file"
    else
      local why
      why="$(printf '%s\n' "$out" | grep -m1 -E '\[(emerg|crit|alert)\]' || printf '%s' "${out##*$'\n'}")"
      check_line fail nginx-test "'${P[nginx_test]}' failed: ${why}. Fix nginx's config, or for a non-root user allow it in sudoers (see docs/getting-started.md)"
    fi
  else
    check_line ok nginx-test "'${P[nginx_test]}' passes"
  fi
  # the reload: for sudo, whether sudo would allow it, without running it
  if [[ "${P[nginx_reload]}" == "sudo -n "* ]]; then
    # shellcheck disable=SC2086 # the command's words, as sudo matches them
    if sudo -n -l ${P[nginx_reload]#sudo -n } >/dev/null 2>&1; then check_line ok nginx-reload "sudo allows '${P[nginx_reload]}'"
    else check_line fail nginx-reload "sudo does not allow '${P[nginx_reload]}' for $(id -un) without a password: add it to /etc/sudoers.d/bg-deploy (see docs/getting-started.md)"; fi
  fi
  # the upstream file: its directory writable, and nginx including it
  if [[ -e "$file" && -w "$file" ]] || [[ ! -e "$file" && -d "$dir" && -w "$dir" ]]; then
    check_line ok upstream-file "$file can be written by $(id -un)"
  elif [[ ! -d "$dir" ]]; then
    check_line fail upstream-file "$dir does not exist: create it (install -d -o $(id -un) $dir)"
  else
    check_line fail upstream-file "$(id -un) cannot write $file: make $dir the user's (chown $(id -un) $dir), or set nginx-upstream-file to a path it can write"
  fi
  # nginx's config as nginx reads it, include by include (nginx -T would refuse before the first
  # deploy, when a site names the upstream not written yet)
  conf="$(nginx_conf_path)"
  if [[ ! -r "$conf" ]]; then
    check_line warn nginx-include "cannot read nginx's config $conf as $(id -un) to see whether it includes $file"
    return 0
  fi
  nginx_conf_walk "$conf" 0
  for pattern in "${patterns[@]}"; do
    # shellcheck disable=SC2053 # the include is a glob, matched as one
    if [[ "$file" == $pattern ]]; then found="$pattern"; break; fi
  done
  if [[ -n "$found" ]]; then check_line ok nginx-include "nginx includes $file (include $found)"
  else check_line fail nginx-include "nginx does not include $file: add 'include $dir/${P[upstream_name]}-upstream*.conf;' at the http level (a site file is), then test and reload nginx"; fi
  if ((${#files[@]} > 0)) && grep -Eqs "proxy_pass[[:space:]]+https?://${P[upstream_name]}[;/[:space:]]" "${files[@]}"; then
    check_line ok nginx-site "a site proxies to http://${P[upstream_name]}"
  else
    check_line fail nginx-site "no site proxies to the upstream ${P[upstream_name]}: add 'location / { proxy_pass http://${P[upstream_name]}; }' to the site's server block (see docs/getting-started.md)"
  fi
}

# nginx_conf_walk FILE DEPTH: FILE and what it includes, into `files` and `patterns` (the
# caller's), relative paths taken from the main config's directory as nginx does
nginx_conf_walk() {
  local f="$1" inc base
  files+=("$f")
  (($2 < 8)) || return 0
  base="$(dirname "$(nginx_conf_path)")"
  while IFS= read -r inc; do
    inc="${inc#[\"\']}"; inc="${inc%[\"\']}"
    [[ "$inc" == /* ]] || inc="$base/$inc"
    patterns+=("$inc")
    local g
    # a glob that matches nothing yet (the upstream before the first deploy) is no error
    for g in $inc; do
      if [[ -f "$g" && -r "$g" ]]; then nginx_conf_walk "$g" $(($2 + 1)); fi
    done
  done < <(sed -e 's/#.*//' "$f" 2>/dev/null | grep -o 'include[[:space:]]\{1,\}[^;]*;' | sed 's/^include[[:space:]]*//; s/;$//')
  return 0
}

# the main config: -c in nginx-test-command, else nginx -V's conf-path
nginx_conf_path() {
  local p w next=0
  for w in ${P[nginx_test]}; do
    if ((next)); then printf '%s' "$w"; return 0; fi
    [[ "$w" == -c ]] && next=1
  done
  p="$(nginx -V 2>&1 | tr ' ' '\n' | sed -n 's/^--conf-path=//p')"
  printf '%s' "${p:-/etc/nginx/nginx.conf}"
}

# blue-port and green-port: free, or held by this app's own containers
check_ports() {
  local port color owner
  for color in blue green; do
    port="$(color_port "$color")"
    if ! (exec 3<>"/dev/tcp/${P[bind_address]}/$port") 2>/dev/null; then
      check_line ok "port-$color" "$port is free"
      continue
    fi
    owner="$(docker_call ps --filter "publish=$port" --format '{{.Names}}' 2>/dev/null | head -n 1)"
    if [[ "$owner" == "${P[app]}-blue" || "$owner" == "${P[app]}-green" ]]; then
      check_line ok "port-$color" "$port is $owner's"
    else
      check_line fail "port-$color" "$port is taken by ${owner:-another process} on ${P[bind_address]}: stop it, or set ${color}-port to a free port"
    fi
  done
}

check_state_dir() {
  state_dir_pick
  local d="$STATE_DIR"
  while [[ ! -e "$d" ]]; do d="$(dirname "$d")"; done
  if [[ -w "$d" ]]; then check_line ok state "the state goes to $STATE_DIR"
  else check_line fail state "$(id -un) cannot create $STATE_DIR: run as root, or give the user its home directory (the state then goes to ~/.bg-deploy)"; fi
}
