#!/bin/sh
# Takes SSL Studio out of this user's menu: removes what install.sh made (the desktop entry it
# marked, the icon, the `sslstudio` link into an SSLStudio folder), nothing else. The unpacked
# folder itself stays; delete it when you like. Projects and models are never touched.
set -eu
app=io.github.sslstudio.SSLStudio
marker="X-SSLStudio-Installed-By=install.sh"
data=${XDG_DATA_HOME:-$HOME/.local/share}
entry="$data/applications/$app.desktop"
icon="$data/icons/hicolor/scalable/apps/$app.svg"
command="$HOME/.local/bin/sslstudio"

if [ -f "$entry" ] && grep -q "^$marker" "$entry"; then
  rm -f "$entry" "$icon"
  echo "removed $entry and $icon"
fi
if [ -L "$command" ] && [ "$(basename "$(readlink "$command")")" = SSLStudio ]; then
  rm -f "$command"
  echo "removed $command"
fi
command -v update-desktop-database >/dev/null && update-desktop-database -q "$data/applications" || true
