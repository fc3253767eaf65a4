# Routine tasks. `pip install rust-just` provides `just`.
set shell := ["bash", "-euo", "pipefail", "-c"]

venv := ".venv"
py := venv + "/bin/python"

# --- core ---

# --- ops ---

# --- bench ---
