#!/usr/bin/env bash
# BASELINE FOR `npm run bench` — NOT PART OF BG-DEPLOY. Do not use it to deploy anything.
#
# The blue-green script as the blog posts this project grew out of teach it, kept so that the
# benchmark compares bg-deploy with what users run today: start the other color, a fixed
# `sleep 10`, a health probe every 10 s (up to 30 tries), rewrite the upstream with sed,
# `nginx -s reload`, then `docker stop` and `docker rm` the old container at once.
#
# Changes for the benchmark, none of which makes it slower: the two `bench-*` lines (timing),
# paths and ports as arguments, `nginx -c CONF` for the loopback nginx, and `--init` on docker run
# (without it the app, as PID 1, ignores SIGTERM and `docker stop` waits another 10 s).
#
#   ssh user@server 'bash -s' -- APP IMAGE BLUE_PORT GREEN_PORT UPSTREAM_FILE NGINX_CONF < classic-deploy.sh
set -e
APP=$1
IMAGE=$2
BLUE_PORT=$3
GREEN_PORT=$4
UPSTREAM_FILE=$5
NGINX_CONF=$6
STATE_FILE=/tmp/$APP.current_color

echo "bench-start $(date +%s%3N)"

CURRENT=$(cat "$STATE_FILE" 2>/dev/null || echo none)
if [ "$CURRENT" = "blue" ]; then
  NEW=green; NEW_PORT=$GREEN_PORT
else
  NEW=blue; NEW_PORT=$BLUE_PORT
fi
echo "current: $CURRENT, deploying $IMAGE to $NEW"

docker pull -q "$IMAGE"
docker rm -f "$APP-$NEW" 2>/dev/null || true
docker run -d --init --name "$APP-$NEW" -p "127.0.0.1:$NEW_PORT:8080" "$IMAGE"

# give the app time to start
sleep 10

HEALTHY=0
for i in $(seq 1 30); do
  if curl -fs "http://127.0.0.1:$NEW_PORT/health" >/dev/null; then
    HEALTHY=1
    break
  fi
  echo "not healthy yet ($i/30)"
  sleep 10
done
if [ "$HEALTHY" != 1 ]; then
  echo "new container is not healthy, aborting"
  docker rm -f "$APP-$NEW"
  exit 1
fi

# switch nginx to the new color
sed -i "s/server 127.0.0.1:[0-9]*;/server 127.0.0.1:$NEW_PORT;/" "$UPSTREAM_FILE"
nginx -c "$NGINX_CONF" -s reload

# remove the old container
if [ "$CURRENT" != "none" ]; then
  docker stop "$APP-$CURRENT"
  docker rm "$APP-$CURRENT"
fi
echo "$NEW" >"$STATE_FILE"
echo "deployed $IMAGE on $NEW"
echo "bench-end $(date +%s%3N)"
