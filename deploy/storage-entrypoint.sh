#!/bin/sh
# compose's `storage` service: SeaweedFS's `weed` serving S3 (SigV4) on $STORAGE_S3_PORT
# (8333), with one identity, the service's, from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY. Its
# bucket is made on the first upload (`weed`'s -s3.autoCreateBucket, for an admin identity).
set -eu
: "${AWS_ACCESS_KEY_ID:?set AWS_ACCESS_KEY_ID for the storage profile}"
: "${AWS_SECRET_ACCESS_KEY:?set AWS_SECRET_ACCESS_KEY for the storage profile}"
mkdir -p /data/weed
cat > /data/s3.json <<JSON
{"identities": [{"name": "service", "credentials": [{"accessKey": "$AWS_ACCESS_KEY_ID", "secretKey": "$AWS_SECRET_ACCESS_KEY"}],
                 "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
JSON
# STORAGE_HOST: the name the other services reach it by; STORAGE_BIND: where it listens.
# Its ports, weed's own defaults unless set (on the host's network they must be free ones:
# deploy/compose.host-network.yml): S3, and the master, volume server and filer inside it,
# each with its gRPC port. No usage statistics sent to SeaweedFS (-master.telemetry=false).
exec weed server -dir=/data/weed -ip="${STORAGE_HOST:-storage}" -ip.bind="${STORAGE_BIND:-0.0.0.0}" -filer -s3 \
    -s3.port="${STORAGE_S3_PORT:-8333}" -s3.port.grpc="${STORAGE_S3_GRPC_PORT:-18333}" \
    -master.port="${STORAGE_MASTER_PORT:-9333}" -master.port.grpc="${STORAGE_MASTER_GRPC_PORT:-19333}" \
    -volume.port="${STORAGE_VOLUME_PORT:-8080}" -volume.port.grpc="${STORAGE_VOLUME_GRPC_PORT:-18080}" \
    -filer.port="${STORAGE_FILER_PORT:-8888}" -filer.port.grpc="${STORAGE_FILER_GRPC_PORT:-18888}" \
    -s3.config=/data/s3.json -s3.port.iceberg=0 -s3.port.lance=0 -volume.max=0 -master.volumeSizeLimitMB=256 \
    -master.electionTimeout=1s -master.resumeState=false -volume.preStopSeconds=0 -master.telemetry=false
