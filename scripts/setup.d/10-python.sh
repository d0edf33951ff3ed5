# Python: a venv outside the repo with the locked dependencies and ansflow itself (editable).
need_apt() {  # need_apt PKG...: install the Debian packages that are missing
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]}" >&2
    if [ ! -f "$ANSFLOW_CACHE_DIR/.apt-updated" ]; then
      apt-get update -qq >&2 && touch "$ANSFLOW_CACHE_DIR/.apt-updated"
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  fi
}
need_apt python3-venv ca-certificates
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
if [ ! -x "$VENV/bin/uv" ]; then
  "$VENV/bin/pip" install -q uv >&2
fi
lock_sum=$(cat "$ROOT/requirements.lock" "$ROOT/pyproject.toml" | sha256sum | cut -c1-16)
if [ "$(cat "$VENV/.ansflow-lock" 2>/dev/null)" != "$lock_sum:$ROOT" ]; then
  "$VENV/bin/uv" pip install -q --python "$VENV/bin/python" -r "$ROOT/requirements.lock" >&2
  "$VENV/bin/uv" pip install -q --python "$VENV/bin/python" --no-deps -e "$ROOT" >&2
  echo "$lock_sum:$ROOT" > "$VENV/.ansflow-lock"
fi
if [ "$(cat "$VENV/.ansflow-bytecode" 2>/dev/null)" != "$lock_sum" ]; then
  # Bytecode for the venv's packages (~20 s once). uv installs without it, and where
  # PYTHONDONTWRITEBYTECODE is set (as on these machines) no process ever writes it, so every
  # Python process compiled Prefect, kubernetes, asyncssh & co. again: importing those took
  # 3.5 s instead of 1.9 s, and a step that imports them cost seconds more than the tool it
  # runs. Some packages ship files that do not compile (templates): not an error.
  "$VENV/bin/python" -m compileall -q -j 0 "$VENV/lib" >/dev/null 2>&1 || true
  echo "$lock_sum" > "$VENV/.ansflow-bytecode"
fi
export PATH="$VENV/bin:$PATH"
echo "export PATH=\"$VENV/bin:\$PATH\"" >> "$ANSFLOW_ENV_FILE"
