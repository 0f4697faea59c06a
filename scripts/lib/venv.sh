# Shared by scripts/site and scripts/test: create .venv in the repository and install the exact
# pins of requirements/dev.txt (which includes requirements/runtime.txt). The install is
# skipped when the pins have not changed since the last one.

rodata_require_python() {
    local python="${RODATA_PYTHON:-python3}"
    if ! command -v "$python" > /dev/null; then
        echo "error: $python not found. Install Python 3.11 (Debian: apt-get install python3 python3-venv) or set RODATA_PYTHON." >&2
        exit 1
    fi
    if ! "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
        echo "error: $python is Python $("$python" -c 'import platform; print(platform.python_version())'), but the pins and the images need 3.11. Set RODATA_PYTHON to a Python 3.11." >&2
        exit 1
    fi
    if ! "$python" -c 'import ensurepip, venv' 2> /dev/null; then
        echo "error: $python cannot create virtualenvs. Install its venv module (Debian: apt-get install python3-venv)." >&2
        exit 1
    fi
    RODATA_PYTHON_BIN="$python"
}

rodata_ensure_venv() {
    rodata_require_python
    local stamp=.venv/.rodata-requirements.sha256
    local wanted
    wanted=$(cat requirements/dev.txt requirements/runtime.txt pyproject.toml | sha256sum | cut -d' ' -f1)

    if [ ! -x .venv/bin/python ]; then
        echo "Creating .venv with $RODATA_PYTHON_BIN"
        "$RODATA_PYTHON_BIN" -m venv .venv
    fi
    if [ "$(cat "$stamp" 2> /dev/null)" != "$wanted" ]; then
        echo "Installing the pinned requirements into .venv (requirements/dev.txt)"
        .venv/bin/python -m pip install --quiet --upgrade pip
        .venv/bin/python -m pip install --quiet -r requirements/dev.txt
        # The project itself, without dependencies: they are pinned above.
        .venv/bin/python -m pip install --quiet --no-deps --editable .
        echo "$wanted" > "$stamp"
    fi
    export PATH="$PWD/.venv/bin:$PATH"
}
