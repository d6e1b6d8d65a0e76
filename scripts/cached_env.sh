# Sourced by scripts/bootstrap.sh and scripts/checkov.sh: environments cached outside the repo.
# cached_env NAME REQUIREMENTS prints the path of a virtual environment holding REQUIREMENTS
# (installed with --no-deps: the file pins every package), building it if absent. Its key is a hash
# of the file and the Python version, so a changed lock builds a new one and a warm machine reuses it.
# Expects $python and $cache to be set by the caller.

cached_env() {
  local name=$1 requirements=$2 key env
  key=$( { "$python" --version; cat "$requirements"; } | sha256sum | cut -c1-16)
  env="$cache/$name-$key"
  if [ ! -f "$env/.complete" ]; then
    echo "building the $name environment in $env (once per requirements file)" >&2
    rm -rf "$env.partial"
    mkdir -p "$cache"
    "$python" -m venv "$env.partial"
    "$env.partial/bin/pip" install --quiet --disable-pip-version-check --upgrade pip >&2
    "$env.partial/bin/pip" install --quiet --disable-pip-version-check --no-deps -r "$requirements" >&2
    # venv scripts carry their interpreter's absolute path: build under .partial, then fix them up.
    rm -rf "$env"
    mv "$env.partial" "$env"
    grep -rlI --null "$env.partial" "$env/bin" | xargs -0 -r sed -i "s#$env.partial#$env#g"
    touch "$env/.complete"
  fi
  echo "$env"
}
