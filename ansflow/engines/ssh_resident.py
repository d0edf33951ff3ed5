"""The resident shell's side of remote steps: the fixed program a resident shell runs
(:data:`RESIDENT`), the request it reads (:func:`request_bytes`) and the parser of its
replies (:class:`Trailer`); the protocol is in ansflow.engines.ssh_exec's docstring."""

from __future__ import annotations

import re
import shlex

from ansflow.outputs import MAX_OUTPUT_BYTES

KILL_GRACE = 2
# The watchdog is ended with KILL: a TERM that arrives while the just-forked subshell still
# has the parent's trap handler is lost (the shell then waited for the watchdog, holding the
# reply, until the next stop or the end of stdin). GNU head -c reads exactly n bytes from a
# pipe; another head (BusyBox's reads through stdio) could take the bytes after them, so
# elsewhere dd reads them one byte per read.
RESIDENT = r"""
umask 077
exec 3<&0
if head --version 2>/dev/null | grep -q GNU; then
  take() { head -c "$1"; }
else
  take() { dd bs=1 count="$1" 2>/dev/null; }
fi
trap 'kill -TERM -"$child" 2>/dev/null; sleep 1
  kill -KILL -"$child" 2>/dev/null; exit 129' HUP INT TERM
child=
while IFS= read -r req; do
  [ "$req" = run ] || continue
  IFS= read -r f && IFS= read -r o && IFS= read -r s && IFS= read -r nonce &&
    IFS= read -r n || exit 0
  case $n in ''|*[!0-9]*) exit 0 ;; esac
  code=125
  if mkdir -p "${f%/*}" 2>/dev/null && : > "$f" 2>/dev/null; then
    take "$n" > "$f" || exit 0
    ready=1
  else
    take "$n" > /dev/null || exit 0
    ready=
    echo "ansflow: cannot write the step's script on the host" >&2
  fi
  IFS= read -r check && [ "$check" = "$nonce" ] || exit 0
  if [ -n "$ready" ]; then
    setsid sh "$f" </dev/null 3<&- &
    child=$!
    (
      while IFS= read -r line <&3; do [ "$line" = stop ] && break; done
      kill -TERM -"$child" 2>/dev/null || exit 0
      sleep __GRACE__
      kill -KILL -"$child" 2>/dev/null
    ) >/dev/null 2>&1 &
    dog=$!
    wait "$child" 2>/dev/null
    code=$?
    kill -KILL -"$child" 2>/dev/null
    child=
    kill -KILL "$dog" 2>/dev/null
    wait "$dog" 2>/dev/null
  fi
  len=0
  if [ -n "$o" ] && [ -f "$o" ] && [ ! -L "$o" ] && [ -n "$s" ]; then
    head -c __MAX__ -- "$o" > "$s/.reply" 2>/dev/null && len=$(wc -c < "$s/.reply")
    len=${len##* }
  fi
  printf '\n%s\n' "$nonce" >&2
  printf '\n%s %s %s\n' "$nonce" "$code" "${len:-0}"
  [ "$len" -gt 0 ] 2>/dev/null && cat -- "$s/.reply"
  [ -n "$s" ] && rm -rf -- "$s"
done
""".replace("__GRACE__", str(KILL_GRACE)).replace("__MAX__", str(MAX_OUTPUT_BYTES + 1))
RESIDENT_COMMAND = f"sh -c {shlex.quote(RESIDENT)} ansflow-remote"


_REPLY = re.compile(rb" (\d+) (\d+)")


class Trailer:
    """Splits one stream of a resident shell into the command's output and the reply that
    ends it: a line holding the nonce (stderr), or ``<nonce> <exit code> <length>`` and
    that many bytes of outputs (stdout, ``payload=True``). The shell writes a newline before
    that line: it ends the command's last line, or (when that line had ended) makes one
    empty line, which is dropped. Only an empty line or a possible start of the nonce line
    is held back, so output stays live. Bytes after the reply are dropped."""

    def __init__(self, nonce: str, payload: bool = True) -> None:
        self.nonce = nonce.encode()
        self.payload = payload
        self.pending = b""
        self.at_line_start = True
        self.held_empty = False
        self.code: int | None = None
        self.size = 0
        self.trailer: bytearray | None = None  # the outputs, once the reply line was seen
        self.done = False

    def feed(self, chunk: bytes) -> bytes:
        if self.done:
            return b""
        if self.trailer is not None:
            self._collect(chunk)
            return b""
        out = bytearray()
        buf, self.pending = self.pending + chunk, b""
        while buf:
            nl = buf.find(b"\n")
            if nl < 0:
                if self.at_line_start and (self.nonce.startswith(buf)
                                           or buf.startswith(self.nonce)):
                    self.pending = buf
                else:
                    out += self._release() + buf
                    self.at_line_start = False
                break
            line, buf = buf[:nl], buf[nl + 1:]
            if not self.at_line_start:
                out += line + b"\n"
                self.at_line_start = True
            elif line.startswith(self.nonce) and self._reply(line[len(self.nonce):]):
                self.held_empty = False
                if self.payload:
                    self.trailer = bytearray()
                    self._collect(buf)
                else:
                    self.done = True
                break
            elif line == b"":
                out += self._release()
                self.held_empty = True
            else:
                out += self._release() + line + b"\n"
        return bytes(out)

    def _reply(self, rest: bytes) -> bool:
        if not self.payload:
            return rest == b""
        match = _REPLY.fullmatch(rest)
        if match is None:
            return False
        self.code, self.size = int(match[1]), int(match[2])
        return True

    def _collect(self, data: bytes) -> None:
        assert self.trailer is not None
        self.trailer += data[:self.size - len(self.trailer)]
        self.done = len(self.trailer) >= self.size

    def _release(self) -> bytes:
        if self.held_empty:
            self.held_empty = False
            return b"\n"
        return b""

    def rest(self) -> bytes:
        out, self.pending = self._release() + self.pending, b""
        return out


def request_bytes(script_path: str, outputs_path: str, scratch: str, nonce: str,
                  script: bytes) -> bytes:
    """A request to a resident shell (see the module's docstring)."""
    fields = (script_path, outputs_path, scratch, nonce)
    if any("\n" in f or "\r" in f for f in fields):
        raise ValueError("a remote path cannot hold a line break")
    return ("run\n" + "".join(f + "\n" for f in fields) + f"{len(script)}\n").encode() \
        + script + nonce.encode() + b"\n"
