"""Python source run inside a live CPython process from the host, the way an operator debugs a
stuck pod: gdb attaches (ptrace, as root on the node), takes the GIL and runs the source in the
process's `__main__`.

PEP 768's `sys.remote_exec` does this without a debugger from Python 3.14; the images' Python is
Debian bookworm's 3.11, so gdb (Debian package `gdb`) calls the interpreter's exported C API
instead. The process's own files are read through /proc/<pid>/root: it runs in another mount
namespace.
"""

import json
import shutil
import subprocess

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


def gdb_missing() -> str | None:
    return None if shutil.which("gdb") else "gdb is not installed (apt-get install gdb)"


def run_python_in(pid: int, source: str) -> None:
    """Run `source` in process `pid`; AssertionError with gdb's output when it did not run."""
    # PyRun_SimpleString returns 0 when the source ran without an exception.
    literal = json.dumps(source)  # a C string literal: quotes and newlines escaped
    result = subprocess.run(
        [
            *("gdb", "-p", str(pid), "-batch", "-nx"),
            *("-ex", f"set sysroot /proc/{pid}/root"),
            *("-ex", "call (int)PyGILState_Ensure()"),
            *("-ex", f"call (int)PyRun_SimpleString({literal})"),
            *("-ex", "call (void)PyGILState_Release($1)"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "$2 = 0" in result.stdout, f"{result.stdout}\n{result.stderr}"
