#!/usr/bin/env bash
# Lint the Ansible role and run the real playbook end to end against a
# reroot sandbox (a busybox root on loop devices in private namespaces,
# reached with nsenter). Needs root, ansible-core and ansible-lint
# (pip install ansible-core ansible-lint), util-linux, e2fsprogs,
# busybox-static and python3. Never touches this machine's disks or root.
set -euo pipefail
cd "$(dirname "$0")/.."
(cd tools/ansible && ansible-lint --strict)
exec cargo test --test integration package::ansible -- --nocapture
