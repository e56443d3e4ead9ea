#!/usr/bin/env bash
# Vendors the browser libraries the web UI uses into portal/static/portal/vendor/, so that no
# page loads a script from a CDN at run time. Repeatable: each library is pinned to a version
# and to the registry's sha512 integrity of its tarball; the script fetches it with `npm pack`
# (the npm registry only), checks the integrity, and copies the built file and its licence.
#
#   bash scripts/vendor_static.sh          # (re)vendor; rewrites the files, prints their sha256
#   bash scripts/vendor_static.sh --check  # verify the committed files match the pinned tarballs
#
# To upgrade: change VERSION and INTEGRITY (`npm view chart.js@X dist.integrity`), run it,
# look at the pages with charts, commit the vendor/ folder.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEST="$ROOT/portal/static/portal/vendor"
CHECK=${1:-}

# name|version|sha512 integrity|file in the package|licence file in the package
LIBS=(
  "chart.js|4.6.1|sha512-hJyniucsFmq//EvXYvJ6c6mahPoI3kaxdjVH8awTaJ/fDNWeSqqqArixMJWkWNN6fcYvPU3HneSANFNYtRi61g==|dist/chart.umd.min.js|LICENSE.md"
)

command -v npm >/dev/null || { echo "npm is needed (apt-get install npm)" >&2; exit 1; }
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
mkdir -p "$DEST"
status=0
for lib in "${LIBS[@]}"; do
  IFS='|' read -r name version integrity file licence <<<"$lib"
  (cd "$work" && npm pack --silent "$name@$version" >/dev/null)
  tarball=$(ls "$work"/*.tgz)
  actual="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
  [ "$actual" = "$integrity" ] || { echo "$name@$version: integrity $actual, expected $integrity" >&2; exit 1; }
  mkdir -p "$work/x" && tar -xzf "$tarball" -C "$work/x"
  base=$(basename "$file" | sed "s/\.min\.js$//; s/\.js$//")
  target="$DEST/$base.min.js"; target_licence="$DEST/$base.LICENSE.md"
  if [ "$CHECK" = "--check" ]; then
    if cmp -s "$work/x/package/$file" "$target" && cmp -s "$work/x/package/$licence" "$target_licence"; then
      echo "ok $name@$version"
    else
      echo "DIFFERS $name@$version: $target" >&2; status=1
    fi
  else
    cp "$work/x/package/$file" "$target"
    cp "$work/x/package/$licence" "$target_licence"
    echo "$name@$version -> ${target#"$ROOT"/} sha256 $(sha256sum "$target" | cut -d' ' -f1)"
  fi
  rm -rf "$work/x" "$tarball"
done
if [ "$CHECK" != "--check" ]; then
  { echo "# Vendored by scripts/vendor_static.sh: do not edit by hand"
    echo "# name version tarball-integrity vendored-file sha256-of-vendored-file"
    for lib in "${LIBS[@]}"; do IFS='|' read -r name version integrity file _ <<<"$lib"
      base=$(basename "$file" | sed "s/\.min\.js$//; s/\.js$//")
      echo "$name $version $integrity $base.min.js $(sha256sum "$DEST/$base.min.js" | cut -d' ' -f1)"; done; } > "$DEST/VERSIONS"
fi
exit $status
