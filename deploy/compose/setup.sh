#!/bin/sh
# One-shot setup for the local consortium, run by the `setup` service (compose.yaml) in the coordinator image:
# provisions the kits and writes synthetic DICOM data for the three hospitals. Idempotent: an existing kits/ or
# data/ folder is left alone (delete it to start over; a new CA means every kit changes).
set -eu
if [ -e /setup/kits/ca/ca.pem ]; then
  echo "setup: kits/ exists, not provisioning again"
else
  federa provision /setup/consortium.yaml --out /setup/kits
fi
if [ -e /setup/data/hospital-a/labels.csv ]; then
  echo "setup: data/ exists, not generating again"
else
  federa-sim --out /setup/data --sites 3 --images 200 --holdout 200 --seed 1
fi
# The services run as uid/gid 10001 (the images' federa user) and the kit keys are owner-only (0600).
chown -R 10001:10001 /setup/kits /setup/data
echo "setup: done; next: docker compose up -d postgres && docker compose run --rm federa token create --role admin --name 'local admin'"
