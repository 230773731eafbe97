# A connection to a `reroot demo`-style sandbox host (a busybox root booted
# as PID 1 of private mount and PID namespaces on a loop device): every
# command runs through `nsenter` in the sandbox's mount and PID namespaces
# and its root, so the role's real tasks (copy, command, fetch) reach the
# sandbox as they would reach a server over SSH. Used by the end-to-end test
# of the role; not for real hosts.
#
# Safety: before each command it checks that the target's mount namespace
# is not this process's and not PID 1's, so a stale pid never makes a
# command run on the machine itself.

from __future__ import annotations

DOCUMENTATION = """
    name: reroot_sandbox
    short_description: run commands inside a reroot sandbox (nsenter)
    description:
      - Runs commands with nsenter in the mount and PID namespaces and the
        root of the sandbox whose PID 1 has the given host pid.
    options:
      sandbox_pid:
        description: Host pid of the sandbox's PID 1.
        vars:
          - name: reroot_sandbox_pid
        type: int
"""

import os
import shutil
import subprocess

from ansible.errors import AnsibleConnectionFailure, AnsibleError
from ansible.plugins.connection import ConnectionBase

SANDBOX_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
}


class Connection(ConnectionBase):
    transport = "reroot_sandbox"
    has_pipelining = True

    def _pid(self):
        pid = self.get_option("sandbox_pid")
        if not pid:
            raise AnsibleConnectionFailure("reroot_sandbox_pid is not set")
        return int(pid)

    def _argv(self):
        pid = self._pid()
        try:
            ns = os.readlink(f"/proc/{pid}/ns/mnt")
        except OSError as e:
            raise AnsibleConnectionFailure(f"sandbox pid {pid} is gone: {e}")
        ours = {os.readlink("/proc/self/ns/mnt")}
        try:
            ours.add(os.readlink("/proc/1/ns/mnt"))
        except OSError:
            pass  # PID 1 may be out of reach (a container); ours is enough
        if ns in ours:
            raise AnsibleConnectionFailure(
                f"pid {pid} is in this machine's mount namespace, not a sandbox")
        nsenter = shutil.which("nsenter") or "/usr/bin/nsenter"
        # All of its namespaces: mount and PID, and cgroup (units are read from
        # /proc/PID/cgroup) and network (the pivot checks sshd listens again).
        return [nsenter, f"--target={pid}", "--all", "--root", "--wd", "--"]

    def _connect(self):
        self._argv()
        self._connected = True
        return self

    def _run(self, argv, stdin=None, in_data=None):
        p = subprocess.Popen(
            self._argv() + argv,
            stdin=stdin if stdin is not None else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=SANDBOX_ENV,
        )
        out, err = p.communicate(in_data)
        return p.returncode, out, err

    def exec_command(self, cmd, in_data=None, sudoable=True):
        super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        self._display.vvv(f"EXEC in sandbox {self._pid()}: {cmd}", host=self._play_context.remote_addr)
        return self._run(["/bin/sh", "-c", cmd], in_data=in_data)

    def put_file(self, in_path, out_path):
        super().put_file(in_path, out_path)
        with open(in_path, "rb") as f:
            rc, _, err = self._run(["/bin/sh", "-c", 'cat >"$0"', out_path], stdin=f)
        if rc != 0:
            raise AnsibleError(f"put {in_path} -> {out_path}: {err.decode(errors='replace')}")

    def fetch_file(self, in_path, out_path):
        super().fetch_file(in_path, out_path)
        rc, out, err = self._run(["/bin/cat", in_path])
        if rc != 0:
            raise AnsibleError(f"fetch {in_path}: {err.decode(errors='replace')}")
        with open(out_path, "wb") as f:
            f.write(out)

    def reset(self):
        self.close()

    def close(self):
        self._connected = False
