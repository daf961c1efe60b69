"""Python source run inside a live CPython process from the host, the way an operator debugs a
stuck pod: gdb attaches (ptrace, as root on the node), takes the GIL and runs the source in the
process's `__main__`.

PEP 768's `sys.remote_exec` does this without a debugger from Python 3.14; the images' Python is
Debian bookworm's 3.11, so gdb (Debian package `gdb`) calls the interpreter's exported C API
instead. The process's own files are read through /proc/<pid>/root: it runs in another mount
namespace.
"""

import functools
import json
import shutil
import subprocess
import sys
import time

# The engine thread ends with this error, as if a bug in a step had escaped the loop. While
# idle the thread polls its command queue, so the error lands there, outside the handlers that
# keep a failed command from ending it.
END_ENGINE_THREAD = """
import ctypes, threading
[engine] = [t for t in threading.enumerate() if t.name.endswith("-engine")]
ctypes.pythonapi.PyThreadState_SetAsyncExc(
    ctypes.c_ulong(engine.ident), ctypes.py_object(RuntimeError)
)
"""


@functools.cache
def gdb_unusable() -> str | None:
    """Why gdb cannot run Python in another process here, or None.

    Besides a missing gdb: gdb 13 (Debian bookworm's) fails every call into a process on CPUs
    with AMX (Sapphire Rapids and later: "Couldn't write extended state status: Bad address"
    when it restores the registers), so it is tried once on a Python process of this machine.
    """
    if not shutil.which("gdb"):
        return "gdb is not installed (apt-get install gdb)"
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"]) as probe:
        try:
            time.sleep(0.5)  # past the interpreter's start
            result = _gdb_run(probe.pid, "pass", sysroot=False)
        finally:
            probe.kill()
    if "$2 = 0" in result.stdout:
        return None
    if "Couldn't write extended state status" in result.stdout + result.stderr:
        return "gdb cannot call functions in a process on this CPU (its AMX register state)"
    return f"gdb cannot run Python in a process here:\n{result.stdout}\n{result.stderr}"


def run_python_in(pid: int, source: str) -> None:
    """Run `source` in process `pid`; AssertionError with gdb's output when it did not run."""
    result = _gdb_run(pid, source, sysroot=True)
    assert "$2 = 0" in result.stdout, f"{result.stdout}\n{result.stderr}"


def _gdb_run(pid: int, source: str, sysroot: bool) -> subprocess.CompletedProcess[str]:
    # PyRun_SimpleString returns 0 when the source ran without an exception.
    literal = json.dumps(source)  # a C string literal: quotes and newlines escaped
    root = ("-ex", f"set sysroot /proc/{pid}/root") if sysroot else ()
    return subprocess.run(
        [
            *("gdb", "-p", str(pid), "-batch", "-nx"),
            *root,
            *("-ex", "call (int)PyGILState_Ensure()"),
            *("-ex", f"call (int)PyRun_SimpleString({literal})"),
            *("-ex", "call (void)PyGILState_Release($1)"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
